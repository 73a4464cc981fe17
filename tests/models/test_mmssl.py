"""MMSSL: shapes, both variants' defining behaviours, exactness of the fast critic, learning."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import mmssl
import mmssl.models.mmssl.discriminator as mmssl_discriminator
from mmssl.config import build_config
from mmssl.data.synthetic import planted_dataset
from mmssl.models.mmssl import MMSSL, MMSSLConfig, resolve_config
from mmssl.training.sampler import BprSampler


def make_model(ds, **values) -> MMSSL:
    torch.manual_seed(0)
    values.setdefault("batch_size", 32)
    return MMSSL(ds, build_config(MMSSLConfig, values))


def run_steps(model: MMSSL, ds, n: int, seed: int = 0) -> list[dict[str, float]]:
    """n training steps; a new epoch (on_epoch_start) each time the sampler runs out."""
    sampler = BprSampler(ds.matrix("train"), model.config.batch_size, "user",
                         torch.Generator().manual_seed(seed),
                         model.config.sample_users_with_replacement)
    if not hasattr(model, "_test_optimizers"):
        model._test_optimizers = model.configure_optimizers()
    model.train()
    out, step = [], 0
    while step < n:
        model.on_epoch_start(0)
        for batch in sampler.epoch():
            out.append(model.training_step(batch, model._test_optimizers))
            step += 1
            if step == n:
                break
    return out


@pytest.mark.parametrize("modalities", [{"text": 12}, {"image": 20, "text": 8},
                                        {"image": 20, "text": 8, "audio": 5}])
@pytest.mark.parametrize("variant", ["official", "paper"])
def test_forward_shapes_and_finite_loss(modalities, variant):
    ds = planted_dataset(n_users=40, n_items=48, n_interactions=500, modalities=modalities)
    model = make_model(ds, variant=variant)
    out = model.forward()
    assert out["user"].shape == (40, 64) and out["item"].shape == (48, 64)
    assert len(out["user_modal"]) == len(modalities) == len(out["user_graph"])
    losses = run_steps(model, ds, 3)
    assert all(math.isfinite(v) for step in losses for v in step.values())
    scores = model.scorer()(torch.arange(40))
    assert scores.shape == (40, 48) and torch.isfinite(scores).all()


def test_graph_k_is_the_rate_of_the_catalogue_within_its_bounds():
    """k = floor(I * topk_rate) within [graph_topk_min, graph_topk_max]: U x k edges must not
    grow as U x I on a large catalogue, and G_m's rows hold k items each."""
    from mmssl.errors import ConfigError

    ds = planted_dataset(n_users=40, n_items=48, n_interactions=500)
    assert make_model(ds, variant="official", topk_rate=0.1).k == 4  # floor(4.8), inside the bounds
    assert make_model(ds, variant="official", topk_rate=0.5).k == 10  # floor(24), capped
    assert make_model(ds, variant="official", topk_rate=0.5, graph_topk_max=30).k == 24
    assert make_model(ds, variant="paper").k == 10  # floor(0.0048) raised to the paper's 10
    model = make_model(ds, variant="paper", topk_rate=0.5)
    model.refresh_graphs()
    rows, _ = model.structure.edges["text"]
    assert np.bincount(rows, minlength=40).max() == 10
    with pytest.raises(ConfigError, match="graph_topk_min 10 is above graph_topk_max 5"):
        build_config(MMSSLConfig, {"variant": "paper", "graph_topk_max": 5})


