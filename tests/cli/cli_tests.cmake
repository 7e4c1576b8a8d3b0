# Command-line smoke tests of the `flashgrad` binary (ctest label `cpu`, a few seconds each).
#
# This one file plays two parts. Included from tests/CMakeLists.txt, it registers the tests;
# each test then runs this same file in script mode (cmake -P) with FG (the binary), MODE
# (which check) and WORK (a scratch directory), and the script drives the binary and checks
# its exit code and output. Training runs use the tiny preset with a few steps and a toy text.

if(CMAKE_SCRIPT_MODE_FILE)
  file(REMOVE_RECURSE "${WORK}")
  file(MAKE_DIRECTORY "${WORK}")

  # A small corpus with structure a tiny model picks up within a few steps.
  string(REPEAT "the cat sat on the mat. a dog ate the bone.\nthe sun is hot and the sea is blue.\n" 200 corpus)
  file(WRITE "${WORK}/corpus.txt" "${corpus}")

  include(${CMAKE_CURRENT_LIST_DIR}/cli_helpers.cmake)
  # Quick tiny-preset settings for runs that only need a checkpoint (`tiny`: all but --steps).
  set(tiny --data corpus.txt --device cpu --batch-size 2 --eval-batches 1 --sample-tokens 0)
  set(quick ${tiny} --steps 2)

  if(MODE STREQUAL "train_sample_resume")
    fg(t train --preset tiny --data corpus.txt --device cpu --out ck --steps 40 --eval-interval 20
       --eval-batches 2 --batch-size 8 --sample-tokens 20 --log-interval 10)
    expect_ok(t)
    message(STATUS "${t_out}")
    if(NOT t_out MATCHES "loss ([0-9.]+) -> ([0-9.]+)")
      message(FATAL_ERROR "no 'loss A -> B' in the summary:\n${t_out}")
    endif()
    set(first "${CMAKE_MATCH_1}")
    set(last "${CMAKE_MATCH_2}")
    if(NOT last LESS first)
      message(FATAL_ERROR "the loss did not fall: ${first} -> ${last}")
    endif()
    foreach(needle "eval step 20: train loss" "best val loss" "peak memory:" "--- sample")
      string(FIND "${t_out}" "${needle}" pos)
      if(pos EQUAL -1)
        message(FATAL_ERROR "'${needle}' missing from the output:\n${t_out}")
      endif()
    endforeach()
    fg(s sample --ckpt ck --prompt "the " --tokens 30 --temperature 0.8 --top-k 5 --device cpu)
    expect_ok(s)
    if(NOT s_out MATCHES "^the ")
      message(FATAL_ERROR "sample does not start with the prompt:\n${s_out}")
    endif()
    string(LENGTH "${s_out}" len)
    if(len LESS 30)
      message(FATAL_ERROR "sample too short:\n${s_out}")
    endif()
    fg(r train --out ck --resume --steps 44 --data corpus.txt --sample-tokens 0)
    expect_ok(r)
    if(NOT r_out MATCHES "resuming ck at step 40" OR NOT r_out MATCHES "done: 4 steps")
      message(FATAL_ERROR "resume did not continue from step 40:\n${r_out}")
    endif()

  elseif(MODE STREQUAL "refuse_overwrite")
    fg(a train ${quick} --out ck)
    expect_ok(a)
    file(SHA256 "${WORK}/ck/checkpoint.json" before)
    fg(b train ${quick} --out ck)
    expect_fail(b "already holds a checkpoint")
    file(SHA256 "${WORK}/ck/checkpoint.json" after)
    if(NOT before STREQUAL after)
      message(FATAL_ERROR "the checkpoint was overwritten")
    endif()
    fg(c train ${quick} --out ck --overwrite --seed 5)
    expect_ok(c)

  elseif(MODE STREQUAL "corrupt_checkpoint")
    fg(a train ${quick} --out ck)
    expect_ok(a)
    file(GLOB model "${WORK}/ck/model-*.safetensors")
    file(WRITE "${model}" "this is not a safetensors file")
    fg(s sample --ckpt ck --tokens 5)
    expect_fail(s "error: .*corrupt")
    fg(r train --out ck --resume --steps 4 --data corpus.txt)
    expect_fail(r "error: .*corrupt")
    file(READ "${model}" still)
    if(NOT still STREQUAL "this is not a safetensors file")
      message(FATAL_ERROR "a failed resume overwrote the checkpoint")
    endif()
    file(WRITE "${WORK}/ck/checkpoint.json" "{\"format\": \"flashgrad-checkp")
    fg(t sample --ckpt ck)
    expect_fail(t "error: .*does not parse")
    fg(m sample --ckpt nowhere)
    expect_fail(m "error: .*does not exist")

  elseif(MODE STREQUAL "other_config")
    fg(a train ${quick} --out ck)
    expect_ok(a)
    fg(b train --out ck --resume --n-layer 3 --steps 4)
    expect_fail(b "another model config.*n_layer")
    fg(c train --out ck --resume --preset small --steps 4)
    expect_fail(c "another model config")

  elseif(MODE STREQUAL "bad_data")
    fg(a train --data missing.txt --out ck --device cpu)
    expect_fail(a "error: data file 'missing.txt' does not exist")
    file(WRITE "${WORK}/empty.txt" "")
    fg(b train --data empty.txt --out ck --device cpu)
    expect_fail(b "error: data file 'empty.txt' is empty")
    file(WRITE "${WORK}/short.txt" "just a few words")
    fg(c train --data short.txt --out ck --device cpu)
    expect_fail(c "error: .*too short")
    if(EXISTS "${WORK}/ck")
      message(FATAL_ERROR "a failed run created its output directory")
    endif()

  elseif(MODE STREQUAL "bad_flags")
    fg(a train --no-such-flag)
    expect_fail(a "no-such-flag")
    fg(b train --steps many)
    expect_fail(b "steps")
    fg(c train --attn magic)
    expect_fail(c "attn")
    fg(d train --preset huge)
    expect_fail(d "preset")
    fg(e sample)
    expect_fail(e "ckpt")
    fg(f train --n-head 3 --data corpus.txt --out ck)
    expect_fail(f "error: .*multiple of n_head")

  elseif(MODE STREQUAL "refusals")
    # Values refused before any work (nothing written), each with one line naming the flag,
    # the value and what is accepted.
    fg(a train ${quick} --out ck --eps inf)
    expect_refusal(a "^error: --eps must be a finite number > 0, got inf")
    fg(b train ${quick} --out ck --lr inf)
    expect_refusal(b "^error: --lr must be a finite number > 0, got inf")
    fg(c train ${quick} --out ck --weight-decay inf)
    expect_refusal(c "^error: --weight-decay must be a finite number >= 0, got inf")
    fg(d train ${quick} --out ck --seed -1)
    expect_refusal(d "^error: --seed must be a whole number from 0 to 18446744073709551615, got -1")
    fg(e train ${tiny} --out ck --steps 99999999999999999999)
    expect_refusal(e "^error: --steps must be a whole number from 1 to 1000000000, got 99999999999999999999")
    fg(f train ${quick} --out ck --dropout nan)
    expect_refusal(f "^error: --dropout must be a number in \\[0, 1\\), got nan")
    fg(g train ${quick} --out ck --resume --overwrite)
    expect_refusal(g "^error: --resume and --overwrite contradict each other")
    fg(h train ${quick} --out ck --lr 0.5 --weight-decay 3)
    expect_refusal(h "^error: --weight-decay times --lr must be below 1")
    fg(i train --data corpus.txt --device cpu --out ck --steps 010 --eval-batches 0x10)
    expect_refusal(i "^error: --eval-batches must be a whole number from 1 to 1000000, got 0x10")
    if(EXISTS "${WORK}/ck")
      message(FATAL_ERROR "a refused run created its output directory")
    endif()
    # A resume told to stop at a step it has passed.
    fg(j train ${tiny} --out ck --steps 6 --stop-at 4)
    expect_ok(j)
    fg(k train --out ck --resume --stop-at 3)
    expect_refusal(k "^error: --stop-at 3 is not after the checkpoint's step 4")

  elseif(MODE STREQUAL "messages")
    # Out of memory: the sizes and what to lower, never a bare std::bad_alloc.
    fg(a train --data corpus.txt --device cpu --out ck --batch-size 100000000)
    expect_refusal(a "^error: this run needs more memory than cpu has: .*micro-batch of 100000000 x 64 tokens.*lower --batch-size")
    # Range errors state the range in plain numbers.
    fg(b sample --ckpt ck --tokens -3)
    expect_refusal(b "^error: --tokens must be a whole number from 0 to 1000000, got -3 ")
    fg(c sample --ckpt ck --temperature -1)
    expect_refusal(c "^error: --temperature must be a finite number >= 0, got -1 ")
    # An unknown command is named as such.
    fg(d trian --steps 3)
    expect_refusal(d "^error: unknown command 'trian' for 'flashgrad'; the commands are info, train, sample")
    fg(e gradcheck)
    expect_refusal(e "^error: 'flashgrad gradcheck' needs a command: attention")
    # A path that is a file is called a file.
    fg(f sample --ckpt corpus.txt)
    expect_refusal(f "^error: --ckpt 'corpus.txt' is a file")
    fg(g train --out corpus.txt --resume)
    expect_refusal(g "^error: --out 'corpus.txt' is a file")
    # Divergence: the remedies that apply (no --dtype fp32 in fp32) and the true state of the
    # checkpoint, first with none saved, then with one.
    fg(h train ${tiny} --out div --lr 1e30 --weight-decay 0 --steps 4)
    expect_refusal(h "^error: training diverged at step 2: .*try a lower --lr \\(now 1.00e\\+30\\), --grad-clip 1|^error: training diverged at step 2: .*try a lower --lr \\(now 1.00e\\+30\\); no checkpoint was saved in div")
    expect_not_in("${h_err}" "--dtype fp32")
    expect_not_in("${h_err}" "untouched")
    fg(i train ${tiny} --out div2 --steps 4 --stop-at 2)
    expect_ok(i)
    fg(j train --out div2 --resume --lr 1e30 --weight-decay 0)
    expect_refusal(j "^error: training diverged at step 4: .*the checkpoint of step 2 in div2 is intact")
    fg(k train ${quick} --out div3 --lr 1e30 --weight-decay 0 --dtype bf16)
    expect_refusal(k "^error: training diverged .*--dtype fp32")

  elseif(MODE STREQUAL "val_fraction")
    # A tiny --val-fraction answers at once (the minimum size is found in O(log n)) and the
    # error suggests a fraction that fits the text.
    set(FG_TIMEOUT 20)
    fg(a train --data corpus.txt --device cpu --out ck --val-fraction 1e-9)
    expect_refusal(a "^error: data 'corpus.txt' is too short: .*at least [0-9]+ tokens at --val-fraction 1e-09.*; use --val-fraction 0.1 \\(any value from 0.005 to 0.995 fits this text\\)")
    fg(b train --data corpus.txt --device cpu --out ck --block-size 100000 --val-fraction 0.5)
    expect_refusal(b "; use --block-size 7999 or less, or a longer text")

  elseif(MODE STREQUAL "data_loss")
    # Weights of another run without checkpoint.json: a fresh run refuses the directory, and
    # deletes nothing, unless --overwrite.
    file(WRITE "${WORK}/ck/model-00000100.safetensors" "weights of another run")
    file(WRITE "${WORK}/ck/optimizer-00000100.safetensors" "moments of another run")
    fg(a train ${quick} --out ck)
    expect_refusal(a "^error: 'ck' holds weights of another run \\(model-00000100.safetensors, optimizer-00000100.safetensors\\) but no checkpoint.json; pass --overwrite")
    foreach(f model optimizer)
      if(NOT EXISTS "${WORK}/ck/${f}-00000100.safetensors")
        message(FATAL_ERROR "a refused run deleted ${f}-00000100.safetensors")
      endif()
    endforeach()
    fg(b train ${quick} --out ck --overwrite)
    expect_ok(b)
    expect_in("${b_out}" "--overwrite: the 2 checkpoint file(s) in ck are replaced")
    if(EXISTS "${WORK}/ck/model-00000100.safetensors" OR NOT EXISTS "${WORK}/ck/checkpoint.json")
      message(FATAL_ERROR "--overwrite did not replace the earlier run")
    endif()
    # Saving removes only its own step files, never another file kept beside them.
    file(WRITE "${WORK}/ck/model-best.safetensors" "kept by the user")
    fg(c train --out ck --resume --steps 4 --data corpus.txt --sample-tokens 0)
    expect_ok(c)
    if(NOT EXISTS "${WORK}/ck/model-best.safetensors")
      message(FATAL_ERROR "a save deleted model-best.safetensors")
    endif()

  elseif(MODE STREQUAL "binary_data")
    fg(a train --data "${FG}" --device cpu --out ck)
    expect_refusal(a "^error: '.*' holds NUL bytes: it looks like a binary file, not text")
    file(MAKE_DIRECTORY "${WORK}/adir")
    fg(b train --data adir --device cpu --out ck)
    expect_refusal(b "^error: data file 'adir' is a directory")
    if(EXISTS "${WORK}/ck")
      message(FATAL_ERROR "a refused run created its output directory")
    endif()

  elseif(MODE STREQUAL "stale_temporaries")
    # Temporaries of a save that was killed are removed by the next run into the directory.
    fg(a train ${quick} --out ck)
    expect_ok(a)
    file(WRITE "${WORK}/ck/.model-00000004.safetensors.tmp.999999" "half a file")
    file(WRITE "${WORK}/ck/.checkpoint.json.tmp.999998" "{")
    fg(b train --out ck --resume --steps 4 --data corpus.txt --sample-tokens 0)
    expect_ok(b)
    expect_in("${b_out}" "removed 2 temporary file(s) that an interrupted save left in ck")
    file(GLOB left "${WORK}/ck/.*.tmp.*")
    if(left)
      message(FATAL_ERROR "temporaries left: ${left}")
    endif()

  elseif(MODE STREQUAL "resume_schedule")
    # A larger --steps on --resume trains on at --min-lr, says so and points to --stop-at; the
    # learning rate never jumps back up unless the schedule is changed, which is warned about.
    set(sched --data corpus.txt --device cpu --batch-size 2 --eval-batches 1 --sample-tokens 0
        --warmup 2 --lr 1e-3 --min-lr 1e-4 --log-interval 1)
    fg(a train ${sched} --steps 20 --out ck)
    expect_ok(a)
    fg(b train --out ck --resume --steps 30 --log-interval 1)
    expect_ok(b)
    expect_in("${b_out}" "note: the learning rate decays over the first 20 steps of this run; steps 21 to 30 train at --min-lr 1.00e-04")
    expect_in("${b_out}" "--stop-at")
    if(NOT b_out MATCHES "step 21/30 \\| loss [0-9.]+ \\| lr 1.00e-04" OR NOT b_out MATCHES "step 30/30 \\| loss [0-9.]+ \\| lr 1.00e-04")
      message(FATAL_ERROR "the resumed steps did not run at --min-lr:\n${b_out}")
    endif()
    fg(c train --out ck --resume --steps 40 --lr-decay-steps 40 --log-interval 1)
    expect_ok(c)
    expect_in("${c_out}" "warning: the learning rate at step 30 changes from 1.00e-04 (the checkpoint's schedule) to")

  elseif(MODE STREQUAL "default_out")
    # The README's main command works when run again: the second run trains beside the first
    # (out/tiny-2), and --resume without --out continues the latest.
    fg(a train ${quick})
    expect_ok(a)
    fg(b train ${quick})
    expect_ok(b)
    expect_in("${b_out}" "checkpoints go to out/tiny-2 (out/tiny holds an earlier run")
    foreach(d tiny tiny-2)
      if(NOT EXISTS "${WORK}/out/${d}/checkpoint.json")
        message(FATAL_ERROR "no checkpoint in out/${d}")
      endif()
    endforeach()
    fg(c train --resume --steps 4 --data corpus.txt --sample-tokens 0)
    expect_ok(c)
    expect_in("${c_out}" "resuming out/tiny-2 at step 2")

  elseif(MODE STREQUAL "info")
    fg(a info)
    expect_ok(a)
    message(STATUS "${a_out}")
    foreach(line "^flashgrad [0-9.]+\n" "\ncommit: ([0-9a-f]+|unknown)\n" "\nbuild type: [A-Za-z]+\n"
                 "\nCUDA: (built, architectures [0-9a-z, ]+|not built)" "\nBLAS: " "\nCPU: [0-9]+ threads, [0-9.]+ [KMGT]iB RAM\n"
                 "\nGPUs: " "\n(attention: the CPU flash path|attention kernels on cuda:0)")
      if(NOT a_out MATCHES "${line}")
        message(FATAL_ERROR "no line matching '${line}' in:\n${a_out}")
      endif()
    endforeach()

  else()
    message(FATAL_ERROR "unknown MODE '${MODE}'")
  endif()
  return()
