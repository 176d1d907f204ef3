#!/usr/bin/env bash
# Preemption drill through the real container runtime: run the image as a restricted pod would
# (tini as PID 1, a random non-root uid in group 0, a read-only root filesystem with a tmpfs
# /tmp) on a volume with RUN_NAME and RESUME_STATE=full, interrupt it at seeded random moments
# -- `stop -t 30` (SIGTERM through tini, then SIGKILL after 30 s, as Kubernetes' default grace
# period) and `kill` (SIGKILL), some while a snapshot is being written -- and re-run the same
# command after each, as a Job controller would. Then check: the run reached exactly its
# target, every snapshot loads (the image's own `warmstart inspect`), no temp files are left,
# the manifest lists every start, and the final weights equal an uninterrupted run's bit for
# bit (sha256 of params.pkl). Prints the interruptions survived, the slowest SIGTERM-to-exit
# and the steps lost per SIGKILL.
# Usage: docker/preemption-drill.sh IMAGE   (DRILL_SEED replays a schedule; DRILL_STOPS sets
# how many interruptions, at least 12)
set -euo pipefail
cd "$(dirname "$0")/.."
image="${1:?usage: preemption-drill.sh IMAGE}"
seed="${DRILL_SEED:-7}"
stops="${DRILL_STOPS:-14}"
grace=30
# shellcheck source=docker/podman-env.sh
source docker/podman-env.sh

RANDOM="$seed"
uid=$((100000 + RANDOM % 50000))
work="$(mktemp -d)"
names=()
cleanup() {
  for name in "${names[@]}"; do $ENGINE rm -f "$name" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "DRILL FAILED (DRILL_SEED=$seed): $*" >&2; exit 1; }

# Group 0 may write, as OpenShift's arbitrary uids need; nobody else may.
mkdir -m 0770 "$work/drill" "$work/reference"
chown 0:0 "$work/drill" "$work/reference"
# Short and cheap: 1,000 steps of acting, then 2,000 with small updates (batch 8, one per
# iteration), a snapshot (and resume state) every 100 steps, an itr file every 1,000.
settings=(-e RUN_NAME=drill -e STEPS=3000 -e MIN_STEPS_LEARN=1000 -e REPLAY_SIZE=2000
          -e BATCH_SIZE=8 -e REPLAY_RATIO=2 -e LOG_EVERY=100 -e SNAPSHOT_MODE=last+gap
          -e SNAPSHOT_EVERY=1000 -e RESUME_STATE=full -e ENGINE=native -e TORCH_THREADS=1
          -e SEED=3)
restricted=(--network none --user "$uid:0" --read-only --tmpfs "/tmp:rw,size=256m"
            --cap-drop ALL --security-opt no-new-privileges)
start() {  # start NAME VOLUME: the Job's pod, detached
  names+=("$1")
  $ENGINE run -d --name "$1" "${restricted[@]}" -v "$2:/ckpt" "${settings[@]}" "$image" \
    train >/dev/null
}
exit_code() { $ENGINE wait "$1" >/dev/null 2>&1 || true; $ENGINE inspect -f '{{.State.ExitCode}}' "$1"; }
now() { date +%s.%N; }
# wait_for NAME PATTERN SECONDS: until the container's log has PATTERN (or it exits)
wait_for() {
  local deadline=$((SECONDS + $3))
  while [ "$SECONDS" -lt "$deadline" ]; do
    $ENGINE logs "$1" 2>&1 | grep -q "$2" && return 0
    [ "$($ENGINE inspect -f '{{.State.Running}}' "$1")" = true ] || return 1
    sleep 0.1
  done
  return 1
}
snapshots_written() { $ENGINE logs "$1" 2>&1 | grep -c "snapshot itr" || true; }
temp_files() { compgen -G "$work/drill/drill/.*.tmp-*" >/dev/null; }

