"""relevance.ops: every hand-written backward equals autograd (gradcheck, float64), and each operation kind
dispatches to its rule set's rule."""

import pytest
import torch
import torch.nn.functional as F

from relevance import ops
from relevance import rules as R
from relevance.rule_sets import ATTNLRP_RULES, OPERATION_KINDS, TRANSFORMER_ATTRIBUTION_RULES, RuleSet
from relevance.tape import Mode, recording

torch.manual_seed(0)


def double(*shape, positive=False):
    x = torch.randn(*shape, dtype=torch.float64)
    return (x.abs() + 0.1 if positive else x).requires_grad_(True)


def under_rules(function):
    """``function`` evaluated with a rule-set tape current, so the operations build their rule nodes."""

    def wrapped(*args):
        with recording(TRANSFORMER_ATTRIBUTION_RULES) as tape:
            tape.spaces["s"] = ops.TokenSpace("s", "text", args[0].shape[1], torch.ones(args[0].shape[:2], dtype=torch.bool))
            return function(*args)

    return wrapped


WEIGHT, BIAS = torch.randn(5, 4, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
KERNEL = torch.randn(6, 3, 2, 2, dtype=torch.float64)
NORM_W, NORM_B = torch.randn(4, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
INDEX = torch.tensor([2, 0])
VALID = torch.tensor([[True, True, True, False], [True, True, True, True]])

CASES = {
    "linear": (lambda x: ops.linear(x, WEIGHT, BIAS), [double(2, 3, 4)]),
    "linear-no-bias": (lambda x: ops.linear(x, WEIGHT), [double(2, 3, 4)]),
    "input_conv": (lambda x: ops.input_conv2d(x, KERNEL, None, (2, 2)), [double(2, 3, 4, 6)]),
    "attention_scores": (ops.attention_scores, [double(2, 3, 4, 5), double(2, 3, 5, 4)]),
    "attention_values": (ops.attention_values, [double(2, 3, 4, 4), double(2, 3, 4, 5)]),
    "product": (ops.matmul, [double(2, 1, 5), double(2, 5, 1)]),
    "add-broadcast": (ops.add, [double(2, 3, 4), double(1, 3, 4)]),
    "mask_scores": (lambda s: ops.mask_scores(s, torch.tensor([0.0, -1e4, 0.0, 0.0], dtype=torch.float64)),
                    [double(2, 3, 4)]),
    "softmax": (lambda x: ops.softmax(x, dim=-1), [double(2, 3, 4)]),
    "layer_norm": (lambda x: ops.layer_norm(x, NORM_W, NORM_B, 1e-6), [double(2, 3, 4)]),
    "layer_norm-no-affine": (lambda x: ops.layer_norm(x, None, None, 1e-6), [double(2, 3, 4)]),
    "l2_normalize": (ops.l2_normalize, [double(2, 4)]),
    "gelu": (lambda x: ops.activation(x, "gelu"), [double(2, 3, 4)]),
    "gelu_tanh": (lambda x: ops.activation(x, "gelu_tanh"), [double(2, 3, 4)]),
    "quick_gelu": (lambda x: ops.activation(x, "quick_gelu"), [double(2, 3, 4)]),
    "tanh": (lambda x: ops.activation(x, "tanh"), [double(2, 3, 4)]),
    "scale-constant": (lambda x: ops.scale(x, 0.125), [double(2, 3, 4)]),
    "scale-parameter": (lambda x: ops.scale(x, NORM_W), [double(2, 3, 4)]),
    "fanout": (lambda x: ops.fanout(x) * 2 + ops.fanout(x), [double(2, 3, 4)]),
    "select_token-fixed": (lambda x: ops.select_token(x, 1, stream="s"), [double(2, 4, 3)]),
    "select_token-per-sample": (lambda x: ops.select_token(x, INDEX, stream="s"), [double(2, 4, 3)]),
    "mean_tokens-valid-start": (lambda x: ops.mean_tokens(x, stream="s", valid=VALID, start=1), [double(2, 4, 3)]),
}


#: The rule kind each case's operation dispatches to.
KINDS = {"linear": "linear", "linear-no-bias": "linear", "input_conv": "input_conv",
         "attention_scores": "attention_scores", "attention_values": "attention_values", "product": "product",
         "add-broadcast": "add", "mask_scores": "mask", "softmax": "softmax", "layer_norm": "normalization",
         "layer_norm-no-affine": "normalization", "l2_normalize": "normalization", "gelu": "activation",
         "gelu_tanh": "activation", "quick_gelu": "activation", "tanh": "activation", "scale-constant": "scale",
         "scale-parameter": "scale", "fanout": "fanout", "select_token-fixed": "pooling",
         "select_token-per-sample": "pooling", "mean_tokens-valid-start": "pooling"}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_every_operation_backward_equals_autograd(case):
    function, inputs = CASES[case]
    # the operations' own backward (gradient mode of a rule-set tape) against finite differences
    assert torch.autograd.gradcheck(under_rules(function), inputs, eps=1e-6, atol=1e-7)
    # and against autograd of the plain torch computation (no tape)
    with torch.enable_grad():
        expected_out = function(*inputs)
        seed = torch.randn_like(expected_out)
        expected = torch.autograd.grad(expected_out, inputs, seed)
        actual = torch.autograd.grad(under_rules(function)(*inputs), inputs, seed)
    for e, a in zip(expected, actual):
        torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-12)


def test_normalisations_with_constant_scale_equal_autograd_with_the_scale_detached():
    x = double(2, 3, 4)
    seed = torch.randn(2, 3, 4, dtype=torch.float64)
    mean = x.mean(-1, keepdim=True)
    std = ((x - mean).pow(2).mean(-1, keepdim=True) + 1e-6).sqrt()
    detached = (x - mean) / std.detach() * NORM_W + NORM_B
    (expected,) = torch.autograd.grad(detached, x, seed)
    (actual, _, _) = ops.LayerNorm(1e-6).gradient_with_constant_scale((x.detach(), NORM_W, NORM_B), seed)
    torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-14)
    v = double(2, 5)
    seed = torch.randn(2, 5, dtype=torch.float64)
    (expected,) = torch.autograd.grad(v / v.norm(dim=-1, keepdim=True).detach(), v, seed)
    (actual,) = ops.L2Normalize(1e-12).gradient_with_constant_scale((v.detach(),), seed)
    torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-14)