@pytest.mark.parametrize("mode", ["exact", "sketch"])
@pytest.mark.parametrize("variant", ["official", "paper"])
def test_forward_for_a_batch_of_users_is_exactly_the_rows_of_the_full_forward(variant, mode):
    """forward(users) builds u* for the batch only (repeats included); in exact mode its values
    and the gradients of every parameter are bit-identical to indexing the full forward (in
    sketch mode, where s_m and the fusion are of the batch's rows only, they are equal to
    rounding: the gradients add up in another order, and the dense products of the fusion over a
    few rows may round differently from the same products over all rows)."""
    ds = planted_dataset(n_users=40, n_items=48, n_interactions=500, seed=3)
    model = make_model(ds, variant=variant, topk_rate=0.1, n_layers=2, discriminator=mode)
    run_steps(model, ds, 2)  # the paper variant's graphs are built: every view is non-zero
    model.refresh_graphs()
    users = torch.tensor([5, 1, 5, 39, 0, 1, 1])
    grads = []
    for batch in (False, True):
        torch.manual_seed(1)
        model.zero_grad(set_to_none=True)
        out = model.forward(users) if batch else model.forward()
        u = out["user"] if batch else out["user"][users]
        s = out["user_graph"] if batch else [x[users] for x in out["user_graph"]]
        assert all(float(x.abs().sum()) > 0 for x in s)  # the views of G_m are used, not zeros
        (u.square().sum() + out["item"].sum() + sum((x * x).sum() for x in s)).backward()
        grads.append((torch.cat([u, *s], 1).detach(), {n: p.grad.clone() for n, p in
                                                       model.named_parameters() if p.grad is not None}))
    (full, g_full), (rows, g_rows) = grads
    if mode == "exact":
        assert torch.equal(full, rows)
    else:  # a product of 7 rows may round differently from one of all rows (seen: 1 thread, Intel AMX)
        torch.testing.assert_close(rows, full, rtol=1e-6, atol=1e-7)
    assert g_full.keys() == g_rows.keys()
    for name in g_full:
        if mode == "exact":
            assert torch.equal(g_full[name], g_rows[name]), name
        else:
            torch.testing.assert_close(g_rows[name], g_full[name], rtol=1e-5, atol=1e-7)


def test_variant_presets_and_single_fix_override():
    official = resolve_config(MMSSLConfig(variant="official"))
    assert (official.attention_keys, official.attention_mixing, official.leaky_slope) == ("queries", False, 1.0)
    assert (official.graph_mode, official.graph_topk_min) == ("official", 0)
    assert official.step_lr_schedule is False and official.sample_users_with_replacement is True
    paper = resolve_config(MMSSLConfig(variant="paper", attention_mixing=False))
    assert paper.attention_mixing is False  # one fix switched off alone
    assert (paper.attention_keys, paper.graph_mode) == ("w_k", "refresh")
    # The variant no longer touches the evaluation protocol: standard for every model.
    from mmssl.config import resolve

    for variant in ("official", "paper"):
        settings = resolve("mmssl", MMSSLConfig, overrides=[f"variant={variant}"])
        assert settings.run.protocol == "standard"


def test_official_attention_is_its_linear_shortcut():
    """Departure 8: each output is its own modality's view times the sum of W_cat's blocks."""
    ds = planted_dataset(n_users=30, n_items=40, n_interactions=300)
    model = make_model(ds, variant="official")
    x = torch.randn(2, 30, 64)
    blocks = model.w_cat.reshape(model.config.n_heads, 64, 64).sum(0)
    torch.testing.assert_close(model.attention(x), x @ blocks, rtol=1e-5, atol=1e-5)
    paper = make_model(ds, variant="paper")
    paper_blocks = paper.w_cat.reshape(4, 64, 64).sum(0)
    assert not torch.allclose(paper.attention(x), x @ paper_blocks, atol=1e-3)  # really mixes


def test_official_graphs_become_empty_and_contrastive_loss_is_constant():
    """Departure 4: k = floor(I * 1e-4) = 0 and the rebuild empties G_m from step 2 on."""
    ds = planted_dataset(n_users=30, n_items=40, n_interactions=300)
    model = make_model(ds, variant="official")
    assert model.k == 0
    run_steps(model, ds, 3)
    assert all(model.modality_graph(m) is None for m in model.modalities)
    assert model.structure.all_empty()
    out = model.forward()
    assert all(float(s.abs().sum()) == 0.0 for s in out["user_graph"])
    users = torch.arange(16)
    cl = sum(model.contrastive_loss(s[users], out["user"][users]) for s in out["user_graph"])
    (grad,) = torch.autograd.grad(cl, model.user_embedding, allow_unused=True)
    assert grad is None or float(grad.abs().sum()) == 0.0
    expected = -len(model.modalities) * math.log(1 / (2 * 16 - 1) + 1e-8)
    assert float(cl.detach()) == pytest.approx(expected, rel=1e-6)


