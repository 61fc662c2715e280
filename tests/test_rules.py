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


class _Select:
    """Stand-ins for the pooling operations (their exact gradients), for the z-rule."""

    def __init__(self, gradient):
        self.gradient = gradient


def test_structural_rules():
    torch.manual_seed(8)
    x, r = torch.randn(2, 4, 3, dtype=torch.float64), torch.randn(2, 4, 3, dtype=torch.float64)
    x[0, 0, 0] = 0.0
    (fan,) = rules.Fanout().propagate(None, (x,), None, r)
    assert fan[0, 0, 0] == 0
    torch.testing.assert_close(fan, torch.where(x == 0, 0.0, x * r / (x + 1e-9)))
    pooled_r = torch.randn(2, 3, dtype=torch.float64)
    # token selection at a per-sample position: the z-rule puts everything on that token
    index = torch.tensor([1, 3])

    def select_gradient(inputs, grad, output):
        result = torch.zeros_like(inputs[0])
        result[torch.arange(2), index] = grad
        return (result,)

    selected_x = x[torch.arange(2), index]
    (selected,) = rules.ZRule().propagate(_Select(select_gradient), (x,), selected_x, pooled_r)
    for b, i in enumerate(index.tolist()):
        others = [t for t in range(4) if t != i]
        assert selected[b, others].abs().sum() == 0
        torch.testing.assert_close(selected[b, i], selected_x[b] * pooled_r[b] / (selected_x[b] + 1e-9))
    # mean of tokens 1: the generic z-rule x / n * R / mean
    mean = x[:, 1:].mean(1)

    def mean_gradient(inputs, grad, output):
        result = torch.zeros_like(inputs[0])
        result[:, 1:] = grad.unsqueeze(1) / 3
        return (result,)

    (pooled,) = rules.ZRule().propagate(_Select(mean_gradient), (x,), mean, pooled_r)
    assert pooled[:, 0].abs().sum() == 0
    torch.testing.assert_close(pooled[:, 1:], x[:, 1:] / 3 * (pooled_r / (mean + 1e-9)).unsqueeze(1))


# --------------------------------------------------------------------------------- gradient-form rules
class _Product:
    """The matmul operation's exact gradient, for the gradient-form rules."""

    kind = "attention_values"

    @staticmethod
    def gradient(inputs, grad, output):
        u, v = inputs
        return grad @ v.transpose(-2, -1), u.transpose(-2, -1) @ grad


