#!/usr/bin/env bash
# Command-line tests that need a signal or two processes at once (ctest label `cpu`), run by
# cli_tests.cmake as `bash process_tests.sh FG WORK MODE`:
#   sigint_sample   Ctrl-C during the final sample of `train`, and during `sample`: the text
#                   is printed as it is drawn, the command stops within seconds with exit code
#                   130, and the checkpoint stays intact.
#   concurrent_out  a second `train` into the directory a running one holds fails at once,
#                   naming the holder, whatever its flags; the first run goes on.
set -uo pipefail
FG=$1 WORK=$2 MODE=$3
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK" || exit 1
for i in $(seq 200); do
  printf 'the cat sat on the mat. a dog ate the bone.\nthe sun is hot and the sea is blue.\n'
done > corpus.txt
QUICK=(--data corpus.txt --device cpu --batch-size 2 --eval-batches 1)
# Whatever happens, no run of this script outlives it.
trap 'for p in $(jobs -p); do kill -KILL "$p" 2>/dev/null; done' EXIT

fail() {
  echo "FAIL: $*" >&2
  for f in *.out *.err; do [ -s "$f" ] && { echo "--- $f" >&2; tail -c 3000 "$f" >&2; }; done
  exit 1
}
# wait_for FILE TEXT SECONDS: until FILE holds TEXT; fails after SECONDS.
wait_for() {
  local i
  for ((i = 0; i < $3 * 20; i++)); do
    grep -qF -- "$2" "$1" 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}
now() { date +%s.%N; }
# within START SECONDS: fails unless less than SECONDS have passed since START.
within() { awk -v a="$1" -v b="$(now)" -v s="$2" 'BEGIN { exit !(b - a < s) }'; }
# interrupt PID NAME: Ctrl-C, then the exit code must be 130 within 5 seconds.
interrupt() {
  local t0 rc
  t0=$(now)
  kill -INT "$1"
  for ((i = 0; i < 100; i++)); do kill -0 "$1" 2>/dev/null || break; sleep 0.05; done
  kill -0 "$1" 2>/dev/null && { kill -KILL "$1"; fail "$2 ignored Ctrl-C for 5 seconds"; }
  wait "$1"
  rc=$?
  [ "$rc" -eq 130 ] || fail "$2 exited with $rc after Ctrl-C, expected 130"
  within "$t0" 5 || fail "$2 took more than 5 seconds to stop"
}

case "$MODE" in
sigint_sample)
  "$FG" train "${QUICK[@]}" --steps 2 --sample-tokens 1000000 --out ck >train.out 2>train.err &
  pid=$!
  wait_for train.out "--- sample" 60 || fail "the sample did not start"
  # Printed as drawn: text follows the sample's header while the run is still going.
  wait_for train.out "the" 10 || true
  sleep 0.3
  sample_text=$(sed -n '/--- sample/,$p' train.out | tail -n +2)
  [ -n "$sample_text" ] || fail "no sample text printed while sampling"
  interrupt "$pid" "train during its sample"
  grep -q -- "--- sample stopped by Ctrl-C after" train.out || fail "no stop message"
  grep -q "the checkpoint of step 2 in ck is intact" train.out || fail "no word on the checkpoint"
  "$FG" sample --ckpt ck --tokens 5 --device cpu >check.out 2>check.err || fail "the checkpoint does not load"

  "$FG" sample --ckpt ck --tokens 1000000 --device cpu --prompt "the " >sample.out 2>sample.err &
  pid=$!
  wait_for sample.out "the " 30 || fail "sample printed nothing"
  sleep 0.3
  interrupt "$pid" "sample"
  ;;
concurrent_out)
  "$FG" train "${QUICK[@]}" --steps 1000000 --log-interval 1 --sample-tokens 0 --out ck \
    >first.out 2>first.err &
  pid=$!
  wait_for first.out "/1000000 | loss" 60 || fail "the first run did not start"
  for extra in --overwrite --resume; do
    t0=$(now)
    "$FG" train "${QUICK[@]}" --steps 3 --sample-tokens 0 --out ck $extra >second.out 2>second.err
    rc=$?
    [ "$rc" -ne 0 ] || fail "a second run ($extra) into a directory in use succeeded"
    grep -q "^error: 'ck' is in use by another flashgrad process (pid $pid" second.err \
      || fail "the second run ($extra) does not name the holder"
    within "$t0" 5 || fail "the second run ($extra) did not fail at once"
  done
  kill -0 "$pid" 2>/dev/null || fail "the first run stopped"
  interrupt "$pid" "the first run"
  grep -q "interrupted at step" first.out || fail "the first run did not report its interruption"
  ;;
*)
  fail "unknown mode $MODE"
  ;;
esac
echo "ok: $MODE"
