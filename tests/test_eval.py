"""Seeing what the agent learned, as a user does: `warmstart eval` (scores, videos), evaluation
during training in progress.csv and TensorBoard, `warmstart lineage` and the learning curve.
All on real pong games and real files.
"""

from __future__ import annotations

import csv
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import EVAL_RUN, REPO, SHORT_RUN, ColdThenWarm, clean_env, warmstart
from PIL import Image, ImageSequence
from warmstart.checkpoint import object_store

GAME_LINE = re.compile(r"^game (\d+)/(\d+)  score (-?\d+)  length (\d+) steps(.*)$", re.MULTILINE)
SCREEN = (210, 160)  # the ALE's raw screen, height x width


def _games(stdout: str) -> list[tuple[int, int, str]]:
    """(score, length, note) of each game line `warmstart eval` printed."""
    return [(int(m[3]), int(m[4]), m[5]) for m in GAME_LINE.finditer(stdout)]


def _rows(run: Path) -> list[dict[str, str]]:
    with open(run / "progress.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_eval_scores_a_real_rlpyt_snapshot_and_records_an_mp4(rlpyt_snapshot: Path,
                                                              tmp_path: Path) -> None:
    video = tmp_path / "pong.mp4"
    result = warmstart("eval", str(rlpyt_snapshot), "--episodes", "2", "--video", str(video))
    assert result.returncode == 0, result.stdout + result.stderr
    games = _games(result.stdout)
    assert len(games) == 2
    for score, length, note in games:
        assert -21 <= score <= 21 and length > 0 and note == ""
    scores = [g[0] for g in games]
    assert re.search(rf"^score +mean {np.mean(scores):.1f}  median {np.median(scores):.1f}  "
                     rf"min {min(scores)}  max {max(scores)}$", result.stdout, re.MULTILINE)
    assert re.search(r"^length +mean [\d.]+  median", result.stdout, re.MULTILINE)
    # the video is game 1: its first screen and one per agent step, raw size, H.264 decodable
    capture = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    assert len(frames) == games[0][1] + 1
    assert all(f.shape == (*SCREEN, 3) for f in frames)
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(15)
    assert len({f.tobytes() for f in frames[::50]}) > 1, "the video shows play, not one image"


def test_eval_gif_and_step_limit(rlpyt_snapshot: Path, tmp_path: Path) -> None:
    video = tmp_path / "pong.gif"
    result = warmstart("eval", str(rlpyt_snapshot), "--episodes", "1", "--max-steps", "60",
                       "--video", str(video))
    assert result.returncode == 0, result.stdout + result.stderr
    [(_, length, note)] = _games(result.stdout)
    assert (length, note) == (60, " (cut at the step limit)")
    with Image.open(video) as gif:
        assert gif.size == SCREEN[::-1]
        # Pillow merges identical consecutive frames into longer ones: count time, not frames
        durations = [frame.info["duration"] for frame in ImageSequence.Iterator(gif)]
    assert sum(durations) == 61 * 70


