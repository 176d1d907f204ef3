"""AtariDqnModel against rlpyt's layout and a functional reference written out here.

The reference uses only ``torch.nn.functional`` ops on the state dict's tensors, in rlpyt's
order of operations, so agreement is exact (bit for bit), not approximate.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from warmstart.engine.agents.model import AtariDqnModel, state_dict_signature

PONG_PARAMETERS = 3_620_518

PLAIN_LAYOUT = [
    ("conv.conv.0.weight", (32, 4, 8, 8)), ("conv.conv.0.bias", (32,)),
    ("conv.conv.2.weight", (64, 32, 4, 4)), ("conv.conv.2.bias", (64,)),
    ("conv.conv.4.weight", (64, 64, 3, 3)), ("conv.conv.4.bias", (64,)),
    ("head.model.0.weight", (512, 6912)), ("head.model.0.bias", (512,)),
    ("head.model.2.weight", (6, 512)), ("head.model.2.bias", (6,)),
]
DUELING_LAYOUT = PLAIN_LAYOUT[:6] + [
    ("head.advantage_bias", (1,)),
    ("head.advantage_hidden.model.0.weight", (512, 6912)),
    ("head.advantage_hidden.model.0.bias", (512,)),
    ("head.advantage_out.weight", (4, 512)),
    ("head.value.model.0.weight", (512, 6912)), ("head.value.model.0.bias", (512,)),
    ("head.value.model.2.weight", (1, 512)), ("head.value.model.2.bias", (1,)),
]


@pytest.fixture
def pong_state_dict(rlpyt_snapshot: Path) -> OrderedDict[str, torch.Tensor]:
    """The online model of a real rlpyt pong snapshot (example 1, 10k steps)."""
    return torch.load(rlpyt_snapshot, weights_only=True)["agent_state_dict"]["model"]


def reference_q(sd: dict[str, torch.Tensor], obs: torch.Tensor,
                head_input_hook=None) -> torch.Tensor:
    """rlpyt's AtariDqnModel forward for a [B, 4, 104, 80] uint8 batch, in functional ops."""
    x = obs.float() * (1.0 / 255)
    x = F.relu(F.conv2d(x, sd["conv.conv.0.weight"], sd["conv.conv.0.bias"], stride=4))
    x = F.relu(F.conv2d(x, sd["conv.conv.2.weight"], sd["conv.conv.2.bias"], stride=2, padding=1))
    x = F.relu(F.conv2d(x, sd["conv.conv.4.weight"], sd["conv.conv.4.bias"], stride=1, padding=1))
    x = x.reshape(x.shape[0], -1)
    assert x.shape[1] == 6912
    if head_input_hook is not None:
        x.register_hook(head_input_hook)
    if "head.advantage_bias" not in sd:
        h = F.relu(F.linear(x, sd["head.model.0.weight"], sd["head.model.0.bias"]))
        return F.linear(h, sd["head.model.2.weight"], sd["head.model.2.bias"])
    a = F.relu(F.linear(x, sd["head.advantage_hidden.model.0.weight"],
                        sd["head.advantage_hidden.model.0.bias"]))
    a = F.linear(a, sd["head.advantage_out.weight"]) + sd["head.advantage_bias"]
    v = F.relu(F.linear(x, sd["head.value.model.0.weight"], sd["head.value.model.0.bias"]))
    v = F.linear(v, sd["head.value.model.2.weight"], sd["head.value.model.2.bias"])
    return v + (a - a.mean(dim=-1, keepdim=True))


def random_obs(*lead: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (*lead, 4, 104, 80), dtype=torch.uint8, generator=g)


def test_fixture_loads_strictly_with_rlpyt_layout(pong_state_dict) -> None:
    model = AtariDqnModel(6)
    model.load_state_dict(pong_state_dict, strict=True)
    ours = model.state_dict()
    assert list(ours) == list(pong_state_dict) == [k for k, _ in PLAIN_LAYOUT]
    for key, tensor in pong_state_dict.items():
        assert ours[key].shape == tensor.shape and ours[key].dtype == tensor.dtype == torch.float32
    assert sum(p.numel() for p in model.parameters()) == PONG_PARAMETERS
    assert [n for n, _ in model.named_parameters()] == list(pong_state_dict)  # Adam's order


