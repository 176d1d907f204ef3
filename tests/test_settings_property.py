"""Generated values for every setting: a valid one parses to a finite value in its stated
range, anything else is one ConfigError naming the variable; never another exception. A few go
through the real `warmstart train` too: exit 2, one line, no traceback, nothing written."""

from __future__ import annotations

import dataclasses
import math
import tempfile
from pathlib import Path

import pytest
from conftest import warmstart
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from warmstart import config
from warmstart.errors import ConfigError

SETTINGS = {f.metadata["env"]: f for f in config.settings()}

_ENV_TEXT = st.characters(exclude_categories=("Cs",), exclude_characters="\x00")
"""What an environment variable can hold: any text but NUL (and lone surrogates, which no
byte string decodes to)."""

_NUMBERISH = st.one_of(
    st.integers().map(str),
    st.integers(min_value=-(10**40), max_value=10**40).map(lambda n: f"{n:_}"),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.from_regex(r"\A[+-]?[0-9_]{0,25}(\.[0-9]{0,20})?([eE][+-]?[0-9]{1,25})?\Z"),
    st.sampled_from(["inf", "-inf", "nan", "1e99", "1e400", "2e-400", str(2**64), "0x10",
                     "1e999999999999999999", "١٢", " 7 ", "True", "1.0000000000000001"]),
)
VALUES = st.one_of(_NUMBERISH, st.text(_ENV_TEXT, max_size=40),
                   st.sampled_from(["", " ", "pong", "auto", "1", "0", "yes", "last+gap"]))


def _kind(f: dataclasses.Field) -> str:
    return str(f.type).replace(" | None", "").strip()


def _check_valid(f: dataclasses.Field, value: object) -> None:
    """A parsed value is what the setting's allowed text promises."""
    meta = f.metadata
    if meta["choices"]:
        assert value in meta["choices"]
    elif _kind(f) in ("int", "float"):
        assert isinstance(value, int if _kind(f) == "int" else float)
        assert not isinstance(value, bool) and math.isfinite(value)
        assert meta["minimum"] is None or value >= meta["minimum"]
        assert meta["maximum"] is None or value <= meta["maximum"]


@pytest.mark.parametrize("env", sorted(SETTINGS))
@settings(max_examples=60, deadline=None)
@given(raw=VALUES)
def test_any_text_parses_or_is_one_config_error_naming_the_variable(env: str, raw: str) -> None:
    f = SETTINGS[env]
    try:
        loaded = config.load({env: raw})
    except ConfigError as err:
        message = str(err)
        assert message.startswith(f"{env}=") and "\n" not in message, message
        return
    value = getattr(loaded, f.name)
    if raw.strip():
        _check_valid(f, value)
    else:  # empty means unset: the default
        assert value == f.default


@pytest.mark.parametrize("env", [env for env, f in SETTINGS.items()
                                 if _kind(f) == "int" and f.metadata["maximum"] is not None])
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_every_integer_in_range_round_trips_in_each_spelling(env: str,
                                                             data: st.DataObject) -> None:
    f = SETTINGS[env]
    n = data.draw(st.integers(int(f.metadata["minimum"]), int(f.metadata["maximum"])))
    spellings = [str(n), f"{n:_}"]
    if n and n % 10 ** (zeros := len(str(n)) - len(str(n).rstrip("0"))) == 0 and zeros:
        spellings.append(f"{n // 10**zeros}e{zeros}")  # 1e6 style, exact
    for text in spellings:  # REPLAY_RATIO 0: one update per iteration whatever BATCH_SIZE is
        assert getattr(config.load({env: text, "REPLAY_RATIO": "0"}), f.name) == n, text
    with pytest.raises(ConfigError, match=f"^{env}="):
        config.load({env: str(int(f.metadata["maximum"]) + 1)})


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(env=st.sampled_from(["STEPS", "SEED", "DISCOUNT", "EPS_FINAL", "REPLAY_RATIO", "LR",
                            "LOG_EVERY", "TORCH_THREADS"]),
       raw=st.one_of(st.sampled_from(["inf", "nan", "-1", "1e99", str(2**64), "2", "1.5"]),
                     st.text(_ENV_TEXT, min_size=1, max_size=12)))
def test_bad_values_through_the_command_exit_2_in_one_line(env: str, raw: str) -> None:
    try:
        config.load({env: raw})
        return  # a valid value: the in-process test covers it
    except ConfigError:
        pass
    with tempfile.TemporaryDirectory() as folder:
        done = warmstart("train", CKPT_DIR=folder, **{env: raw})
        assert done.returncode == 2, done.stdout + done.stderr
        assert "Traceback" not in done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"warmstart: error: {env}="), lines
        assert list(Path(folder).iterdir()) == []
