"""The CUDA path's parts, checked on the CPU where their code runs there.

The update a CUDA graph captures (``StaticUpdate.step``) is run eagerly here and must land on
the parameters, losses and priorities of ``DqnLearner.update`` from the same weights and
minibatches; the device replay, built on the CPU, must give the numpy replay's batches for the
same slots. What only a GPU can run (the capture itself, pinned memory) skips without one.
"""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from test_dqn import LR, B, make_batch, models
from test_replay import GAMMA, SHAPE, _stream
from warmstart.engine.algos.dqn import DqnLearner, make_optimizer
from warmstart.engine.algos.static_update import WARMUP_UPDATES, StaticUpdate
from warmstart.engine.replays.device_replay import DeviceReplay
from warmstart.engine.replays.replay import UniformReplay
from warmstart.engine.runners.loop import OptStats, check_finite
from warmstart.errors import TrainingDivergedError


def _learner(model, target, *, double: bool, prioritized: bool, interval: int,
             capturable: bool = False) -> DqnLearner:
    return DqnLearner(model, target, make_optimizer(model, LR, B, capturable=capturable),
                      discount=0.99, n_step_return=3, double_dqn=double,
                      target_update_interval=interval, prioritized_replay=prioritized)


@pytest.mark.parametrize(("double", "prioritized"), [(False, False), (True, True)])
def test_static_update_lands_on_the_eager_updates_parameters(double: bool,
                                                             prioritized: bool) -> None:
    model, target = models()
    eager = _learner(model, target, double=double, prioritized=prioritized, interval=2)
    model2, target2 = copy.deepcopy(model), copy.deepcopy(target)
    static = StaticUpdate(_learner(model2, target2, double=double, prioritized=prioritized,
                                   interval=2), B, torch.device("cpu"), graph=False)
    for seed in range(4):  # four updates: the target is copied after the 2nd and the 4th
        batch = make_batch(weights=prioritized, seed=seed)
        info = eager.update(batch)
        report = static.run(batch).clone()
        assert report[0].item() == info.loss and report[1].item() == info.grad_norm
        np.testing.assert_array_equal(report[2:].numpy(), info.td_abs_err)
        for a, b in zip(model.state_dict().values(), model2.state_dict().values(), strict=True):
            assert torch.equal(a, b)
        for a, b in zip(target.state_dict().values(), target2.state_dict().values(),
                        strict=True):
            assert torch.equal(a, b)
    assert static.learner.update_counter == eager.update_counter == 4
    assert not static.graphed


