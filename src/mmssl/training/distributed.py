"""Distributed training on ``torch.distributed``: N processes, each with one slice of every batch.

Started by ``torchrun`` (or ``mmssl train --nproc N``, :mod:`mmssl.training.launch`), every
process runs the same training. What makes N processes train as one:

* **The batch.** Every process draws the same global batch from the same seeded sampler (so the
  sampler's state is one state, saved once) and keeps its contiguous slice: rank r the rows
  ``[offset_r, offset_r + size_r)``, the sizes as equal as they can be. The slices are disjoint
  and their union is exactly what one process draws with the same seed.
* **The loss.** Each process's loss is multiplied by ``N * size_r / total`` before backward
  (:func:`mmssl.models.shards.backward`), and gradients are averaged over the processes, so
  the averaged gradient is the gradient of the whole batch's loss for every term that is a mean
  over rows or does not depend on the batch. Terms of other shapes (norms of the batch's rows,
  sums divided by a fixed number, in-batch negatives) take the whole batch through
  :mod:`mmssl.models.shards`, with collectives that are differentiable (twice, for MMSSL's
  gradient penalty). The losses shown and logged are the whole batch's.
* **Gradients.** A model that keeps the default ``training_step`` is wrapped in
  ``DistributedDataParallel`` (gradients averaged in buckets while backward runs). A model with
  its own step (MMSSL: a critic update, then a recommender update, from one forward) gets its
  optimisers wrapped (:class:`SyncedOptimizer`): each ``step()`` first averages the gradients
  of that optimiser's parameters, so both updates are synchronised.
* **Batch norm.** Every ``BatchNorm`` of the model becomes a :class:`SyncedBatchNorm`: in a
  training step its statistics are the whole batch's (the same on every process, running
  averages included); its parameters and state-dict keys are unchanged.
* **Randomness.** The model is built from the run's seed on every process (then rank 0's
  parameters are broadcast). During steps each process draws dropout and noise from its own
  stream (rank 0 keeps the single-process stream; rank r > 0 is seeded from (seed, r)), so
  the masks of different slices are independent, as one process's would be. Epoch hooks
  (FREEDOM's pruning) draw from a stream seeded by (seed, epoch). Checkpoints keep every rank's.
* **Who does what.** Rank 0 alone reads and writes the run directory and evaluates; the others
  receive its results by broadcast, so that all stop at the same epoch.
* **Failures.** The process group has a timeout (``dist_timeout``). A process that dies closes
  its connections, and the others stop at their next collective with one line
  (:class:`LostContact`); a process that hangs is noticed when the timeout expires.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
from torch import nn

from mmssl.errors import ConfigError, MmsslError
from mmssl.models import shards
from mmssl.models.base import Batch, Model, Optimizers
from mmssl.training.batch_norm import convert_batch_norm
from mmssl.training.sampler import BprSampler, ShardBatch, ShardedSampler

ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


class LostContact(MmsslError):
    """Another process of a distributed run died, hung past the timeout, or failed."""
    exit_at_once = True  # the process group's threads still wait on the lost peer: no teardown


def world_size_from_environment() -> int:
    """``WORLD_SIZE`` as torchrun sets it (1 when unset)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ConfigError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a number") from None


