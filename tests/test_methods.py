"""The methods: conservation, the spec's equalities, batching, targets (the reference's numbers:
test_reference_parity.py)."""

import pytest
import torch
from conftest import DEVICE, FAST_OPTIONS, tiny_timm_vit

import relevance
from relevance import methods as M
from relevance.tape import recording
from relevance.models import vit

@pytest.fixture(scope="module")
def models64():
    return {
        "class-token": vit.from_timm(tiny_timm_vit()).double().to(DEVICE),
        "distilled": vit.from_timm(tiny_timm_vit("deit_tiny_distilled_patch16_224")).double().to(DEVICE),
        "avg-pool": vit.from_timm(tiny_timm_vit(global_pool="avg", class_token=False, fc_norm=True)).double().to(DEVICE),
    }


def images(batch: int, seed: int = 3, size=(32, 32)) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.randn(batch, 3, *size, dtype=torch.float64, device=DEVICE)


@pytest.mark.parametrize("kind", ["class-token", "distilled", "avg-pool"])
def test_relevance_is_conserved_at_every_block(models64, kind):
    # spec §1.6 and §8.5: from a one-hot start, the total at every block input stays about 1
    totals = relevance.relevance_per_block(models64[kind], images(3), target=[0, 4, 6])
    assert totals.shape == (3, 4)
    torch.testing.assert_close(totals, torch.ones_like(totals), rtol=0, atol=1e-3)
    baseline = relevance.relevance_per_block(models64[kind], images(3), target=[0, 4, 6], method="lrp")
    assert (baseline[:, 0] - 1).abs().min() > 0.1  # the baselines' rules do not conserve (spec §1.4)


def test_transformer_attribution_with_attention_in_place_of_relevance_equals_gradient_rollout(models64):
    # spec §8.6: with s = 0 and R_A replaced by A, the product is the ICCV 2021 rule prod(I + E_h[(dA*A)^+])
    model, x = models64["class-token"], images(2).requires_grad_(True)
    with recording() as tape:
        logits = model(x)
        one_hot = torch.nn.functional.one_hot(torch.tensor([1, 5], device=DEVICE), logits.shape[1]).double()
        attention = tape.attention_of("image")
        gradients = torch.autograd.grad(logits, attention, one_hot)
        maps = M.transformer_attribution_maps(gradients, [a.detach() for a in attention])
        product = M.readout_row(M.aggregate_transformer_attribution(maps), tape.space("image").readout)[:, 1:]
    rollout = relevance.explain(model, x.detach(), method="gradient_rollout", target=[1, 5]).relevance
    torch.testing.assert_close(product.reshape(rollout.shape), rollout, rtol=1e-12, atol=1e-15)
    attribution = relevance.explain(model, x.detach(), method="transformer_attribution", target=[1, 5]).relevance
    assert (attribution - rollout).abs().max() > 1e-3 * rollout.abs().max()  # R_A really is not A


@pytest.mark.parametrize("kind", ["class-token", "distilled", "avg-pool"])
@pytest.mark.parametrize("method", relevance.list_methods())
def test_a_batch_gives_the_maps_of_single_calls(models64, kind, method):
    model, x, targets = models64[kind], images(3), [2, 0, 6]
    options = FAST_OPTIONS.get(method, {})
    batch = relevance.explain(model, x, method=method, target=targets, start_layer=1, **options)
    assert batch.target.tolist() == targets
    for i in range(3):
        single = relevance.explain(model, x[i:i + 1], method=method, target=targets[i], start_layer=1, **options)
        torch.testing.assert_close(batch.relevance[i:i + 1], single.relevance, rtol=1e-10, atol=1e-14)
        torch.testing.assert_close(batch.logits[i:i + 1], single.logits, rtol=1e-12, atol=1e-12)


def test_attention_maps_equal_those_computed_from_timms_own_attention():
    timm_model = tiny_timm_vit()
    model = vit.from_timm(timm_model).double()
    x = images(2)
    probabilities = []
    for block in timm_model.blocks:
        block.attn.fused_attn = False  # eager: its attn_drop receives the probabilities
        block.attn.attn_drop.register_forward_hook(lambda module, args, out: probabilities.append(out.detach()))
    with torch.no_grad():
        timm_model.double()(x)
    expected_raw = probabilities[-1].mean(dim=1)[:, 0, 1:].reshape(2, 4, 4)
    torch.testing.assert_close(relevance.explain(model, x, method="attention").relevance, expected_raw)
    eye = torch.eye(17, dtype=torch.float64)
    joint = None
    for attention in probabilities:
        step = attention.mean(dim=1) + eye
        step = step / step.sum(dim=-1, keepdim=True)
        joint = step if joint is None else step @ joint
    torch.testing.assert_close(relevance.explain(model, x, method="rollout").relevance,
                               joint[:, 0, 1:].reshape(2, 4, 4))