# Start container $1 on volume $2 and let it train to its target; its log goes to $3.
run_to_target() {
  local code
  start "$1" "$2"
  code="$(exit_code "$1")"
  [ "$code" = 0 ] || fail "$1 exited $code: $($ENGINE logs "$1" 2>&1 | tail -5)"
  $ENGINE logs -t "$1" >"$3" 2>&1
}

echo "== uninterrupted reference run (uid $uid, group 0, read-only root)"
run_to_target drill-reference "$work/reference" "$work/reference.log"

echo "== $stops interruptions (seed $seed)"
: >"$work/events"
i=0
kills=0
terms=0
during_write=0
while [ "$i" -lt "$stops" ]; do
  i=$((i + 1))
  name="drill-$i"
  start "$name" "$work/drill"
  wait_for "$name" "engine native" 120 || fail "$name did not start training: $($ENGINE logs "$name" 2>&1 | tail -3)"
  # Interruption i: SIGKILL or SIGTERM (at least 4 of each), 0-0.5 s after the process's
  # first snapshot (one in three: before it, 0-0.5 s into training), or, one in three, the
  # moment a snapshot's temp file appears. Tied to snapshots, not to time, so that every
  # start gains at most a few hundred steps on a fast machine and the run outlasts the drill.
  if [ "$kills" -lt 4 ] && [ $((stops - i)) -lt $((4 - kills)) ]; then how="kill"
  elif [ "$terms" -lt 4 ] && [ $((stops - i)) -lt $((4 - terms)) ]; then how="stop"
  elif [ $((RANDOM % 2)) = 0 ]; then how="kill"
  else how="stop"
  fi
  if [ $((RANDOM % 3)) != 0 ]; then
    for _ in $(seq 1 600); do [ "$(snapshots_written "$name")" -ge 1 ] && break; sleep 0.05; done
  fi
  sleep "0.$((RANDOM % 6))"
  moment=random
  if [ $((RANDOM % 3)) = 0 ]; then
    for _ in $(seq 1 3000); do temp_files && break; sleep 0.005; done
    temp_files && moment="during a write"
  fi
  [ "$($ENGINE inspect -f '{{.State.Running}}' "$name")" = true ] \
    || fail "$name ended before interruption $i: the run is too short for the drill"
  t0="$(now)"
  if [ "$how" = kill ]; then
    $ENGINE kill -s KILL "$name" >/dev/null
    kills=$((kills + 1))
  else
    $ENGINE stop -t "$grace" "$name" >/dev/null
    terms=$((terms + 1))
  fi
  code="$(exit_code "$name")"
  t1="$(now)"
  [ "$moment" = "during a write" ] && during_write=$((during_write + 1))
  if [ "$how" = kill ] && [ "$code" != 137 ]; then fail "$name: SIGKILL gave exit $code"; fi
  if [ "$how" = stop ] && [ "$code" != 143 ]; then
    fail "$name: SIGTERM gave exit $code (143 = final snapshot written): $($ENGINE logs "$name" 2>&1 | tail -3)"
  fi
  $ENGINE logs -t "$name" >"$work/$name.log" 2>&1
  echo "$i $how $t0 $t1 $moment" >>"$work/events"
  echo "interruption $i: $how ($moment), exit $code"
done

echo "== the last start runs to the target"
run_to_target drill-final "$work/drill" "$work/drill-final.log"

echo "== every snapshot loads (the image's warmstart inspect, one process for all files)"
$ENGINE run --rm "${restricted[@]}" -v "$work/drill:/ckpt:ro" --entrypoint python "$image" -c \
  'import glob, sys
from warmstart.cli import main
files = sorted(glob.glob("/ckpt/drill/*.pkl"))
bad = [f for f in files if main(["inspect", f]) != 0]
print(f"{len(files)} snapshot files, {len(bad)} unusable: {bad}", file=sys.stderr)
sys.exit(1 if bad or not files else 0)' >/dev/null || fail "a snapshot does not load"

python3 - "$work" "$stops" "$during_write" <<'PY'
import hashlib, json, re, sys
from datetime import datetime
from pathlib import Path

