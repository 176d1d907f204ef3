"""The config object, its settings reference (docs/settings.md) and `--help`: one source, no
drift, clear errors."""

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
    assert c.iterations(config.EXAMPLE_1) == 12_500


def test_precedence_flag_then_prefixed_then_plain() -> None:
    env = {"STEPS": "10", "WARMSTART_STEPS": "20"}
    assert config.load(env).steps == 20
    assert config.load(env, {"STEPS": "30"}).steps == 30
    assert config.load({"STEPS": ""}).steps == 50_000  # empty counts as unset


def test_empty_or_blank_means_unset_for_every_setting() -> None:
    """make, shells and manifests leave variables empty (`STEPS=`): that is the default."""
    names = [f.metadata["env"] for f in config.settings()]
    for blank in ("", "  "):
        assert config.load({name: blank for name in names}) == config.Config()
        assert config.load({config.ENV_PREFIX + name: blank for name in names}) == config.Config()
        assert config.load({}, {name: blank for name in names}) == config.Config()
    assert config.load({"WARMSTART_STEPS": "", "STEPS": "7"}).steps == 7


def test_integers_in_scientific_notation_when_whole() -> None:
    assert config.load({"STEPS": "1e6", "EVAL_EVERY": "2.5e4"}).steps == 1_000_000
    assert config.load({"EVAL_EVERY": "2.5e4"}).eval_every == 25_000
    with pytest.raises(ConfigError, match=r"^STEPS='1.5e0' is not valid: expected an integer"):
        config.load({"STEPS": "1.5e0"})


@pytest.mark.parametrize(("game_id", "name"), [
    ("PongNoFrameskip-v4", "pong"), ("ALE/Pong-v5", "pong"), ("Pong-v5", "pong"),
    ("BreakoutDeterministic-v4", "breakout"), ("SpaceInvaders-v0", "space_invaders"),
    ("ALE/MsPacman-ram-v5", "ms_pacman"), ("MontezumaRevengeNoFrameskip-v4", "montezuma_revenge"),
])
def test_game_ids_from_gym_ale_and_sb3_map_to_rlpyt_names(game_id: str, name: str) -> None:
    logged: list[str] = []
    assert config.load({"GAME": game_id}, log=logged.append).game == name
    assert logged == [f"GAME={game_id} is rlpyt's {name}; using {name}"]
    quiet: list[str] = []
    assert config.load({"GAME": name}, log=quiet.append).game == name and quiet == []


@pytest.mark.parametrize(("game_id", "hint"), [
    ("Pongg-v4", "did you mean pong?"), ("SpaceInvader", "did you mean space_invaders"),
    ("ALE/Breakot-v5", "did you mean breakout"),
])
def test_unknown_game_ids_get_a_did_you_mean(game_id: str, hint: str) -> None:
    with pytest.raises(ConfigError, match=f"^GAME='{game_id}' is not a known Atari game: {hint}"):
        config.load({"GAME": game_id})


