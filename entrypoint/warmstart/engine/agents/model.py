"""rlpyt's ``AtariDqnModel``, rebuilt: the same modules, state-dict keys, shapes and forward pass.

The state dict is the contract with rlpyt (a snapshot's keys are its API, and Adam's state is
matched to parameters by position), so attribute names and registration order mirror rlpyt's:
``conv.conv.{0,2,4}`` and ``head.model.{0,2}``, or the dueling head's ``advantage_bias``,
``advantage_hidden``, ``advantage_out`` and ``value``. Layers are created in rlpyt's order and
keep torch's default initialisation (rlpyt adds none), so one seed gives rlpyt's initial weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

FRAMES, HEIGHT, WIDTH = 4, 104, 80
CHANNELS = (32, 64, 64)
KERNELS = (8, 4, 3)
STRIDES = (4, 2, 1)
PADDINGS = (0, 1, 1)
HIDDEN = 512
CONV_OUT = 64 * 12 * 9  # 104x80 -> 25x19 -> 12x9 -> 12x9
DUELING_GRAD_SCALE = 2 ** (-1 / 2)


class _ScaleGrad(torch.autograd.Function):
    """Identity on the way forward, gradient times ``scale`` on the way back.

    rlpyt's dueling head applies it to its own input, so the conv stack receives the sum of the
    value and advantage streams' gradients scaled by 2^-1/2 (the dueling paper's rescaling).
    """

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return tensor

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.scale, None


class _ConvStack(nn.Module):
    """Three Conv2d+ReLU; the ``conv`` Sequential gives rlpyt's ``conv.conv.{0,2,4}`` keys."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = FRAMES
        for out_channels, kernel, stride, padding in zip(CHANNELS, KERNELS, STRIDES, PADDINGS,
                                                         strict=True):
            layers += [nn.Conv2d(in_channels, out_channels, kernel, stride, padding), nn.ReLU()]
            in_channels = out_channels
        self.conv = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.conv(images)


class _Mlp(nn.Module):
    """rlpyt's ``MlpModel`` with one hidden layer: Linear+ReLU, then the output Linear if any."""

    def __init__(self, inputs: int, outputs: int | None) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(inputs, HIDDEN), nn.ReLU()]
        if outputs is not None:
            layers.append(nn.Linear(HIDDEN, outputs))
        self.model = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.model(features)


class _DuelingHead(nn.Module):
    """Q = V + (A - mean A), where A's output layer has no bias but one bias shared by all actions."""

    def __init__(self, inputs: int, n_actions: int) -> None:
        super().__init__()
        # rlpyt's construction order, so the same seed draws the same initial weights.
        self.advantage_hidden = _Mlp(inputs, None)
        self.advantage_out = nn.Linear(HIDDEN, n_actions, bias=False)
        self.advantage_bias = nn.Parameter(torch.zeros(1))
        self.value = _Mlp(inputs, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        features = _ScaleGrad.apply(features, DUELING_GRAD_SCALE)
        advantage = self.advantage_out(self.advantage_hidden(features)) + self.advantage_bias
        return self.value(features) + (advantage - advantage.mean(dim=-1, keepdim=True))


class AtariDqnModel(nn.Module):
    """Q-values from uint8 frame stacks ``[..., 4, 104, 80]``; the leading dims are kept.

    rlpyt's forward takes ``(observation, prev_action, prev_reward)`` and ignores the last two;
    this one takes the observation only. Moving the model to ``torch.channels_last`` works (the
    flatten before the head is a reshape, not a view) but is not bit-identical to rlpyt's
    contiguous convolutions, so exact agreement holds for the default memory format.
    """

    def __init__(self, n_actions: int, dueling: bool = False) -> None:
        super().__init__()
        if n_actions < 1:
            raise ValueError(f"n_actions must be at least 1, not {n_actions}")
        self.n_actions = n_actions
        self.dueling = dueling
        self.conv = _ConvStack()
        self.head = _DuelingHead(CONV_OUT, n_actions) if dueling else _Mlp(CONV_OUT, n_actions)

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        lead = observation.shape[:-3]
        # rlpyt multiplies by 1/255 rather than dividing by 255; the two differ in the last bit.
        images = observation.reshape(-1, FRAMES, HEIGHT, WIDTH).float().mul_(1.0 / 255)
        q = self.head(self.conv(images).flatten(1))
        return q.reshape(*lead, self.n_actions)


def state_dict_signature(state_dict: Mapping[str, torch.Tensor]) -> tuple[int, bool]:
    """``(n_actions, dueling)`` of an ``AtariDqnModel`` state dict, checked key by key.

    Snapshots come from users and from other games; a plain ``ValueError`` naming the first
    missing key, unexpected key or wrong shape says more than ``load_state_dict``'s wall of
    size mismatches. The expected layout is read off a model built on the meta device, so this
    check and the model cannot drift apart.
    """
    dueling = "head.advantage_out.weight" in state_dict or "head.advantage_bias" in state_dict
    out_key = "head.advantage_out.weight" if dueling else "head.model.2.weight"
    if out_key not in state_dict:
        raise ValueError(f"not an AtariDqnModel state dict: missing key {out_key!r}")
    out = state_dict[out_key]
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] < 1:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"not an AtariDqnModel state dict: {out_key!r} has shape {shape}, "
                         f"expected (n_actions, {HIDDEN})")
    n_actions = int(out.shape[0])
    with torch.device("meta"):
        expected = AtariDqnModel(n_actions, dueling).state_dict()
    for key, want in expected.items():
        if key not in state_dict:
            raise ValueError(f"not an AtariDqnModel state dict: missing key {key!r}")
        got = state_dict[key]
        if not isinstance(got, torch.Tensor) or got.shape != want.shape:
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            raise ValueError(f"not an AtariDqnModel state dict: {key!r} has shape {shape}, "
                             f"expected {tuple(want.shape)}")
    for key in state_dict:
        if key not in expected:
            raise ValueError(f"not an AtariDqnModel state dict: unexpected key {key!r}")
    return n_actions, dueling