def test_a_graph_is_refused_on_the_cpu() -> None:
    model, target = models()
    with pytest.raises(ValueError, match="CUDA"):
        StaticUpdate(_learner(model, target, double=False, prioritized=False, interval=2), B,
                     torch.device("cpu"), graph=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_graphed_update_on_cuda_follows_the_eager_update() -> None:
    """Warm-up, capture and replays; close to the eager CUDA update (TF32 off), with the
    target copies on the same schedule. Capturable Adam may differ in the last bits."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    cuda = torch.device("cuda")
    model, target = (m.to(cuda) for m in models())
    model2, target2 = copy.deepcopy(model), copy.deepcopy(target)
    eager = _learner(model, target, double=True, prioritized=True, interval=3)
    lines: list[str] = []
    static = StaticUpdate(_learner(model2, target2, double=True, prioritized=True, interval=3,
                                   capturable=True), B, cuda, graph=True, log=lines.append)
    for seed in range(WARMUP_UPDATES + 3):
        batch = make_batch(weights=True, seed=seed)
        info = eager.update(batch)
        report = static.run(batch).cpu()
        assert abs(report[0].item() - info.loss) <= 1e-4 * max(1.0, abs(info.loss))
    assert static.graphed, lines
    for a, b in zip(model.parameters(), model2.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("n_step", [1, 3])
@pytest.mark.parametrize("streams", [1, 3])
def test_device_replay_gives_the_numpy_replays_batches(n_step: int, streams: int) -> None:
    """Same appends (dones inside stacks and returns, wrapping several times) into both
    replays: for every sampleable slot, the same observation, target, action, return and
    done; the device replay's own draws are sampleable slots of every stream."""
    data = [_stream(300, seed=b) for b in range(streams)]
    rows = 40
    kwargs = {"frame_shape": SHAPE, "n_step_return": n_step, "discount": GAMMA, "seed": 5,
              "streams": streams}
    host = UniformReplay(rows * streams, **kwargs)
    device = DeviceReplay(rows * streams, device=torch.device("cpu"), **kwargs)
    for written in range(1, 301):
        step = [np.array([s[key][written - 1] for s in data])
                for key in ("frames", "actions", "rewards", "dones")]
        host.append(*step)
        device.append(*step)
        assert len(device) == len(host) and device.can_sample() == host.can_sample()
        if written not in (9, 41, 120, 300):
            continue
        valid = host.valid_idxs()
        want = host.batch_at(valid)
        got = device.batch_at(torch.from_numpy(valid))
        for name in ("observation", "target_observation", "action", "return_", "done_n",
                     "is_weights"):
            assert torch.equal(getattr(got, name), getattr(want, name)), (written, name)
        drawn = device.sample_slots(512)
        assert set(drawn.tolist()) <= set(valid.tolist())
        assert {s % streams for s in drawn.tolist()} == set(range(streams))


def test_device_replay_draws_repeat_with_the_seed() -> None:
    data = _stream(100)
    replays = [DeviceReplay(50, device=torch.device("cpu"), frame_shape=SHAPE, seed=7)
               for _ in range(2)]
    for replay in replays:
        for t in range(100):
            replay.append(data["frames"][t], data["actions"][t], data["rewards"][t],
                          data["dones"][t])
    assert torch.equal(replays[0].sample_slots(64), replays[1].sample_slots(64))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("on_device", [True, False])
def test_device_replay_on_cuda_matches_the_numpy_replay(on_device: bool) -> None:
    """Frames on the GPU, or in pinned host memory with asynchronous copies."""
    data = _stream(200)
    host = UniformReplay(60, frame_shape=SHAPE, n_step_return=3, discount=GAMMA)
    device = DeviceReplay(60, device=torch.device("cuda"), on_device=on_device,
                          frame_shape=SHAPE, n_step_return=3, discount=GAMMA)
    for t in range(200):
        step = (data["frames"][t], data["actions"][t], data["rewards"][t], data["dones"][t])
        host.append(*step)
        device.append(*step)
    valid = host.valid_idxs()
    got, want = device.batch_at(torch.from_numpy(valid)), host.batch_at(valid)
    assert got.observation.is_cuda
    for name in ("observation", "target_observation", "action", "return_", "done_n"):
        assert torch.equal(getattr(got, name).cpu(), getattr(want, name)), name


def test_pending_reports_settle_in_update_order_and_nan_is_caught() -> None:
    """What the runner does at a log point: one read-back of every update's report, in order,
    then the finiteness check before any snapshot."""
    window, iteration = OptStats(), OptStats()
    iteration.pending = [torch.tensor([0.5, 2.0, 0.1, 0.2]), torch.tensor([0.25, 3.0, 0.3, 0.4])]
    window.extend(iteration)
    window.extend(OptStats(pending=[torch.tensor([float("nan"), 1.0, 0.5, 0.6])]))
    engine = SimpleNamespace(update_counter=3, learning_rate=1.0)
    check_finite(window, 0, engine)  # nothing on the host yet: nothing to check
    window.settle()
    assert window.pending == [] and window.grad_norms == [2.0, 3.0, 1.0]
    assert window.losses[:2] == [0.5, 0.25] and window.td_abs_errs[:4] == pytest.approx(
        [0.1, 0.2, 0.3, 0.4])
    with pytest.raises(TrainingDivergedError, match="loss nan by itr 7"):
        check_finite(window, 7, engine)