def test_fixture_forward_matches_functional_reference(pong_state_dict) -> None:
    model = AtariDqnModel(6)
    model.load_state_dict(pong_state_dict)
    obs = random_obs(5)
    with torch.no_grad():
        q = model(obs)
        assert q.dtype == torch.float32 and q.shape == (5, 6)
        assert torch.equal(q, reference_q(pong_state_dict, obs))
        # rlpyt's leading dims: [], [B] and [T, B] all come back as they went in (a batch of
        # one may take another kernel path, so the single frame is compared with a tolerance).
        torch.testing.assert_close(model(obs[2]), q[2], rtol=1e-5, atol=1e-6)
        assert torch.equal(model(obs.view(1, 5, 4, 104, 80)), q.view(1, 5, 6))


def test_plain_parameter_count_and_layout() -> None:
    model = AtariDqnModel(6)
    assert [(k, tuple(v.shape)) for k, v in model.state_dict().items()] == PLAIN_LAYOUT
    assert sum(p.numel() for p in model.parameters()) == PONG_PARAMETERS


def test_dueling_layout_and_forward() -> None:
    torch.manual_seed(0)
    model = AtariDqnModel(4, dueling=True)
    sd = model.state_dict()
    assert [(k, tuple(v.shape)) for k, v in sd.items()] == DUELING_LAYOUT
    assert torch.equal(sd["head.advantage_bias"], torch.zeros(1))
    with torch.no_grad():
        model.head.advantage_bias.fill_(0.25)  # so the shared bias is exercised
    obs = random_obs(3, seed=1)
    with torch.no_grad():
        assert torch.equal(model(obs), reference_q(model.state_dict(), obs))


@pytest.mark.parametrize(("dueling", "scale"), [(False, 1.0), (True, 2 ** -0.5)])
def test_gradient_into_head_is_scaled_only_for_dueling(dueling: bool, scale: float) -> None:
    """rlpyt scales the gradient where the dueling head takes the conv features, by 2^-1/2:
    the conv layers see it, the head's own parameters do not."""
    torch.manual_seed(0)
    model = AtariDqnModel(4, dueling=dueling)
    obs = random_obs(2, seed=2)
    model(obs).square().sum().backward()
    params = dict(model.named_parameters())
    reference = {k: v.detach().clone().requires_grad_() for k, v in params.items()}
    reference_q(reference, obs, head_input_hook=lambda g: g * scale).square().sum().backward()
    for key, param in params.items():
        assert torch.equal(param.grad, reference[key].grad), key
    if dueling:  # not vacuous: unscaled, the conv gradients would differ
        unscaled = {k: v.detach().clone().requires_grad_() for k, v in params.items()}
        reference_q(unscaled, obs).square().sum().backward()
        torch.testing.assert_close(params["conv.conv.0.weight"].grad,
                                   unscaled["conv.conv.0.weight"].grad * scale)
        assert not torch.equal(params["conv.conv.0.weight"].grad,
                               unscaled["conv.conv.0.weight"].grad)


@pytest.mark.parametrize("dueling", [False, True])
def test_initialisation_is_torch_default_in_rlpyt_order(dueling: bool) -> None:
    """rlpyt adds no init of its own; layers built in its order draw the same weights."""
    torch.manual_seed(7)
    model = AtariDqnModel(6, dueling=dueling)
    torch.manual_seed(7)
    convs = [torch.nn.Conv2d(4, 32, 8, 4), torch.nn.Conv2d(32, 64, 4, 2, 1),
             torch.nn.Conv2d(64, 64, 3, 1, 1)]
    if dueling:
        adv_hidden, adv_out = torch.nn.Linear(6912, 512), torch.nn.Linear(512, 6, bias=False)
        value = [torch.nn.Linear(6912, 512), torch.nn.Linear(512, 1)]
        head = [torch.zeros(1), adv_hidden.weight, adv_hidden.bias, adv_out.weight,
                value[0].weight, value[0].bias, value[1].weight, value[1].bias]
    else:
        linears = [torch.nn.Linear(6912, 512), torch.nn.Linear(512, 6)]
        head = [t for layer in linears for t in (layer.weight, layer.bias)]
    want = [t for c in convs for t in (c.weight, c.bias)] + head
    got = list(model.state_dict().values())
    assert len(got) == len(want)
    for ours, theirs in zip(got, want, strict=True):
        assert torch.equal(ours, theirs)