def test_eval_writes_a_gif_without_imageio_ffmpeg(rlpyt_snapshot: Path, tmp_path: Path) -> None:
    result = _warmstart_without(("imageio_ffmpeg",), "eval", str(rlpyt_snapshot), "--episodes",
                                "1", "--max-steps", "20", "--video", str(tmp_path / "v.mp4"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"writing a GIF instead, {tmp_path / 'v.gif'}" in result.stdout
    assert not (tmp_path / "v.mp4").exists()
    with Image.open(tmp_path / "v.gif") as gif:
        assert gif.format == "GIF" and gif.size == SCREEN[::-1]


def test_eval_refuses_bad_snapshots_with_exit_3(rlpyt_snapshot: Path, tmp_path: Path) -> None:
    truncated = tmp_path / "params.pkl"
    truncated.write_bytes(rlpyt_snapshot.read_bytes()[:1_000_000])
    for args, message in (
            ([str(truncated)], "params.pkl: not a snapshot file: a zip archive that is cut short"),
            ([str(rlpyt_snapshot), "--game", "breakout"], "6 actions but GAME=breakout has 4"),
            ([str(tmp_path / "empty")], "no params.pkl or itr_N.pkl under this folder")):
        (tmp_path / "empty").mkdir(exist_ok=True)
        result = warmstart("eval", *args)
        assert result.returncode == 3, result.stdout + result.stderr
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_eval_refuses_a_snapshot_whose_inner_layers_are_not_the_model(
        rlpyt_snapshot: Path, tmp_path: Path) -> None:
    """rlpyt's AtariDqnModel with fc_sizes=256: the right keys, other shapes inside."""
    params = torch.load(rlpyt_snapshot, weights_only=True)
    for net in params["agent_state_dict"].values():
        net["head.model.0.weight"] = torch.zeros(256, 6912)
        net["head.model.0.bias"] = torch.zeros(256)
        net["head.model.2.weight"] = torch.zeros(6, 256)
    odd = tmp_path / "params.pkl"
    torch.save(params, odd)
    result = warmstart("eval", str(odd))
    assert result.returncode == 3, result.stdout + result.stderr
    assert "weights do not fit the model" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_eval_video_into_a_missing_folder_exits_2(rlpyt_snapshot: Path, tmp_path: Path) -> None:
    result = warmstart("eval", str(rlpyt_snapshot), "--video", str(tmp_path / "no" / "v.mp4"))
    assert result.returncode == 2 and "does not exist" in result.stderr


@pytest.mark.parametrize("name", ["v.avi", "v.mkv", "video"])
def test_eval_video_of_another_container_exits_2(rlpyt_snapshot: Path, tmp_path: Path,
                                                 name: str) -> None:
    result = warmstart("eval", str(rlpyt_snapshot), "--video", str(tmp_path / name))
    assert result.returncode == 2 and ".mp4 (H.264) or .gif" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and list(tmp_path.iterdir()) == []


@pytest.fixture
def lineage_ckpt(cold_then_warm: ColdThenWarm) -> Path:
    """A cold start, then a warm start from it, both evaluating every 200 steps (the session's
    shared pair, read only)."""
    for result in (cold_then_warm.cold, cold_then_warm.warm):
        assert re.search(r"eval at [0-9,]+ steps: 1 games", result.stdout)
        assert "learning curve over" in result.stdout
    return cold_then_warm.ckpt


def test_progress_has_rlpyts_eval_columns_and_tensorboard_the_same(lineage_ckpt: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = lineage_ckpt / "run_0"
    rows = _rows(run)
    assert [r["Diagnostics/CumSteps"] for r in rows] == ["200", "400"]
    for row in rows:  # one game at each log point: 200 steps, and the end
        assert row["Diagnostics/TrajsInEval"] == "1"
        assert int(row["Diagnostics/StepsInEval"]) == float(row["Eval/LengthAverage"]) > 0
        assert -21 <= float(row["Eval/GameScoreAverage"]) <= 21
        cum_time, eval_time = float(row["Diagnostics/CumTime (s)"]), float(
            row["Diagnostics/CumEvalTime"])
        assert float(row["Diagnostics/CumTrainTime"]) == pytest.approx(cum_time - eval_time,
                                                                       abs=2e-3)
    events = EventAccumulator(str(run))
    events.Reload()
    assert set(events.Tags()["scalars"]) == set(rows[0])
    for tag in ("Eval/GameScoreAverage", "Diagnostics/StepsInEval", "lossAverage", "Epsilon"):
        logged = [(e.step, e.value) for e in events.Scalars(tag)]
        expected = [(int(r["Diagnostics/CumSteps"]), float(r[tag])) for r in rows]
        assert len(logged) == len(expected)
        for (step, value), (want_step, want) in zip(logged, expected, strict=True):
            assert step == want_step
            assert (math.isnan(value) and math.isnan(want)) or value == pytest.approx(want)


def test_eval_replays_the_runs_own_final_evaluation(lineage_ckpt: Path) -> None:
    last = _rows(lineage_ckpt / "run_1")[-1]
    result = warmstart("eval", str(lineage_ckpt / "run_1" / "params.pkl"), "--episodes", "1",
                       SEED="3")
    assert result.returncode == 0, result.stderr
    [(score, length, _)] = _games(result.stdout)
    assert (score, length) == (float(last["Eval/GameScoreAverage"]),
                               float(last["Eval/LengthAverage"]))


def _warmstart_without(packages: tuple[str, ...], *args: str,
                       **settings: str) -> subprocess.CompletedProcess:
    """`warmstart` in a process where ``packages`` cannot be imported, as if not installed."""
    code = (f"import sys\nfor name in {packages!r}: sys.modules[name] = None\n"
            "from warmstart.cli import main\nsys.exit(main())")
    return subprocess.run([sys.executable, "-c", code, *args], env=clean_env(**settings),
                          capture_output=True, text=True, timeout=600, check=False)


def test_evaluation_does_not_change_what_training_computes(lineage_ckpt: Path,
                                                           tmp_path: Path) -> None:
    # the same run without evaluation, and without tensorboard and matplotlib installed
    plain = _warmstart_without(("tensorboard", "matplotlib"), "train", CKPT_DIR=str(tmp_path),
                               **(EVAL_RUN | {"EVAL_EVERY": "0"}))
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert "tensorboard is not installed" in plain.stdout
    assert "matplotlib is not installed" in plain.stdout
    assert sorted(p.name for p in (tmp_path / "run_0").iterdir()
                  if not object_store.VERSION.match(p.name)) == [
        ".warmstart.lease", ".warmstart.lock", "manifest.json", "params.json", "params.pkl",
        "progress.csv"]
    ours = torch.load(tmp_path / "run_0" / "params.pkl", weights_only=True)
    evaluated = torch.load(lineage_ckpt / "run_0" / "params.pkl", weights_only=True)
    for part in ("model", "target"):
        for key, tensor in ours["agent_state_dict"][part].items():
            assert torch.equal(tensor, evaluated["agent_state_dict"][part][key]), key
    adam, adam_evaluated = (s["optimizer_state_dict"]["state"] for s in (ours, evaluated))
    assert all(torch.equal(adam[i]["exp_avg"], adam_evaluated[i]["exp_avg"]) for i in adam)
    assert "Eval/GameScoreAverage" not in _rows(tmp_path / "run_0")[0]


def test_lineage_after_a_cold_and_a_warm_start(lineage_ckpt: Path) -> None:
    result = warmstart("lineage", str(lineage_ckpt))
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.strip().splitlines()
    assert header.split("  ")[0] == "run" and "eval score" in header
    assert len(rows) == 2
    assert re.match(r"^run_0 +- \(cold start\) +0 +400 +- +-?\d+\.\d +finished$", rows[0])
    assert re.match(r"^run_1 +run_0/params\.pkl +400 +800 +- +-?\d+\.\d +finished$", rows[1])
    for run in ("run_0", "run_1"):
        with Image.open(lineage_ckpt / run / "learning_curve.png") as png:
            assert png.format == "PNG" and png.size == (1000, 500)


def test_one_step_count_in_progress_tensorboard_lineage_and_inspect(lineage_ckpt: Path) -> None:
    """rlpyt's snapshot cum_steps (itr x 4) is named where it shows; every count a user reads
    is the steps done, progress.csv's CumSteps."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = lineage_ckpt / "run_1"
    done = int(_rows(run)[-1]["Diagnostics/CumSteps"])
    assert done == 800
    events = EventAccumulator(str(run))
    events.Reload()
    assert events.Scalars("Epsilon")[-1].step == done
    lineage = warmstart("lineage", str(run)).stdout
    assert re.search(rf"^run_1 +\S+ +400 +{done} ", lineage, re.MULTILINE), lineage
    inspect = warmstart("inspect", str(run / "params.pkl")).stdout
    assert re.search(r"^cum_steps +796$", inspect, re.MULTILINE), inspect
    assert re.search(rf"^steps done +{done} \(rlpyt's cum_steps counts", inspect, re.MULTILINE)


def test_lineage_curve_without_matplotlib_or_folder_is_one_line_exit_2(
        lineage_ckpt: Path, tmp_path: Path) -> None:
    result = _warmstart_without(("matplotlib",), "lineage", str(lineage_ckpt), "--curve",
                                str(tmp_path / "c.png"))
    assert result.returncode == 2 and "matplotlib is not installed" in result.stderr
    result = warmstart("lineage", str(lineage_ckpt), "--curve", str(tmp_path / "no" / "c.png"))
    assert result.returncode == 2 and "is not a folder" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "c.png").exists()


def test_lineage_finds_a_moved_volume_and_reads_rlpyt_runs(lineage_ckpt: Path,
                                                           rlpyt_run_dir: Path,
                                                           tmp_path: Path) -> None:
    # the manifests hold absolute paths of where the jobs ran; a copied volume still links up
    moved = tmp_path / "elsewhere"
    shutil.copytree(lineage_ckpt, moved)
    result = warmstart("lineage", str(moved / "run_1"), "--curve", str(tmp_path / "c.png"))
    assert result.returncode == 0, result.stderr
    assert re.search(r"^run_1 +run_0/params\.pkl +400", result.stdout, re.MULTILINE)
    assert Image.open(tmp_path / "c.png").size == (1000, 500)
    # rlpyt's MinibatchRlEval logs its evaluation games under the bare names
    result = warmstart("lineage", str(rlpyt_run_dir))
    assert re.search(r"^pong_example1 +- \(unknown\) +0 +10,000 +- +-2\d\.\d +rlpyt run$",
                     result.stdout, re.MULTILINE), result.stdout


def test_periodic_evaluation_leaves_training_state_alone() -> None:
    from warmstart.config import Config
    from warmstart.engine.agents.model import AtariDqnModel
    from warmstart.engine.playing.play import PeriodicEvaluation

    weights = AtariDqnModel(6).state_dict()
    evaluation = PeriodicEvaluation(Config(eval_every=200, eval_episodes=1),
                                    torch.device("cpu"), evaluated_cum_steps=0, steps_per_itr=4)
    threads, numpy_state = torch.get_num_threads(), np.random.get_state()
    try:  # this process's other tests keep their thread count and global generator
        torch.set_num_threads(2)
        np.random.seed(5)
        before = (torch.get_rng_state(), np.random.get_state()[1].copy())
        first = evaluation.run(49, weights)
        assert torch.equal(torch.get_rng_state(), before[0])
        assert np.array_equal(np.random.get_state()[1], before[1])
        assert torch.get_num_threads() == 2
        assert evaluation.due(99, end=False) and not evaluation.due(50, end=False)
        # (SEED, itr) decide the games
        assert evaluation.run(49, weights).trajectories == first.trajectories
    finally:
        torch.set_num_threads(threads)
        np.random.set_state(numpy_state)


def _demo_defaults() -> dict[str, str]:
    """STEPS and LOG_EVERY as `make train` sets them when the user sets neither."""
    make = shutil.which("make")
    if make is None:
        pytest.skip("needs make")
    shown = subprocess.run(
        [make, "-s", "--no-print-directory", "--eval", "show: ; @echo $(STEPS) $(LOG_EVERY)",
         "show"], cwd=REPO, env=clean_env(), capture_output=True, text=True, check=True)
    steps, log_every = shown.stdout.split()
    return {"STEPS": steps, "LOG_EVERY": log_every}


def test_the_demos_learning_curve_shows_its_points(tmp_path: Path) -> None:
    """`make train`'s short run logs several points, and the curve draws each one visibly."""
    from warmstart.reporting.curve import figure
    from warmstart.reporting.lineage import lineage

    demo = _demo_defaults()
    assert int(demo["STEPS"]) // int(demo["LOG_EVERY"]) >= 4
    # no updates: the points are about logging and drawing, not learning
    result = warmstart(CKPT_DIR=str(tmp_path), **(SHORT_RUN | demo | {
        "MIN_STEPS_LEARN": "100000"}))
    assert result.returncode == 0, result.stdout + result.stderr
    run = tmp_path / "run_0"
    assert len(_rows(run)) == int(demo["STEPS"]) // int(demo["LOG_EVERY"])
    chain = lineage(run)
    scores = chain[-1].train_curve
    assert scores, "no training game finished: nothing to plot"
    lines = [line for line in figure(chain, "demo").axes[0].get_lines()
             if line.get_label() == "run_0: training games"]
    assert len(lines) == 1
    assert list(zip(lines[0].get_xdata(), lines[0].get_ydata(), strict=True)) == scores
    assert lines[0].get_marker() == "o"  # one point or a few: visible without a line
