"""``relevance figures image-text``: one image against several captions (Chefer et al., ICCV 2021, CLIP figure).

One row per caption: the image map and the caption's token heatmap, both explaining the image-caption similarity
logit, for each method (default: gradient rollout, the ICCV 2021 method, and LeGrad). Offline it runs on the embedded
image-text model ``shapes-clip`` (:mod:`relevance.models.shapes_clip`) and a held-out shapes scene, with one caption
per object of the scene and one naming an object the scene does not have; ``--model`` takes a CLIP of the hub
(:mod:`relevance.models.clip`), ``--inputs`` an image and ``--texts`` the captions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from relevance.figures.inputs import FigureRequest, FigureResult, display_overlay, image_paths
from relevance.figures.style import citation_caption, method_title, row_figure

TITLE = "ICCV 2021 CLIP figure: one image against several captions, image map and token heatmap each"
#: The embedded image-text model of the CLIP family.
DEFAULT_MODEL = "shapes-clip"
#: The default image: a held-out shapes scene with three objects.
SHAPES_SCENE = "scene-20000001_orange-cross_green-star_blue-ring.png"
#: The captions' template (the shapes CLIP's training captions: "a photo of a red circle").
TEMPLATE = "a photo of {}"
_HEATMAP = dict(width=700, font_size=22, legend=False, show_special=False)  # words use the whole colour scale


def scene_objects_of(image_name: str) -> list[tuple[str, int]]:
    """The (colour, shape class) of each object named in a shapes example's file name,
    ``scene-<seed>_<colour>-<shape>_...png`` (``[]`` for other names)."""
    from relevance.data.shapes import COLOURS, SHAPE_CLASSES

    objects = []
    for part in Path(image_name).stem.split("_")[1:]:
        colour, _, shape = part.partition("-")
        if colour not in COLOURS or shape not in SHAPE_CLASSES:
            return []
        objects.append((colour, SHAPE_CLASSES.index(shape)))
    return objects


def default_captions(image_name: str) -> list[str]:
    """Captions for a shapes example (see :func:`scene_objects_of`): "a photo of an orange cross" for each object,
    then one naming an object the scene does not have (a red circle, or the first absent colour and shape)."""
    from relevance.data.shapes import COLOURS, SHAPE_CLASSES
    from relevance.data.shapes_captions import object_caption

    objects = scene_objects_of(image_name)
    if not objects:
        return ["a photo"]
    absent = next((c, s) for c in ("red", *COLOURS) for s in (SHAPE_CLASSES.index("circle"), *range(len(SHAPE_CLASSES)))
                  if (c, s) not in objects)
    return [object_caption(colour, shape, TEMPLATE) for colour, shape in [*objects, absent]]


def load_image_text_model(request: FigureRequest) -> tuple[Any, str]:
    """The requested image-text model; a clear error when the CLIP family is not installed or the model is not an
    image-text model."""
    from relevance.adapter import adapter_for
    from relevance.figures import FigureUnavailableError
    from relevance.models import UnknownModelError, create

    name = request.model or DEFAULT_MODEL
    try:
        model = create(name, checkpoint=request.checkpoint, device=request.device, modality="image-text", quiet=True)
    except UnknownModelError as problem:
        if name == DEFAULT_MODEL:
            raise FigureUnavailableError("the image-text figure needs an image-text model: the CLIP family "
                                         "(relevance.models.clip, embedded shapes-clip) is not installed") from problem
        raise
    if adapter_for(model).info.output != "pair_logits":
        raise ValueError(f"{name!r} is not an image-text model; the image-text figure needs one (e.g. shapes-clip)")
    return model, name


def make(request: FigureRequest) -> FigureResult:
    import relevance
    import relevance.assets
    from relevance.images import load_image

    model, name = load_image_text_model(request)
    path = (image_paths(request.inputs)[0] if request.inputs
            else Path(relevance.assets.__file__).resolve().parent / "examples" / SHAPES_SCENE)
    captions = list(request.texts or default_captions(path.name))
    methods = list(request.methods or ["gradient_rollout", "legrad"])
    return image_text_figure(model, name, load_image(path), captions, methods)


def image_text_figure(model: Any, model_name: str, image: Any, captions: Sequence[str],
                      methods: Sequence[str]) -> FigureResult:
    """Rows = captions; per method an image overlay and a token heatmap.

    Returns
    -------
    FigureResult
        ``data``: ``captions``, ``methods``, ``scores`` {method: per caption the explained similarity},
        ``image_maps`` {method: (K, h, w)}, ``text_maps`` {method: per caption the token values}.
    """
    import relevance

    explanations = {m: relevance.explain(model, [image] * len(captions), texts=list(captions), method=m)
                    for m in methods}
    rows = []
    for k, caption in enumerate(captions):
        pictures = []
        for m in methods:
            e = explanations[m]
            pictures += [display_overlay(e.maps["image"], k), e.maps["text"].png(k, **_HEATMAP)]
        score = float(explanations[methods[0]].scores[k])
        rows.append((f"\"{caption}\"\nlogit {score:.2f}", pictures))
    titles = [t for m in methods for t in (f"{method_title(m)}: image", f"{method_title(m)}: text")]
    text, _ = citation_caption(methods, width=10_000)
    figure = row_figure(rows, column_widths=[1.5, 3.2] * len(methods), column_titles=titles, label_width=1.9,
                        title=f"One image, {len(captions)} captions ({model_name})",
                        caption="Each row explains the similarity of the image and its caption.\n" + text)
    data = {"captions": list(captions), "methods": list(methods),
            "scores": {m: e.scores.tolist() for m, e in explanations.items()},
            "image_maps": {m: e.maps["image"].values.clone() for m, e in explanations.items()},
            "text_maps": {m: [e.maps["text"].scores(k).tolist() for k in range(len(captions))]
                          for m, e in explanations.items()}}
    return FigureResult(figure, data, text)
