"""A games x seeds sweep as an Indexed Job: each index trains its own game, seed and run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import FILES_ONLY_RUN, SHORT_RUN, warmstart
from warmstart import sweep
from warmstart.errors import ConfigError

GRID = {"SWEEP_GAMES": "pong, breakout", "SWEEP_SEEDS": "0,1,2"}


@pytest.mark.parametrize(("index", "game", "seed"), [(0, "pong", 0), (2, "pong", 2),
                                                      (3, "breakout", 0), (5, "breakout", 2)])
def test_index_picks_game_then_seed(index: int, game: str, seed: int) -> None:
    environ = GRID | {"JOB_COMPLETION_INDEX": str(index), "RUN_NAME": "grid"}
    line = sweep.apply(environ)
    assert (environ["GAME"], environ["SEED"]) == (game, str(seed))
    assert environ["RUN_NAME"] == f"grid-{game}-s{seed}"
    assert line == f"sweep index {index} of 6: GAME={game} SEED={seed} RUN_NAME=grid-{game}-s{seed}"


def test_without_a_sweep_nothing_changes() -> None:
    environ = {"JOB_COMPLETION_INDEX": "3", "GAME": "pong"}
    assert sweep.apply(environ) is None
    assert environ == {"JOB_COMPLETION_INDEX": "3", "GAME": "pong"}


@pytest.mark.parametrize(("extra", "named"), [
    ({"JOB_COMPLETION_INDEX": "6"}, "completions to 6"),
    ({}, "JOB_COMPLETION_INDEX"),
    ({"JOB_COMPLETION_INDEX": "1", "GAME": "pong"}, "GAME is set together"),
    ({"JOB_COMPLETION_INDEX": "1", "WARMSTART_SEED": "4"}, "SEED is set together"),
    ({"JOB_COMPLETION_INDEX": "1", "SWEEP_SEEDS": "0,x"}, "SWEEP_SEEDS='0,x'"),
    ({"JOB_COMPLETION_INDEX": "1", "SWEEP_GAMES": " , "}, "SWEEP_GAMES is empty"),
])
def test_a_bad_sweep_is_a_config_error(extra: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace("(", r"\(")):
        sweep.apply(GRID | extra)


def test_a_sweep_pod_trains_its_own_run(tmp_path: Path) -> None:
    # no updates (MIN_STEPS_LEARN beyond the run): this is about which run, not learning
    done = warmstart("train", CKPT_DIR=str(tmp_path), **FILES_ONLY_RUN, RUN_NAME="grid",
                     SWEEP_GAMES="pong,breakout", SWEEP_SEEDS="0,1", JOB_COMPLETION_INDEX="3")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "sweep index 3 of 4: GAME=breakout SEED=1 RUN_NAME=grid-breakout-s1" in done.stdout
    manifest = json.loads((tmp_path / "grid-breakout-s1" / "manifest.json").read_text())
    assert (manifest["game"], manifest["seed"]) == ("breakout", 1)


def test_an_index_past_the_grid_exits_2(tmp_path: Path) -> None:
    done = warmstart("train", CKPT_DIR=str(tmp_path), **SHORT_RUN, SWEEP_GAMES="pong",
                     SWEEP_SEEDS="0", JOB_COMPLETION_INDEX="1")
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "completions to 1" in done.stderr
    assert list(tmp_path.iterdir()) == []
