"""The CUDA path's parts, checked on the CPU where their code runs there.

The update a CUDA graph captures (``StaticUpdate.step``) is run eagerly here and must land on
the parameters, losses and priorities of ``DqnLearner.update`` from the same weights and
minibatches; the device replay, built on the CPU, must give the numpy replay's batches for the
same slots. What only a GPU can run (the capture itself, pinned memory) skips without one.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from test_dqn import B, LR, make_batch, models
from warmstart.engine.dqn import DqnLearner, make_optimizer
from warmstart.engine.static_update import WARMUP_UPDATES, StaticUpdate


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