class Recorder(R.Rule):
    """A rule that records what it was called with and returns markers."""

    def __init__(self, log, name):
        self.log, self.name = log, name

    def propagate(self, op, inputs, output, upstream):
        self.log.append((self.name, op.kind))
        return tuple(None if t is None else torch.full_like(t, 7.0) for t in inputs)


@pytest.mark.parametrize("case", [c for c in CASES if c != "fanout"])
def test_each_operation_dispatches_to_its_kinds_rule_in_relevance_mode(case):
    function, inputs = CASES[case]
    log = []
    rules = RuleSet("recorder", "relevance", **{kind: Recorder(log, kind) for kind in OPERATION_KINDS})
    with recording(rules) as tape:
        tape.spaces["s"] = ops.TokenSpace("s", "text", inputs[0].shape[1], torch.ones(inputs[0].shape[:2], dtype=torch.bool))
        output = function(*inputs)
        tape.mode = Mode.RELEVANCE
        results = torch.autograd.grad(output, inputs, torch.ones_like(output))
    assert log == [(KINDS[case], KINDS[case])]  # the rule of the operation's own kind, once
    assert all(torch.all(r == 7.0) for r in results)


def test_without_a_rule_set_operations_are_plain_torch_calls():
    x = double(2, 3, 4)
    with recording(None):
        out = ops.linear(x, WEIGHT, BIAS)
    assert out.grad_fn.name() != "_RuleFunctionBackward"
    torch.testing.assert_close(out, F.linear(x, WEIGHT, BIAS))


def test_rule_sets_validate_their_rules_and_names():
    with pytest.raises(ValueError, match="unknown operation kinds"):
        ATTNLRP_RULES.with_rules(convolution=R.Gradient())
    with pytest.raises(TypeError, match="not a relevance.rules.Rule"):
        TRANSFORMER_ATTRIBUTION_RULES.with_rules(linear=lambda *a: a)
    custom = ATTNLRP_RULES.with_rules(activation=R.Gradient())
    assert custom.activation is not ATTNLRP_RULES.activation and custom.propagates == "gradient"