def test_shapes_signs_and_class_dependence(models64):
    model, x = models64["class-token"], images(2)
    maps = {m: relevance.explain(model, x, method=m, target=[1, 2], **FAST_OPTIONS.get(m, {})).relevance
            for m in relevance.list_methods()}
    others = {m: relevance.explain(model, x, method=m, target=[3, 3], **FAST_OPTIONS.get(m, {})).relevance
              for m in relevance.list_methods()}
    for method, values in maps.items():
        spec = relevance.get_method(method)  # perturbation methods default to the patches as features
        pixel_level = spec.output == "input" and not (spec.attribution and spec.attribution.kind == "perturbation")
        assert values.shape == ((2, 32, 32) if pixel_level else (2, 4, 4)), method
        assert torch.isfinite(values).all(), method
        class_agnostic = method in ("attention", "rollout")
        assert torch.equal(values, others[method]) == class_agnostic, method
    for method in ("attention", "rollout", "transformer_attribution", "gradient_rollout", "partial_lrp"):
        assert (maps[method] >= 0).all(), method
    gradcam = maps["attention_gradcam"].flatten(1)
    assert ((gradcam.max(dim=1).values == 1) | (gradcam == 0).all(dim=1)).all()  # min-max, constant -> zeros
    assert (gradcam.min(dim=1).values == 0).all()


def test_targets_default_to_each_samples_argmax_and_accept_every_form(models64):
    model, x = models64["class-token"], images(3)
    default = relevance.explain(model, x, method="gradient_rollout")
    assert torch.equal(default.target, default.logits.argmax(dim=1))
    as_int = relevance.explain(model, x, method="gradient_rollout", target=4)
    as_tensor = relevance.explain(model, x, method="gradient_rollout", target=torch.tensor([4, 4, 4]))
    assert as_int.target.tolist() == [4, 4, 4]
    torch.testing.assert_close(as_int.relevance, as_tensor.relevance, rtol=0, atol=0)
    for bad, error in ([(7, ValueError), ([1, 2], ValueError), ([1.0, 2.0, 3.0], TypeError), (-1, ValueError)]):
        with pytest.raises(error):
            relevance.explain(model, x, method="gradient_rollout", target=bad)


def test_aliases_and_start_layer():
    assert relevance.get_method("TransAtt").name == "transformer_attribution"
    assert relevance.get_method("GAE").name == "gradient_rollout"
    model, x = vit.from_timm(tiny_timm_vit()).double(), images(1)
    late = relevance.explain(model, x, method="transformer_attribution", start_layer=2).relevance
    early = relevance.explain(model, x, method="transformer_attribution", start_layer=0).relevance
    assert not torch.allclose(late, early)


def test_method_options_override_the_family_conventions(models64):
    model, x, targets = models64["class-token"], images(2), [3, 1]
    record = {}
    with recording() as tape:
        logits = model(x.requires_grad_(True))
        attention = tape.attention_of("image")
        one_hot = torch.nn.functional.one_hot(torch.tensor(targets), logits.shape[1]).double()
        gradients = torch.autograd.grad(logits, attention, one_hot)
        record["A"], record["G"] = attention[-1].detach(), gradients[-1]
    # Grad-CAM with whole-map head weights (the BERT reference): weights average the whole N x N gradient,
    # the map is min-max normalised as a whole, then its [CLS] row is read (derived here by hand)
    weights = record["G"].mean(dim=(2, 3), keepdim=True)
    cam = (record["A"] * weights).mean(dim=1).clamp(min=0)
    flat = cam.flatten(1)
    span = (flat.max(1).values - flat.min(1).values)[:, None, None]
    assert (span > 0).any()  # at least one sample has a non-constant map (a constant one gives zeros, not NaN)
    cam = torch.where(span > 0, (cam - flat.min(1).values[:, None, None]) / span.clamp(min=1e-300), 0.0)
    expected = cam[:, 0, 1:].reshape(2, 4, 4)
    whole = relevance.explain(model, x.detach(), method="attention_gradcam", target=targets, gradcam_weights="whole_map")
    torch.testing.assert_close(whole.relevance, expected, rtol=1e-12, atol=1e-14)
    row = relevance.explain(model, x.detach(), method="attention_gradcam", target=targets)
    assert not torch.allclose(row.relevance, whole.relevance)
    with pytest.raises(ValueError, match="gradcam_weights"):
        relevance.explain(model, x.detach(), method="attention_gradcam", gradcam_weights="heads")
    # row normalisation of transformer attribution's product (the BERT reference's convention, spec §2.2)
    plain = relevance.explain(model, x.detach(), method="transformer_attribution", target=targets)
    normalised = relevance.explain(model, x.detach(), method="transformer_attribution", target=targets,
                                   row_normalize=True)
    steps = []
    with recording(relevance.TRANSFORMER_ATTRIBUTION_RULES) as tape:
        logits = model(x.detach().requires_grad_(True))
        attention = tape.attention_of("image")
        gradients = torch.autograd.grad(logits, attention, one_hot, retain_graph=True)
        from relevance.tape import Mode

        tape.mode = Mode.RELEVANCE
        relevances = torch.autograd.grad(logits, attention, one_hot)
    eye = torch.eye(17, dtype=torch.float64)
    joint = None
    for g, r in zip(gradients, relevances):
        step = (g * r).clamp(min=0).mean(dim=1) + eye
        step = step / step.sum(dim=-1, keepdim=True)
        joint = step if joint is None else step @ joint
        steps.append(step)
    torch.testing.assert_close(normalised.relevance, joint[:, 0, 1:].reshape(2, 4, 4), rtol=1e-10, atol=1e-14)
    assert (plain.relevance - normalised.relevance).abs().max() > 1e-9 * plain.relevance.abs().max()
    assert normalised.matrices["image"].shape == (2, 17, 17)
    torch.testing.assert_close(normalised.matrices["image"], joint)


