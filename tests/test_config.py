"""The config object, its README table and `--help`: one source, no drift, clear errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import REPO, warmstart
from warmstart import config
from warmstart.errors import ConfigError


def test_defaults_follow_rlpyt() -> None:
    c = config.load({})
    assert (c.game, c.batch_size, c.replay_size, c.replay_ratio) == ("pong", 32, 1_000_000, 8.0)
    assert (c.target_update_interval, c.eps_final, c.eps_steps, c.discount) == (
        312, 0.01, 1_000_000, 0.99)
    assert c.lr is None and c.min_steps_learn is None and c.ckpt_dir == Path("/ckpt")


def test_values_as_rlpyt_users_write_them() -> None:
    c = config.load({"REPLAY_SIZE": "1e6", "STEPS": "50_000", "DOUBLE_DQN": "true",
                     "LR": "1e-4", "GAME": "breakout", "SNAPSHOT_MODE": "last+gap"})
    assert (c.replay_size, c.steps, c.double_dqn, c.lr, c.game) == (
        1_000_000, 50_000, True, 1e-4, "breakout")
    assert c.iterations == 12_500


def test_precedence_flag_then_prefixed_then_plain() -> None:
    env = {"STEPS": "10", "WARMSTART_STEPS": "20"}
    assert config.load(env).steps == 20
    assert config.load(env, {"STEPS": "30"}).steps == 30
    assert config.load({"STEPS": ""}).steps == 50_000  # empty counts as unset


@pytest.mark.parametrize(("env", "value", "allowed"), [
    ("STEPS", "0", "an integer >= 1"),
    ("STEPS", "-5", "an integer >= 1"),
    ("STEPS", "lots", "an integer >= 1"),
    ("REPLAY_SIZE", "1.5e3x", "an integer"),
    ("BATCH_SIZE", "32.5", "an integer"),
    ("LR", "fast", "a number >= 0"),
    ("DOUBLE_DQN", "maybe", "1/0, true/false"),
    ("DEVICE", "tpu", "one of auto, cpu, cuda"),
    ("SNAPSHOT_MODE", "sometimes", "one of last, all, gap, last+gap"),
    ("RUN_NAME", "../escape", "letters, digits"),
])
def test_bad_value_names_variable_value_and_allowed(env: str, value: str, allowed: str) -> None:
    with pytest.raises(ConfigError) as err:
        config.load({env: value})
    message = str(err.value)
    assert message.startswith(f"{env}={value!r}") and allowed in message


def test_unknown_game_suggests_close_names() -> None:
    with pytest.raises(ConfigError, match=r"GAME='pongg'.*pong"):
        config.load({"GAME": "pongg"})


def test_unknown_prefixed_variable_is_an_error() -> None:
    with pytest.raises(ConfigError, match="WARMSTART_STEP .*Did you mean WARMSTART_STEPS"):
        config.load({"WARMSTART_STEP": "100"})


def test_readme_table_is_generated_from_the_config() -> None:
    readme = (REPO / "README.md").read_text()
    block = re.search(r"<!-- settings:start -->\n(.*?)\n<!-- settings:end -->", readme, re.DOTALL)
    assert block, "README.md lacks the settings block"
    assert block.group(1) == config.markdown_table(), "run `make readme` to regenerate the table"


def test_help_lists_every_setting_and_exit_code() -> None:
    result = warmstart("train", "--help")
    assert result.returncode == 0
    for f in config.settings():
        assert config.flag_name(f) in result.stdout and f.metadata["env"] in result.stdout
    for code in ("2 ", "3 ", "4 ", "143"):
        assert code in result.stdout


def test_bad_variable_exits_2_with_one_line_and_writes_nothing(tmp_path: Path) -> None:
    result = warmstart(CKPT_DIR=str(tmp_path), STEPS="0")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "warmstart: error: STEPS='0' is not valid: expected an integer >= 1."]
    assert list(tmp_path.iterdir()) == []


def test_flag_overrides_environment_and_is_validated(tmp_path: Path) -> None:
    result = warmstart("train", "--game", "nosuchgame", CKPT_DIR=str(tmp_path), GAME="pong")
    assert result.returncode == 2 and "GAME='nosuchgame'" in result.stderr
