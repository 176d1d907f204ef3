"""AtariDqnModel: rlpyt's keys, shapes and forward pass, against plain functional ops."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from warmstart.engine.model import AtariDqnModel


def _reference_q(sd: dict[str, torch.Tensor], obs: torch.Tensor) -> torch.Tensor:
    x = obs.float() / 255
    x = F.relu(F.conv2d(x, sd["conv.conv.0.weight"], sd["conv.conv.0.bias"], stride=4))
    x = F.relu(F.conv2d(x, sd["conv.conv.2.weight"], sd["conv.conv.2.bias"], stride=2, padding=1))
    x = F.relu(F.conv2d(x, sd["conv.conv.4.weight"], sd["conv.conv.4.bias"], stride=1, padding=1))
    x = x.flatten(1)
    assert x.shape[1] == 6912
    if "head.advantage_bias" not in sd:
        h = F.relu(F.linear(x, sd["head.model.0.weight"], sd["head.model.0.bias"]))
        return F.linear(h, sd["head.model.2.weight"], sd["head.model.2.bias"])
    a = F.relu(F.linear(x, sd["head.advantage_hidden.model.0.weight"],
                        sd["head.advantage_hidden.model.0.bias"]))
    a = F.linear(a, sd["head.advantage_out.weight"]) + sd["head.advantage_bias"]
    v = F.relu(F.linear(x, sd["head.value.model.0.weight"], sd["head.value.model.0.bias"]))
    v = F.linear(v, sd["head.value.model.2.weight"], sd["head.value.model.2.bias"])
    return v + a - a.mean(-1, keepdim=True)


def test_fixture_loads_strictly_and_forward_matches(rlpyt_snapshot: Path) -> None:
    sd = torch.load(rlpyt_snapshot, weights_only=True)["agent_state_dict"]["model"]
    model = AtariDqnModel(6)
    model.load_state_dict(sd, strict=True)
    assert list(model.state_dict()) == list(sd)
    assert sum(p.numel() for p in model.parameters()) == 3_620_518
    obs = torch.randint(0, 256, (5, 4, 104, 80), dtype=torch.uint8)
    torch.testing.assert_close(model(obs), _reference_q(sd, obs), rtol=1e-5, atol=1e-5)
    assert model(obs[0]).shape == (6,) and model(obs.view(1, 5, 4, 104, 80)).shape == (1, 5, 6)


def test_dueling_keys_and_forward() -> None:
    torch.manual_seed(0)
    model = AtariDqnModel(4, dueling=True)
    sd = model.state_dict()
    assert list(sd) == [
        "conv.conv.0.weight", "conv.conv.0.bias", "conv.conv.2.weight", "conv.conv.2.bias",
        "conv.conv.4.weight", "conv.conv.4.bias", "head.advantage_bias",
        "head.advantage_hidden.model.0.weight", "head.advantage_hidden.model.0.bias",
        "head.advantage_out.weight", "head.value.model.0.weight", "head.value.model.0.bias",
        "head.value.model.2.weight", "head.value.model.2.bias"]
    obs = torch.randint(0, 256, (3, 4, 104, 80), dtype=torch.uint8)
    torch.testing.assert_close(model(obs), _reference_q(sd, obs), rtol=1e-5, atol=1e-5)


def test_dueling_head_scales_its_input_gradient() -> None:
    """rlpyt scales the gradient entering the dueling head by 2**-0.5."""
    torch.manual_seed(0)
    model = AtariDqnModel(4, dueling=True)
    features = torch.randn(2, 6912, requires_grad=True)
    model.head(features).sum().backward()
    scaled = features.grad.clone()
    features.grad = None
    head = model.head
    a = head.advantage_out(head.advantage_hidden(features)) + head.advantage_bias
    (head.value(features) + a - a.mean(-1, keepdim=True)).sum().backward()
    torch.testing.assert_close(scaled, features.grad * 2 ** -0.5)


@pytest.mark.parametrize("dueling", [False, True])
def test_rlpyt_model_agrees(dueling: bool) -> None:
    rlpyt_model = pytest.importorskip(
        "rlpyt.models.dqn.atari_dqn_model", reason="rlpyt is not importable here")
    theirs = rlpyt_model.AtariDqnModel((4, 104, 80), 6, dueling=dueling)
    ours = AtariDqnModel(6, dueling=dueling)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    obs = torch.randint(0, 256, (3, 4, 104, 80), dtype=torch.uint8)
    torch.testing.assert_close(ours(obs), theirs(obs, None, None))
