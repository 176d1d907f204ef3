"""DqnLearner.update against rlpyt's DQN update, written out here in plain torch ops."""

from __future__ import annotations

import copy
from types import SimpleNamespace
from typing import NamedTuple

import numpy as np
import pytest
import torch
from warmstart.config import updates_per_iteration
from warmstart.engine.agents.model import AtariDqnModel
from warmstart.engine.algos.dqn import (
    DqnLearner,
    UpdateInfo,
    load_optimizer_state,
    make_optimizer,
)
from warmstart.engine.replays.batch import ReplayBatch

B = 32
LR = 2.5e-4


def make_batch(n_actions: int = 6, *, weights: bool = False, return_scale: float = 3.0,
               seed: int = 1) -> ReplayBatch:
    """Random frames of random brightness per row (so greedy actions vary from row to row);
    returns large enough that Huber's linear part and the priority clamp both act."""
    g = torch.Generator().manual_seed(seed)

    def frames() -> torch.Tensor:
        noise = torch.randint(0, 256, (B, 4, 104, 80), generator=g).float()
        return (noise * torch.rand(B, 1, 1, 1, generator=g)).to(torch.uint8)

    return ReplayBatch(
        observation=frames(),
        action=torch.randint(0, n_actions, (B,), generator=g),
        return_=torch.randn(B, generator=g) * return_scale,
        done_n=(torch.rand(B, generator=g) < 0.25).float(),
        target_observation=frames(),
        is_weights=torch.rand(B, generator=g) + 0.1 if weights else torch.ones(B),
        idxs=np.arange(B))


def models(dueling: bool = False, seed: int = 1) -> tuple[AtariDqnModel, AtariDqnModel]:
    """Online and target with different weights, as rlpyt builds them (the target is its own init)."""
    torch.manual_seed(seed)
    return AtariDqnModel(6, dueling), AtariDqnModel(6, dueling)


def reference_update(model, target, batch, *, gamma_n, double, delta_clip, weighted,
                     clip=10.0):
    """One rlpyt DQN step on copies: target, Huber/squared loss, weights, norm clip, Adam."""
    online, target = copy.deepcopy(model), copy.deepcopy(target)
    rows = torch.arange(B)
    q = online(batch.observation)[rows, batch.action]
    with torch.no_grad():
        target_qs = target(batch.target_observation)
        chooser = online if double else target
        next_a = chooser(batch.target_observation).argmax(dim=-1)
        next_q = target_qs[rows, next_a]
    y = batch.return_ + (1 - batch.done_n) * (gamma_n * next_q)
    err = y - q
    if delta_clip is None:
        losses = 0.5 * err ** 2
    else:
        quadratic = err.abs() <= delta_clip
        losses = torch.where(quadratic, 0.5 * err ** 2, delta_clip * (err.abs() - delta_clip / 2))
    if weighted:
        losses = losses * batch.is_weights
    loss = losses.mean()
    params = list(online.parameters())
    grads = torch.autograd.grad(loss, params)
    # The 2-norm over all parameters, accumulated in float32 as rlpyt's clip_grad_norm_ does
    # (float32 and float64 sums differ by ~1e-4 relative over 3.6M gradients).
    norm = torch.stack([g.norm() for g in grads]).norm().item()
    coef = min(1.0, clip / (norm + 1e-6))
    for p, g in zip(params, grads, strict=True):
        p.grad = g * coef
    torch.optim.Adam(params, lr=LR, eps=0.01 / B).step()
    raw = err.detach().abs()
    priorities = raw if delta_clip is None else raw.clamp(max=delta_clip)
    return SimpleNamespace(model=online, loss=loss.item(), norm=norm, raw_err=raw,
                           priorities=priorities, next_a=next_a,
                           greedy_target=target_qs.argmax(dim=-1))


class Case(NamedTuple):
    double: bool
    n_step: int
    prioritized: bool
    delta_clip: float | None
    dueling: bool