def test_channels_last_gives_the_same_q_values() -> None:
    torch.manual_seed(0)
    model = AtariDqnModel(6)
    obs = random_obs(4, seed=3)
    with torch.no_grad():
        want = model(obs)
        model.to(memory_format=torch.channels_last)
        torch.testing.assert_close(model(obs), want, rtol=1e-5, atol=1e-6)


def test_signature_of_fixture(pong_state_dict) -> None:
    assert state_dict_signature(pong_state_dict) == (6, False)


def test_signature_of_models() -> None:
    assert state_dict_signature(AtariDqnModel(4, dueling=True).state_dict()) == (4, True)
    assert state_dict_signature(AtariDqnModel(18).state_dict()) == (18, False)


def test_signature_leaves_the_global_rng_alone() -> None:
    sd = AtariDqnModel(6).state_dict()
    before = torch.random.get_rng_state()
    state_dict_signature(sd)
    assert torch.equal(torch.random.get_rng_state(), before)


def _broken(edit) -> dict[str, torch.Tensor]:
    sd = dict(AtariDqnModel(6).state_dict())
    edit(sd)
    return sd


@pytest.mark.parametrize(("edit", "message"), [
    (lambda sd: sd.pop("conv.conv.2.bias"), "missing key 'conv.conv.2.bias'"),
    (lambda sd: sd.pop("head.model.2.weight"), "missing key 'head.model.2.weight'"),
    (lambda sd: sd.update(extra=torch.zeros(1)), "unexpected key 'extra'"),
    (lambda sd: sd.update({"head.model.0.weight": torch.zeros(512, 100)}),
     r"'head.model.0.weight' has shape \(512, 100\), expected \(512, 6912\)"),
    (lambda sd: sd.update({"head.model.2.weight": torch.zeros(6)}),
     r"'head.model.2.weight' has shape \(6,\)"),
    (lambda sd: sd.update({"conv.conv.0.weight": "not a tensor"}),
     "'conv.conv.0.weight' has shape str"),
    (lambda sd: sd.update({"head.advantage_bias": torch.zeros(1)}),  # half a dueling head
     "missing key 'head.advantage_out.weight'"),
])
def test_signature_refuses_broken_state_dicts(edit, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        state_dict_signature(_broken(edit))


def test_signature_refuses_a_foreign_model() -> None:
    with pytest.raises(ValueError, match="missing key"):
        state_dict_signature({"pi.weight": torch.zeros(2)})


@pytest.mark.parametrize("dueling", [False, True])
def test_rlpyt_model_agrees(dueling: bool) -> None:
    """Where rlpyt is importable: same initial weights under one seed, same Q and gradients."""
    rlpyt_model = pytest.importorskip("rlpyt.models.dqn.atari_dqn_model",
                                      reason="rlpyt is not importable here")
    torch.manual_seed(3)
    theirs = rlpyt_model.AtariDqnModel((4, 104, 80), 6, dueling=dueling)
    torch.manual_seed(3)
    ours = AtariDqnModel(6, dueling=dueling)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for key, tensor in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[key], tensor), key
    obs = random_obs(2, 3, seed=4)
    q_ours, q_theirs = ours(obs), theirs(obs, None, None)
    assert torch.equal(q_ours, q_theirs)
    q_ours.square().sum().backward()
    q_theirs.square().sum().backward()
    for (name, p_ours), p_theirs in zip(ours.named_parameters(), theirs.parameters(), strict=True):
        assert torch.equal(p_ours.grad, p_theirs.grad), name
