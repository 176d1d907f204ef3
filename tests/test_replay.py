"""Frame replay: stacks, n-step returns and validity against a brute-force reference."""

from __future__ import annotations

import numpy as np
import psutil
import pytest
from warmstart.engine.replay import PrioritizedReplay, UniformReplay, check_memory
from warmstart.engine.sum_tree import SumTree
from warmstart.errors import ConfigError

SHAPE = (2, 3)


def _stream(length: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    frames = [np.full(SHAPE, i % 256, np.uint8) for i in range(length)]
    return frames, rng.integers(-1, 2, length).astype(float), rng.random(length) < 0.1


def _reference(frames, rewards, dones, t: int, n: int, gamma: float):
    stack = []
    for k in range(t - 3, t + 1):
        blank = k < 0 or dones[max(k, 0):t].any()
        stack.append(np.zeros(SHAPE, np.uint8) if blank else frames[k])
    ret, done = 0.0, False
    for i in range(n):
        ret += gamma ** i * rewards[t + i]
        if dones[t + i]:
            done = True
            break
    return np.stack(stack), ret, done


@pytest.mark.parametrize("n_step", [1, 3])
@pytest.mark.parametrize("size", [1000, 97])  # 97: wrapped around several times
def test_every_valid_step_matches_reference(n_step: int, size: int) -> None:
    frames, rewards, dones = _stream(500)
    replay = UniformReplay(size, frame_shape=SHAPE, n_step_return=n_step, discount=0.9)
    for t in range(500):
        replay.append(frames[t], t % 6, rewards[t], dones[t])
    low, high = replay._valid_range()
    assert high == 499 - n_step and low == (0 if size > 500 else 500 - size + 3)
    steps = np.arange(low, high + 1)
    batch = replay._batch(steps, np.ones(len(steps)))
    for i, t in enumerate(steps):
        obs, ret, done = _reference(frames, rewards, dones, t, n_step, 0.9)
        assert np.array_equal(batch.observation[i].numpy(), obs), t
        assert batch.return_[i].item() == pytest.approx(ret, abs=1e-5)
        assert bool(batch.done_n[i]) == done and batch.action[i] == t % 6
        target, _, _ = _reference(frames, rewards, dones, t + n_step, 1, 0.9) if (
            t + n_step < 499) else (None, 0, 0)
        if target is not None:
            assert np.array_equal(batch.target_observation[i].numpy(), target)


def test_never_samples_unwritten_targets() -> None:
    frames, rewards, dones = _stream(40)
    replay = UniformReplay(1000, frame_shape=SHAPE, n_step_return=3)
    assert not replay.can_sample()
    for t in range(4):
        replay.append(frames[t], 0, rewards[t], dones[t])
    assert replay.can_sample()
    for _ in range(50):
        assert set(replay.sample(32).idxs.tolist()) == {0}


def test_prioritized_sampling_follows_priorities() -> None:
    frames, rewards, dones = _stream(300)
    replay = PrioritizedReplay(200, frame_shape=SHAPE, n_step_return=1, alpha=0.6, beta=0.4,
                               seed=3)
    for t in range(300):
        replay.append(frames[t], 0, rewards[t], dones[t])
    live = replay.tree[np.arange(200)] > 0
    assert live.sum() == 200 - 3 - 1  # history overwritten, target unwritten
    batch = replay.sample(32)
    assert batch.is_weights.max().item() == pytest.approx(1.0)
    favourite = int(batch.idxs[0])
    replay.update_priorities(np.array([favourite]), np.array([1000.0]))
    counts = np.bincount(replay.sample(4000).idxs, minlength=200)
    share = (1000.0 ** 0.6) / (1000.0 ** 0.6 + live.sum() - 1)
    assert counts[favourite] / 4000 == pytest.approx(share, rel=0.1)
    weights = replay.sample(64)
    p = replay.tree[weights.idxs]
    expected = (1 / (p + 1e-6)) ** 0.4
    np.testing.assert_allclose(weights.is_weights.numpy(), expected / expected.max(), rtol=1e-5)


def test_sum_tree_totals_stay_exact() -> None:
    rng = np.random.default_rng(0)
    tree = SumTree(1000)
    values = np.zeros(1000)
    for _ in range(200):
        idxs = rng.integers(0, 1000, 32)
        new = rng.random(32)
        tree.set(idxs, new)
        values[idxs] = new  # last write wins, as in the tree
    assert tree.total == pytest.approx(values.sum(), rel=1e-12)


def test_memory_per_transition_and_lazy_commit() -> None:
    assert UniformReplay.bytes_per_transition() * 1_000_000 <= 8.5e9
    before = psutil.Process().memory_info().rss
    replay = PrioritizedReplay(200_000)  # 1.7 GB if touched
    assert psutil.Process().memory_info().rss - before < 50e6
    assert replay.frames.nbytes == 200_000 * 104 * 80


def test_replay_that_cannot_fit_is_refused_before_allocating() -> None:
    check_memory(10_000)
    with pytest.raises(ConfigError, match=r"REPLAY_SIZE=100000000000 needs .* GB of memory"):
        check_memory(100_000_000_000)
