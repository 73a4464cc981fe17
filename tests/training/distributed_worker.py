"""One process of the distributed tests (``test_distributed.py`` starts it, once per rank, with
torchrun's environment; without that environment it is the single-process reference).

    python distributed_worker.py train OUT MODEL...   # one epoch of each model, weights to OUT
    python distributed_worker.py units OUT            # sharded losses against whole-batch ones

``train`` writes ``OUT/rank{R}.pt`` (``OUT/single.pt`` alone): each model's state dict, extra
state and logged losses after one epoch on a small planted dataset. ``units`` writes
``OUT/units-rank{R}.json``: for each sharded loss, the largest difference from the same loss on
the whole batch in one process (value and gradients, float64).
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import torch

from mmssl.config import resolve
from mmssl.data.synthetic import planted_dataset
from mmssl.models import create_model, get_model_class, shards
from mmssl.runtime import seed_everything, set_threads
from mmssl.training.batch_norm import convert_batch_norm
from mmssl.training.distributed import from_environment
from mmssl.training.sampler import split_sizes
from mmssl.training.trainer import Trainer

# Per model: settings, and whether it trains in float64 (compared with one process).
MODELS = {
    "bpr": ([], True),
    "lightgcn": (["n_layers=2"], True),
    "vbpr": ([], False),
    "lattice": ([], False),
    "freedom": ([], False),
    "bm3": ([], False),
    "mmssl-official": (["variant=official", "topk_rate=0.05", "batch_size=33"], False),
    "mmssl-paper": (["variant=paper", "batch_size=33"], False),
    "mmssl-sketch": (["discriminator=sketch", "sketch_dim=16", "batch_size=33"], False),
}


def dataset():
    return planted_dataset(n_users=80, n_items=60, n_interactions=1500, seed=3)


def uneven_batch_size(n_train: int) -> int:
    """A batch size whose last batch has one row (so one of two ranks gets none), if any."""
    for b in range(n_train // 6, n_train // 3):
        if n_train % b == 1:
            return b
    return n_train // 4 + 1


def train(out: Path, names: list[str]) -> None:
    dist = from_environment("cpu", 60.0, 1)
    ds = dataset()
    n_train = ds.matrix("train").nnz
    saved = {}
    for name in names:
        sets, float64 = MODELS[name]
        model_name = name.split("-")[0]
        cls = get_model_class(model_name)
        overrides = ["epochs=1", "threads=1", "seed=5", "patience=5",
                     f"batch_size={uneven_batch_size(n_train)}", *sets]
        settings = resolve(model_name, cls.Config, run_defaults=cls.run_defaults,
                           overrides=overrides)
        set_threads(1)
        seed_everything(settings.run.seed)
        model = create_model(model_name, ds, settings.params)
        if float64:
            model = model.double()
        trainer = Trainer(settings.run, None, progress=False, dist=dist)
        trainer.fit(model, ds)
        saved[name] = {"state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                       "extra": model.extra_state(),
                       "losses": {k: v for k, v in trainer.history[0].items()
                                  if k not in ("epoch", "train_seconds", "valid_seconds")
                                  and not k.startswith("valid_")},
                       "batch_size": settings.params.batch_size}
    where = "single" if dist is None else f"rank{dist.rank}"
    torch.save(saved, out / f"{where}.pt")
    if dist is not None:
        dist.close()


def units(out: Path) -> None:
    """Each sharded loss against the same loss of the whole batch, in float64."""
    import torch.distributed as dist_api

    from mmssl.models.losses import embedding_norm_loss, info_nce, squared_norm_loss
    from mmssl.models.mmssl.discriminator import Discriminator

    dist = from_environment("cpu", 60.0, 1)
    torch.manual_seed(0)  # the same whole-batch inputs on every rank
    total, rank = 11, dist.rank
    shard = shards.Shard(dist.batch_group, rank, split_sizes(total, dist.world_size))
    cut = slice(shard.offset, shard.offset + shard.size)
    results = {}

    def compare(name, loss_fn, inputs, params=()):
        """loss_fn(*tensors) on the whole batch here, and on this rank's rows sharded."""
        leaves = [x.clone().requires_grad_() for x in inputs]
        full = loss_fn(*leaves)
        wrt = leaves + list(params[0]) if params else leaves
        ref = [torch.zeros_like(w) if g is None else g
               for w, g in zip(wrt, torch.autograd.grad(full, wrt, allow_unused=True))]
        local = [x.clone().requires_grad_() for x in inputs]
        own = params[1] if params else []
        with shards.sharded(shard):
            part = loss_fn(*[x[cut] for x in local]) if not params else params[2](
                *[x[cut] for x in local])
            shards.backward(part)
        grads = [x.grad if x.grad is not None else torch.zeros_like(x) for x in local + list(own)]
        for g in grads:  # averaged over ranks, as DDP and SyncedOptimizer do
            dist_api.all_reduce(g, group=dist.group)
            g /= dist.world_size
        value = torch.tensor([part.item() * shard.weight], dtype=torch.float64)
        dist_api.all_reduce(value, group=dist.group)
        results[name] = {"value": abs(value.item() - full.item()),
                         "grad": max(float((a - b).abs().max()) for a, b in zip(ref, grads))}

    x = [torch.randn(total, 6, dtype=torch.float64) for _ in range(3)]
    compare("embedding_norm_loss", lambda u, p, n: embedding_norm_loss(u, p, n), x)
    compare("squared_norm_loss", lambda u, p, n: squared_norm_loss(u, p, n, batch_size=total), x)
    compare("info_nce", lambda a, b: info_nce(a, b, 0.5), x[:2])

    # The critic: WGAN-GP loss through batch norm, its penalty a gradient of a gradient.
    torch.manual_seed(1)
    critic = Discriminator(32, 0.2, 0.0, 0.0, 100.0).double()
    synced = copy.deepcopy(critic)
    convert_batch_norm(synced)
    h_real, h_fake = torch.randn(total, 8, dtype=torch.float64), torch.randn(total, 8, dtype=torch.float64)
    alpha = torch.rand(total, 1, dtype=torch.float64)
    gram = critic.input.weight @ critic.input.weight.T
    gram_s = synced.input.weight @ synced.input.weight.T

    def critic_loss(model, g):
        return lambda r, f, a: model.wgan_gp_loss(r, f, g, 0.3, 1.0, a)

    compare("wgan_gp_loss", critic_loss(critic, gram.detach()), [h_real, h_fake, alpha],
            params=(list(critic.parameters()), list(synced.parameters()),
                    critic_loss(synced, gram_s.detach())))
    results["running_stats"] = max(
        float((a - b).abs().max()) for (k, a), (_, b) in zip(critic.state_dict().items(),
                                                            synced.state_dict().items())
        if "running" in k)
    (out / f"units-rank{rank}.json").write_text(json.dumps(results))
    dist.close()


if __name__ == "__main__":
    task, where, *rest = sys.argv[1:]
    if task == "train":
        train(Path(where), rest)
    else:
        units(Path(where))