@dataclass
class Distributed:
    """This process's place in a distributed run and the collectives the trainer uses.

    Attributes:
        rank: this process's rank, 0 to world_size - 1 (rank 0 writes the run directory).
        world_size: the number of processes.
        local_rank: its rank on this machine (its GPU index on CUDA).
        device: where its model lives (``cuda:LOCAL_RANK`` on CUDA).
        backend: ``gloo`` (CPU) or ``nccl`` (CUDA).
        group: the process group of the trainer's collectives and DDP.
        batch_group: a second group for the losses' collectives (never amid DDP's buckets).
        timeout: seconds a collective waits for the others.
        owned: whether this module initialised (and so destroys) the process group.
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str
    group: Any
    batch_group: Any
    timeout: float
    owned: bool = False

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that reads and writes files and evaluates."""
        return self.rank == 0

    def describe(self) -> dict[str, Any]:
        """What the log records about the run's processes."""
        return {"event": "distributed", "world_size": self.world_size, "backend": self.backend,
                "device": self.device.type}

    # ------------------------------------------------------------ collectives
    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every process (pickled; tensors come back on the CPU)."""
        import torch.distributed as dist

        box = [obj if self.is_main else None]
        with self.guard("waiting for rank 0"):
            dist.broadcast_object_list(box, src=0, group=self.group, device=self._object_device())
        return box[0]

    def on_main(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` run on rank 0 only, its result on every process. A failure there (an mmssl
        error or an OSError) is raised on every process: rank 0 raises its own, the others an
        error that names it."""
        outcome: tuple[str, Any] | None = None
        failure: BaseException | None = None
        if self.is_main:
            try:
                outcome = ("ok", fn())
            except (MmsslError, OSError) as e:
                failure = e
                where = f"{e.filename}: " if isinstance(e, OSError) and e.filename else ""
                outcome = ("error", where + (getattr(e, "strerror", None) or " ".join(str(e).split())))
        kind, value = self.broadcast(outcome)
        if kind == "error":
            if failure is not None:
                raise failure
            raise MmsslError(f"rank 0 failed: {value}")
        return value

    def gather(self, obj: Any) -> list[Any]:
        """Every process's ``obj``, in rank order, on every process."""
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        with self.guard("gathering from the other processes"):
            dist.all_gather_object(out, obj, group=self.group)
        return out

    def sum_floats(self, values: dict[str, float]) -> dict[str, float]:
        """The sum over the processes of each value."""
        import torch.distributed as dist

        keys = list(values)
        local = torch.tensor([values[k] for k in keys], dtype=torch.float64,
                             device=self._object_device())
        with self.guard("summing the losses"):
            dist.all_reduce(local, group=self.group)
        return dict(zip(keys, local.tolist()))

    def barrier(self) -> None:
        """Wait until every process is here."""
        import torch.distributed as dist

        with self.guard("waiting for the other processes"):
            dist.barrier(group=self.group)

    def close(self) -> None:
        """Destroy the process group if this module created it."""
        import torch.distributed as dist

        if self.owned and dist.is_initialized():
            dist.destroy_process_group()
            self.owned = False

    @contextmanager
    def guard(self, doing: str) -> Iterator[None]:
        """Turn a failed collective (a dead or hung process) into :class:`LostContact`."""
        try:
            yield
        except LostContact:
            raise
        except (RuntimeError, ValueError) as e:
            if not is_lost_contact(e):
                raise
            raise LostContact(f"rank {self.rank} of {self.world_size}: lost contact with the "
                              f"other processes while {doing}: {first_line(e)} (another "
                              "process died, failed or hung)") from None

    def _object_device(self) -> torch.device:
        return self.device if self.backend == "nccl" else torch.device("cpu")

    # ----------------------------------------------------------- training
    def shard(self, sampler: BprSampler) -> ShardedSampler:
        """``sampler``'s batches, each cut to this process's slice."""
        return ShardedSampler(sampler, self.rank, self.world_size, self.batch_group)

    def prepare(self, model: Model) -> None:
        """Before the optimisers are built: every BatchNorm becomes a SyncedBatchNorm."""
        convert_batch_norm(model)

    def stepper(self, model: Model, optimizers: Optimizers) -> Callable[[ShardBatch], dict[str, float]]:
        """The function that runs one training step on a slice: DDP for the default step,
        synchronised optimisers for a model's own step. It returns the slice's losses weighted
        by its share of the batch (0 for an empty slice), so that their sum over the processes
        (:meth:`sum_floats`, once an epoch) is the whole batches' losses."""
        if type(model).training_step is Model.training_step:
            step = _ddp_step(model, optimizers, self)  # DDP shares rank 0's weights itself
        else:
            broadcast_parameters(model, self)
            synced = {k: SyncedOptimizer(o, self) for k, o in optimizers.items()}

            def step(batch: Batch) -> dict[str, float]:
                return model.training_step(batch, synced)

        def run(item: ShardBatch) -> dict[str, float]:
            with self.guard("training"), shards.sharded(item.shard):
                losses = step(item.batch.to(model.device))
            weight = item.shard.weight
            return {k: v * weight if weight else 0.0 for k, v in losses.items()}

        return run

    @contextmanager
    def shared_random(self, seed: int, epoch: int, which: int) -> Iterator[None]:
        """Random draws inside the block come from a stream seeded by (seed, epoch, which), the
        same on every process (epoch hooks); the process's own stream is left as it was."""
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            value = (seed * 1_000_003 + epoch * 2 + which + 1_000_000_007) % 2**63
            torch.random.default_generator.manual_seed(value)
            if self.device.type == "cuda":
                torch.cuda.manual_seed(value)
            yield

    def seed_own_stream(self, seed: int, epoch: int = -1) -> None:
        """Give this process its own random stream: rank 0 keeps the one it has (a single
        process's); rank r > 0 is seeded from (seed, r, epoch)."""
        if self.rank:
            torch.manual_seed((seed * 1_000_003 + self.rank * 7_919 + epoch + 1) % 2**63)

    def rng_checkpoint(self) -> dict[str, Any]:
        """Every process's random states, for ``last.pt``."""
        own = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            own["cuda"] = torch.cuda.get_rng_state(self.device)
        return {"world_size": self.world_size, "rank_rng": self.gather(own)}

    def restore_rng(self, ckpt: dict[str, Any], seed: int) -> None:
        """This process's random state from ``last.pt``; a checkpoint written by another number
        of processes gives rank 0 its state and the others fresh streams (not bit-exact)."""
        saved = ckpt.get("rank_rng")
        if saved is not None and len(saved) == self.world_size:
            torch.set_rng_state(saved[self.rank]["torch"])
            if "cuda" in saved[self.rank] and self.device.type == "cuda":
                torch.cuda.set_rng_state(saved[self.rank]["cuda"], self.device)
            return
        torch.set_rng_state(ckpt["torch_rng"])
        self.seed_own_stream(seed, ckpt["state"]["epoch"])


