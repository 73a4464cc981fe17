"""The training batch as a loss sees it when distributed training splits it over processes.

In distributed training (:mod:`mmssl.training.distributed`) each process holds one contiguous
slice of the global batch: rank 0 the first rows, rank 1 the next, and so on. :func:`backward`
scales each process's loss by its share of the rows, so that the gradients the processes
average are those of the whole batch's loss. That is right as it stands for every term that is
a mean over the batch's rows, and for every term that does not depend on the batch.

A term of any other shape needs the whole batch: the norm of the batch's rows, a sum divided by
a fixed number, contrastive negatives taken from the whole batch, batch-norm statistics. The
functions here give it, with gradients (their backward passes are collectives too, so that
second derivatives, as in a gradient penalty, are right as well). Every process must call them
in the same order, as the same training code does.

Outside distributed training each function returns its argument itself (the very tensor), so a
single process computes exactly what it computed before, bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class Shard:
    """This process's slice of the global batch.

    Attributes:
        group: the ``torch.distributed`` process group of the processes sharing the batch.
        rank: this process's rank in ``group``.
        sizes: rows of the global batch each process holds, in rank order.
    """

    group: Any
    rank: int
    sizes: tuple[int, ...]

    @property
    def size(self) -> int:
        """Rows this process holds."""
        return self.sizes[self.rank]

    @property
    def total(self) -> int:
        """Rows of the global batch."""
        return sum(self.sizes)

    @property
    def offset(self) -> int:
        """Index of this process's first row in the global batch."""
        return sum(self.sizes[: self.rank])

    @property
    def weight(self) -> float:
        """This process's share of the rows, size / total."""
        return self.size / self.total

    @property
    def loss_scale(self) -> float:
        """What :func:`backward` multiplies the loss by: processes x share, since the processes
        average their gradients (1.0 when the batch splits evenly)."""
        return len(self.sizes) * self.size / self.total


_active: Shard | None = None


def current() -> Shard | None:
    """The shard of the batch being trained on, or None outside a distributed training step."""
    return _active


@contextmanager
def sharded(shard: Shard | None) -> Iterator[None]:
    """Make ``shard`` current while the block runs (the trainer wraps each step in it)."""
    global _active
    previous, _active = _active, shard
    try:
        yield
    finally:
        _active = previous


def backward(loss: torch.Tensor) -> None:
    """``loss.backward()``, with the loss scaled by this process's share of the batch in
    distributed training (:attr:`Shard.loss_scale`). A model that overrides ``training_step``
    calls this in place of ``loss.backward()``."""
    shard = _active
    if shard is None:
        loss.backward()
    else:
        (loss * shard.loss_scale).backward()


class _BatchSum(torch.autograd.Function):
    """All-reduce (sum) over the processes; its backward is the same all-reduce, so it can be
    differentiated any number of times."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, group: Any) -> torch.Tensor:
        import torch.distributed as dist

        ctx.group = group
        out = x.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return _BatchSum.apply(grad.contiguous(), ctx.group), None


def batch_sum(x: torch.Tensor) -> torch.Tensor:
    """The sum of ``x`` over the processes sharing the batch (same shape, with gradients);
    ``x`` itself outside distributed training."""
    shard = _active
    if shard is None:
        return x
    return _BatchSum.apply(x, shard.group)


def batch_rows(n: int) -> int:
    """The number of rows of the whole batch, given this process's ``n`` (its batch rows, as
    many as it holds users or pairs); ``n`` outside distributed training. No communication."""
    shard = _active
    if shard is None:
        return n
    if n != shard.size:
        raise ValueError(f"batch_rows: {n} rows, but this process holds {shard.size}")
    return shard.total


def gather_rows(x: torch.Tensor) -> torch.Tensor:
    """Every process's ``x`` (this process's batch rows, (size, ...)) stacked in batch order:
    (total, ...), with gradients that flow back to each process's own rows; ``x`` itself
    outside distributed training. This process's rows are ``[offset, offset + size)``."""
    shard = _active
    if shard is None:
        return x
    if x.shape[0] != shard.size:
        raise ValueError(f"gather_rows: {x.shape[0]} rows, but this process holds {shard.size}")
    before = x.new_zeros((shard.offset, *x.shape[1:]))
    after = x.new_zeros((shard.total - shard.offset - shard.size, *x.shape[1:]))
    return _BatchSum.apply(torch.cat([before, x, after]), shard.group)


def concat(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Each of ``arrays`` concatenated over the processes in rank order (no gradients): what
    one process holding the whole batch would have built; ``arrays`` themselves outside
    distributed training. For state a model gathers from its batch (MMSSL's pending graph
    edges), which must stay the same on every process."""
    shard = _active
    if shard is None:
        return arrays
    import torch.distributed as dist

    everyone: list[Any] = [None] * len(shard.sizes)
    dist.all_gather_object(everyone, [np.asarray(a) for a in arrays], group=shard.group)
    return tuple(np.concatenate([theirs[j] for theirs in everyone]) for j in range(len(arrays)))


__all__ = ["Shard", "backward", "batch_rows", "batch_sum", "concat", "current", "gather_rows",
           "sharded"]
