"""Each LRP rule against an independent element-by-element derivation (spec §1.3, §8.1-8.4)."""

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from relevance import rules


def test_safe_divide_matches_spec_values():
    # spec §8.1: f(a, 0) = 0; f(a, b) = a / (b + 1e-9) otherwise, also for negative b; -1e-9 divides by 1e-9
    out = rules.safe_divide(torch.ones(4, dtype=torch.float64), torch.tensor([0.0, 2.0, -2.0, -1e-9], dtype=torch.float64))
    expected = [0.0, 1 / (2 + 1e-9), 1 / (-2 + 1e-9), 1 / 1e-9]
    assert out.tolist() == pytest.approx(expected, rel=1e-15)


def explicit_alpha_beta(x, w, r, shared: bool):
    """Loops over (output i, input j): R_j = sum_i z+_ij R_i / denominators (spec §1.3 Linear)."""
    x, w, r = x.numpy(), w.numpy(), r.numpy()
    out = np.zeros_like(x)
    for b in range(x.shape[0]):
        for i in range(w.shape[0]):
            contributions = x[b] * w[i]
            activating = np.where(contributions > 0, contributions, 0.0)
            pos = np.where((x[b] > 0) & (w[i] > 0), contributions, 0.0)
            neg = np.where((x[b] < 0) & (w[i] < 0), contributions, 0.0)
            if shared:
                total = activating.sum()
                if total != 0:
                    out[b] += activating * r[b, i] / (total + 1e-9)
            else:
                for part in (pos, neg):
                    if part.sum() != 0:
                        out[b] += part * r[b, i] / (part.sum() + 1e-9)
    return torch.from_numpy(out)


@pytest.mark.parametrize("shared", [True, False])
def test_alpha_beta_equals_explicit_sum(shared):
    torch.manual_seed(0)
    x, w, r = torch.randn(2, 7, dtype=torch.float64), torch.randn(5, 7, dtype=torch.float64), torch.randn(2, 5, dtype=torch.float64)
    rule = rules.AlphaBeta(alpha=1.0, shared_denominator=shared)
    torch.testing.assert_close(rule(x, w, r), explicit_alpha_beta(x, w, r, shared), rtol=1e-12, atol=1e-14)


def test_zplus_with_forward_product_equals_without():
    torch.manual_seed(1)
    x, w, r = torch.randn(3, 11, 16, dtype=torch.float64), torch.randn(9, 16, dtype=torch.float64), torch.randn(3, 11, 9, dtype=torch.float64)
    rule = rules.AlphaBeta()
    torch.testing.assert_close(rule(x, w, r, product=F.linear(x, w)), rule(x, w, r), rtol=1e-13, atol=1e-15)


def test_zplus_conserves_and_ignores_inputs_without_positive_contribution():
    # spec §8.2: sum R_in = sum R_out where sum z+ > 0; R_in,j = 0 wherever all x_j w_ij < 0
    torch.manual_seed(2)
    x, w = torch.randn(4, 32, dtype=torch.float64), torch.randn(6, 32, dtype=torch.float64)
    w[:, 0] = -torch.sign(x[0, 0]) * w[:, 0].abs()  # every product x_0,0 * w_i,0 is negative
    r = torch.rand(4, 6, dtype=torch.float64)
    out = rules.AlphaBeta()(x, w, r)
    torch.testing.assert_close(out.sum(dim=1), r.sum(dim=1), rtol=1e-6, atol=0)
    assert abs(out[0, 0].item()) < 1e-15 * out.abs().max().item()  # zero up to rounding (three-product form)
    assert rules.AlphaBeta(shared_denominator=False)(x, w, r)[0, 0] == 0  # the direct sums give exact zero
    separate = rules.AlphaBeta(shared_denominator=False)(x, w, r)
    assert (separate.sum(dim=1) / r.sum(dim=1) > 1.5).all()  # the baseline roughly doubles (spec §6.1 #6)


def test_alpha_two_beta_one_subtracts_inhibition():
    torch.manual_seed(3)
    x, w, r = torch.randn(2, 5, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64), torch.rand(2, 4, dtype=torch.float64)
    xn = x.numpy()
    expected = np.zeros_like(xn)
    for b, i in itertools.product(range(2), range(4)):
        z = xn[b] * w[i].numpy()
        act, inh = np.clip(z, 0, None), np.clip(z, None, 0)
        expected[b] += 2 * act * r[b, i].item() / (act.sum() + 1e-9) - inh * r[b, i].item() / (inh.sum() + 1e-9)
    torch.testing.assert_close(rules.AlphaBeta(alpha=2.0)(x, w, r), torch.from_numpy(expected), rtol=1e-10, atol=1e-12)


def test_renormalized_add_totals_ratio_sign_and_per_sample():
    # spec §8.3: totals add up exactly, branch totals in the ratio |s_a| : |s_b|, each with the sign of T
    torch.manual_seed(4)
    a, b = torch.randn(2, 5, 3, dtype=torch.float64), torch.randn(2, 5, 3, dtype=torch.float64)
    r = torch.randn(2, 5, 3, dtype=torch.float64)
    r[1] = -r[1].abs()  # a sample with a negative total
    ra, rb = rules.RenormalizedAdd()(a, b, r)
    for sample in range(2):
        s = r[sample] / (a[sample] + b[sample] + 1e-9)
        sa, sb, total = (a[sample] * s).sum(), (b[sample] * s).sum(), r[sample].sum()
        assert (ra[sample].sum() + rb[sample].sum()).item() == pytest.approx(total.item(), rel=1e-8)
        assert ra[sample].sum().item() == pytest.approx((sa.abs() / (sa.abs() + sb.abs()) * total).item(), rel=1e-8)
        assert np.sign(ra[sample].sum().item()) == np.sign(total.item()) == np.sign(rb[sample].sum().item())
    singles = [rules.RenormalizedAdd()(a[i:i + 1], b[i:i + 1], r[i:i + 1]) for i in range(2)]
    torch.testing.assert_close(ra, torch.cat([s[0] for s in singles]), rtol=0, atol=0)


