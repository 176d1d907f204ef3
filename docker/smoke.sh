#!/usr/bin/env bash
# Run an image for real against a temporary volume and check what a user would check:
# cold start writes a loadable snapshot; a second run warm-starts from it and continues
# cum_steps; `--help` and `inspect` work; a read-only or foreign-owned volume fails with one
# clear line and leaves the snapshot untouched. Usage: docker/smoke.sh IMAGE
set -euo pipefail
cd "$(dirname "$0")/.."
image="${1:?usage: smoke.sh IMAGE}"
# shellcheck source=docker/podman-env.sh
source docker/podman-env.sh

vol="$(mktemp -d)"
trap 'rm -rf "$vol"' EXIT
chown 1000:1000 "$vol" 2>/dev/null || chmod 0777 "$vol"
short=(-e STEPS=400 -e MIN_STEPS_LEARN=300 -e REPLAY_SIZE=2000 -e LOG_EVERY=200)
run() { $ENGINE run --rm --network none "$@"; }
fail() { echo "SMOKE FAILED: $*" >&2; exit 1; }

echo "== --help"
run "$image" --help | grep -q "exit codes" || fail "--help does not print the usage"

echo "== cold start"
out="$(run -v "$vol:/ckpt" "${short[@]}" "$image" 2>&1)" || fail "cold start exited $?: $out"
grep -q "cold start" <<<"$out" || fail "no cold start in the log: $out"
info="$(run -v "$vol:/ckpt" "$image" inspect /ckpt/run_0/params.pkl)" \
  || fail "cold-start snapshot does not load"
grep -Eq "^cum_steps +396$" <<<"$info" || fail "unexpected cold-start snapshot: $info"

echo "== warm start"
out="$(run -v "$vol:/ckpt" "${short[@]}" "$image" 2>&1)" || fail "warm start exited $?: $out"
grep -q "warm start from /ckpt/run_0/params.pkl" <<<"$out" || fail "no warm start: $out"
info="$(run -v "$vol:/ckpt" "$image" inspect /ckpt/run_1/params.pkl)" \
  || fail "warm-start snapshot does not load"
grep -Eq "^cum_steps +796$" <<<"$info" || fail "cum_steps did not continue: $info"

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
