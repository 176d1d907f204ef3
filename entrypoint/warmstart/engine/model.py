"""rlpyt's ``AtariDqnModel``: the same modules, key names, shapes and forward pass.

The state dict is the contract with rlpyt (a snapshot's keys are API), so module attribute
names mirror rlpyt's: ``conv.conv.{0,2,4}`` and ``head.model.{0,2}``, or the dueling head's
``advantage_bias``, ``advantage_hidden``, ``advantage_out`` and ``value``, registered in that
order so ``state_dict()`` lists keys in rlpyt's order.
"""

from __future__ import annotations

import torch
from torch import nn

FRAMES, HEIGHT, WIDTH = 4, 104, 80
HIDDEN = 512
CONV_OUT = 64 * 12 * 9  # after convs of kernels 8/4/3, strides 4/2/1, paddings 0/1/1 on 104x80
DUELING_GRAD_SCALE = 2 ** (-1 / 2)


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; scales the gradient on the way back (rlpyt's dueling head does this)."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, scale: float) -> torch.Tensor:  # type: ignore[override]
        ctx.scale = scale
        return tensor

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return grad * ctx.scale, None


class _ConvStack(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(FRAMES, 32, 8, stride=4, padding=0), nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1, padding=1), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class _Mlp(nn.Module):
    """rlpyt's MlpModel: Linear+ReLU per hidden layer, then an optional output Linear."""

    def __init__(self, inputs: int, outputs: int | None) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(inputs, HIDDEN), nn.ReLU()]
        if outputs is not None:
            layers.append(nn.Linear(HIDDEN, outputs))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class _DuelingHead(nn.Module):
    """Q = V + (A - mean A); A has one shared bias; the head's input gradient is scaled."""

    def __init__(self, inputs: int, n_actions: int) -> None:
        super().__init__()
        self.advantage_bias = nn.Parameter(torch.zeros(1))
        self.advantage_hidden = _Mlp(inputs, None)
        self.advantage_out = nn.Linear(HIDDEN, n_actions, bias=False)
        self.value = _Mlp(inputs, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _ScaleGrad.apply(x, DUELING_GRAD_SCALE)
        advantage = self.advantage_out(self.advantage_hidden(x)) + self.advantage_bias
        return self.value(x) + (advantage - advantage.mean(dim=-1, keepdim=True))


class AtariDqnModel(nn.Module):
    """Q-values from uint8 frame stacks ``[..., 4, 104, 80]`` (leading dims kept)."""

    def __init__(self, n_actions: int, dueling: bool = False) -> None:
        super().__init__()
        self.n_actions = n_actions
        self.dueling = dueling
        self.conv = _ConvStack()
        self.head = _DuelingHead(CONV_OUT, n_actions) if dueling else _Mlp(CONV_OUT, n_actions)

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        lead = observation.shape[:-3]
        images = observation.reshape(-1, FRAMES, HEIGHT, WIDTH).float().mul_(1.0 / 255)
        q = self.head(self.conv(images).flatten(1))
        return q.reshape(*lead, self.n_actions)
