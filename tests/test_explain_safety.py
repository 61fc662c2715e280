"""explain() leaves nothing behind, is re-entrant across threads, and refuses what it cannot explain."""

import threading

import pytest
import torch
from conftest import FAST_OPTIONS, tiny_timm_vit

import relevance
from relevance.tape import current_tape
from relevance.models import vit


@pytest.fixture
def model():
    return vit.from_timm(tiny_timm_vit()).double()


def images(batch=2, seed=0):
    torch.manual_seed(seed)
    return torch.randn(batch, 3, 32, 32, dtype=torch.float64)


def module_state(model):
    hooks = sum(len(getattr(m, name)) for m in model.modules()
                for name in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"))
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    attributes = {name: set(vars(m)) for name, m in model.named_modules()}
    grads = [p.grad for p in model.parameters()]
    return hooks, flags, attributes, grads, model.training


def test_two_threads_with_one_model_get_the_maps_of_sequential_calls(model):
    jobs = [("transformer_attribution", images(2, 1), [1, 3]), ("transformer_attribution", images(2, 2), [5, 0]),
            ("gradient_rollout", images(2, 3), [2, 2]), ("lrp", images(2, 4), [6, 1])]
    expected = [relevance.explain(model, x, method=m, target=t).relevance for m, t, x in
                [(m, t, x) for m, x, t in jobs]]
    results: dict[int, torch.Tensor] = {}
    errors = []
    barrier = threading.Barrier(len(jobs))

    def work(index, method, x, target):
        try:
            barrier.wait()
            for _ in range(3):
                results[index] = relevance.explain(model, x, method=method, target=target).relevance
        except Exception as error:  # noqa: BLE001 - re-raised below in the main thread
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i, *job)) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    for index, expected_map in enumerate(expected):
        torch.testing.assert_close(results[index], expected_map, rtol=1e-12, atol=1e-15)


def test_nothing_of_an_explanation_stays_on_the_model(model):
    model.blocks[0].attn.qkv.weight.requires_grad_(False)  # a partly frozen model stays partly frozen
    model.train()  # and a model in training mode stays in training mode
    before = module_state(model)
    x = images()
    with torch.no_grad():
        model.eval()
        plain_before = model(x)
        model.train()
    for method in relevance.list_methods():
        relevance.explain(model, x, method=method, **FAST_OPTIONS.get(method, {}))
    after = module_state(model)
    assert after[0] == before[0] == 0  # no hooks, ever
    assert after[1] == before[1]
    assert after[2] == before[2]
    assert all(g is None for g in after[3])  # no gradients accumulated on parameters
    assert after[4] is True
    assert current_tape() is None
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), plain_before, rtol=0, atol=0)
    model.train()
    loss = model(x).logsumexp(dim=1).mean()
    loss.backward()  # still trains: every trainable parameter gets a gradient
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_training_mode_gives_the_same_maps_as_eval_mode():
    model = vit.from_timm(tiny_timm_vit(drop_rate=0.5, attn_drop_rate=0.5, proj_drop_rate=0.5)).double()
    for module in model.modules():  # the converted model keeps dropout modules: make them active
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.5
    x = images()
    eval_map = relevance.explain(model.eval(), x).relevance
    train_map = relevance.explain(model.train(), x).relevance
    torch.testing.assert_close(train_map, eval_map, rtol=0, atol=0)


def test_failures_leave_no_tape_and_the_model_works_afterwards(model, monkeypatch):
    x = images()
    with pytest.raises(ValueError, match="target classes"):
        relevance.explain(model, x, target=99)
    assert current_tape() is None

    def broken(*args, **kwargs):
        raise RuntimeError("boom inside the forward pass")

    monkeypatch.setattr(model.blocks[1], "forward", broken)
    with pytest.raises(RuntimeError, match="boom"):
        relevance.explain(model, x)
    assert current_tape() is None
    monkeypatch.undo()
    assert relevance.explain(model, x).relevance.shape == (2, 4, 4)


def test_a_model_whose_attention_was_not_captured_is_refused():
    timm_model = tiny_timm_vit()  # timm's own model is not LRP-aware (and uses fused attention)
    with pytest.raises(TypeError, match="not an LRP-aware model.*from_timm"):
        relevance.explain(timm_model, images().float())
    model = vit.from_timm(tiny_timm_vit())

    class FusedAttention(torch.nn.Module):  # an SDPA path that bypasses the recording
        def __init__(self, attention):
            super().__init__()
            self.inner = attention

        def forward(self, x):
            b, n, d = x.shape
            qkv = self.inner.qkv(x).reshape(b, n, 3, self.inner.num_heads, -1).permute(2, 0, 3, 1, 4)
            out = torch.nn.functional.scaled_dot_product_attention(*qkv.unbind(0))
            return self.inner.proj(out.transpose(1, 2).reshape(b, n, d))

    model.blocks[2].attn = FusedAttention(model.blocks[2].attn)
    with pytest.raises(relevance.AttentionNotCapturedError, match="2 attention maps for the 3 blocks"):
        relevance.explain(model, images().float())


def test_bad_inputs_get_clear_errors(model):
    x = images()
    with pytest.raises(ValueError, match="unknown method 'grad_cam'.*transformer_attribution"):
        relevance.explain(model, x, method="grad_cam")
    with pytest.raises(ValueError, match=r"expected images of shape \(B, 3, 32, 32\)"):
        relevance.explain(model, torch.randn(2, 3, 48, 48, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"start_layer must be an int in \[-3, 2\]"):
        relevance.explain(model, x, start_layer=3)
    with pytest.raises(ValueError, match="NaN or infinite"):
        relevance.explain(model, torch.where(x > 1, float("nan"), x))
    with pytest.raises(ValueError, match="NaN or infinite"):
        relevance.explain(model, torch.where(x > 1, float("inf"), x))
    with pytest.raises(RuntimeError, match="inference_mode"):
        with torch.inference_mode():
            relevance.explain(model, x)
    with torch.no_grad():  # a no_grad caller still gets gradient-based maps
        assert relevance.explain(model, x, method="gradient_rollout").relevance.abs().sum() > 0
    with pytest.raises(ValueError, match="data config"):
        model.data_config = None
        relevance.explain(model, [torch.zeros(32, 32, 3, dtype=torch.uint8).numpy()])
