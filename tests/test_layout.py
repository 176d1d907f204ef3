"""The engine's rooms import one way: each room only the rooms its docstring allows."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import warmstart.engine

ENGINE = Path(warmstart.engine.__file__).parent
ROOMS = ("hardware", "samplers", "agents", "replays", "algos", "playing", "runners")
ALLOWED = {
    "hardware": set(),
    "samplers": {"hardware"},
    "agents": set(),
    "replays": set(),
    "algos": {"agents", "replays"},
    "playing": {"agents", "samplers"},
    "runners": set(ROOMS) - {"runners"},
}


def _rooms_imported(path: Path) -> set[str]:
    """Engine rooms a module imports, absolute or relative."""
    room = path.parent.name
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                parts = (node.module or "").split(".")
                if parts[:2] == ["warmstart", "engine"] and len(parts) > 2:
                    found.add(parts[2])
            elif node.level == 1:
                found.add(room)
            elif node.level == 2:
                parts = (node.module or "").split(".")
                found.update([parts[0]] if parts[0] else [a.name for a in node.names])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[:2] == ["warmstart", "engine"] and len(parts) > 2:
                    found.add(parts[2])
    return found - {room}


def test_every_module_is_in_a_room() -> None:
    loose = sorted(p.name for p in ENGINE.glob("*.py") if p.name != "__init__.py")
    assert loose == []
    assert sorted(p.name for p in ENGINE.iterdir() if (p / "__init__.py").exists()) == \
        sorted(ROOMS)


@pytest.mark.parametrize("room", ROOMS)
def test_room_imports_only_what_it_may(room: str) -> None:
    for path in sorted((ENGINE / room).glob("*.py")):
        extra = _rooms_imported(path) - ALLOWED[room]
        assert not extra, f"{path.relative_to(ENGINE)} imports {sorted(extra)}"


@pytest.mark.parametrize("room", ROOMS)
def test_room_says_what_it_may_import(room: str) -> None:
    doc = (ENGINE / room / "__init__.py").read_text()
    assert "May import:" in doc
    said = doc.split("May import:")[1]
    for other in ALLOWED[room] - {"runners"}:
        assert other in said or "every other engine room" in said


def test_nothing_outside_the_engine_imports_a_room_it_should_not() -> None:
    """Outside the engine, only the top-level commands reach into it; the checkpoint and
    reporting packages (left of the engine in the data flow) never do."""
    package = ENGINE.parent
    for folder in ("checkpoint", "reporting"):
        for path in (package / folder).glob("*.py"):
            text = path.read_text()
            assert "engine" not in {n.module.split(".")[0] if n.level == 2 and n.module else ""
                                    for n in ast.walk(ast.parse(text))
                                    if isinstance(n, ast.ImportFrom)}, path
