"""Batch norm whose training statistics are those of the whole distributed batch.

MMSSL's critic normalises each of its layers over the batch's rows. In distributed training
each process holds a slice of those rows, so its own statistics would be a slice's. The trainer
therefore replaces every ``nn.BatchNorm*`` of a model by :class:`SyncedBatchNorm`
(:func:`convert_batch_norm`), which in a training step takes the mean and the variance over all
processes' rows. ``torch.nn.SyncBatchNorm`` does the same on GPUs only, and its backward is not
differentiable again, which the critic's gradient penalty needs.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from mmssl.models import shards


class SyncedBatchNorm(nn.BatchNorm1d):
    """Batch norm whose training statistics are those of the whole distributed batch.

    Inside a distributed training step (:func:`mmssl.models.shards.current`) the mean and the
    variance come from all processes' rows (two differentiable all-reduces, so a gradient
    penalty through it is exact); anywhere else, and in eval mode, it is plain batch norm.
    Parameters, buffers and state-dict keys are those of the ``nn.BatchNorm*`` it replaces.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised ``x`` (n, C, ...) with whole-batch statistics in a distributed step."""
        if not self.training or shards.current() is None:
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        xf = x.float() if x.dtype in (torch.bfloat16, torch.float16) else x  # statistics in fp32 at least
        rows = xf.new_tensor([x.numel() // max(1, x.shape[1])])
        sums = shards.batch_sum(torch.cat([xf.sum(dims), rows]))  # the rows counted alongside
        count = float(sums[-1])
        mean = sums[:-1] / count
        centred = xf - mean.view(shape)
        var = shards.batch_sum(centred.square().sum(dims)) / count
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                     else self.momentum)
                unbiased = var * (count / max(1, count - 1))
                self.running_mean.mul_(1 - m).add_(mean.detach().to(self.running_mean.dtype), alpha=m)
                self.running_var.mul_(1 - m).add_(unbiased.detach().to(self.running_var.dtype), alpha=m)
        return y.to(x.dtype)


def convert_batch_norm(module: nn.Module) -> int:
    """Replace every ``nn.BatchNorm1d/2d/3d`` below ``module`` by a :class:`SyncedBatchNorm`
    holding the same parameters and buffers; returns how many were replaced."""
    replaced = 0
    for name, child in list(module.named_children()):
        if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(child, SyncedBatchNorm):
            synced = SyncedBatchNorm.__new__(SyncedBatchNorm)
            synced.__dict__ = copy.copy(child.__dict__)  # the same Parameter and buffer objects
            setattr(module, name, synced)
            replaced += 1
        else:
            replaced += convert_batch_norm(child)
    return replaced


__all__ = ["SyncedBatchNorm", "convert_batch_norm"]