@pytest.mark.parametrize(("env", "value", "allowed"), [
    ("STEPS", "0", "an integer from 1 to 1_000_000_000_000"),
    ("STEPS", "-5", "an integer from 1 to"),
    ("STEPS", "lots", "an integer from 1 to"),
    ("REPLAY_SIZE", "1.5e3x", "an integer"),
    ("BATCH_SIZE", "32.5", "an integer"),
    ("STEPS", "1.5e0", "an integer from 1 to"),
    ("STEPS", "1e400", "an integer from 1 to"),
    ("STEPS", "1e99", "an integer from 1 to"),
    ("STEPS", "1000000000000.0000001", "an integer from 1 to"),
    ("SEED", str(2**64), "an integer from 0 to 4_294_967_294"),
    ("SEED", str(2**32 - 1), "an integer from 0 to 4_294_967_294"),
    ("REPLAY_RATIO", "inf", "a number from 0 to 1024"),
    ("REPLAY_RATIO", "nan", "a number from 0 to 1024"),
    ("LR", "fast", "a number from 0 to 1"),
    ("LR", "inf", "a number from 0 to 1"),
    ("LR", "-inf", "a number from 0 to 1"),
    ("LR", "1e308", "a number from 0 to 1"),  # Adam overflows on it: refused up front
    ("LR", "1.5", "a number from 0 to 1"),
    ("DISCOUNT", "2", "a number from 0 to 1"),
    ("EPS_FINAL", "5", "a number from 0 to 1"),
    ("EPS_FINAL", "-0.1", "a number from 0 to 1"),
    ("TORCH_THREADS", "1e20", "an integer from 0 to 1024"),
    ("RUN_NAME", "x" * 201, "at most 200 bytes"),
    ("RUN_NAME", ".hidden", "not starting with '.'"),
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


@pytest.mark.parametrize(("env", "value", "parsed"), [
    ("STEPS", "1e6", 1_000_000), ("STEPS", "50_000", 50_000), ("STEPS", "1e12", 10**12),
    ("STEPS", "2.5e3", 2500), ("SEED", str(2**32 - 2), 2**32 - 2), ("DISCOUNT", "1", 1.0),
    ("EPS_FINAL", "0", 0.0), ("LR", "1", 1.0), ("LR", "0", 0.0),
])
def test_values_at_the_edges_of_their_ranges_parse_exactly(env: str, value: str,
                                                           parsed: float) -> None:
    loaded = config.load({env: value}).as_dict()[env]
    assert loaded == parsed and type(loaded) is type(parsed)


def test_derived_updates_per_iteration_are_bounded() -> None:
    assert config.load({"REPLAY_RATIO": "1024", "BATCH_SIZE": "4"}).replay_ratio == 1024
    with pytest.raises(ConfigError, match=r"^REPLAY_RATIO=1024 with BATCH_SIZE=1 makes 4096 "):
        config.load({"REPLAY_RATIO": "1024", "BATCH_SIZE": "1"})


def test_unknown_game_suggests_close_names() -> None:
    with pytest.raises(ConfigError, match=r"GAME='pongg'.*pong"):
        config.load({"GAME": "pongg"})


def test_unknown_prefixed_variable_is_an_error() -> None:
    with pytest.raises(ConfigError, match="WARMSTART_STEP .*Did you mean WARMSTART_STEPS"):
        config.load({"WARMSTART_STEP": "100"})


def test_settings_reference_is_generated_from_the_config() -> None:
    page = (REPO / "docs" / "settings.md").read_text()
    block = re.search(r"<!-- settings:start -->\n(.*?)\n<!-- settings:end -->", page, re.DOTALL)
    assert block, "docs/settings.md lacks the settings block"
    assert block.group(1) == config.markdown_table(), "run `make docs` to regenerate the table"


def test_readme_settings_are_the_configs() -> None:
    """The README's short table of the settings that matter names real settings and their
    real defaults (its one-line descriptions are shorter than the reference's)."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("\n## Settings that matter\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([A-Z_]+)` \| `([^`]*)` \|", section, re.MULTILINE)
    assert len(rows) >= 5, "README's settings table not found"
    defaults = {f.metadata["env"]: config.default_text(f) for f in config.settings()}
    for name, default in rows:
        assert name in defaults, f"README names {name}, which is not a setting"
        assert default == defaults[name], f"README: {name} defaults to {defaults[name]}"


def test_help_lists_every_setting_and_exit_code() -> None:
    result = warmstart("train", "--help")
    assert result.returncode == 0
    for f in config.settings():
        assert config.flag_name(f) in result.stdout and f.metadata["env"] in result.stdout
    for code in ("2 ", "3 ", "4 ", "8 ", "143"):
        assert code in result.stdout


@pytest.mark.parametrize("command", ["train", "inspect", "eval", "lineage", "report"])
def test_each_command_help_lists_exactly_its_own_exit_codes(command: str) -> None:
    from warmstart import cli, errors

    result = warmstart(command, "--help")
    assert result.returncode == 0
    listed = result.stdout.split("\nexit codes:\n", 1)[1]
    codes = {int(line.split()[0]) for line in listed.splitlines() if line.strip()}
    assert codes == set(cli.COMMAND_EXIT_CODES[command]) <= set(errors.EXIT_CODES)
    if command != "train":  # only training holds a run lock or diverges
        assert not codes & {5, 8}


def test_bad_variable_exits_2_with_one_line_and_writes_nothing(tmp_path: Path) -> None:
    result = warmstart(CKPT_DIR=str(tmp_path), STEPS="0")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        ("warmstart: error: STEPS='0' is not valid: expected an integer from 1 to "
         "1_000_000_000_000.")]
    assert list(tmp_path.iterdir()) == []


def test_flag_overrides_environment_and_is_validated(tmp_path: Path) -> None:
    result = warmstart("train", "--game", "nosuchgame", CKPT_DIR=str(tmp_path), GAME="pong")
    assert result.returncode == 2 and "GAME='nosuchgame'" in result.stderr


def test_train_says_how_it_read_the_game_and_warns_of_too_many_threads(tmp_path: Path) -> None:
    """One line each: the gym id's rlpyt name, and threads beyond the CPUs it may use."""
    from warmstart.engine.hardware.cpus import usable_cpus

    threads = usable_cpus() + 3
    result = warmstart(CKPT_DIR=str(tmp_path), GAME="PongNoFrameskip-v4", STEPS="100",
                       MIN_STEPS_LEARN="100000", REPLAY_SIZE="1000", ENGINE="native",
                       TORCH_THREADS=str(threads))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert sum("GAME=PongNoFrameskip-v4 is rlpyt's pong; using pong" in line
               for line in lines) == 1
    warnings = [line for line in lines if "warning: TORCH_THREADS" in line]
    assert len(warnings) == 1 and f"{threads} is more than the {usable_cpus()} CPU" in warnings[0]
    assert f"{threads} torch threads, game pong" in result.stdout
    assert (tmp_path / "run_0" / "params.pkl").exists()
