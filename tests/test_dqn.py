"""One DQN update equals rlpyt's loss and optimizer step, written out independently here."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from warmstart.engine.batch import ReplayBatch
from warmstart.engine.dqn import DqnLearner, make_optimizer, updates_per_iteration
from warmstart.engine.model import AtariDqnModel


def _batch(n_actions: int, weights: bool) -> ReplayBatch:
    g = torch.Generator().manual_seed(1)
    b = 32
    return ReplayBatch(
        observation=torch.randint(0, 256, (b, 4, 104, 80), dtype=torch.uint8, generator=g),
        action=torch.randint(0, n_actions, (b,), generator=g),
        return_=torch.randn(b, generator=g) * 3,  # large enough that Huber's linear part acts
        done_n=(torch.rand(b, generator=g) < 0.2).float(),
        target_observation=torch.randint(0, 256, (b, 4, 104, 80), dtype=torch.uint8, generator=g),
        is_weights=(torch.rand(b, generator=g) + 0.1) if weights else torch.ones(b),
        idxs=np.arange(b))


def _reference_step(model, target, batch, *, gamma_n, double, delta_clip, weighted, lr):
    """rlpyt's DQN.loss + optimize_agent, as plain torch on copies."""
    model, target = copy.deepcopy(model), copy.deepcopy(target)
    opt = torch.optim.Adam(model.parameters(), lr=lr, eps=0.01 / 32)
    q = model(batch.observation)[torch.arange(32), batch.action]
    with torch.no_grad():
        tq = target(batch.target_observation)
        if double:
            a = model(batch.target_observation).argmax(-1)
            next_q = tq[torch.arange(32), a]
        else:
            next_q = tq.max(-1).values
        y = batch.return_ + (1 - batch.done_n) * gamma_n * next_q
    d = y - q
    losses = 0.5 * d ** 2
    if delta_clip is not None:
        losses = torch.where(d.abs() <= delta_clip, losses,
                             delta_clip * (d.abs() - delta_clip / 2))
    if weighted:
        losses = losses * batch.is_weights
    losses.mean().backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
    opt.step()
    err = d.detach().abs()
    return model, float(norm), err.clamp(0, delta_clip) if delta_clip is not None else err


@pytest.mark.parametrize(("double", "n_step", "prioritized", "delta_clip", "dueling"), [
    (False, 1, False, 1.0, False),
    (True, 1, False, 1.0, False),
    (False, 3, False, 1.0, False),
    (True, 3, True, 1.0, True),
    (False, 1, False, None, False),
])
def test_update_matches_reference(double, n_step, prioritized, delta_clip, dueling) -> None:
    torch.manual_seed(0)
    model, target = AtariDqnModel(6, dueling), AtariDqnModel(6, dueling)
    batch = _batch(6, prioritized)
    want, want_norm, want_err = _reference_step(
        model, target, batch, gamma_n=0.99 ** n_step, double=double, delta_clip=delta_clip,
        weighted=prioritized, lr=2.5e-4)
    learner = DqnLearner(model, target, make_optimizer(model, 2.5e-4, 32), n_step_return=n_step,
                         double_dqn=double, delta_clip=delta_clip,
                         prioritized_replay=prioritized)
    info = learner.update(batch)
    for ours, theirs in zip(model.parameters(), want.parameters(), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)
    assert info.grad_norm == pytest.approx(want_norm, rel=1e-5)
    np.testing.assert_allclose(info.td_abs_err, want_err.numpy(), rtol=1e-5, atol=1e-6)
    if delta_clip is not None:
        assert info.td_abs_err.max() <= delta_clip


def test_target_copied_every_interval_and_counter_continues() -> None:
    torch.manual_seed(0)
    model, target = AtariDqnModel(6), AtariDqnModel(6)
    learner = DqnLearner(model, target, make_optimizer(model, 1e-3, 32),
                         target_update_interval=3, update_counter=10)
    batch = _batch(6, False)
    learner.update(batch)  # counter 11
    assert not torch.equal(target.head.model[2].weight, model.head.model[2].weight)
    learner.update(batch)  # counter 12: 12 % 3 == 0 -> copy
    assert torch.equal(target.head.model[2].weight, model.head.model[2].weight)
    assert learner.update_counter == 12


def test_optimizer_and_update_rate_follow_rlpyt() -> None:
    opt = make_optimizer(AtariDqnModel(6), 2.5e-4, 32)
    assert opt.param_groups[0]["eps"] == pytest.approx(0.01 / 32)
    assert updates_per_iteration(8, 4, 32) == 1
    assert updates_per_iteration(8, 16, 32) == 4
    assert updates_per_iteration(1, 4, 32) == 1


@pytest.mark.parametrize(("double", "n_step", "prioritized", "dueling"), [
    (False, 1, False, False), (True, 1, False, False), (False, 3, False, False),
    (True, 3, True, True)])
def test_rlpyt_dqn_update_agrees(double, n_step, prioritized, dueling) -> None:
    """Where rlpyt is installed: rlpyt's own DQN.loss drives the reference update."""
    dqn = pytest.importorskip("rlpyt.algos.dqn.dqn", reason="rlpyt is not importable here")
    from types import SimpleNamespace

    from rlpyt.agents.base import AgentInputs
    from rlpyt.agents.dqn.atari.atari_dqn_agent import AtariDqnAgent
    from rlpyt.envs.atari.atari_env import AtariEnv as RlpytAtariEnv
    from rlpyt.replays.non_sequence.prioritized import SamplesFromReplayPri

    torch.manual_seed(0)
    agent = AtariDqnAgent(model_kwargs={"dueling": dueling})
    agent.initialize(RlpytAtariEnv(game="pong").spaces)
    ours, ours_target = AtariDqnModel(6, dueling), AtariDqnModel(6, dueling)
    ours.load_state_dict(agent.model.state_dict())
    ours_target.load_state_dict(agent.target_model.state_dict())
    batch = _batch(6, prioritized)
    zeros = torch.zeros(32)
    samples = SamplesFromReplayPri(
        agent_inputs=AgentInputs(batch.observation, zeros.long(), zeros),
        action=batch.action, return_=batch.return_, done=batch.done_n, done_n=batch.done_n,
        target_inputs=AgentInputs(batch.target_observation, zeros.long(), zeros),
        is_weights=batch.is_weights)
    algo = SimpleNamespace(agent=agent, discount=0.99, n_step_return=n_step, double_dqn=double,
                           delta_clip=1.0, prioritized_replay=prioritized, mid_batch_reset=True)
    optimizer = torch.optim.Adam(agent.parameters(), lr=2.5e-4, eps=0.01 / 32)
    loss, td_abs_errors = dqn.DQN.loss(algo, samples)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(agent.parameters(), 10.0)
    optimizer.step()

    learner = DqnLearner(ours, ours_target, make_optimizer(ours, 2.5e-4, 32),
                         n_step_return=n_step, double_dqn=double, prioritized_replay=prioritized)
    info = learner.update(batch)
    assert info.loss == pytest.approx(loss.item(), rel=1e-5)
    np.testing.assert_allclose(info.td_abs_err, td_abs_errors.numpy(), rtol=1e-5, atol=1e-6)
    for name, theirs in agent.model.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[name], theirs, rtol=1e-6, atol=1e-6)