def test_paper_graphs_stay_alive_and_contrastive_loss_has_gradient():
    ds = planted_dataset(n_users=30, n_items=40, n_interactions=300)
    model = make_model(ds, variant="paper")
    for epoch in range(3):
        run_steps(model, ds, 5, seed=epoch)
        model.on_epoch_end(epoch)
    for m in model.modalities:
        rows, cols = model.structure.edges[m]
        assert len(rows) == ds.n_users * model.k > 0  # every user keeps k >= 1 generated edges
    out = model.forward()
    users = torch.arange(16)
    cl = sum(model.contrastive_loss(s[users], out["user"][users]) for s in out["user_graph"])
    (grad,) = torch.autograd.grad(cl, model.user_embedding)
    assert float(grad.abs().sum()) > 0


@pytest.mark.parametrize("observed_scores", ["gathered", "sampled"])
def test_fake_hidden_equals_dense_rows_times_weight(monkeypatch, observed_scores):
    if observed_scores == "sampled":  # what catalogues above the gather limit take
        monkeypatch.setattr(mmssl_discriminator, "_GATHER_LIMIT", 0)
    ds = planted_dataset(n_users=30, n_items=40, n_interactions=400, zero_rows=3)
    model = make_model(ds, variant="paper").double()
    users = torch.tensor([0, 3, 3, 7, 29])
    out = model.forward()
    observed, rows, cols = model._observed(users)
    weight = model.discriminator.input.weight
    for u_m, i_m in zip(out["user_modal"], out["item_modal"]):
        dense = F.normalize((u_m[users] @ i_m.T) * (1 - observed.double()), dim=1) @ weight.T
        fast = model.fake_hidden(u_m[users], i_m, rows, cols, weight)
        torch.testing.assert_close(fast, dense, rtol=1e-9, atol=1e-12)
        g_dense = torch.autograd.grad(dense.sin().sum(), [weight, u_m], retain_graph=True)
        g_fast = torch.autograd.grad(fast.sin().sum(), [weight, u_m], retain_graph=True)
        for a, b in zip(g_fast, g_dense):
            torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


def test_fast_discriminator_loss_equals_three_critic_calls():
    ds = planted_dataset(n_users=30, n_items=48, n_interactions=400)
    model = make_model(ds, variant="paper", d_dropout1=0.0, d_dropout2=0.0).double()
    critic = model.discriminator
    gen = torch.Generator().manual_seed(1)
    real = F.normalize(torch.rand(8, 48, generator=gen, dtype=torch.float64), dim=1)
    fake = F.normalize(torch.rand(16, 48, generator=gen, dtype=torch.float64), dim=1)
    alpha = torch.rand(16, 1, generator=gen, dtype=torch.float64)
    fast = model.discriminator_loss(real, fake @ critic.input.weight.T, alpha)
    g_fast = torch.autograd.grad(fast, list(critic.parameters()))
    real2 = real.repeat(2, 1)
    mixed = (alpha * real2 + (1 - alpha) * fake).requires_grad_(True)
    out = critic(mixed)
    (grad_x,) = torch.autograd.grad(out, mixed, torch.ones_like(out), create_graph=True)
    naive = -critic(real2).mean() + critic(fake).mean() + 0.3 * ((grad_x.norm(2, dim=1) - 1) ** 2).mean()
    g_naive = torch.autograd.grad(naive, list(critic.parameters()))
    torch.testing.assert_close(fast, naive, rtol=1e-9, atol=1e-9)
    for a, b in zip(g_fast, g_naive):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)


