"""`warmstart report`: one row per run on a volume, statuses, the plot, and damaged files as
one line each (fuzzed), never a traceback."""

from __future__ import annotations

import random
import struct
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, warmstart
from warmstart.checkpoint.manifest import MANIFEST
from warmstart.checkpoint.rows import PROGRESS
from warmstart.reporting import report

sys.path.insert(0, str(REPO / "bench"))
from report_volume import GAMES, LOG_EVERY, make_volume

ROWS = 10


@pytest.fixture(scope="module")
def volume(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("volume")
    return root, make_volume(root, 12, rows=ROWS)


def test_one_row_per_run_sorted_by_game_and_seed(volume: tuple[Path, dict[str, str]]) -> None:
    root, expected = volume
    rows = report.scan(root, 3600)
    assert {row.name: row.status for row in rows} == expected
    assert [(row.game, row.seed) for row in rows] == sorted((row.game, row.seed) for row in rows)
    for row in rows:
        assert row.problems == []
        assert row.target == ROWS * LOG_EVERY
        assert row.reached == row.train_curve[-1][0]
        assert row.reached == row.target if row.status == "finished" else row.reached <= row.target
        assert row.eval_curve == [] or row.eval_curve[-1][0] % (5 * LOG_EVERY) == 0


def test_abandoned_depends_on_the_threshold(volume: tuple[Path, dict[str, str]]) -> None:
    root, expected = volume
    patient = {row.name: row.status for row in report.scan(root, 3 * 3600)}
    assert {name for name, status in patient.items() if status == "abandoned"} == set()
    assert {name for name, s in patient.items() if s == "running"} == {
        name for name, s in expected.items() if s in ("running", "abandoned")}


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_command_prints_the_table_and_plots_a_panel_per_game(
        volume: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    root, expected = volume
    plot = tmp_path / "runs.png"
    done = warmstart("report", str(root), "--plot", str(plot))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    assert lines[0].split()[:3] == ["run", "game", "seed"]
    assert {line.split()[0] for line in lines[1:1 + len(expected)]} == set(expected)
    assert f"{len(expected)} run(s): " in done.stdout and "3 abandoned" in done.stdout
    assert f"plot: {plot}" in done.stdout
    # five games: three panels of 500x360 px on the first line, two on the second
    assert len(GAMES) == 5 and _png_size(plot) == (1500, 720)


@pytest.mark.parametrize("command", ["report", "lineage", "inspect", "eval"])
def test_missing_path_exits_3_for_every_reading_command(tmp_path: Path, command: str) -> None:
    done = warmstart(command, str(tmp_path / "nothing"))
    assert done.returncode == 3, done.stderr
    assert done.stderr.count("\n") == 1 and str(tmp_path / "nothing") in done.stderr


@pytest.mark.parametrize("command", ["report", "lineage", "eval"])
def test_missing_ckpt_dir_exits_3_as_help_says(tmp_path: Path, command: str) -> None:
    """Given no path, a reading command reads CKPT_DIR: missing, it is the 3 that README and
    each command's --help list for a missing path, not training's 4."""
    done = warmstart(command, CKPT_DIR=str(tmp_path / "nothing"))
    assert done.returncode == 3, done.stderr
    assert done.stderr.count("\n") == 1 and f"CKPT_DIR={tmp_path / 'nothing'}" in done.stderr
    assert "3" in warmstart(command, "--help").stdout.split("exit codes:")[1]


def _mutations(text: bytes, rng: random.Random) -> list[bytes]:
    """Damage a real file as a crash, a bad disk or a hand edit would: truncations, flipped
    and NUL bytes, garbage."""
    out = [b"", text[: len(text) // 2], b"\x00" * 10, bytes(rng.randrange(256) for _ in range(64)),
           text.replace(b",", b";", 3), text + b"\n,,,,,\n\xff\xfe"]
    for _ in range(24):
        data = bytearray(text)
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(len(data))] = rng.choice([0, 0x22, 0x7B, 0x5D, rng.randrange(256)])
        out.append(bytes(data[: rng.randint(1, len(data))]) if rng.random() < 0.3 else bytes(data))
    return out


@pytest.mark.parametrize("damaged", [MANIFEST, PROGRESS])
def test_fuzzed_files_cost_one_line_each(damaged: str, tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    make_volume(source, 1, rows=ROWS)
    (original,) = source.iterdir()
    texts = {name: (original / name).read_bytes() for name in (MANIFEST, PROGRESS)}
    rng = random.Random(13)
    volume = tmp_path / "volume"
    volume.mkdir()
    variants = _mutations(texts[damaged], rng)
    for i, data in enumerate(variants):
        run = volume / f"run-{i:02d}"
        run.mkdir()
        for name, text in texts.items():
            (run / name).write_bytes(data if name == damaged else text)
    (volume / "run-dir" / damaged).mkdir(parents=True)  # a folder where the file should be
    (volume / "run-dir" / ({MANIFEST, PROGRESS} - {damaged}).pop()).write_bytes(
        texts[({MANIFEST, PROGRESS} - {damaged}).pop()])
    rows = report.scan(volume, 3600, now=time.time())
    assert len(rows) == len(variants) + 1
    for row in rows:
        assert len(row.problems) <= 1, row.problems
        assert all(p.startswith(f"{row.name}/{damaged}: ") for p in row.problems)
    assert sum(bool(row.problems) for row in rows) >= len(variants) // 3
    done = warmstart("report", str(volume))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    problem_lines = done.stderr.splitlines()
    assert problem_lines == [f"warmstart report: {p}" for row in rows for p in row.problems]


def test_an_rlpyt_run_folder(rlpyt_run_dir: Path) -> None:
    """A folder rlpyt wrote (no manifest) is listed with its steps from progress.csv."""
    rows = report.scan(rlpyt_run_dir, 3600)
    assert [(row.name, row.status) for row in rows] == [("pong_example1", "rlpyt run")]
    assert rows[0].reached == 10_000 and rows[0].problems == []  # itr 2499: 10,000 steps done


def test_plot_marks_single_points_and_names_every_run_in_its_legend(tmp_path: Path) -> None:
    """A run with one log point is a visible marker; a panel's legend lists each of its runs,
    those without finished games and those past a dozen included."""
    rows = [report.RunRow(tmp_path / "one", game="pong", train_curve=[(10_000, -20.0)]),
            report.RunRow(tmp_path / "none", game="pong")]
    rows += [report.RunRow(tmp_path / f"many_{i:02d}", game="pong",
                           train_curve=[(s * 1000, float(i)) for s in range(1, 4)])
             for i in range(14)]
    figure = report.plot_figure(rows, "t")
    (axes,) = figure.axes
    labels = [text.get_text() for text in axes.get_legend().get_texts()]
    assert len(labels) == len(rows) and "none: no finished games" in labels
    single = next(line for line in axes.get_lines() if line.get_label() == "one")
    assert single.get_marker() == "o" and len(single.get_xdata()) == 1
    png = report.render_plot(rows, "t")
    assert png.startswith(b"\x89PNG") and png.endswith(b"IEND\xaeB`\x82")