# ------------------------------------------------------------------ set-up
def from_run(run) -> Distributed | None:
    """:func:`from_environment` with a :class:`~mmssl.config.RunConfig`'s device, timeout and
    threads; None for a single process."""
    if world_size_from_environment() <= 1:
        return None
    return from_environment(run.device, run.dist_timeout, run.threads)


def on_main(dist: Distributed | None, fn: Callable[[], Any]) -> Any:
    """``fn()`` here, or in a distributed run on rank 0 alone (its error raised everywhere)."""
    return fn() if dist is None else dist.on_main(fn)


def from_environment(device_name: str, timeout: float, threads: int) -> Distributed | None:
    """The distributed context torchrun (or ``--nproc``) set up, its process group initialised;
    None for a single process (``WORLD_SIZE`` unset or 1).

    The backend follows the device: NCCL on CUDA (``cuda:LOCAL_RANK``), gloo on the CPU.
    ``threads`` 0 gives each process its share of the cores when several share a machine.
    """
    world = world_size_from_environment()
    if world <= 1:
        return None
    import torch.distributed as dist

    if not dist.is_available():
        raise ConfigError("this torch build has no torch.distributed")
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    device = distributed_device(device_name, local_rank)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if threads == 0 and local_world > 1 and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    wait = timedelta(seconds=timeout)
    owned = False
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        missing = [v for v in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(v)]
        if missing:
            raise ConfigError(f"WORLD_SIZE={world} but {', '.join(missing)} is not set: start "
                              "distributed runs with torchrun or mmssl train --nproc N")
        try:
            dist.init_process_group(backend, timeout=wait)
        except (RuntimeError, ValueError) as e:
            raise LostContact(f"rank {rank} of {world}: could not join the other processes "
                              f"within {timeout:g} s ({first_line(e)})") from None
        owned = True
    elif dist.get_backend() != backend:
        raise ConfigError(f"device {device} needs the {backend} backend, but the process group "
                          f"uses {dist.get_backend()}")
    context = Distributed(rank=dist.get_rank(), world_size=dist.get_world_size(),
                          local_rank=local_rank, device=device, backend=backend,
                          group=dist.group.WORLD, batch_group=None, timeout=timeout, owned=owned)
    with context.guard("setting up"):
        context.batch_group = dist.new_group(backend=backend, timeout=wait)
    return context


def distributed_device(name: str, local_rank: int) -> torch.device:
    """The device of the process with ``local_rank``: ``cuda:LOCAL_RANK`` when ``name`` is
    auto with CUDA available, or any cuda; the CPU for ``cpu`` and auto without CUDA."""
    if name.startswith("mps"):
        raise ConfigError("device: distributed training runs on the CPU (gloo) or CUDA (NCCL), "
                          "not on MPS")
    cuda = name.startswith("cuda") or (name == "auto" and torch.cuda.is_available())
    if not cuda:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError(f"device: {name!r} requested but CUDA is not available")
    if local_rank >= torch.cuda.device_count():
        raise ConfigError(f"local rank {local_rank} needs cuda:{local_rank}, but only "
                          f"{torch.cuda.device_count()} CUDA devices are visible (one process "
                          "per GPU: --nproc at most the number of GPUs)")
    return torch.device("cuda", local_rank)