work, stops, during_write = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
run, ref = work / "drill" / "drill", work / "reference" / "drill"
problems = []
manifest = json.loads((run / "manifest.json").read_text())
target = manifest["budget"]["target_cum_steps"]
newest = max(e["cum_steps"] for e in manifest["snapshots"])
if manifest["status"] != "finished" or newest != target:
    problems.append(f"status {manifest['status']}, newest snapshot at {newest}, target {target}")
junk = [p.name for p in run.iterdir() if ".tmp-" in p.name]
junk += [p.name for p in (work / "drill").iterdir() if p.name != "drill"]
if junk:
    problems.append(f"left on the volume: {junk}")
started = sum("engine native" in (work / f"drill-{i}.log").read_text() for i in range(1, stops + 1))
if len(manifest.get("starts", [])) != started + 1:
    problems.append(f"manifest lists {len(manifest.get('starts', []))} starts, {started + 1} trained")
digest = {p: hashlib.sha256((p / "params.pkl").read_bytes()).hexdigest() for p in (run, ref)}
if digest[run] != digest[ref]:
    problems.append(f"final params.pkl differs from the uninterrupted run's: {digest[run][:12]} "
                    f"vs {digest[ref][:12]}")

STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:?\d\d)? (.*)$")
# "snapshot itr 999: 4,000 steps done (cum_steps 3996 as rlpyt records it) written in 0.11s"
SNAPSHOT = re.compile(r"snapshot itr \d+: .*\(cum_steps (\d+) as rlpyt records it\) written")

def lines(log: Path) -> list[tuple[float, str]]:
    """(host time, text) of each line of a `logs -t` file."""
    out = []
    for line in log.read_text().splitlines():
        if m := STAMP.match(line):
            zone = (m.group(3) or "+00:00").replace("Z", "+00:00")
            when = datetime.fromisoformat(m.group(1) + zone).timestamp()
            out.append((when + float("0." + (m.group(2) or "0")), m.group(4)))
    return out

def snapshots(log: Path) -> list[tuple[float, int]]:
    return [(t, int(m.group(1))) for t, text in lines(log) if (m := SNAPSHOT.search(text))]

reference = snapshots(work / "reference.log")
learning = [s for s in reference if s[1] > manifest["config"]["MIN_STEPS_LEARN"]]
if len(learning) < 2:
    sys.exit(f"DRILL FAILED: the reference log has {len(reference)} snapshot lines, "
             f"{len(learning)} after learning started: is the log format what SNAPSHOT expects?")
rate = (learning[-1][1] - learning[0][1]) / (learning[-1][0] - learning[0][0])
slowest_term, lost = 0.0, []
for line in (work / "events").read_text().splitlines():
    i, how, t0, t1, *_ = line.split()
    if how == "stop":
        slowest_term = max(slowest_term, float(t1) - float(t0))
    else:
        log = work / f"drill-{i}.log"
        last = snapshots(log)
        begun = next(t for t, text in lines(log) if "engine native" in text)
        since = last[-1][0] if last else begun
        lost.append(rate * max(0.0, float(t0) - since))
print(f"interruptions survived: {stops} ({stops - len(lost)} SIGTERM, {len(lost)} SIGKILL, "
      f"{during_write} during a snapshot write); {len(manifest['starts'])} starts in the manifest")
print(f"slowest SIGTERM-to-exit: {slowest_term:.1f} s (grace period 30 s)")
print(f"steps lost per SIGKILL: mean {sum(lost) / len(lost):.0f}, max {max(lost):.0f} "
      f"(estimated: time since the killed process's last snapshot x {rate:.0f} steps/s; "
      f"snapshots every {manifest['config']['LOG_EVERY']} steps)")
print(f"final params.pkl sha256 {digest[run][:16]}: "
      f"{'identical to' if digest[run] == digest[ref] else 'DIFFERENT from'} the uninterrupted run")
if problems:
    sys.exit("DRILL FAILED: " + "; ".join(problems))
PY
echo "preemption drill passed in $SECONDS s: $image"