def test_negative_start_layers_count_from_the_end_and_layers_pick_blocks(models64):
    model, x = models64["class-token"], images(2)
    for method in ("transformer_attribution", "gradient_rollout", "rollout"):
        from_end = relevance.explain(model, x, method=method, target=[1, 2], start_layer=-1)
        last = relevance.explain(model, x, method=method, target=[1, 2], start_layer=2)
        torch.testing.assert_close(from_end.relevance, last.relevance, rtol=0, atol=0)
        assert from_end.start_layers == {"image": 2}
        chosen = relevance.explain(model, x, method=method, target=[1, 2], layers=[1, 2])
        start_one = relevance.explain(model, x, method=method, target=[1, 2], start_layer=1)
        torch.testing.assert_close(chosen.relevance, start_one.relevance, rtol=0, atol=0)
    with pytest.raises(ValueError, match="start_layer_text applies to models with a text stream"):
        relevance.explain(model, x, start_layer_text=0)
    with pytest.raises(ValueError, match="unknown streams"):
        relevance.explain(model, x, start_layer={"text": 0})


def test_explanations_display_in_notebooks_without_javascript(models64):
    import io

    from PIL import Image

    model, x = models64["class-token"], images(2)
    explanation = relevance.explain(model, x, method="transformer_attribution", target=[1, 2])
    page = explanation._repr_html_()
    assert page.count("<img src='data:image/png;base64,") == 2 and "<script" not in page.lower()
    assert "transformer_attribution" in page and "class 1" in page
    png = Image.open(io.BytesIO(explanation._repr_png_()))
    assert png.format == "PNG" and png.size == (32, 32)
    assert len(explanation) == 2 and explanation.scores.shape == (2,)
    torch.testing.assert_close(explanation.scores, explanation.logits.gather(1, torch.tensor([[1], [2]]))[:, 0])


def test_callable_targets_explain_any_score_of_the_output(models64):
    model, x = models64["class-token"], images(2)
    by_class = relevance.explain(model, x, method="gradient_rollout", target=[3, 5])
    by_function = relevance.explain(model, x, method="gradient_rollout",
                                    target=lambda logits: logits[:, 3] * torch.tensor([1.0, 0.0], dtype=logits.dtype)
                                    + logits[:, 5] * torch.tensor([0.0, 1.0], dtype=logits.dtype))
    torch.testing.assert_close(by_function.relevance, by_class.relevance, rtol=1e-12, atol=1e-15)
    assert by_function.target is None
    margin = relevance.explain(model, x, method="gradient_rollout", target=lambda logits: logits[:, 3] - logits[:, 5])
    assert not torch.allclose(margin.relevance, by_class.relevance)
    with pytest.raises(ValueError, match="one score per sample"):
        relevance.explain(model, x, method="gradient_rollout", target=lambda logits: logits.sum())


def test_class_names_are_targets_too():
    from relevance.models.embedded import load_embedded

    model = load_embedded().double()
    x = images(2, size=(64, 64))
    by_name = relevance.explain(model, x, method="gradient_rollout", target=["star", "ring"])
    by_index = relevance.explain(model, x, method="gradient_rollout",
                                 target=[model.class_names.index("star"), model.class_names.index("ring")])
    torch.testing.assert_close(by_name.relevance, by_index.relevance, rtol=0, atol=0)
    assert [by_name.class_name(i) for i in range(2)] == ["star", "ring"]
    with pytest.raises(ValueError, match="starr"):
        relevance.explain(model, x, method="gradient_rollout", target="starr")
