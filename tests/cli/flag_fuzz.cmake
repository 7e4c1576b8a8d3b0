# A generated-input test of the command line (ctest label `cpu`): every flag of every
# subcommand, as listed by the command's own --help, gets values of its type that are
# extreme, malformed or simply random (huge, negative, zero, nan, inf, empty, unicode, a
# directory, a missing file, random digits and bytes...). Each run must either succeed or be
# refused with one line "error: ..." and a non-zero exit code: never a signal, an uncaught
# exception, a multi-line or missing message, or a hang (each run has a time limit).
#
# Like cli_tests.cmake, this file plays two parts: included from tests/CMakeLists.txt (through
# cli_tests.cmake) it registers one test per subcommand; each test runs this file in script
# mode with FG (the binary), SUBCOMMAND (the subcommand, e.g. "train" or "bench;attention"),
# WORK (a scratch directory) and SEED (the random seed, printed on failure).
#
# Where a run of the binary is slow to start (a CUDA build: about half a second), each flag
# gets a seeded random choice of the values instead of all, within a time budget.
#
# Runs that would do real work are kept tiny by base flags given before the generated one (a
# repeated flag takes its last value): train a 1-layer width-16 model for 1 step, sample 3
# tokens, profile one length of 16. GPUs are hidden (CUDA_VISIBLE_DEVICES=-1), so that the
# test answers the same on every machine and only checks the flags, not the kernels.

