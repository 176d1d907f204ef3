"""Frame replay against references computed here from the raw stream (and rlpyt's, if present).

The stream is synthetic but complete: every frame is filled with its step number (mod 256), so
a wrong frame in a rebuilt stack is visible, and dones fall at known places, back to back and
at step 0 included. References are written independently: observations by replaying what the
env shows (a frame history that a done zeroes), returns by a plain loop.
"""

from __future__ import annotations

import math

import numpy as np
import psutil
import pytest
import torch
from warmstart.engine.replays.replay import PrioritizedReplay, UniformReplay
from warmstart.engine.replays.sum_tree import FANOUT, SumTree

SHAPE = (6, 5)
FRAMES = 4
GAMMA = 0.9


def _stream(length: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Frames numbered by step; dones at steps = 0 or 5 or 6 (mod 17), and every 29th."""
    rng = np.random.default_rng(seed)
    steps = np.arange(length)
    return {
        "frames": np.broadcast_to((steps % 256).astype(np.uint8)[:, None, None],
                                  (length, *SHAPE)).copy(),
        "actions": rng.integers(0, 6, length),
        "rewards": rng.integers(-1, 2, length).astype(np.float32),
        "dones": np.isin(steps % 17, (0, 5, 6)) | (steps % 29 == 0),
    }


def _env_observations(stream: dict[str, np.ndarray]) -> np.ndarray:
    """What the env showed at each step: 4 frames oldest first, history zeroed by a done."""
    history = np.zeros((FRAMES, *SHAPE), np.uint8)
    shown = []
    for frame, done in zip(stream["frames"], stream["dones"]):
        history = np.concatenate([history[1:], frame[None]])
        shown.append(history)
        if done:
            history = np.zeros_like(history)
    return np.stack(shown)


def _n_step(stream: dict[str, np.ndarray], t: int, n: int, gamma: float) -> tuple[float, bool]:
    total = 0.0
    for k in range(n):
        total += gamma ** k * float(stream["rewards"][t + k])
        if stream["dones"][t + k]:
            return total, True
    return total, False


def _sampleable_steps(written: int, size: int, n: int) -> list[int]:
    """Steps whose target is written, whose oldest frame is still held, past rlpyt's guard."""
    return [t for t in range(written)
            if t + n < written and t - (FRAMES - 1) >= written - size and t >= FRAMES - 1]


def _fill(replay: UniformReplay, stream: dict[str, np.ndarray], start: int, stop: int) -> None:
    for t in range(start, stop):
        replay.append(stream["frames"][t], int(stream["actions"][t]),
                      float(stream["rewards"][t]), bool(stream["dones"][t]))


@pytest.mark.parametrize("n_step", [1, 3])
@pytest.mark.parametrize("size", [1000, 97])  # 97: wraps around several times
def test_batches_match_the_stream_before_and_after_wrapping(n_step: int, size: int) -> None:
    stream = _stream(500)
    shown = _env_observations(stream)
    replay = UniformReplay(size, frame_shape=SHAPE, n_step_return=n_step, discount=GAMMA)
    written = 0
    for checkpoint in (3, 5, 8, 50, 96, 97, 98, 100, 101, 200, 393, 500):
        _fill(replay, stream, written, checkpoint)
        written = checkpoint
        steps = _sampleable_steps(written, size, n_step)
        assert replay.valid_idxs().tolist() == [t % size for t in steps]
        assert replay.can_sample() == bool(steps) and len(replay) == min(written, size)
        if not steps:
            continue
        batch = replay.batch_at(np.array(steps) % size)
        for i, t in enumerate(steps):
            assert np.array_equal(batch.observation[i].numpy(), shown[t]), (written, t)
            assert np.array_equal(batch.target_observation[i].numpy(), shown[t + n_step])
            ret, done = _n_step(stream, t, n_step, GAMMA)
            assert batch.return_[i].item() == pytest.approx(ret, abs=1e-6)
            assert batch.done_n[i].item() == float(done)
            assert batch.action[i].item() == stream["actions"][t]
        assert batch.observation.dtype == torch.uint8 and batch.action.dtype == torch.int64
        assert batch.return_.dtype == batch.done_n.dtype == batch.is_weights.dtype == torch.float32
        assert batch.observation.shape == (len(steps), FRAMES, *SHAPE)
        assert torch.equal(batch.is_weights, torch.ones(len(steps)))


@pytest.mark.parametrize("cls", [UniformReplay, PrioritizedReplay])
def test_never_samples_a_step_without_its_target_or_history(cls: type[UniformReplay]) -> None:
    stream = _stream(300, seed=1)
    size, n_step = 50, 3
    replay = cls(size, frame_shape=SHAPE, n_step_return=n_step, seed=2)
    seen: set[int] = set()
    for written in range(1, 301):
        _fill(replay, stream, written - 1, written)
        allowed = {t % size for t in _sampleable_steps(written, size, n_step)}
        assert replay.can_sample() == bool(allowed)
        if not allowed:
            with pytest.raises(ValueError, match="no complete transition"):
                replay.sample(4)
            continue
        drawn = set(replay.sample(64).idxs.tolist())
        assert drawn <= allowed, (written, drawn - allowed)
        seen |= drawn
        if written == 7:  # the first sampleable step: 3 (start-up guard), target 6 written
            assert drawn == {3}
    assert seen == set(range(size))  # every slot is drawn at some point, once it is valid


def test_priority_tree_tracks_validity_with_default_priority_for_new_steps() -> None:
    stream = _stream(400, seed=3)
    size = 60
    replay = PrioritizedReplay(size, frame_shape=SHAPE, n_step_return=3, alpha=0.6, seed=4)
    rng = np.random.default_rng(5)
    for written in range(1, 401):
        _fill(replay, stream, written - 1, written)
        live = np.flatnonzero(replay.tree.leaves())
        assert sorted(live) == sorted(replay.valid_idxs()), written
        if written - 1 - 3 >= 3:  # its target just arrived: rlpyt's default priority ** alpha
            assert replay.tree[(written - 1 - 3) % size] == 1.0
        if replay.can_sample() and written % 7 == 0:  # big priorities must not leak to new steps
            batch = replay.sample(8)
            replay.update_priorities(batch.idxs, rng.uniform(1.5, 3.0, 8).astype(np.float32))
    assert replay.tree.total == pytest.approx(math.fsum(replay.tree.leaves()), rel=1e-12)


def _filled_prioritized(alpha: float = 0.6, beta: float = 0.4) -> PrioritizedReplay:
    replay = PrioritizedReplay(200, frame_shape=SHAPE, alpha=alpha, beta=beta, seed=6)
    _fill(replay, _stream(300, seed=7), 0, 300)
    return replay


def _total_variation(counts: np.ndarray, expected: np.ndarray) -> float:
    return 0.5 * float(np.abs(counts / counts.sum() - expected / expected.sum()).sum())


def test_sampling_frequency_follows_priority_to_the_alpha() -> None:
    replay = _filled_prioritized()
    valid = replay.valid_idxs()
    assert len(valid) == 200 - 3 - 1  # three slots lost history, one awaits its target
    priorities = np.random.default_rng(8).uniform(0.02, 1.0, len(valid)).astype(np.float32)
    replay.update_priorities(valid, priorities)
    counts = np.zeros(200)
    for _ in range(200):
        np.add.at(counts, replay.sample(1000).idxs, 1)
    powered = np.zeros(200)
    powered[valid] = priorities.astype(np.float64) ** 0.6
    assert _total_variation(counts, powered) < 0.02
    unpowered = np.zeros(200)
    unpowered[valid] = priorities
    assert _total_variation(counts, unpowered) > 0.08  # alpha really is applied


def test_importance_weights_are_rlpyts() -> None:
    replay = _filled_prioritized()
    valid = replay.valid_idxs()
    priorities = np.linspace(0.01, 1.0, len(valid), dtype=np.float32)
    replay.update_priorities(valid, priorities)
    stored = dict(zip(valid.tolist(), priorities ** np.float32(0.6)))
    for beta in (0.4, 0.7, 1.0):
        replay.beta = beta
        batch = replay.sample(64)
        leaves = np.array([stored[i] for i in batch.idxs], dtype=np.float64)
        expected = (1.0 / (leaves + 1e-6)) ** beta
        np.testing.assert_allclose(batch.is_weights.numpy(), expected / expected.max(),
                                   rtol=1e-6)
        assert batch.is_weights.max().item() == 1.0


def test_update_priorities_changes_what_is_sampled() -> None:
    replay = _filled_prioritized()
    valid = replay.valid_idxs()
    favourite = int(valid[17])
    before = np.bincount(replay.sample(4000).idxs, minlength=200)[favourite]
    replay.update_priorities(np.array([favourite]), np.array([1000.0]))
    after = np.bincount(replay.sample(4000).idxs, minlength=200)[favourite]
    share = 1000.0 ** 0.6 / (1000.0 ** 0.6 + len(valid) - 1)
    assert before < 100 and after / 4000 == pytest.approx(share, rel=0.06)


def test_update_priorities_keeps_the_first_of_duplicates_and_ignores_dead_slots() -> None:
    replay = _filled_prioritized()
    slot = int(replay.valid_idxs()[0])
    replay.update_priorities(np.array([slot, slot]), np.array([0.5, 0.9], dtype=np.float32))
    # rlpyt's np.unique keeps the first; the power is an array power, as in rlpyt (numpy's
    # vectorised float32 power may differ from the scalar one by an ulp on some CPUs)
    assert replay.tree[slot] == (np.array([0.5], dtype=np.float32) ** np.float32(0.6))[0]
    dead = 300 % 200  # the cursor's slot: its data is about to be overwritten
    replay.update_priorities(np.array([dead]), np.array([1.0]))
    assert replay.tree[dead] == 0.0


def test_sum_tree_sums_are_exact_after_many_updates() -> None:
    rng = np.random.default_rng(9)
    size = 20_000  # three levels of 128-wide blocks, the last one partly padding
    tree = SumTree(size)
    values = np.zeros(size)
    for _ in range(2000):
        idxs = rng.choice(size, 32, replace=False)
        new = rng.random(32) * (rng.random(32) < 0.9)  # some zeros, as invalid slots are
        tree.set(idxs, new)
        values[idxs] = new
    assert np.array_equal(tree.leaves(), values)
    assert len(tree.levels) == 4 and not tree.levels[0][size:].any()
    for below, above in zip(tree.levels[:-1], tree.levels[1:]):
        sums = below.reshape(-1, FANOUT).cumsum(axis=1)[:, -1]
        assert np.array_equal(above[:len(sums)], sums)  # every parent, bit for bit
    assert tree.total == pytest.approx(math.fsum(values), rel=1e-13)
    drawn = tree.sample(100_000, rng)
    assert (values[drawn] > 0).all()  # a zero-priority leaf is never returned


def test_sum_tree_intervals_are_half_open_and_skip_empty_leaves() -> None:
    values = np.tile([0.0, 2.0, 0.0, 0.0, 1.0, 3.0], 50)  # integers: every sum is exact
    tree = SumTree(len(values))
    tree.set(np.arange(len(values)), values)
    ends = np.cumsum(values)
    starts = ends - values
    positive = np.flatnonzero(values)
    assert np.array_equal(tree.find(starts[positive]), positive)  # [start, end): start is in
    assert np.array_equal(tree.find(ends[positive] - 0.25), positive)
    assert tree.find(np.array([0.0]))[0] == 1  # mass 0 skips the empty first leaf


def test_memory_per_transition_and_lazy_commit() -> None:
    assert UniformReplay.bytes_per_transition() * 1_000_000 <= 8.5e9
    process = psutil.Process()
    before = process.memory_info().rss
    replay = PrioritizedReplay(200_000)  # 1.7 GB of frames if it were touched
    assert process.memory_info().rss - before < 8e6
    assert replay.frames.nbytes == 200_000 * 104 * 80
    replay.frames[:20_000] = 1  # the measurement does see pages once they are written
    assert process.memory_info().rss - before > 150e6


def test_rejects_a_buffer_too_small_for_one_transition() -> None:
    with pytest.raises(ValueError, match="holds no complete"):
        UniformReplay(4, frame_shape=SHAPE, n_step_return=1)


@pytest.mark.parametrize("n_step", [1, 3])
def test_rlpyt_frame_buffer_agrees(n_step: int) -> None:
    """Where rlpyt is importable: its own frame buffer, fed in sampler chunks of 4 steps."""
    frame_buffers = pytest.importorskip("rlpyt.replays.non_sequence.frame",
                                        reason="rlpyt is not importable here")
    from rlpyt.utils.collections import namedarraytuple

    to_buffer = namedarraytuple("SamplesToBuffer", ["observation", "action", "reward", "done"])
    example = to_buffer(observation=np.zeros((FRAMES, *SHAPE), np.uint8),
                        action=np.array(0, np.int64), reward=np.array(0, np.float32),
                        done=np.array(False))
    size = 60
    theirs = frame_buffers.PrioritizedReplayFrameBuffer(
        example=example, size=size, B=1, discount=0.99, n_step_return=n_step, alpha=0.6,
        beta=0.4, default_priority=1.0)
    theirs_uniform = frame_buffers.UniformReplayFrameBuffer(
        example=example, size=size, B=1, discount=0.99, n_step_return=n_step)
    ours = PrioritizedReplay(size, frame_shape=SHAPE, n_step_return=n_step, discount=0.99)
    stream = _stream(400, seed=10)
    shown = _env_observations(stream)
    rng = np.random.default_rng(11)
    np.random.seed(12)  # rlpyt draws from numpy's global generator
    for start in range(0, 400, 4):
        chunk = slice(start, start + 4)
        samples = to_buffer(observation=shown[chunk, None], action=stream["actions"][chunk, None],
                            reward=stream["rewards"][chunk, None],
                            done=stream["dones"][chunk, None])
        theirs.append_samples(samples)
        theirs_uniform.append_samples(samples)
        _fill(ours, stream, start, start + 4)
        assert np.array_equal(ours.tree.leaves(), theirs.priority_tree.priorities[:, 0])
        valid = ours.valid_idxs()
        if not len(valid):
            continue
        assert set(theirs_uniform.sample_idxs(500)[0].tolist()) <= set(valid.tolist())
        expected = theirs.extract_batch(valid, np.zeros_like(valid))
        got = ours.batch_at(valid)
        assert torch.equal(got.observation, expected.agent_inputs.observation)
        assert torch.equal(got.target_observation, expected.target_inputs.observation)
        assert torch.equal(got.action, expected.action)
        assert torch.equal(got.return_, expected.return_)  # bit-identical float32 arithmetic
        assert torch.equal(got.done_n, expected.done_n.float())
        beta = 0.4 + 0.6 * start / 400
        theirs.set_beta(beta)
        ours.beta = beta
        drawn = theirs.sample_batch(32)
        slots = theirs.priority_tree.prev_tree_idxs - theirs.priority_tree.low_idx
        assert torch.equal(ours.batch_at(slots).is_weights, drawn.is_weights)
        td = rng.uniform(0, 1, 32).astype(np.float32)  # the learner's clamped |TD error|
        theirs.update_batch_priorities(torch.from_numpy(td))
        ours.update_priorities(slots, td)


@pytest.mark.parametrize("cls", [UniformReplay, PrioritizedReplay])
def test_streams_never_mix_in_stacks_returns_or_draws(cls: type[UniformReplay]) -> None:
    """Three environments stepped together (batch_B=3): each slot's stack, n-step return and
    target come from its own environment's stream, before and after the buffer wraps, and
    draws cover every stream's sampleable steps and nothing else."""
    streams = [_stream(300, seed=b) for b in range(3)]
    for b, stream in enumerate(streams):  # tell the streams' frames apart: step + 64 * b
        stream["frames"] = stream["frames"] + np.uint8(64 * b)
    shown = [_env_observations(stream) for stream in streams]
    rows, n_step = 40, 3
    replay = cls(rows * 3, frame_shape=SHAPE, n_step_return=n_step, discount=GAMMA,
                 seed=5, streams=3)
    assert replay.size == rows and len(replay.frames) == rows * 3
    for written in range(1, 301):
        replay.append(np.stack([s["frames"][written - 1] for s in streams]),
                      np.array([s["actions"][written - 1] for s in streams]),
                      np.array([s["rewards"][written - 1] for s in streams]),
                      np.array([s["dones"][written - 1] for s in streams]))
        steps = _sampleable_steps(written, rows, n_step)
        expected = [t % rows * 3 + b for t in steps for b in range(3)]
        assert replay.valid_idxs().tolist() == expected
        assert len(replay) == min(written, rows) * 3
        if written not in (10, 41, 120, 300) or not steps:
            continue
        batch = replay.batch_at(np.array(expected))
        for i, slot in enumerate(expected):
            t, b = steps[i // 3], slot % 3
            assert np.array_equal(batch.observation[i].numpy(), shown[b][t]), (written, t, b)
            assert np.array_equal(batch.target_observation[i].numpy(), shown[b][t + n_step])
            ret, done = _n_step(streams[b], t, n_step, GAMMA)
            assert batch.return_[i].item() == pytest.approx(ret, abs=1e-6)
            assert batch.done_n[i].item() == float(done)
            assert batch.action[i].item() == streams[b]["actions"][t]
        drawn = set(replay.sample(512).idxs.tolist())
        assert drawn <= set(expected) and {s % 3 for s in drawn} == {0, 1, 2}
