#!/usr/bin/env bash
# Kill test: SIGKILL a training run at random moments and while it writes a
# checkpoint, then continue it (`--resume`, or the same command when it was
# killed before writing its config), until it finishes; N times. Every
# continuation must work (exit 0, or 137 when killed again: never a dead end),
# and every finished run must equal an uninterrupted one: metrics.csv (without
# the two timing columns) and the sparse state byte for byte.
#
# Usage: scripts/kill_test.sh [TRIALS=10] [KILLS_PER_TRIAL=6] [EXECUTION=dense]
# (EXECUTION sparse: the run trains in sparse execution and writes compact
# checkpoints.)
# Uses $SPARSEBURN (default target/debug/sparseburn; build it first).
set -euo pipefail
cd "$(dirname "$0")/.."
trials="${1:-10}"
kills="${2:-6}"
execution="${3:-dense}"
bin="${SPARSEBURN:-target/debug/sparseburn}"
[ -x "$bin" ] || { echo "no $bin: build it with cargo build"; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

args=(train --dataset synthetic --model mlp --method rigl --sparsity 0.8 --epochs 12
      --batch-size 64 --train-limit 1280 --test-limit 100 -m delta_t=5 --execution "$execution")
strip() { cut -d, -f1-14 "$1/metrics.csv"; }
# whether this process is writing a checkpoint (a checkpoint.tmp newer than its start)
writing() { [ -n "$(find "$out" -maxdepth 1 -name checkpoint.tmp -newer "$work/stamp" 2>/dev/null)" ]; }

"$bin" "${args[@]}" --out "$work/ref" >/dev/null 2>&1
restarts=0 resumes=0 killed=0 during=0
for t in $(seq 1 "$trials"); do
  out="$work/t$t"
  for k in $(seq 1 "$kills"); do
    [ -f "$out/summary.json" ] && break
    if [ -f "$out/config.toml" ]; then cmd=("$bin" train --resume "$out"); else cmd=("$bin" "${args[@]}" --out "$out"); fi
    touch "$work/stamp"; sleep 0.01 # checkpoint.tmp newer than this was written by this process
    "${cmd[@]}" >"$work/log" 2>&1 &
    pid=$!
    if (( k % 2 )); then
      # a random moment in the first second (the whole run takes a few)
      sleep "0.$(( RANDOM % 10 ))$(( RANDOM % 10 ))"
    else
      # while the next checkpoint is being written (checkpoint.tmp exists)
      until writing; do kill -0 "$pid" 2>/dev/null || break; done
    fi
    kill -9 "$pid" 2>/dev/null && killed=$((killed + 1)) || true
    rc=0; { wait "$pid"; } 2>/dev/null || rc=$?
    [ "$rc" = 137 ] && writing && during=$((during + 1))
    if [ "$rc" != 0 ] && [ "$rc" != 137 ]; then
      echo "trial $t, kill $k: dead end (exit $rc):"; cat "$work/log"; ls -la "$out"; exit 1
    fi
    grep -q "from the beginning" "$work/log" && restarts=$((restarts + 1))
    [ "${cmd[2]}" = --resume ] && resumes=$((resumes + 1))
  done
  # finish without kills
  while [ ! -f "$out/summary.json" ]; do
    if [ -f "$out/config.toml" ]; then cmd=("$bin" train --resume "$out"); else cmd=("$bin" "${args[@]}" --out "$out"); fi
    if ! "${cmd[@]}" >"$work/log" 2>&1; then echo "trial $t: the last continuation failed:"; cat "$work/log"; ls -la "$out"; exit 1; fi
    grep -q "from the beginning" "$work/log" && restarts=$((restarts + 1))
  done
  if ! diff <(strip "$work/ref") <(strip "$out") >/dev/null; then
    echo "trial $t: metrics differ from the uninterrupted run:"; diff <(strip "$work/ref") <(strip "$out") || true; exit 1
  fi
  cmp -s "$work/ref/checkpoint/sparse.safetensors" "$out/checkpoint/sparse.safetensors" \
    || { echo "trial $t: the sparse state differs from the uninterrupted run"; exit 1; }
done
echo "kill test: $trials trials, $killed kills ($during while a checkpoint was being written), $resumes resumes, $restarts restarts from the beginning (with a message); every finished run equals the uninterrupted one"
