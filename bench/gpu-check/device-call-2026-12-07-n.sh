#!/bin/bash
# Call n (2026-12-07, second session): the LayerNorm backward with the next row's loads in
# flight (prefetch) against without (plain), the forward with two rows a warp against one (each
# an A/B in one run), their tests, memcheck and racecheck, and bench/compare_train.py on all
# three configs (small, gpt12, gpt24 at batch 32) in this one call; the small preset's training
# quality with dropout on 16 random bits.
#   LIMIT=450 bash bench/gpu-check/device-call-2026-12-07-n.sh   (repository root; carry .deps, data)
source bench/gpu-check/lib.sh
LIMIT=${LIMIT:-450}
build
ctest_cuda 120
memcheck 60 test_nn_ops
timeout 60 compute-sanitizer --tool racecheck --error-exitcode 9 build/tests/test_nn_ops "[layer_norm]" > $L/racecheck-ln.log 2>&1
el "racecheck test_nn_ops [layer_norm] rc $? $(grep -E 'RACECHECK SUMMARY|ERROR SUMMARY' $L/racecheck-ln.log | tail -1)"
FLASHGRAD_LN_BACKWARD=plain FLASHGRAD_LN_FORWARD=one-row timeout 60 build/tests/test_nn_ops "[layer_norm]" > $L/ln-other-forms.log 2>&1
el "test_nn_ops [layer_norm], plain backward and one-row forward, rc $? $(tail -2 $L/ln-other-forms.log | head -1)"
timeout 60 build/flashgrad bench ops --reps 5 > $L/ops.log 2>&1
el "bench ops rc $?"; grep -E "^ +[a-z]" $L/ops.log | tee -a $FINAL/summary.txt
FLASHGRAD_LN_BACKWARD=plain FLASHGRAD_LN_FORWARD=one-row timeout 60 build/flashgrad bench ops --reps 5 > $L/ops-other.log 2>&1
el "bench ops, plain backward and one-row forward, rc $?"; grep -E "^ +(copy|layer_norm)" $L/ops-other.log | tee -a $FINAL/summary.txt
timeout 40 build/flashgrad bench ops --n-embd 1024 --tokens 32768 --params 1 --reps 5 > $L/ops-1024.log 2>&1
el "bench ops at width 1024 rc $?"; grep -E "^ +(copy|layer_norm)" $L/ops-1024.log | tee -a $FINAL/summary.txt
FLASHGRAD_LN_BACKWARD=plain timeout 40 build/flashgrad bench ops --n-embd 1024 --tokens 32768 --params 1 --reps 5 > $L/ops-1024-plain.log 2>&1
el "bench ops at width 1024, plain backward, rc $?"; grep -E "^ +(copy|layer_norm)" $L/ops-1024-plain.log | tee -a $FINAL/summary.txt
pack
timeout 90 build/flashgrad train --preset small --device cuda --dtype bf16 --out $L/small-run --eval-interval 250 \
  --log-interval 500 --sample-tokens 0 --data data/fortunes.txt > $L/train-small-quality.log 2>&1
el "train --preset small (quality, dropout on 16 bits) rc $? $(grep -iE 'best val' $L/train-small-quality.log | tail -1)"
rm -rf $L/small-run
compare_all_configs
pack
el done