def test_official_discriminator_is_linear_and_paper_is_not():
    ds = planted_dataset(n_users=20, n_items=40, n_interactions=200)
    official = make_model(ds, variant="official").discriminator
    paper = make_model(ds, variant="paper").discriminator
    # official: LeakyReLU(1.0), i.e. the identity, which is what the head holds in its place
    assert [type(official.head[i]) for i in (0, 4)] == [torch.nn.Identity] * 2
    assert [paper.head[i].negative_slope for i in (0, 4)] == [0.01, 0.01]


def test_identity_in_place_of_leaky_relu_one_changes_no_bit():
    # forwards, backwards and through the gradient penalty's second backward
    ds = planted_dataset(n_users=20, n_items=40, n_interactions=200)
    critic = make_model(ds, variant="official").discriminator
    leaky = copy.deepcopy(critic)
    leaky.head[0], leaky.head[4] = torch.nn.LeakyReLU(1.0), torch.nn.LeakyReLU(1.0)
    h_real, h_fake = torch.randn(16, 10), torch.randn(16, 10)
    grads = []
    for c in (critic, leaky):
        torch.manual_seed(0)
        c.wgan_gp_loss(h_real, h_fake, torch.eye(10), 5.0, 1.0).backward()
        grads.append({n: p.grad.clone() for n, p in c.named_parameters() if p.grad is not None})
    assert len(grads[0]) == 9 and grads[0].keys() == grads[1].keys()  # the input bias, the head
    assert all(torch.equal(grads[0][n], grads[1][n]) for n in grads[0])


def test_zero_feature_rows_give_no_nan():
    ds = planted_dataset(n_users=30, n_items=40, n_interactions=300, zero_rows=10)
    model = make_model(ds, variant="paper")
    losses = run_steps(model, ds, 4)
    model.on_epoch_end(0)
    assert all(math.isfinite(v) for step in losses for v in step.values())
    assert torch.isfinite(model.scorer()(torch.arange(30))).all()


def test_batch_larger_than_users_samples_with_replacement_only_in_official():
    ds = planted_dataset(n_users=20, n_items=30, n_interactions=200)
    for variant, expected in (("official", 64), ("paper", 20)):
        model = make_model(ds, variant=variant, batch_size=64)
        sampler = BprSampler(ds.matrix("train"), 64, "user", torch.Generator().manual_seed(0),
                             model.config.sample_users_with_replacement)
        assert len(next(iter(sampler.epoch())).users) == expected


def test_learning_rate_schedule_steps_only_in_paper():
    ds = planted_dataset(n_users=20, n_items=30, n_interactions=200)
    for variant, stepped in (("official", False), ("paper", True)):
        model = make_model(ds, variant=variant)
        optimizers = model.configure_optimizers()
        schedulers = model.configure_schedulers(optimizers)
        assert bool(schedulers) is stepped
        optimizers["recommender"].step()  # (no gradients: nothing moves) before the schedule
        for s in schedulers.values():
            s.step()
        lr = optimizers["recommender"].param_groups[0]["lr"]
        assert (lr < 5.5e-4) is stepped


def test_precision_auto_follows_the_hardware_and_says_so(monkeypatch):
    import mmssl.runtime as runtime

    ds = planted_dataset(n_users=30, n_items=40, n_interactions=300)
    for fast, word in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(runtime, "fast_bf16", lambda device, fast=fast: (fast, "test CPU"))
        model = make_model(ds, precision="auto")
        model.on_device(torch.device("cpu"))
        assert model.bf16 is fast
        assert f"precision: auto chose {word} (test CPU)" in model.notes
        sketched = make_model(ds, precision="auto", discriminator="sketch")
        sketched.on_device(torch.device("cpu"))
        assert sketched.bf16 is False
        assert ("precision: auto chose fp32 (the sketched critic has no large dense products to "
                "speed up)") in sketched.notes
    assert runtime.fast_bf16.__name__ == "<lambda>"
    monkeypatch.undo()
    chosen, why = runtime.fast_bf16(torch.device("cpu"))  # the real check on this machine
    assert isinstance(chosen, bool) and why.startswith("CPU")


