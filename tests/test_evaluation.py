"""Evaluation metrics against values computed by hand on tiny cases, AP against sklearn, and the
ImageNet / ImageNet-Segmentation readers on tiny fixture files in the real formats."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import average_precision_score

from relevance.evaluation import (
    STEPS,
    ImageNetSegmentation,
    ImageNetVal,
    SegmentationAccumulator,
    average_precision,
    binarize,
    class_specificity,
    dilate,
    imagenet_val_batches,
    make_normalize,
    mass_inside,
    multilabel_present,
    normalize_map,
    perturb,
    perturbation_auc,
    perturbation_curve,
    perturbation_hits,
    perturbation_test,
    pointing_game,
    segmentation_ap,
    segmentation_batches,
    segmentation_test,
    top1_correct,
)

# ----------------------------------------------------------------------------- perturbation


def test_auc_of_constant_accuracy_is_90a():
    for a in (0.0, 0.3, 0.80314, 1.0):
        assert perturbation_auc([a] * 10) == pytest.approx(90 * a)
        assert perturbation_auc([a] * 9, steps=STEPS[1:], unperturbed=a) == pytest.approx(90 * a)


def test_auc_by_hand():
    acc = [1.0, 0.8, 0.6, 0.4, 0.2, 0.0, 0.0, 0.0, 0.0, 0.0]
    # trapezoids: 0.1 * (0.9 + 0.7 + 0.5 + 0.3 + 0.1) = 0.25
    assert perturbation_auc(acc) == pytest.approx(25.0)
    assert perturbation_auc(acc) != pytest.approx(100 * np.mean(acc))  # not the mean accuracy
    assert perturbation_auc(torch.tensor(acc)) == pytest.approx(25.0)
    with pytest.raises(ValueError):
        perturbation_auc(acc[1:], steps=STEPS[1:])  # no unperturbed accuracy
    with pytest.raises(ValueError):
        perturbation_auc(acc[:5])


def test_perturb_removes_top_pixels_by_hand():
    img = torch.ones(1, 3, 2, 2)
    rel = torch.tensor([[[4.0, 3.0], [2.0, 1.0]]])
    pos = perturb(img, rel, 0.5, positive=True)
    assert pos[0, :, 0].eq(0).all() and pos[0, :, 1].eq(1).all()  # top row (4, 3) removed in all channels
    neg = perturb(img, rel, 0.5, positive=False)
    assert neg[0, :, 1].eq(0).all() and neg[0, :, 0].eq(1).all()  # bottom row (2, 1) removed
    one = perturb(img, rel, 0.25, positive=True)
    assert one[0, :, 0, 0].eq(0).all() and one.sum() == 9  # k = floor(4 * 0.25) = 1
    assert torch.equal(perturb(img, rel, 0.2, positive=True), img)  # k = floor(0.8) = 0
    assert torch.equal(img, torch.ones(1, 3, 2, 2)), "input is not modified"
    with pytest.raises(ValueError, match="maps must be"):
        perturb(img, rel[:, :1], 0.5, positive=True)
    with pytest.raises(ValueError, match="images must be"):
        perturb(img[:, :2], rel, 0.5, positive=True)


def test_perturbation_hits_and_auc_by_hand():
    # a 2x2 "model" that sees class 0 iff pixel (0, 0) is bright; the map ranks (0, 0) first
    def classify(x):
        return torch.stack([x[:, 0, 0, 0] - 0.5, 0.5 - x[:, 0, 0, 0]], 1)

    img = torch.ones(1, 3, 2, 2)
    rel = torch.tensor([[[9.0, 1.0], [2.0, 3.0]]])
    label = torch.tensor([0])
    ident = lambda x: x  # noqa: E731
    pos = perturbation_hits(classify, img, rel, label, normalize=ident, positive=True, correct=multilabel_present)
    # k = floor(4p): 0 for p < 0.25, so (0,0) survives steps 0, 0.1, 0.2 and is removed from 0.3 on
    assert pos.tolist() == [[True, True, True] + [False] * 7]
    assert perturbation_auc(pos.float().mean(0)) == pytest.approx(100 * (0.1 + 0.1 + 0.05))
    neg = perturbation_curve(classify, img, rel, label, normalize=ident, positive=False, correct=multilabel_present)
    assert neg.tolist() == [1.0] * 10  # (0,0) is ranked last; at most k = floor(3.6) = 3 pixels go
    assert perturbation_auc(neg) == pytest.approx(90.0)
    # top-1 criterion gives the same here, and normalisation happens after the removal
    norm = make_normalize((0.5,) * 3, (0.5,) * 3)
    top = perturbation_hits(lambda x: classify(x * 0.5 + 0.5), img, rel, label, normalize=norm, positive=True)
    assert torch.equal(top, pos)


def test_correctness_criteria():
    logits = torch.tensor([[2.0, -1.0, 3.0], [-0.5, -0.2, -3.0]])
    assert top1_correct(logits, torch.tensor([2, 1])).tolist() == [True, True]
    assert top1_correct(logits, torch.tensor([0, 0])).tolist() == [False, False]
    assert multilabel_present(logits, torch.tensor([0, 1])).tolist() == [True, False]


def test_perturbation_test_explains_predicted_or_target_class():
    seen = []

    def classify(x):
        return torch.stack([x.mean((1, 2, 3)), torch.zeros(x.shape[0])], 1)  # predicts class 0 for bright images

    def explain(x, classes):
        seen.append(classes.tolist())
        return torch.rand(x.shape[0], 2, 2)  # lower resolution: upsampled to 4x4

    batches = [(torch.rand(3, 3, 4, 4) + 0.1, torch.tensor([0, 1, 0]))]
    result = perturbation_test(classify, explain, batches, normalize=lambda x: x, positive=True, vis_class="top")
    assert seen[-1] == [0, 0, 0]
    assert result.images == 3 and len(result.accuracies) == 10
    assert result.accuracies[0] == pytest.approx(2 / 3)  # accuracy against the labels
    perturbation_test(classify, explain, batches, normalize=lambda x: x, positive=True, vis_class="target")
    assert seen[-1] == [0, 1, 0]
    with pytest.raises(ValueError):
        perturbation_test(classify, explain, batches, normalize=lambda x: x, positive=True, vis_class="pred")


# ----------------------------------------------------------------------------- average precision


def test_average_precision_by_hand():
    # thresholds 0.9: P=1 R=.5; 0.8: P=.5 R=.5; 0.7: P=2/3 R=1; 0.1: P=.5 R=1
    assert average_precision([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert average_precision([1, 1, 0], [0.5, 0.5, 0.5]) == pytest.approx(2 / 3)  # one tied threshold
    assert average_precision([0, 0], [0.1, 0.2]) == 0.0
    with pytest.raises(ValueError):
        average_precision([0, 2], [0.1, 0.2])


@pytest.mark.parametrize("seed", range(8))
def test_average_precision_equals_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 300))
    y = rng.integers(0, 2, n)
    y[0] = 1
    scores = rng.random(n)
    if seed % 2:  # many ties, like upsampled maps
        scores = np.round(scores * 5) / 5
    assert average_precision(y, scores) == pytest.approx(average_precision_score(y, scores), abs=1e-12)


def test_two_channel_segmentation_ap_equals_sklearn():
    rng = np.random.default_rng(0)
    m = rng.random((7, 5))
    gt = rng.random((7, 5)) > 0.6
    ref = average_precision_score(np.stack([1 - gt, gt]).ravel(), np.stack([1 - m, m]).ravel())
    assert segmentation_ap(m, gt) == pytest.approx(ref, abs=1e-12)
    assert segmentation_ap(gt.astype(float), gt) == pytest.approx(1.0)


# ----------------------------------------------------------------------------- segmentation


def test_normalize_and_mean_threshold_by_hand():
    raw = torch.tensor([[[0.9, 0.1], [0.6, 0.2]]])
    m = normalize_map(raw)
    assert torch.allclose(m, torch.tensor([[[1.0, 0.0], [0.625, 0.125]]]))
    assert binarize(m).tolist() == [[[True, False], [True, False]]]  # mean 0.4375
    assert normalize_map(torch.full((1, 2, 2), 3.0)).eq(0).all()  # constant map -> zeros
    assert normalize_map(torch.tensor([[[float("nan"), 1.0], [0.0, 0.5]]])).isfinite().all()


def test_segmentation_accumulator_by_hand():
    acc = SegmentationAccumulator()
    raw = torch.tensor([[[0.9, 0.1], [0.6, 0.2]]])  # predicted foreground: left column
    gt = torch.tensor([[[1, 1], [0, 0]]])  # foreground: top row
    acc.update(raw, gt)
    s = acc.compute()
    assert s.pixel_accuracy == pytest.approx(50.0)
    assert s.miou == pytest.approx(100 / 3)  # fg: 1/3, bg: 1/3
    expected_ap = average_precision_score(
        np.array([0, 0, 1, 1, 1, 1, 0, 0]), np.array([0, 1, 0.375, 0.875, 1, 0, 0.625, 0.125])
    )
    assert s.map == pytest.approx(100 * expected_ap)
    # a second, larger-foreground image: totals are accumulated over the dataset, not averaged per image
    acc.update(torch.tensor([[[1.0, 1.0], [1.0, 0.0]]]), torch.tensor([[[1, 1], [1, 1]]]))
    s2 = acc.compute()
    assert s2.images == 2
    assert s2.pixel_accuracy == pytest.approx(100 * (2 + 3) / 8)
    # fg: inter 1 + 3, union 3 + 4; bg: inter 1 + 0, union 3 + 1
    assert s2.miou == pytest.approx(100 * (4 / 7 + 1 / 4) / 2)
    with pytest.raises(ValueError):
        acc.update(raw, gt[:, :1])
    with pytest.raises(ValueError):
        SegmentationAccumulator().compute()


# ----------------------------------------------------------------------------- localisation


def test_localisation_metrics_by_hand():
    rel = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    diag = torch.tensor([[True, False], [False, True]])
    assert pointing_game(rel, diag).tolist() == [1.0]
    assert pointing_game(rel, ~diag).tolist() == [0.0]
    assert pointing_game(torch.ones(2, 2), diag).tolist() == [0.0]  # a constant map points nowhere
    plateau = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])
    assert pointing_game(plateau, torch.tensor([[[True, False], [False, False]]])).tolist() == [1.0]  # half inside
    assert pointing_game(plateau, torch.tensor([[[False, False], [True, False]]])).tolist() == [0.0]
    assert mass_inside(rel, diag).tolist() == [pytest.approx(0.5)]  # (1 + 4) / 10
    signed = torch.tensor([[-1.0, 2.0], [3.0, -4.0]])
    top = torch.tensor([[True, True], [False, False]])
    assert mass_inside(signed, top).tolist() == [pytest.approx(0.4)]  # negatives clamped: 2 / (2 + 3)
    assert mass_inside(-torch.ones(2, 2), top).tolist() == [0.0]
    t = torch.tensor([[True, False], [False, False]])
    o = torch.tensor([[False, False], [False, True]])
    assert class_specificity(rel, t, o).tolist() == [pytest.approx(0.2)]  # 1 / (1 + 4)
    assert class_specificity(rel, o, t).tolist() == [pytest.approx(0.8)]
    assert math.isnan(class_specificity(rel, t, torch.zeros(2, 2, dtype=torch.bool)).item())
    assert class_specificity(torch.tensor([[0.0, 5.0], [5.0, 0.0]]), t, o).tolist() == [0.5]
    batch = pointing_game(torch.stack([rel, -rel]), torch.stack([diag, diag]))
    assert batch.tolist() == [1.0, 1.0]  # maximum of -rel is (0, 0), also on the diagonal
    with pytest.raises(ValueError):
        mass_inside(rel, torch.ones(3, 3))


def test_pointing_game_tolerance_by_hand():
    peak = torch.zeros(1, 5, 5)
    peak[0, 0, 0] = 1.0
    mask = torch.zeros(1, 5, 5, dtype=torch.bool)
    mask[0, 0, 2] = True  # 2 px to the right of the maximum
    assert pointing_game(peak, mask).tolist() == [0.0]
    assert pointing_game(peak, mask, tolerance=1.5).tolist() == [0.0]
    assert pointing_game(peak, mask, tolerance=2).tolist() == [1.0]
    diagonal = torch.zeros(1, 5, 5, dtype=torch.bool)
    diagonal[0, 2, 2] = True  # sqrt(8) = 2.83 px away
    assert pointing_game(peak, diagonal, tolerance=2.5).tolist() == [0.0]
    assert pointing_game(peak, diagonal, tolerance=3).tolist() == [1.0]
    assert dilate(diagonal, 1).sum() == 5  # the 4-neighbourhood disk
    with pytest.raises(ValueError):
        dilate(diagonal, -1)


# ----------------------------------------------------------------------------- dataset readers


def _jpeg_folder(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "imagenet"
    images = {}
    for wnid in ("n01440764", "n01443537"):
        (root / "val" / wnid).mkdir(parents=True)
        for k in range(2):
            arr = rng.integers(0, 256, (30 + 5 * k, 40, 3), dtype=np.uint8)
            path = root / "val" / wnid / f"ILSVRC2012_val_{wnid[-3:]}{k}.JPEG"
            Image.fromarray(arr).save(path, format="JPEG")
            images[path] = arr
    (root / "val" / "n01443537" / "notes.txt").write_text("not an image")
    return root, images


def test_imagenet_val_reader(tmp_path):
    root, _ = _jpeg_folder(tmp_path)
    ds = ImageNetVal(root, size=16)
    assert len(ds) == 4 and [it.label for it in ds.items] == [0, 0, 1, 1]
    x, y = ds[2]
    with Image.open(ds.items[2].path) as im:
        expected = np.asarray(im.convert("RGB").resize((16, 16), Image.Resampling.BILINEAR), dtype=np.float32) / 255
    assert x.shape == (3, 16, 16) and y == 1
    assert torch.allclose(x, torch.from_numpy(expected.transpose(2, 0, 1)))
    assert len(ImageNetVal(root / "val", size=16, limit=3)) == 3  # the val folder itself works too
    ds2 = ImageNetVal(root, size=16, wnids=["n0", "n01443537", "n01440764"])
    assert [it.label for it in ds2.items] == [2, 2, 1, 1]
    batches = list(imagenet_val_batches(root, batch_size=3, size=16))
    assert [b[0].shape[0] for b in batches] == [3, 1] and batches[0][1].tolist() == [0, 0, 1]
    with pytest.raises(FileNotFoundError):
        ImageNetVal(tmp_path / "missing")
    with pytest.raises(FileNotFoundError):
        ImageNetVal(tmp_path / "imagenet" / "val" / "n01440764")  # no class folders below


def test_perturbation_test_on_imagenet_fixture(tmp_path):
    """The whole §5.3 test against the protocol written out by hand, on a classifier whose answer depends on
    which pixels go first: "bright" while the mean brightness stays above a quarter."""
    root, _ = _jpeg_folder(tmp_path)
    threshold = -0.5  # a mean of 0.25 in [0, 1], normalised with mean = std = 0.5

    def classify(x):  # class 0 ("bright") for images brighter than the threshold, class 1 for darker ones
        b = x.mean((1, 2, 3))
        return torch.stack([b - threshold, threshold - b], 1)

    def still_bright(logits, labels):  # the explained class (bright) is still predicted, whatever the folder
        return logits.argmax(-1) == 0

    explain = lambda x, c: x.mean(1)  # noqa: E731  brightest pixels are "most relevant"
    norm = make_normalize((0.5,) * 3, (0.5,) * 3)
    results = {
        positive: perturbation_test(classify, explain, imagenet_val_batches(root, 3, 16), normalize=norm,
                                    positive=positive, correct=still_bright)
        for positive in (True, False)
    }

    images01 = torch.cat([x for x, _ in imagenet_val_batches(root, 3, 16)]).double().numpy()  # (4, 3, 16, 16)
    for positive, result in results.items():
        expected = []
        for fraction in STEPS:
            hits = []
            for image in images01:
                brightness = image.mean(0).ravel()
                count = int(math.floor(brightness.size * fraction + 1e-9))
                removed = np.argsort(-brightness if positive else brightness, kind="stable")[:count]
                perturbed = image.reshape(3, -1).copy()
                perturbed[:, removed] = 0.0  # set to 0 in [0, 1], before normalisation
                hits.append((perturbed.mean() - 0.5) / 0.5 > threshold)
            expected.append(float(np.mean(hits)))
        assert result.images == 4
        assert result.accuracies == pytest.approx(expected, abs=1e-6), positive
        trapezoids = [(a + b) / 2 * (x1 - x0) for a, b, x0, x1 in zip(expected, expected[1:], STEPS, STEPS[1:])]
        assert result.auc == pytest.approx(100 * sum(trapezoids), abs=1e-6)
    pos, neg = results[True], results[False]
    assert pos.accuracies[0] == neg.accuracies[0] == 1.0  # every image starts bright
    assert pos.accuracies[-1] == neg.accuracies[-1] == 0.0  # with 90% of its pixels black, none is
    # removing the brightest pixels first leaves every image darker than removing the darkest first
    assert all(p <= n for p, n in zip(pos.accuracies, neg.accuracies)) and pos.auc < neg.auc


def _write_gtsegs(path, images, masks):
    """A tiny file in the MATLAB v7.3 layout of gtsegs_ijcv.mat (HDF5 with object references)."""
    with h5py.File(path, "w") as f:
        refs = f.create_group("#refs#")
        value = f.create_group("value")
        img_refs, gt_refs = [], []
        for i, (img, mask) in enumerate(zip(images, masks)):
            d = refs.create_dataset(f"img{i}", data=img.transpose(2, 1, 0))  # MATLAB column-major (3, W, H)
            g = refs.create_dataset(f"gt{i}", data=mask.astype(np.uint8).transpose(1, 0))
            cell = refs.create_dataset(f"cell{i}", shape=(1, 1), dtype=h5py.ref_dtype)
            cell[0, 0] = g.ref
            img_refs.append(d.ref)
            gt_refs.append(cell.ref)
        value.create_dataset("img", data=np.array(img_refs, dtype=h5py.ref_dtype).reshape(-1, 1))
        value.create_dataset("gt", data=np.array(gt_refs, dtype=h5py.ref_dtype).reshape(-1, 1))
        value.create_dataset("target", data=np.arange(len(images), dtype=np.float64).reshape(-1, 1))


def test_imagenet_segmentation_reader_and_test(tmp_path):
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (12, 10, 3), dtype=np.uint8) for _ in range(3)]
    masks = [rng.random((12, 10)) > 0.5 for _ in range(3)]
    path = tmp_path / "gtsegs_ijcv.mat"
    _write_gtsegs(path, images, masks)
    with ImageNetSegmentation(path, size=8) as ds:
        assert len(ds) == 3
        img, gt = ds.raw(1)
        assert np.array_equal(img, images[1]) and np.array_equal(gt > 0, masks[1])
        x, m = ds[1]
        assert x.shape == (3, 8, 8) and m.shape == (8, 8) and m.dtype == torch.bool
        expected = np.asarray(Image.fromarray(masks[1].astype(np.uint8)).resize((8, 8), Image.Resampling.NEAREST)) > 0
        assert np.array_equal(m.numpy(), expected)
    # an explainer that returns the ground truth scores 100 on every metric; its inverse scores 0 accuracy
    truth = {}
    for i in range(3):
        truth[i] = ImageNetSegmentation(path, size=8)[i][1].float()
    it = iter(range(3))
    perfect = segmentation_test(
        lambda x: torch.stack([truth[next(it)] for _ in range(x.shape[0])]),
        segmentation_batches(path, batch_size=2, size=8),
        normalize=lambda x: x,
    )
    assert (perfect.pixel_accuracy, perfect.miou, perfect.map, perfect.images) == (100.0, 100.0, 100.0, 3)
    it = iter(range(3))
    inverse = segmentation_test(
        lambda x: torch.stack([1 - truth[next(it)] for _ in range(x.shape[0])]),
        segmentation_batches(path, batch_size=3, size=8),
        normalize=lambda x: x,
    )
    assert inverse.pixel_accuracy == 0.0 and inverse.miou == 0.0
    with pytest.raises(FileNotFoundError):
        segmentation_batches(tmp_path / "nope.mat")
    bad = tmp_path / "bad.mat"
    with h5py.File(bad, "w") as f:
        f.create_dataset("x", data=[1])
    with pytest.raises(ValueError, match="gtsegs"):
        ImageNetSegmentation(bad)


def test_start_layers_follow_the_papers_then_each_methods_own_default():
    """The shapes benchmark starts transformer attribution and rollout at block 1 and gradient rollout at 0 (the
    papers' scripts), LeGrad at its own default (the last two blocks), and ``start_layer`` overrides them all; the
    text protocols use the family's convention (0 for BERT), else the method's own default."""
    import relevance.models
    from relevance.cli.protocols.texts import start_layers_of
    from relevance.evaluation.shapes_benchmark import resolve_methods

    vit = relevance.models.create("shapes-vit")
    depth = len(vit.blocks)
    methods = ["transformer_attribution", "rollout", "gradient_rollout", "legrad", "attention"]
    names, starts = resolve_methods(vit, methods, None, True)
    assert names == [*methods, "random"]
    assert starts == {"transformer_attribution": 1, "rollout": 1, "gradient_rollout": 0, "legrad": depth - 2}
    assert resolve_methods(vit, methods, 0, False)[1] == dict.fromkeys(starts, 0)
    bert = relevance.models.create("reviews-bert")
    text_depth = relevance.adapter_for(bert).depths()["text"]
    assert start_layers_of(bert, methods, None) == {"transformer_attribution": 0, "rollout": 0,
                                                    "gradient_rollout": 0, "legrad": text_depth - 2}
    assert start_layers_of(bert, ["legrad"], -1) == {"legrad": text_depth - 1}
