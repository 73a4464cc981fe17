"""MMSSL's bfloat16 exact path (models/mmssl/bf16.py): its dense rows equal the float32
formulas to bfloat16 precision, gradients included, and its Gumbel noise has the right law."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mmssl.models.mmssl import bf16
from mmssl.models.mmssl.discriminator import fake_hidden

BF16 = {"rtol": 3e-2, "atol": 3e-3}  # a few bfloat16 roundings (8 bits of mantissa)


def assert_close_to_scale(got: torch.Tensor, want: torch.Tensor, share: float = 2e-2) -> None:
    """Every entry within ``share`` of the largest entry of ``want``: sums of products of
    bfloat16-rounded factors err with the size of their terms, not of their result."""
    err, scale = (got.float() - want).abs().max().item(), want.abs().max().item()
    assert err <= share * scale, f"max error {err:.3g} against a largest entry of {scale:.3g}"


def batch(n_users=12, n_items=50, d=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    p = torch.randn(n_users, d, generator=gen, requires_grad=True)
    q = torch.randn(n_items, d, generator=gen, requires_grad=True)
    observed = (torch.rand(n_users, n_items, generator=gen) < 0.2).float()
    observed[3] = 0  # a user with nothing observed
    rows, cols = observed.nonzero(as_tuple=True)
    return p, q, observed, rows, cols


def test_unobserved_scores_zero_exactly_the_observed_entries_and_carry_gradients():
    p, q, observed, rows, cols = batch()
    fast = bf16.unobserved_scores(p, q, rows, cols)
    assert fast.dtype == torch.bfloat16
    assert (fast[observed.bool()] == 0).all()
    dense = (p @ q.T) * (1 - observed)
    assert_close_to_scale(fast, dense)
    weights = torch.randn(dense.shape)
    want = torch.autograd.grad((dense * weights).sum(), [p, q])
    got = torch.autograd.grad((fast.float() * weights).sum(), [p, q])
    for a, b in zip(got, want):
        assert_close_to_scale(a, b)


def test_l2norm_is_f_normalize_zero_rows_included():
    x = torch.randn(6, 40)
    x[2] = 0
    torch.testing.assert_close(bf16.l2norm(x.bfloat16()).float(), F.normalize(x, dim=1), **BF16)
    assert (bf16.l2norm(x.bfloat16())[2] == 0).all()


def test_dense_fake_hidden_equals_the_factored_float32_product():
    p, q, observed, rows, cols = batch()
    weight = torch.randn(13, q.shape[0], requires_grad=True)
    fast = bf16.fake_hidden(p, q, rows, cols, weight)
    exact = fake_hidden(p, q, rows, cols, weight)
    assert fast.dtype == torch.bfloat16
    assert_close_to_scale(fast, exact)
    weights = torch.randn(exact.shape)
    want = torch.autograd.grad((exact * weights).sum(), [p, q, weight])
    got = torch.autograd.grad((fast.float() * weights).sum(), [p, q, weight])
    for a, b in zip(got, want):
        assert_close_to_scale(a, b)


def test_real_rows_without_noise_equal_the_float32_formula():
    p, q, observed, rows, cols = batch()
    p, q = p.detach(), q.detach()
    real = bf16.real_rows(observed, rows, cols, p, q, noise_scale=0.0, pref_scale=0.3)
    prefs = F.normalize((p @ q.T) * (1 - observed), dim=1)
    want = F.normalize(torch.softmax(observed, dim=1) + 0.3 * prefs, dim=1)
    assert real.dtype == torch.bfloat16
    torch.testing.assert_close(real.float(), want, **BF16)


def test_gumbel16_has_the_gumbel_law():
    torch.manual_seed(0)
    g = bf16.gumbel16((1000, 1000), torch.device("cpu")).double()
    assert g.dtype == torch.float64 and torch.isfinite(g).all()
    euler = 0.5772156649015329
    assert abs(g.mean().item() - euler) < 5e-3  # the standard error is 1.3e-3
    assert abs(g.var().item() - math.pi**2 / 6) < 2e-2
    # the distribution function exp(-exp(-x)) at a few points
    for x in (-1.0, 0.0, 1.0, 3.0):
        assert abs((g <= x).double().mean().item() - math.exp(-math.exp(-x))) < 3e-3