def test_bf16_precision_runs_and_stays_close():
    ds = planted_dataset(n_users=30, n_items=40, n_interactions=300)
    fp32 = run_steps(make_model(ds, variant="official"), ds, 1)[0]
    bf16 = run_steps(make_model(ds, variant="official", precision="bf16"), ds, 1)[0]
    assert math.isfinite(bf16["loss"]) and abs(bf16["bpr"] - fp32["bpr"]) < 1e-3


@pytest.mark.parametrize("discriminator", ["exact", "sketch"])
def test_bf16_propagates_in_bf16_in_sketched_training_only(discriminator):
    """With bf16 and the sketched critic the graph products of a training forward run in
    bfloat16 (close to float32, not equal); with the exact critic, and in evaluation
    (model.eval()), the forward is the float32 one, bit for bit."""
    ds = planted_dataset(n_users=30, n_items=40, n_interactions=300)
    fp32 = make_model(ds, discriminator=discriminator)
    bf16 = make_model(ds, discriminator=discriminator, precision="bf16")
    bf16.load_state_dict(fp32.state_dict())
    for m in (fp32, bf16):
        m.eval()
    with torch.no_grad():
        for a, b in zip(fp32.factors(), bf16.factors()):
            assert torch.equal(a, b)
        fp32.train(), bf16.train()
        torch.manual_seed(1)
        want = fp32.forward()["item"]
        torch.manual_seed(1)  # the same dropout masks
        got = bf16.forward()["item"]
    assert got.dtype == torch.float32
    if discriminator == "exact":
        assert torch.equal(got, want)
    else:
        assert not torch.equal(got, want)
        torch.testing.assert_close(got, want, rtol=3e-2, atol=3e-3)


def test_rejects_dataset_without_modalities():
    ds = planted_dataset(n_users=20, n_items=30, n_interactions=200, modalities={})
    from mmssl.errors import DataError
    from mmssl.models import create_model

    with pytest.raises(DataError, match="mmssl needs at least one item modality"):
        create_model("mmssl", ds, MMSSLConfig())


def test_training_lifts_recall_far_above_random(tmp_path):
    from mmssl.evaluation import evaluate

    ds = planted_dataset(n_users=200, n_items=120, n_interactions=4000, seed=3)
    metrics = mmssl.fit("mmssl", ds, variant="paper", epochs=12, batch_size=128, lr=5e-3,
                        patience=20, progress=False).metrics
    random_scores = torch.rand(ds.n_users, ds.n_items, generator=torch.Generator().manual_seed(0))
    random_recall = evaluate(random_scores, ds, split="valid", ks=(20,))["recall@20"]
    assert metrics["valid"]["recall@20"] > 2 * random_recall
    assert metrics["valid"]["recall@20"] > 0.4
    assert np.isfinite(list(metrics["test"].values())).all()


def test_fused_views_in_checkpointed_chunks_equal_the_whole(monkeypatch):
    """Above ATTENTION_BLOCK the fusion runs in recomputed chunks: same values and gradients."""
    from mmssl.models.mmssl import model as mmssl_model

    ds = planted_dataset(n_users=40, n_items=48, n_interactions=500)
    model = make_model(ds, variant="paper")
    run_steps(model, ds, 3)  # live modality graphs

    def loss_and_grads():
        torch.manual_seed(1)  # the same dropout masks
        out = model.forward()
        loss = out["user"].square().sum() + out["item"].sum() + sum(s.sum() for s in out["user_graph"])
        return loss, torch.autograd.grad(loss, [model.user_embedding, model.w_q, model.w_cat])

    whole, whole_grads = loss_and_grads()
    monkeypatch.setattr(mmssl_model, "ATTENTION_BLOCK", 2 * 2 * 4 * 64 * 7)  # chunks of 7 rows
    chunked, chunked_grads = loss_and_grads()
    torch.testing.assert_close(chunked, whole)
    for a, b in zip(chunked_grads, whole_grads):
        torch.testing.assert_close(a, b)