def test_uniform_rule_gives_each_operand_half_of_the_epsilon_rule():
    # AttnLRP Prop. 3.3: Z = U V; R_Z = Z * g; each operand gets half: R_U[i,k] = sum_j U_ik V_kj g_ij / 2
    torch.manual_seed(11)
    u, v, g = (torch.randn(2, 3, 4, dtype=torch.float64), torch.randn(2, 4, 5, dtype=torch.float64),
               torch.randn(2, 3, 5, dtype=torch.float64))
    grad_u, grad_v = rules.Uniform(0.5).propagate(_Product, (u, v), None, g)
    relevance_u, relevance_v = u * grad_u, v * grad_v
    expected_u = torch.einsum("bik,bkj,bij->bik", u, v, g) / 2
    expected_v = torch.einsum("bik,bkj,bij->bkj", u, v, g) / 2
    torch.testing.assert_close(relevance_u, expected_u, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(relevance_v, expected_v, rtol=1e-12, atol=1e-14)
    total = ((u @ v) * g).sum()  # conservation: the halves add up to the output's relevance
    torch.testing.assert_close(relevance_u.sum() + relevance_v.sum(), total, rtol=1e-12, atol=0)


def test_constant_attention_gives_everything_to_the_values():
    # CP-LRP's AH rule: A constant, so O = A V is linear in V and R_V = V * A^T g carries R_O = O * g entirely
    torch.manual_seed(12)
    a = torch.softmax(torch.randn(2, 3, 3, dtype=torch.float64), -1)
    v, g = torch.randn(2, 3, 4, dtype=torch.float64), torch.randn(2, 3, 4, dtype=torch.float64)
    grad_a, grad_v = rules.ConstantAttention().propagate(_Product, (a, v), None, g)
    assert grad_a is None
    expected = torch.einsum("bik,bkd,bid->bkd", a, v, g)
    torch.testing.assert_close(v * grad_v, expected, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close((v * grad_v).sum(), ((a @ v) * g).sum(), rtol=1e-12, atol=0)


def test_constant_scale_layer_norm_equals_its_matrix_form_and_conserves_without_bias():
    # AttnLRP Prop. 3.4 / CP-LRP "LN": y = diag(w)/std (I - 11^T/N) x + b; R_x = x * J^T g
    from relevance.ops import LayerNorm

    torch.manual_seed(13)
    x, w, g = torch.randn(3, 6, dtype=torch.float64), torch.randn(6, dtype=torch.float64), torch.randn(3, 6, dtype=torch.float64)
    (grad_x, _, _) = rules.ConstantScale().propagate(LayerNorm(1e-6), (x, w, None), None, g)
    for b in range(3):
        std = ((x[b] - x[b].mean()).pow(2).mean() + 1e-6).sqrt()
        jacobian = torch.diag(w) / std @ (torch.eye(6, dtype=torch.float64) - torch.ones(6, 6, dtype=torch.float64) / 6)
        torch.testing.assert_close(grad_x[b], jacobian.T @ g[b], rtol=1e-12, atol=1e-14)
        y = jacobian @ x[b]  # no bias: the layer is linear in x with the scale held constant
        torch.testing.assert_close((x[b] * grad_x[b]).sum(), (y * g[b]).sum(), rtol=1e-10, atol=1e-14)


def test_identity_gradient_passes_relevance_unchanged_through_activations():
    # AttnLRP Eq. 9: R_x = R_y for y = f(x), element-wise; 0 where x = 0
    class Gelu:
        kind = "activation"

    torch.manual_seed(14)
    x, g = torch.randn(4, 5, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64)
    x[0, 0] = 0.0
    y = F.gelu(x)
    (grad_x,) = rules.IdentityGradient().propagate(Gelu, (x,), y, g)
    torch.testing.assert_close(x * grad_x, y * g, rtol=1e-12, atol=1e-15)
    assert grad_x[0, 0] == 0


# ------------------------------------------------------------------------------- the AttnLRP reference
def test_gradient_form_rules_equal_lxts_explicit_rules():
    """The rules of AttnLRP as its authors' package lxt writes them explicitly (lxt.explicit.functional, with a
    negligible epsilon), against this package's gradient form: relevance ``x * g`` with ``g`` the modified
    gradient of the upstream relevance divided by the output."""
    import lxt.explicit.functional as lxt  # installed by `make test` (pip install --no-deps lxt==2.1)

    from relevance import ops

    torch.manual_seed(15)
    eps = 1e-30

    def lxt_relevance(function, inputs, relevance_out):
        inputs = [i.detach().requires_grad_(True) for i in inputs]
        out = function(*inputs)
        return torch.autograd.grad(out, inputs, relevance_out, allow_unused=True), out

    def ours(operation, rule, inputs, relevance_out, output):
        grads = rule.propagate(operation, inputs, output, relevance_out / output)
        return [None if g is None else i * g for i, g in zip(inputs, grads)]

    x, w, b = torch.randn(3, 7, dtype=torch.float64), torch.randn(5, 7, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    r = torch.randn(3, 5, dtype=torch.float64)
    (expected,), _ = lxt_relevance(lambda t: lxt.linear_epsilon(t, w, b, epsilon=eps), [x], r)
    (actual, _, _) = ours(ops.Linear(), rules.Gradient(), (x, w, b), r, F.linear(x, w, b))
    torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-12)

    u, v, r = torch.randn(2, 3, 4, dtype=torch.float64), torch.randn(2, 4, 5, dtype=torch.float64), torch.randn(2, 3, 5, dtype=torch.float64)
    (expected_u, expected_v), _ = lxt_relevance(lambda p, q: lxt.matmul(p, q, epsilon=eps), [u, v], r)
    actual_u, actual_v = ours(ops.MatMul("attention_scores"), rules.Uniform(0.5), (u, v), r, u @ v)
    torch.testing.assert_close(actual_u, expected_u, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(actual_v, expected_v, rtol=1e-10, atol=1e-12)

    s, r = torch.randn(2, 3, 6, dtype=torch.float64), torch.randn(2, 3, 6, dtype=torch.float64)
    (expected,), _ = lxt_relevance(lambda t: lxt.softmax(t, -1), [s], r)
    (actual,) = ours(ops.Softmax(-1), rules.Gradient(), (s,), r, s.softmax(-1))
    torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-12)

    h, lw, lb, r = (torch.randn(2, 3, 6, dtype=torch.float64), torch.randn(6, dtype=torch.float64),
                    torch.randn(6, dtype=torch.float64), torch.randn(2, 3, 6, dtype=torch.float64))
    layer_norm = lambda t: lxt.layer_norm_grad_fn.apply(t, lw, lb, 1e-6, eps)  # noqa: E731
    (expected,), _ = lxt_relevance(layer_norm, [h], r)
    (actual, _, _) = ours(ops.LayerNorm(1e-6), rules.ConstantScale(), (h, lw, lb), r,
                          F.layer_norm(h, (6,), lw, lb, 1e-6))
    torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-12)

    a, c, r = torch.randn(2, 5, dtype=torch.float64), torch.randn(2, 5, dtype=torch.float64), torch.randn(2, 5, dtype=torch.float64)
    (expected_a, expected_c), _ = lxt_relevance(lambda p, q: lxt.add2(p, q, epsilon=eps), [a, c], r)
    actual_a, actual_c = ours(ops.Add(), rules.Gradient(), (a, c), r, a + c)
    torch.testing.assert_close(actual_a, expected_a, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(actual_c, expected_c, rtol=1e-10, atol=1e-12)


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


def test_magnitude_cache_is_bounded(monkeypatch):
    rules.clear_weight_cache()
    monkeypatch.setattr(rules, "MAGNITUDE_CACHE_BYTES", 3 * 100 * 8)  # room for three 10 x 10 float64 weights
    weights = [torch.nn.Parameter(torch.randn(10, 10, dtype=torch.float64)) for _ in range(5)]
    for weight in weights:
        rules.weight_magnitude(weight)
    assert len(rules._MAGNITUDE_CACHE) == 3  # the least recently used went first
    assert set(rules._MAGNITUDE_CACHE) == {id(w) for w in weights[2:]}
    huge = torch.nn.Parameter(torch.randn(40, 40, dtype=torch.float64))
    torch.testing.assert_close(rules.weight_magnitude(huge), huge.detach().abs())  # computed, never cached
    assert id(huge) not in rules._MAGNITUDE_CACHE
    rules.clear_weight_cache()
    assert not rules._MAGNITUDE_CACHE
