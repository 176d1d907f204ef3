"""The DQN update as one function over fixed tensors, so that CUDA can capture it as a graph.

A CUDA graph replays recorded kernels on recorded addresses: the minibatch is copied into
``inputs`` (tensors allocated once), the update reads only those, and writes its loss, grad
norm and |TD errors| into ``outputs``. ``step`` is that function; on the CPU (and on CUDA with
``CUDA_GRAPH=0``, or after a failed capture) it runs eagerly, and it is the very function a
graph captures, which is how the CPU tests check the captured update's arithmetic: from the
same weights and minibatches, ``step`` lands on the parameters ``DqnLearner.update`` lands on.

What stays outside the graph, on the host and without a sync: the update counter and the
target copy every ``target_update_interval`` updates (an in-place copy on the device).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..replays.batch import ReplayBatch
from .dqn import DqnLearner

WARMUP_UPDATES = 3
"""Eager updates on a side stream before capture: they let cuDNN/cuBLAS pick their kernels and
the optimizer make its state, as torch's whole-network capture recipe asks. They are real
updates of the run, counted as such."""

_TENSOR_FIELDS = ("observation", "action", "return_", "done_n", "target_observation",
                  "is_weights")


class StaticUpdate:
    """``learner``'s update over tensors allocated once on ``device``.

    ``run(batch)`` does one update and returns a device tensor ``[loss, grad_norm,
    td_abs_err...]`` without reading anything back to the host. With ``graph=True`` (CUDA
    only) the first ``WARMUP_UPDATES`` run eagerly on a side stream, the next one is captured
    and every later one replays the capture.
    """

    def __init__(self, learner: DqnLearner, batch_size: int, device: torch.device, *,
                 graph: bool, log: Callable[[str], None] = print,
                 frame_shape: tuple[int, int] = (104, 80), num_img_obs: int = 4) -> None:
        if graph and device.type != "cuda":
            raise ValueError("a CUDA graph needs a CUDA device")
        self.learner = learner
        self.device = device
        self.log = log
        obs_shape = (batch_size, num_img_obs, *frame_shape)
        self.inputs = {
            "observation": torch.zeros(obs_shape, dtype=torch.uint8, device=device),
            "action": torch.zeros(batch_size, dtype=torch.int64, device=device),
            "return_": torch.zeros(batch_size, dtype=torch.float32, device=device),
            "done_n": torch.zeros(batch_size, dtype=torch.float32, device=device),
            "target_observation": torch.zeros(obs_shape, dtype=torch.uint8, device=device),
            "is_weights": torch.ones(batch_size, dtype=torch.float32, device=device),
        }
        # [loss, grad_norm, td_abs_err[0..B-1]]: one tensor, so a log point reads it in one copy
        self.report = torch.zeros(2 + batch_size, dtype=torch.float32, device=device)
        self._graph: torch.cuda.CUDAGraph | None = None
        self._warmups_left = WARMUP_UPDATES if graph else None
        self._stream: torch.cuda.Stream | None = None

    @property
    def graphed(self) -> bool:
        """Whether updates now replay a captured graph."""
        return self._graph is not None

    def step(self) -> None:
        """One update of the learner from ``inputs`` into ``report``: the captured function."""
        learner = self.learner
        learner.optimizer.zero_grad()
        batch = ReplayBatch(**self.inputs, idxs=None)  # type: ignore[arg-type]
        loss, td_abs_err = learner.loss(batch)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(learner.model.parameters(),
                                                   learner.clip_grad_norm)
        learner.optimizer.step()
        self.report[0].copy_(loss.detach())
        self.report[1].copy_(grad_norm)
        self.report[2:].copy_(td_abs_err)

    def run(self, batch: ReplayBatch) -> torch.Tensor:
        """Copy ``batch`` in, update once, count it and copy the target when due."""
        for name in _TENSOR_FIELDS:
            self.inputs[name].copy_(getattr(batch, name), non_blocking=True)
        if self._graph is not None:
            self._graph.replay()
        elif self._warmups_left is None:
            self.step()
        elif self._warmups_left > 0:
            self._warm_up()
        else:
            self._capture()
        learner = self.learner
        learner.update_counter += 1
        if learner.update_counter % learner.target_update_interval == 0:
            learner.update_target()
        return self.report

    def _warm_up(self) -> None:
        """An eager update on a side stream (torch's recipe before a capture)."""
        assert self._warmups_left is not None
        if self._stream is None:
            self._stream = torch.cuda.Stream(self.device)
        self._stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self._stream):
            self.step()
        torch.cuda.current_stream(self.device).wait_stream(self._stream)
        self._warmups_left -= 1

    def _capture(self) -> None:
        """Record ``step`` as a graph and replay it for this update; eager from now on if
        capture fails (said once in the log)."""
        graph = torch.cuda.CUDAGraph()
        try:
            torch.cuda.synchronize(self.device)
            with torch.cuda.graph(graph):
                self.step()
        except RuntimeError as err:  # the capture ran nothing: this update is done eagerly
            self.log(f"CUDA graph capture of the update failed ({str(err).splitlines()[0]}): "
                     "updates run eagerly")
            self._warmups_left = None
            self.step()
            return
        self._graph = graph
        self._warmups_left = None
        graph.replay()
        self.log("update captured as a CUDA graph")