if(CMAKE_SCRIPT_MODE_FILE)
  file(REMOVE_RECURSE "${WORK}")
  file(MAKE_DIRECTORY "${WORK}/adir")
  string(REPEAT "the cat sat on the mat. a dog ate the bone.\nthe sun is hot and the sea is blue.\n" 50 corpus)
  file(WRITE "${WORK}/corpus.txt" "${corpus}")
  set(ENV{CUDA_VISIBLE_DEVICES} "-1")
  string(RANDOM LENGTH 1 RANDOM_SEED ${SEED} ignored)  # seeds the generator below
  set(limit_s 30)

  # run(<prefix> args...): the binary in WORK, with the time limit.
  function(run prefix)
    execute_process(COMMAND "${FG}" ${ARGN} WORKING_DIRECTORY "${WORK}" TIMEOUT ${limit_s}
                    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
    set(${prefix}_rc "${rc}" PARENT_SCOPE)
    set(${prefix}_err "${err}" PARENT_SCOPE)
  endfunction()

  set(failures "")
  set(runs 0)
  # check(what rc err): records a failure unless the run succeeded or was refused properly.
  function(check what rc err)
    math(EXPR n "${runs} + 1")
    set(runs ${n} PARENT_SCOPE)
    set(bad "")
    if(NOT rc MATCHES "^[0-9]+$")
      set(bad "ended abnormally: ${rc}")
    elseif(err MATCHES "terminate called|what\\(\\)|Segmentation|Aborted|bad_alloc")
      set(bad "an uncaught exception or crash")
    elseif(NOT rc STREQUAL "0" AND NOT err MATCHES "^error: [^\n]+\n$")
      set(bad "exit ${rc} without one line 'error: ...'")
    endif()
    if(bad)
      set(failures "${failures}\n  flashgrad ${what}: ${bad}\n    stderr: ${err}" PARENT_SCOPE)
    endif()
  endfunction()

  # The values tried for each type of flag: the edge cases, then random ones.
  set(int_values 0 -1 7 99999999999999999999 9223372036854775807 -9223372036854775808 1e3 0x10
      1.5 nan inf "" ünï)
  set(float_values 0 -1 0.5 1e300 1e400 -inf inf nan "" ünï 1e-320 0x1p-3 2.5e-4x)
  string(REPEAT "a" 4000 long_text)
  set(text_values "" "ünï©ødé ✓" "${WORK}/adir" "${WORK}/missing.txt" /dev/null "${FG}" -1 nan
      "${long_text}" corpus.txt)
  # Random whole numbers are small (1 or 2 digits: cheap when valid) or huge (10 to 25 digits:
  # beyond every limit but the seed's), never in between, where a valid value could make a
  # run legitimately long (a million steps).
  foreach(i RANGE 1 3)
    string(RANDOM LENGTH 1 ALPHABET 12 small_len)
    string(RANDOM LENGTH ${small_len} ALPHABET 0123456789 small)
    string(RANDOM LENGTH 2 ALPHABET 0123456789 huge_len)
    math(EXPR huge_len "10 + ${huge_len} % 16")
    string(RANDOM LENGTH ${huge_len} ALPHABET 0123456789 huge)
    string(RANDOM LENGTH 1 ALPHABET "-+" sign)
    list(APPEND int_values "${small}" "${sign}${huge}")
    string(RANDOM LENGTH 2 ALPHABET 0123456789 exponent)
    list(APPEND float_values "${sign}0.${small}e${sign}${exponent}")
    string(RANDOM LENGTH 12 ALPHABET "abcXYZ019 ._-/é✓" text)
    list(APPEND text_values "${text}")
  endforeach()

  # Base flags per subcommand (tiny work), and the run's own output place.
  execute_process(COMMAND "${FG}" train --data corpus.txt --device cpu --steps 1 --block-size 8
                          --n-layer 1 --n-embd 16 --n-head 1 --batch-size 1 --eval-batches 1
                          --sample-tokens 0 --out ck
                  WORKING_DIRECTORY "${WORK}" RESULT_VARIABLE rc OUTPUT_QUIET ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "could not train the checkpoint the sample runs need:\n${err}")
  endif()
  set(base_train --data corpus.txt --device cpu --steps 1 --block-size 8 --n-layer 1 --n-embd 16
      --n-head 1 --batch-size 1 --eval-batches 1 --sample-tokens 0)
  set(base_sample --ckpt ck --device cpu --tokens 3)
  set(base_memprofile --device cpu --lengths 16 --heads 1 --head-dim 4 --reps 0 --no-warmup
      --layers 1 --width 8 --gpt-heads 1 --vocab 16)
  set(base_gradcheck_attention --device cpu --quick)
  set(base_bench_decode --device cpu --dtype fp32 --n-layer 1 --n-embd 32 --n-head 2
      --block-size 16 --vocab 20 --batch 1 --prompt-len 2 --tokens 2)
  set(base "")
  string(REPLACE ";" "_" key "${SUBCOMMAND}")
  if(DEFINED base_${key})
    set(base ${base_${key}})
  endif()

  # The flags and their types, from the subcommand's help: "  --steps INT:1..1000=800 ...".
  execute_process(COMMAND "${FG}" ${SUBCOMMAND} --help OUTPUT_VARIABLE help RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "flashgrad ${SUBCOMMAND} --help failed")
  endif()
  # Square brackets would join list items ("FLOAT:[0,1)"), semicolons split them.
  string(REGEX REPLACE "[][;]" "_" help "${help}")
  string(REPLACE "\n" ";" lines "${help}")
  set(flags "")
  foreach(line IN LISTS lines)
    if(NOT line MATCHES "^  (-[a-zA-Z],)?(--[^ ]+)( ([A-Z]+))?")
      continue()
    endif()
    set(names "${CMAKE_MATCH_2}")
    set(type "${CMAKE_MATCH_4}")
    if(type STREQUAL "")
      set(type FLAG)
    endif()
    string(REGEX REPLACE "{[^}]*}" "" names "${names}")
    string(REGEX MATCHALL "--[a-z0-9-]+" names "${names}")
    foreach(name IN LISTS names)
      if(NOT name STREQUAL "--help")
        list(APPEND flags "${name}=${type}")
      endif()
    endforeach()
  endforeach()
  if(NOT flags AND NOT SUBCOMMAND STREQUAL "info")
    message(FATAL_ERROR "no flags found in the help of flashgrad ${SUBCOMMAND}:\n${help}")
  endif()

  # What a run of the binary costs here: a few milliseconds for a CPU-only build, about half
  # a second for a CUDA one (the CUDA libraries' start-up). When trying every value of every
  # flag would take more than `budget_s`, each flag gets a seeded random choice of its
  # values instead (at least one), so that every flag is still tried.
  set(budget_s 15)
  string(TIMESTAMP t0 "%s%f")
  foreach(i RANGE 1 3)
    execute_process(COMMAND "${FG}" --help OUTPUT_QUIET ERROR_QUIET)
  endforeach()
  string(TIMESTAMP t1 "%s%f")
  math(EXPR run_us "(${t1} - ${t0}) / 3 + 1")
  list(LENGTH flags nflags)
  list(LENGTH int_values per_flag)  # every type has about as many values
  math(EXPR affordable "${budget_s} * 1000000 / ${run_us}")
  math(EXPR planned "${nflags} * (${per_flag} + 1) + 1")
  set(pick 0)  # values per flag; 0: all
  if(planned GREATER affordable AND nflags GREATER 0)
    math(EXPR pick "${affordable} / ${nflags}")
    if(pick LESS 1)
      set(pick 1)
    endif()
  endif()

  # The subcommand with its base flags alone, then the flags one at a time.
  set(n 0)
  set(place "")
  if(SUBCOMMAND STREQUAL "train" OR SUBCOMMAND STREQUAL "memprofile")
    set(place --out run0)
  endif()
  run(r ${SUBCOMMAND} ${base} ${place})
  check("${SUBCOMMAND} (base flags)" "${r_rc}" "${r_err}")
  foreach(entry IN LISTS flags)
    string(REGEX MATCH "^([^=]+)=(.*)$" ignored "${entry}")
    set(flag "${CMAKE_MATCH_1}")
    set(type "${CMAKE_MATCH_2}")
    # The cases of a flag: given last with no value, then "--flag VALUE" for each value of its
    # type (for a flag without a value: "--flag=maybe").
    if(type STREQUAL "FLAG")
      set(values "=maybe")
    elseif(type STREQUAL "INT" OR type STREQUAL "UINT")
      set(values "${int_values}")
    elseif(type STREQUAL "FLOAT")
      set(values "${float_values}")
    else()
      set(values "${text_values}")
      if(flag STREQUAL "--json")  # an output file: never the binary under test
        list(REMOVE_ITEM values "${FG}")
      endif()
    endif()
    list(LENGTH values count)
    set(cases "")
    foreach(i RANGE ${count})  # case 0: no value; case i: value i - 1
      list(APPEND cases ${i})
    endforeach()
    if(pick GREATER 0 AND pick LESS count)
      set(chosen "")
      foreach(k RANGE 1 ${pick})
        string(RANDOM LENGTH 4 ALPHABET 0123456789 r)
        math(EXPR i "${r} % (${count} + 1)")
        list(APPEND chosen ${i})
      endforeach()
      list(REMOVE_DUPLICATES chosen)
      set(cases "${chosen}")
    endif()
    foreach(i IN LISTS cases)
      math(EXPR n "${n} + 1")
      # Outputs go to a fresh place per run, unless the flag tried is that place.
      set(place "")
      if((SUBCOMMAND STREQUAL "train" OR SUBCOMMAND STREQUAL "memprofile") AND NOT flag STREQUAL "--out")
        set(place --out run${n})
      endif()
      if(i EQUAL 0)
        run(r ${SUBCOMMAND} ${base} ${place} "${flag}")
        check("${SUBCOMMAND} ${flag} (no value)" "${r_rc}" "${r_err}")
        continue()
      endif()
      math(EXPR v "${i} - 1")
      list(GET values ${v} value)
      if(type STREQUAL "FLAG")
        run(r ${SUBCOMMAND} ${base} ${place} "${flag}${value}")
      else()
        run(r ${SUBCOMMAND} ${base} ${place} "${flag}" "${value}")
      endif()
      string(SUBSTRING "${value}" 0 60 shown)
      check("${SUBCOMMAND} ${flag} '${shown}'" "${r_rc}" "${r_err}")
    endforeach()
  endforeach()

  if(pick GREATER 0)
    set(how "up to ${pick} random cases per flag, a run costing ${run_us} us")
  else()
    set(how "every case")
  endif()
  message(STATUS "flashgrad ${SUBCOMMAND}: ${nflags} flags, ${runs} runs, ${how} (seed ${SEED})")
  if(failures)
    message(FATAL_ERROR "flashgrad ${SUBCOMMAND}: runs that crashed, hung or failed without a clear "
                        "one-line error (seed ${SEED}):${failures}")
  endif()
  file(REMOVE_RECURSE "${WORK}")
  return()
endif()

# One test per subcommand, so that ctest runs them side by side.
string(RANDOM LENGTH 6 ALPHABET 0123456789 FLASHGRAD_FLAG_FUZZ_SEED)
set(FLASHGRAD_FLAG_FUZZ_SEED ${FLASHGRAD_FLAG_FUZZ_SEED} CACHE STRING
    "seed of the generated flag values of the cli_flags_* tests")
foreach(command info train sample memprofile "gradcheck;attention" "bench;attention" "bench;decode")
  string(REPLACE ";" "_" name "${command}")
  add_test(NAME cli_flags_${name}
           COMMAND ${CMAKE_COMMAND} -DFG=$<TARGET_FILE:flashgrad_cli> "-DSUBCOMMAND=${command}"
                   -DWORK=${CMAKE_CURRENT_BINARY_DIR}/cli_work/flags_${name}
                   -DSEED=${FLASHGRAD_FLAG_FUZZ_SEED} -P ${CMAKE_CURRENT_LIST_FILE})
  set_tests_properties(cli_flags_${name} PROPERTIES LABELS cpu TIMEOUT 600)
endforeach()