def test_add_rules_with_broadcast_operand():
    # a position embedding (1, N, D) added to a batch: per-sample totals, summed back to the operand's shape
    torch.manual_seed(5)
    x, pos, r = torch.randn(3, 4, 2, dtype=torch.float64), torch.randn(1, 4, 2, dtype=torch.float64), torch.randn(3, 4, 2, dtype=torch.float64)
    for rule in (rules.RenormalizedAdd(), rules.ZAdd()):
        rx, rpos = rule(x, pos, r)
        assert rx.shape == x.shape and rpos.shape == pos.shape
        per_sample = [rule(x[i:i + 1], pos, r[i:i + 1]) for i in range(3)]
        torch.testing.assert_close(rx, torch.cat([p[0] for p in per_sample]))
        torch.testing.assert_close(rpos, sum(p[1] for p in per_sample))
    rx, rpos = rules.ZAdd()(x, pos, r)
    torch.testing.assert_close(rx, x * r / (x + pos + 1e-9))


def test_bilinear_split_halves_and_matches_explicit():
    # spec §8.4: each operand of Z = U V receives about half of the total
    torch.manual_seed(6)
    u, v, r = torch.randn(2, 3, 4, dtype=torch.float64), torch.randn(2, 4, 5, dtype=torch.float64), torch.randn(2, 3, 5, dtype=torch.float64)
    ru, rv = rules.BilinearSplit()(u, v, r)
    torch.testing.assert_close(ru.sum(), r.sum() / 2, rtol=1e-6, atol=0)  # up to the 1e-9 stabiliser
    torch.testing.assert_close(rv.sum(), r.sum() / 2, rtol=1e-6, atol=0)
    expected_u, expected_v = torch.zeros_like(u), torch.zeros_like(v)
    for b, n, k, m in itertools.product(range(2), range(3), range(4), range(5)):
        z = (u[b, n] @ v[b, :, m]).item()
        share = u[b, n, k].item() * v[b, k, m].item() * r[b, n, m].item() / (z + 1e-9) / 2
        expected_u[b, n, k] += share
        expected_v[b, k, m] += share
    torch.testing.assert_close(ru, expected_u, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(rv, expected_v, rtol=1e-10, atol=1e-12)


def test_zbox_conserves_and_matches_explicit_patches():
    torch.manual_seed(7)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    w = torch.randn(5, 3, 4, 4, dtype=torch.float64)
    r = torch.rand(2, 5, 2, 2, dtype=torch.float64)
    out = rules.ZBox()(x, w, r, stride=(4, 4), padding=(0, 0))
    torch.testing.assert_close(out.sum(dim=(1, 2, 3)), r.sum(dim=(1, 2, 3)), rtol=1e-6, atol=0)
    expected = torch.zeros_like(x)
    for b in range(2):
        low, high = x[b].min(), x[b].max()
        for d, i, j in itertools.product(range(5), range(2), range(2)):
            patch = x[b, :, 4 * i:4 * i + 4, 4 * j:4 * j + 4]
            wd = w[d]
            terms = patch * wd - low * wd.clamp(min=0) - high * wd.clamp(max=0)
            expected[b, :, 4 * i:4 * i + 4, 4 * j:4 * j + 4] += terms * r[b, d, i, j] / (terms.sum() + 1e-9)
    torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-12)


def test_structural_rules():
    torch.manual_seed(8)
    x, r = torch.randn(2, 4, 3, dtype=torch.float64), torch.randn(2, 4, 3, dtype=torch.float64)
    x[0, 0, 0] = 0.0
    fan = rules.fanout_rule(x, r)
    assert fan[0, 0, 0] == 0
    torch.testing.assert_close(fan, torch.where(x == 0, 0.0, x * r / (x + 1e-9)))
    pooled_r = torch.randn(2, 3, dtype=torch.float64)
    selected = rules.selection_rule(x, pooled_r, index=1)
    assert selected[:, [0, 2, 3]].abs().sum() == 0
    torch.testing.assert_close(selected[:, 1].sum(), pooled_r.sum(), rtol=1e-4, atol=0)  # x / (x + 1e-9)
    mean = rules.token_mean_rule(x, pooled_r, start=1)
    assert mean[:, 0].abs().sum() == 0
    expected = x[:, 1:] / 3 * (pooled_r / (x[:, 1:].mean(1) + 1e-9)).unsqueeze(1)
    torch.testing.assert_close(mean[:, 1:], expected)


def test_magnitude_cache_follows_in_place_updates():
    weight = torch.nn.Parameter(torch.randn(4, 3))
    first = rules.weight_magnitude(weight)
    assert rules.weight_magnitude(weight) is first  # cached while unchanged
    with torch.no_grad():
        weight.mul_(-2)
    torch.testing.assert_close(rules.weight_magnitude(weight), weight.detach().abs())
    identity = id(weight)
    del weight
    assert identity not in rules._MAGNITUDE_CACHE
