"""Multi-process data parallelism through Hugging Face Accelerate.

A run launched by ``accelerate launch`` or ``torchrun`` (``WORLD_SIZE`` > 1) gets one
``Accelerator`` per process; a plain run gets a no-op context, so single-process training
creates no Accelerator at all and stays exactly as it was.

Gradients are averaged with one all-reduce of the flattened gradients per optimizer step
(what DDP does) rather than by wrapping the student in DDP: strategies call models outside
their ``forward`` (mutual learning's peers, the EMA teacher) and own trainable parameters
outside the student (FitNets projections), which a DDP wrapper would not see.

On a CUDA host (``[distill] device`` resolving to a GPU) each process takes its local rank's GPU
and Accelerate sets up NCCL; otherwise the processes stay on the CPU with gloo. The same
launch works across machines: ``torchrun --nnodes N --node-rank R --master-addr HOST ...`` or
``accelerate launch --num_machines N --machine_rank R --main_process_ip HOST ...`` (docs/training.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

import torch


@dataclass(frozen=True)
class Parallel:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")
    """Where the collectives' tensors live: the local GPU under NCCL, the CPU under gloo."""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        """Sum ``t`` over processes, in place."""
        if self.world > 1:
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.SUM)
        return t

    def from_main(self, value: float) -> float:
        """The main process's ``value`` on every process (only the main process evaluates)."""
        if self.world == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        torch.distributed.broadcast(t, src=0)
        return float(t.item())

    def sum_grads(self, params: list[torch.Tensor]) -> None:
        """Sum the gradients of ``params`` over processes (each process scaled its loss by its share)."""
        if self.world == 1:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = self.sum_(torch.cat([g.reshape(-1) for g in grads]))
        offset = 0
        for p in params:
            n = p.numel()
            # A parameter without a gradient here has none on any process (same model, same
            # code path); it keeps None so AdamW skips it exactly as in a single process.
            if p.grad is not None:
                p.grad = flat[offset : offset + n].view_as(p).clone()
            offset += n

    def slice(self, idx):
        """This process's share of a global batch (contiguous, so shares differ by at most one row)."""
        if self.world == 1:
            return idx
        n = len(idx)
        lo, hi = n * self.rank // self.world, n * (self.rank + 1) // self.world
        return idx[lo:hi]


def wants_cuda() -> bool:
    """Whether this run trains on GPUs: CUDA present and not turned off (``EDGEDISTILL_DEVICE=cpu``,
    which the CLI sets from a recipe's ``device = "cpu"`` before the first collective)."""
    return torch.cuda.is_available() and os.environ.get("EDGEDISTILL_DEVICE", "auto") != "cpu"


def configure(device: str) -> None:
    """Record the recipe's ``device`` for :func:`current` (call before the first collective); a plain
    single-process run leaves the environment alone."""
    if device == "cpu" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        os.environ["EDGEDISTILL_DEVICE"] = "cpu"


@lru_cache(maxsize=1)
def current() -> Parallel:
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Parallel()
    from accelerate import Accelerator

    # cpu=False puts each process on its local rank's GPU with NCCL; cpu=True keeps gloo on CPU tensors.
    # The loops move the models themselves (no prepare()): see the module docstring for why not DDP.
    gpu = wants_cuda()
    acc = Accelerator(cpu=not gpu)
    return Parallel(rank=acc.process_index, world=acc.num_processes, device=acc.device if gpu else torch.device("cpu"))
