#!/usr/bin/env bash
# Run an image for real against a temporary volume and check what a user would check:
# cold start writes a loadable snapshot; a second run warm-starts from it and continues
# cum_steps; `--help`, `inspect`, `eval` (with a video) and `lineage` work, and the warm run
# drew its learning curve; a stop (SIGTERM through tini) ends with a final snapshot and exit
# 143; a read-only or foreign-owned volume fails with one clear line and leaves the snapshot
# untouched. EXPECT_ENGINE=rlpyt|native checks which engine ENGINE=auto picked.
# Usage: docker/smoke.sh IMAGE
set -euo pipefail
cd "$(dirname "$0")/.."
image="${1:?usage: smoke.sh IMAGE}"
# shellcheck source=docker/podman-env.sh
source docker/podman-env.sh

vol="$(mktemp -d)"
stopped="warmstart-smoke-sigterm-$$"
trap '$ENGINE rm -f "$stopped" >/dev/null 2>&1 || true; rm -rf "$vol"' EXIT
chown 1000:1000 "$vol" 2>/dev/null || chmod 0777 "$vol"
short=(-e STEPS=400 -e MIN_STEPS_LEARN=300 -e REPLAY_SIZE=2000 -e LOG_EVERY=200)
run() { $ENGINE run --rm --network none "$@"; }
fail() { echo "SMOKE FAILED: $*" >&2; exit 1; }

echo "== --help"
run "$image" --help | grep -q "exit codes" || fail "--help does not print the usage"

# train_and_check LOG_LINE RUN CUM_STEPS: a run whose log says LOG_LINE and whose snapshot
# in /ckpt/RUN loads (via `inspect` in the image) with the expected cum_steps.
train_and_check() {
  local info  # out stays set: the run's log, for checks after the call
  out="$(run -v "$vol:/ckpt" "${short[@]}" "$image" 2>&1)" || fail "run exited $?: $out"
  grep -q "$1" <<<"$out" || fail "expected '$1' in the log: $out"
  info="$(run -v "$vol:/ckpt" "$image" inspect "/ckpt/$2/params.pkl")" \
    || fail "/ckpt/$2/params.pkl does not load"
  grep -Eq "^cum_steps +$3$" <<<"$info" || fail "expected cum_steps $3: $info"
}
echo "== cold start"
train_and_check "cold start" run_0 396
if [ -n "${EXPECT_ENGINE:-}" ]; then
  grep -q "engine $EXPECT_ENGINE," <<<"$out" || fail "ENGINE=auto did not pick $EXPECT_ENGINE: $out"
fi
echo "== warm start (cum_steps continues)"
train_and_check "warm start from /ckpt/run_0/params.pkl" run_1 796

echo "== eval with a video, lineage and the learning curve"
out="$(run -v "$vol:/ckpt" "$image" eval --episodes 1 --video /ckpt/eval.mp4 2>&1)" \
  || fail "eval exited $?: $out"
grep -Eq "^score +mean -?[0-9]" <<<"$out" || fail "eval printed no score: $out"
[ -s "$vol/eval.mp4" ] || fail "eval wrote no video: $out"
out="$(run -v "$vol:/ckpt" "$image" lineage 2>&1)" || fail "lineage exited $?: $out"
grep -Eq "^run_1 +run_0/params.pkl" <<<"$out" || fail "lineage lacks run_0 -> run_1: $out"
[ -s "$vol/run_1/learning_curve.png" ] || fail "no learning_curve.png in run_1"

echo "== SIGTERM (podman/docker stop) ends with a final snapshot"
$ENGINE run -d --name "$stopped" --network none -v "$vol:/ckpt" "${short[@]}" \
  -e STEPS=1000000 -e RUN_NAME=stopped "$image" >/dev/null
for _ in $(seq 240); do
  $ENGINE logs "$stopped" 2>&1 | grep -q " itr [0-9]* |" && break
  sleep 0.5
done
$ENGINE stop -t 60 "$stopped" >/dev/null
code="$($ENGINE wait "$stopped" 2>/dev/null | tail -1)"
out="$($ENGINE logs "$stopped" 2>&1)"
[ "$code" = 143 ] || fail "stopped run: exit $code, expected 143: $out"
grep -q "stopped by SIGTERM after a final snapshot" <<<"$out" || fail "no final snapshot: $out"
info="$(run -v "$vol:/ckpt" "$image" inspect /ckpt/stopped/params.pkl)" \
  || fail "/ckpt/stopped/params.pkl does not load after SIGTERM"
final="$(awk '$1 == "cum_steps" {print $2}' <<<"$info")"
[ "${final:-0}" -gt 796 ] || fail "the final snapshot does not continue run_1 (cum_steps ${final:-none})"

echo "== read-only volume"
before="$(sha256sum "$vol/run_1/params.pkl")"
set +e
out="$(run -v "$vol:/ckpt:ro" "${short[@]}" "$image" 2>&1)"
code=$?
set -e
[ "$code" = 4 ] || fail "read-only volume: exit $code, expected 4: $out"
grep -q "must be writable by uid 1000" <<<"$out" || fail "read-only message: $out"
[ "$(sha256sum "$vol/run_1/params.pkl")" = "$before" ] || fail "snapshot changed"

echo "== volume owned by another user"
other="$vol/root-owned"
mkdir -m 0755 "$other"
chown 0:0 "$other" 2>/dev/null || true
set +e
out="$(run -v "$other:/ckpt" "${short[@]}" "$image" 2>&1)"
code=$?
set -e
if [ "$code" != 4 ] || ! grep -q "uid 1000" <<<"$out"; then
  fail "foreign-owned volume: exit $code: $out"
fi
echo "smoke test passed: $image"