CASES = {
    "plain": Case(double=False, n_step=1, prioritized=False, delta_clip=1.0, dueling=False),
    "double": Case(double=True, n_step=1, prioritized=False, delta_clip=1.0, dueling=False),
    "n_step_3": Case(double=False, n_step=3, prioritized=False, delta_clip=1.0, dueling=False),
    "prioritized": Case(double=False, n_step=1, prioritized=True, delta_clip=1.0, dueling=False),
    "squared_error": Case(double=False, n_step=1, prioritized=False, delta_clip=None,
                          dueling=False),
    "dueling_double_3_prioritized": Case(double=True, n_step=3, prioritized=True,
                                         delta_clip=1.0, dueling=True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_update_matches_reference(case: str) -> None:
    c = CASES[case]
    model, target = models(c.dueling)
    batch = make_batch(weights=c.prioritized)
    want = reference_update(model, target, batch, gamma_n=0.99 ** c.n_step,
                            double=c.double, delta_clip=c.delta_clip,
                            weighted=c.prioritized)
    # The batch exercises what the case is about (else the comparison proves little).
    assert batch.done_n.any() and (want.raw_err > 1).any() and (want.raw_err < 1).any()
    if c.double:
        assert (want.next_a != want.greedy_target).any()
    if c.prioritized:
        assert not torch.all(batch.is_weights == 1)

    learner = DqnLearner(model, target, make_optimizer(model, LR, B),
                         n_step_return=c.n_step, double_dqn=c.double,
                         delta_clip=c.delta_clip, prioritized_replay=c.prioritized)
    target_before = copy.deepcopy(target.state_dict())
    info = learner.update(batch)

    assert isinstance(info, UpdateInfo) and isinstance(info.loss, float)
    assert isinstance(info.grad_norm, float)
    assert info.td_abs_err.dtype == np.float32 and info.td_abs_err.shape == (B,)
    for (name, ours), theirs in zip(model.named_parameters(), want.model.parameters(),
                                    strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6, msg=name)
        # Adam's first step is nearly lr * sign(grad), so the gradients are compared as well.
        torch.testing.assert_close(ours.grad, theirs.grad, rtol=1e-5, atol=1e-9, msg=name)
    assert info.loss == pytest.approx(want.loss, rel=1e-6)
    assert info.grad_norm == pytest.approx(want.norm, rel=1e-6)
    np.testing.assert_allclose(info.td_abs_err, want.priorities.numpy(), rtol=1e-6, atol=1e-6)
    if c.delta_clip is None:
        assert info.td_abs_err.max() > 1  # no clamp without delta_clip
    else:
        assert info.td_abs_err.max() == c.delta_clip
    assert learner.update_counter == 1
    for key, tensor in target.state_dict().items():  # no copy at the first update
        assert torch.equal(tensor, target_before[key])


def test_prioritized_loss_is_the_plain_mean_of_weighted_losses() -> None:
    """rlpyt multiplies by the weights and takes the mean; it does not divide by their sum."""
    model, target = models()
    batch = make_batch(weights=True)
    weighted = DqnLearner(model, target, make_optimizer(model, LR, B), prioritized_replay=True)
    uniform = DqnLearner(model, target, make_optimizer(model, LR, B))
    with torch.no_grad():
        loss_w, err_w = weighted.loss(batch)
        loss_u, err_u = uniform.loss(batch)
    assert torch.equal(err_w, err_u)  # priorities are not weighted
    assert loss_w.item() != pytest.approx(loss_u.item(), rel=1e-3)


def _weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [t.clone() for t in model.state_dict().values()]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_target_copied_when_the_incremented_counter_hits_the_interval() -> None:
    model, target = models()
    learner = DqnLearner(model, target, make_optimizer(model, LR, B), target_update_interval=3)
    batch = make_batch()
    initial_target = _weights(target)
    learner.update(batch)  # counter 0 -> 1: no copy at update 0
    learner.update(batch)  # 2
    assert _same(_weights(target), initial_target)
    learner.update(batch)  # 3: copy
    assert learner.update_counter == 3
    assert _same(_weights(target), _weights(model))
    copied = _weights(target)
    learner.update(batch)  # 4: the model moves on, the target stays
    assert _same(_weights(target), copied) and not _same(copied, _weights(model))


def test_update_counter_continues_across_a_warm_start() -> None:
    model, target = models()
    learner = DqnLearner(model, target, make_optimizer(model, LR, B), target_update_interval=3,
                         update_counter=10)
    batch = make_batch()
    initial_target = _weights(target)
    learner.update(batch)  # 11
    assert _same(_weights(target), initial_target)
    learner.update(batch)  # 12: copy
    assert learner.update_counter == 12
    assert _same(_weights(target), _weights(model))


def test_interval_one_copies_at_the_first_update() -> None:
    model, target = models()
    learner = DqnLearner(model, target, make_optimizer(model, LR, B), target_update_interval=1)
    learner.update(make_batch())
    assert _same(_weights(target), _weights(model))


@pytest.mark.parametrize("clip", [10.0, 1e9])
def test_gradient_norm_is_clipped(clip: float) -> None:
    """With SGD at lr 1 the step is the (clipped) gradient itself, so its norm shows the clip."""
    model, target = models()
    before = [p.detach().clone() for p in model.parameters()]
    learner = DqnLearner(model, target, torch.optim.SGD(model.parameters(), lr=1.0),
                         delta_clip=None, clip_grad_norm=clip)
    info = learner.update(make_batch(return_scale=100.0))
    step = torch.sqrt(sum(((p.detach() - b).double() ** 2).sum()
                          for p, b in zip(model.parameters(), before, strict=True))).item()
    assert info.grad_norm > 10  # reported before clipping, as rlpyt logs it
    assert step == pytest.approx(min(clip, info.grad_norm), rel=1e-4)


def test_optimizer_is_rlpyts_default_adam() -> None:
    model = AtariDqnModel(6)
    opt = make_optimizer(model, LR, 32)
    (group,) = opt.param_groups
    assert isinstance(opt, torch.optim.Adam)
    assert group["eps"] == 0.01 / 32 and group["lr"] == LR and group["betas"] == (0.9, 0.999)
    assert all(a is b for a, b in zip(group["params"], model.parameters(), strict=True))


def test_multi_tensor_adam_steps_bit_identically_to_torchs_cpu_default() -> None:
    """The speed-up keeps what is learned: every parameter equal after several real steps."""
    ours_model = AtariDqnModel(6)
    default_model = copy.deepcopy(ours_model)
    ours = make_optimizer(ours_model, LR, B)
    default = torch.optim.Adam(default_model.parameters(), lr=LR, eps=0.01 / B)  # as rlpyt
    batch = make_batch(weights=False)
    for _ in range(3):
        for model, opt in ((ours_model, ours), (default_model, default)):
            opt.zero_grad()
            model(batch.observation).pow(2).mean().backward()
            opt.step()
    assert ours.param_groups[0]["foreach"] and not default.param_groups[0]["foreach"]
    for a, b in zip(ours_model.parameters(), default_model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_loading_an_rlpyt_optimizer_state_keeps_the_multi_tensor_step() -> None:
    model = AtariDqnModel(6)
    rlpyts = torch.optim.Adam(model.parameters(), lr=1e-4, eps=0.01 / B)  # foreach=None
    ours = make_optimizer(model, LR, B)
    load_optimizer_state(ours, rlpyts.state_dict())
    assert ours.param_groups[0]["foreach"] is True and ours.param_groups[0]["lr"] == 1e-4


def test_updates_per_iteration() -> None:
    assert updates_per_iteration(8, 4, 32) == 1  # example 1: rounds 1.0
    assert updates_per_iteration(8, 16, 32) == 4
    assert updates_per_iteration(1, 4, 32) == 1  # rounds 0.125 to 0, then max(1, .)
    assert updates_per_iteration(4, 12, 32) == 2  # 1.5 rounds half to even
    assert updates_per_iteration(0.5, 64, 32) == 1


@pytest.fixture
def full_fp32_on_cuda():
    """cuDNN convolutions in TF32 (torch's default on Ampere and newer) round inputs to 10-bit
    mantissas: one Adam step then moves parameters up to ~1e-5 away from the CPU's (seen on an
    H200). The comparison below is of the update's logic, so the GPU computes in full fp32."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_update_on_cuda_takes_a_cpu_batch_and_matches_cpu(full_fp32_on_cuda: None) -> None:
    cpu_model, cpu_target = models()
    gpu_model, gpu_target = copy.deepcopy(cpu_model).cuda(), copy.deepcopy(cpu_target).cuda()
    cpu = DqnLearner(cpu_model, cpu_target, make_optimizer(cpu_model, LR, B), double_dqn=True)
    gpu = DqnLearner(gpu_model, gpu_target, make_optimizer(gpu_model, LR, B), double_dqn=True)
    batch = make_batch()
    a, b = cpu.update(batch), gpu.update(batch)
    assert a.loss == pytest.approx(b.loss, rel=1e-4)
    np.testing.assert_allclose(a.td_abs_err, b.td_abs_err, rtol=1e-4, atol=1e-5)
    for p, q in zip(cpu_model.parameters(), gpu_model.parameters(), strict=True):
        torch.testing.assert_close(p, q.cpu(), rtol=0, atol=1e-5)


class _OneBatchReplay:
    """Hands rlpyt's DQN the same minibatch each time; records the priorities it feeds back."""

    def __init__(self, samples) -> None:
        self.samples = samples
        self.priorities: list[torch.Tensor] = []

    def sample_batch(self, batch_size: int):
        assert batch_size == B
        return self.samples

    def update_batch_priorities(self, priorities: torch.Tensor) -> None:
        self.priorities.append(priorities.clone())

    def set_beta(self, beta: float) -> None:
        pass


@pytest.mark.parametrize("case", list(CASES))
def test_rlpyt_optimize_agent_agrees(case: str) -> None:
    """Where rlpyt is importable: three updates of rlpyt's own ``DQN.optimize_agent`` (target
    copied after the second) against three ``DqnLearner.update`` calls, bit for bit."""
    dqn = pytest.importorskip("rlpyt.algos.dqn.dqn", reason="rlpyt is not importable here")
    from rlpyt.agents.base import AgentInputs
    from rlpyt.agents.dqn.atari.atari_dqn_agent import AtariDqnAgent
    from rlpyt.replays.non_sequence.prioritized import SamplesFromReplayPri

    c = CASES[case]
    torch.manual_seed(0)
    agent = AtariDqnAgent(model_kwargs={"dueling": c.dueling})
    agent.initialize(SimpleNamespace(observation=SimpleNamespace(shape=(4, 104, 80)),
                                     action=SimpleNamespace(n=6)))
    ours, ours_target = AtariDqnModel(6, c.dueling), AtariDqnModel(6, c.dueling)
    ours.load_state_dict(agent.model.state_dict())
    ours_target.load_state_dict(agent.target_model.state_dict())

    batch = make_batch(weights=c.prioritized)
    zeros = torch.zeros(B)
    replay = _OneBatchReplay(SamplesFromReplayPri(
        agent_inputs=AgentInputs(batch.observation, zeros.long(), zeros),
        action=batch.action, return_=batch.return_, done=batch.done_n.bool(),
        done_n=batch.done_n.bool(),
        target_inputs=AgentInputs(batch.target_observation, zeros.long(), zeros),
        is_weights=batch.is_weights))
    algo = dqn.DQN(n_step_return=c.n_step, double_dqn=c.double,
                   delta_clip=c.delta_clip, prioritized_replay=c.prioritized,
                   target_update_interval=2, learning_rate=LR)
    algo.agent, algo.replay_buffer, algo.mid_batch_reset = agent, replay, True
    algo.sampler_bs, algo.min_itr_learn, algo.updates_per_optimize = 4, 0, 3
    algo.optim_initialize()
    opt_info = algo.optimize_agent(itr=0)

    learner = DqnLearner(ours, ours_target, make_optimizer(ours, LR, B),
                         n_step_return=c.n_step, double_dqn=c.double,
                         delta_clip=c.delta_clip, prioritized_replay=c.prioritized,
                         target_update_interval=2)
    infos = [learner.update(batch) for _ in range(3)]

    assert algo.update_counter == learner.update_counter == 3
    assert [i.loss for i in infos] == opt_info.loss
    assert [i.grad_norm for i in infos] == pytest.approx(opt_info.gradNorm, rel=1e-6)
    if c.prioritized:
        for info, theirs in zip(infos, replay.priorities, strict=True):
            assert np.array_equal(info.td_abs_err, theirs.numpy())
    for name, theirs in agent.model.state_dict().items():
        assert torch.equal(ours.state_dict()[name], theirs), name
    for name, theirs in agent.target_model.state_dict().items():
        assert torch.equal(ours_target.state_dict()[name], theirs), name