def is_lost_contact(e: BaseException) -> bool:
    """Whether ``e`` is a collective that failed because another process went away or hung."""
    import torch.distributed as dist

    if isinstance(e, getattr(dist, "DistError", ())):
        return True
    text = str(e)
    return any(marker in text for marker in (
        "Connection closed by peer", "Connection reset by peer", "Connection refused",
        "Broken pipe", "Timed out", "timed out", "pair closure", "Socket Timeout"))


def first_line(e: BaseException) -> str:
    """The first line of an exception's message, shortened (a one-line error's detail)."""
    text = " ".join(str(e).strip().splitlines()[:1]) or type(e).__name__
    if "] " in text and text.startswith("["):  # gloo's "[path/pair.cc:553] message"
        text = text.split("] ", 1)[1]
    return text.split(". ", 1)[0].rstrip(".")[:200]  # not gloo's advice that follows


# --------------------------------------------------------------- gradients
class _LossModule(nn.Module):
    """The model's ``loss`` as a module's forward, for DistributedDataParallel."""

    def __init__(self, model: Model):
        super().__init__()
        self.model = model

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        """``model.loss(batch)``."""
        return self.model.loss(batch)


def _ddp_step(model: Model, optimizers: Optimizers, context: Distributed):
    from torch.nn.parallel import DistributedDataParallel

    (optimizer,) = optimizers.values()
    module = _LossModule(model)
    # Buffers (features, graphs) come from the dataset and are the same everywhere.
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
        module, [name for name, _ in module.named_buffers()])
    with context.guard("wrapping the model in DistributedDataParallel"):
        ddp = DistributedDataParallel(
            module, device_ids=[context.device.index] if context.device.type == "cuda" else None,
            process_group=context.group,  # buffers are ignored above: nothing to broadcast
            find_unused_parameters=True)  # LATTICE's learned graph takes gradients once an epoch

    def step(batch: Batch) -> dict[str, float]:  # Model.training_step, through DDP
        losses = ddp(batch)
        optimizer.zero_grad(set_to_none=True)
        shards.backward(losses["loss"])
        optimizer.step()
        return {k: v.item() for k, v in losses.items()}

    return step


class SyncedOptimizer:
    """An optimiser whose ``step()`` first averages its parameters' gradients over the
    processes (one flat all-reduce per dtype), then steps. Anything else is the optimiser's."""

    def __init__(self, optimizer: torch.optim.Optimizer, context: Distributed):
        self.optimizer = optimizer
        self.context = context
        self.params = [p for group in optimizer.param_groups for p in group["params"]]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.optimizer, name)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """As the optimiser's."""
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def step(self, closure=None):
        """Average the gradients over the processes, then step."""
        import torch.distributed as dist

        context = self.context
        with context.guard("averaging gradients"):
            has = torch.tensor([p.grad is not None for p in self.params], dtype=torch.int32,
                               device=context._object_device())
            dist.all_reduce(has, group=context.group)  # a gradient anywhere: one everywhere
            for p, n in zip(self.params, has.tolist()):
                if n and p.grad is None:
                    p.grad = torch.zeros_like(p)
            by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
            for p in self.params:
                if p.grad is not None:
                    by_dtype.setdefault(p.grad.dtype, []).append(p.grad)
            for grads in by_dtype.values():
                flat = torch.cat([g.reshape(-1) for g in grads])
                dist.all_reduce(flat, group=context.group)
                flat /= context.world_size
                for g, part in zip(grads, flat.split([g.numel() for g in grads])):
                    g.copy_(part.view_as(g))
        return self.optimizer.step(closure)


def broadcast_parameters(model: Model, context: Distributed) -> None:
    """Rank 0's parameters and persistent buffers on every process."""
    import torch.distributed as dist

    persistent = set(model.state_dict(keep_vars=True))
    tensors = [p for p in model.parameters()] + [
        b for name, b in model.named_buffers() if name in persistent and not b.is_sparse
        and b.layout == torch.strided]
    with context.guard("sharing the initial weights"), torch.no_grad():
        for t in tensors:
            dist.broadcast(t.data, src=0, group=context.group)


__all__ = ["Distributed", "LostContact", "SyncedOptimizer", "broadcast_parameters",
           "distributed_device", "first_line", "from_environment", "from_run", "is_lost_contact",
           "on_main", "world_size_from_environment"]
