"""Vectorised BPR sampling: users, positives and negatives drawn with torch on the CPU; and
the slices of each batch that the processes of a distributed run train on."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from mmssl.models import shards
from mmssl.models.base import Batch


def check_sampling(dataset) -> None:
    """DataError (naming the dataset) unless BPR triples can be drawn from its training split."""
    from mmssl.errors import DataError

    try:
        BprSampler(dataset.matrix("train"), 1, "interaction", torch.Generator())
    except ValueError as e:
        where = getattr(dataset, "path", None) or "the dataset"
        raise DataError(f"{where}: {e}") from None


class BprSampler:
    """Draws (user, positive, negative) triples from a training matrix.

    Args:
        train: (n_users, n_items) CSR of training interactions.
        batch_size: B.
        mode: "user" draws B users per step (without replacement, or with replacement when
            B exceeds the users with training items and ``replace_when_short``), then one
            positive and one uniform negative each; an epoch has n_train // B + 1 steps (the
            authors' rule). "interaction" shuffles all training pairs once per epoch and cuts
            them into batches, one uniform negative each (MMRec's rule).
        generator: the torch generator all draws come from (saved in checkpoints).
    """

    def __init__(
        self,
        train: sp.csr_matrix,
        batch_size: int,
        mode: str,
        generator: torch.Generator,
        replace_when_short: bool = True,
    ):
        train = train.tocsr()
        train.sort_indices()
        self.n_items = train.shape[1]
        self.batch_size = batch_size
        self.mode = mode
        self.generator = generator
        self.replace_when_short = replace_when_short
        self.indptr = torch.from_numpy(train.indptr.astype(np.int64))
        self.indices = torch.from_numpy(train.indices.astype(np.int64))
        self.degree = self.indptr[1:] - self.indptr[:-1]
        self.active_users = torch.nonzero(self.degree > 0).flatten()
        rows = torch.repeat_interleave(torch.arange(train.shape[0]), self.degree)
        # each pair's user, for pair mode only (at 26M pairs it is 0.2 GB)
        self.pair_users = rows if mode != "user" else None
        # Sorted keys user * n_items + item: membership tests by binary search.
        self.keys = rows * self.n_items + self.indices
        del rows
        if len(self.active_users) == 0:
            raise ValueError("the training split has no interactions")
        full = int((self.degree >= self.n_items).sum())
        if full:
            raise ValueError(f"{full} of {len(self.active_users)} users interacted with every one "
                             f"of the {self.n_items} items in training, so no negative item can "
                             "be drawn for them (BPR needs at least one unseen item per user)")

    def steps_per_epoch(self) -> int:
        """n_train // B + 1 in user mode (the authors' rule); ceil(n_train / B) otherwise."""
        n_train = len(self.indices)
        if self.mode == "user":
            return n_train // self.batch_size + 1
        return -(-n_train // self.batch_size)

    def epoch(self) -> Iterator[Batch]:
        """The batches of one epoch."""
        if self.mode == "user":
            for _ in range(self.steps_per_epoch()):
                users = self._draw_users()
                yield Batch(users, self._positives(users), self.negatives(users))
        else:
            order = torch.randperm(len(self.indices), generator=self.generator)
            for start in range(0, len(order), self.batch_size):
                pairs = order[start : start + self.batch_size]
                users = self.pair_users[pairs]
                yield Batch(users, self.indices[pairs], self.negatives(users))

    def _draw_users(self) -> torch.Tensor:
        n = len(self.active_users)
        if self.batch_size <= n:
            pick = torch.randperm(n, generator=self.generator)[: self.batch_size]
        elif self.replace_when_short:
            pick = torch.randint(n, (self.batch_size,), generator=self.generator)
        else:
            pick = torch.randperm(n, generator=self.generator)
        return self.active_users[pick]

    def _positives(self, users: torch.Tensor) -> torch.Tensor:
        offset = (torch.rand(len(users), generator=self.generator) * self.degree[users]).long()
        return self.indices[self.indptr[users] + offset]

    def negatives(self, users: torch.Tensor) -> torch.Tensor:
        """One uniform item per user that the user has not interacted with in training."""
        neg = torch.randint(self.n_items, (len(users),), generator=self.generator)
        todo = torch.arange(len(users))
        for _ in range(1000):
            seen = self._is_seen(users[todo], neg[todo])
            todo = todo[seen]
            if len(todo) == 0:
                return neg
            neg[todo] = torch.randint(self.n_items, (len(todo),), generator=self.generator)
        raise ValueError("could not draw negatives: some users interacted with every item")

    def _is_seen(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        keys = users * self.n_items + items
        pos = torch.searchsorted(self.keys, keys).clamp_max(len(self.keys) - 1)
        return self.keys[pos] == keys


@dataclass(frozen=True)
class ShardBatch:
    """This process's slice of one global batch, and where it sits in it."""

    batch: Batch
    shard: shards.Shard


def split_sizes(total: int, world_size: int) -> tuple[int, ...]:
    """Rows per process: as equal as they can be, the larger slices first."""
    base, extra = divmod(total, world_size)
    return tuple(base + (r < extra) for r in range(world_size))


class ShardedSampler:
    """A :class:`BprSampler`'s batches cut into disjoint contiguous slices, one per process.

    Every process draws the whole batch from the shared generator, so the union of the slices
    is what one process draws, and the generator's state is the same everywhere.
    """

    def __init__(self, sampler: BprSampler, rank: int, world_size: int, group: Any):
        self.sampler, self.rank, self.world_size, self.group = sampler, rank, world_size, group

    def steps_per_epoch(self) -> int:
        """As the wrapped sampler's."""
        return self.sampler.steps_per_epoch()

    def epoch(self) -> Iterator[ShardBatch]:
        """This process's slices of one epoch's batches."""
        for batch in self.sampler.epoch():
            sizes = split_sizes(len(batch.users), self.world_size)
            shard = shards.Shard(self.group, self.rank, sizes)
            cut = slice(shard.offset, shard.offset + shard.size)
            yield ShardBatch(Batch(batch.users[cut], batch.pos_items[cut], batch.neg_items[cut]),
                             shard)