endif()

set(FLASHGRAD_CLI_WORK "${CMAKE_CURRENT_BINARY_DIR}/cli_work")
foreach(mode train_sample_resume refuse_overwrite corrupt_checkpoint other_config bad_data bad_flags
        refusals messages val_fraction data_loss binary_data stale_temporaries resume_schedule
        default_out info)
  add_test(NAME cli_${mode}
           COMMAND ${CMAKE_COMMAND} -DFG=$<TARGET_FILE:flashgrad_cli> -DMODE=${mode}
                   -DWORK=${FLASHGRAD_CLI_WORK}/${mode} -P ${CMAKE_CURRENT_LIST_FILE})
  set_tests_properties(cli_${mode} PROPERTIES LABELS cpu TIMEOUT 300)
endforeach()

# Tests that need a signal or two processes at once are a shell script (see its top).
find_program(FLASHGRAD_BASH bash)
if(FLASHGRAD_BASH)
  foreach(mode sigint_sample concurrent_out)
    add_test(NAME cli_${mode}
             COMMAND ${FLASHGRAD_BASH} ${CMAKE_CURRENT_LIST_DIR}/process_tests.sh
                     $<TARGET_FILE:flashgrad_cli> ${FLASHGRAD_CLI_WORK}/${mode} ${mode})
    set_tests_properties(cli_${mode} PROPERTIES LABELS cpu TIMEOUT 120)
  endforeach()
  # scripts/setup.sh with stand-ins for the tools it calls (see setup_test.sh).
  add_test(NAME cli_setup_script
           COMMAND ${FLASHGRAD_BASH} ${CMAKE_CURRENT_LIST_DIR}/setup_test.sh ${CMAKE_SOURCE_DIR}
                   ${FLASHGRAD_CLI_WORK}/setup_script)
  set_tests_properties(cli_setup_script PROPERTIES LABELS cpu TIMEOUT 60)
endif()

# The generated-input test of every flag of every subcommand.
include(${CMAKE_CURRENT_LIST_DIR}/flag_fuzz.cmake)
