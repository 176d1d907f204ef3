#!/usr/bin/env bash
# make learn-check: does the fast path learn? Trains pong from scratch in rlpyt's configs["dqn"]
# shape (2 x 16, batch 128, lr 1e-4) for LEARN_MINUTES of wall time (a SIGTERM then ends it
# with a final snapshot, as a preempted Job would), plays EVAL_EPISODES games with that snapshot
# and draws the learning curve. A random policy scores about -20.7 at pong.
# Settings: LEARN_MINUTES (default 8), LEARN_DIR (default build/learn-check, emptied first),
# DEVICE (default cuda), LEARN_STEPS (the step target, default 10M: the minutes end it first),
# LEARN_MIN_STEPS (steps before updates start, default 50,000 as rlpyt),
# and any other warmstart setting from the environment.
set -euo pipefail
cd "$(dirname "$0")/.."
minutes="${LEARN_MINUTES:-8}"
dir="${LEARN_DIR:-build/learn-check}"
warmstart="${WARMSTART:-.venv/bin/warmstart}"
rm -rf "$dir" && mkdir -p "$dir"
echo "learn-check: pong from scratch for ${minutes} min in $dir (DEVICE=${DEVICE:-cuda})"
status=0
CKPT_DIR="$dir" RUN_NAME=learn-check GAME=pong DEVICE="${DEVICE:-cuda}" \
  STEPS="${LEARN_STEPS:-10000000}" MIN_STEPS_LEARN="${LEARN_MIN_STEPS:-50000}" \
  BATCH_T=2 BATCH_B=16 BATCH_SIZE=128 LR=1e-4 \
  LOG_EVERY="${LOG_EVERY:-20000}" \
  timeout --signal=TERM --kill-after=120 "$(awk -v m="$minutes" 'BEGIN {print int(m * 60)}')" \
  "$warmstart" train || status=$?
case "$status" in
  0|124|143) ;;  # reached the target, or stopped by the time limit with a final snapshot
  *) echo "learn-check: training exited $status" >&2; exit "$status" ;;
esac
"$warmstart" eval "$dir/learn-check" --episodes "${EVAL_EPISODES:-10}" --device "${DEVICE:-cuda}"
"$warmstart" lineage "$dir/learn-check" --curve "$dir/learning_curve.png"
echo "learn-check: curve in $dir/learning_curve.png; a random policy scores about -20.7"
