"""``relevance figures class-specific``: one input, two classes (Chefer et al., CVPR 2021, Fig. 5).

One row per explained class, one column per method. Class-specific methods (transformer attribution, gradient
rollout, Grad-CAM, the LRP variants) change between the rows; raw attention and rollout, which never look at the
class, draw the same map twice. Offline: a shapes scene with two objects and the embedded ``shapes-vit``; with an
ImageNet model, pass a photo with two objects (``--inputs cat_and_dog.jpg --classes "tabby cat" "bull mastiff"``).
Without ``--classes`` the model's two most probable classes are explained.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from relevance.figures.inputs import (FigureRequest, FigureResult, display_image, display_overlay,
                                      explainable_methods, image_paths, load_model)
from relevance.figures.style import citation_caption, image_grid, method_title

TITLE = "one input, two classes: class-specific methods change between the rows, attention does not"
#: The offline input: a held-out shapes scene with two objects.
SHAPES_SCENE = "scene-20000014_cyan-square_purple-ring.png"


def default_input(model_name: str) -> Path:
    """A two-object shapes scene for shapes models, else the sample cat photo (pass your own cat-and-dog photo)."""
    import relevance.assets

    assets = Path(relevance.assets.__file__).resolve().parent
    if "shapes" in model_name or Path(model_name).is_dir():
        return assets / "examples" / SHAPES_SCENE
    return assets / "samples" / "chelsea.jpg"


def explained_classes(model: Any, image: np.ndarray, classes: Sequence[str] | None) -> list[int]:
    """The two classes to explain: ``classes`` resolved by name or index, else the two most probable ones."""
    from relevance.adapter import adapter_for
    from relevance.labels import resolve_class

    names = adapter_for(model).info.class_names
    if classes:
        if len(classes) != 2:
            raise ValueError(f"the class-specific figure explains two classes; got {len(classes)}: {list(classes)}")
        return [resolve_class(c, names) for c in classes]
    import relevance

    logits = relevance.explain(model, image, method="attention").logits[0]
    return [int(i) for i in torch.topk(logits, 2).indices]


def make(request: FigureRequest) -> FigureResult:
    from relevance.images import load_image

    model, name = load_model(request)
    path = image_paths(request.inputs)[0] if request.inputs else default_input(name)
    image = load_image(path)
    classes = explained_classes(model, image, request.classes)
    methods = explainable_methods(model, request.methods)
    return class_grid(model, name, image, classes, methods, start_layer=request.start_layer, source=path.name)


def class_grid(model: Any, model_name: str, image: np.ndarray, classes: Sequence[int], methods: Sequence[str], *,
               start_layer: int | None = None, source: str = "") -> FigureResult:
    """Draw the classes (rows) x methods (columns) on one image.

    Returns
    -------
    FigureResult
        ``data``: ``classes``, ``class_names``, ``methods``, ``maps`` {method: (2, h, w)}, ``rows_differ``
        {method: whether the two rows' maps differ}, ``class_specific`` {method: what the method declares}.
    """
    import relevance

    explanations = {m: relevance.explain(model, [image] * len(classes), method=m, target=list(classes),
                                         start_layer=start_layer) for m in methods}
    first = explanations[methods[0]]
    differ = {m: not torch.allclose(e.relevance[0], e.relevance[1], rtol=1e-5, atol=1e-7)
              for m, e in explanations.items()}
    specific = {m: relevance.get_method(m).class_specific for m in methods}
    probabilities = first.probabilities
    labels = [f"explained:\n{first.class_name(i)}\np = {float(probabilities[i, c]):.2f}"
              for i, c in enumerate(classes)]
    rows = [[display_image(first.maps["image"], i)] + [display_overlay(explanations[m].maps["image"], i)
                                                         for m in methods] for i in range(len(classes))]
    caption, numbers = citation_caption(methods, width=10_000)
    agnostic = [method_title(m) for m in methods if not specific[m]]
    note = (f"{' and '.join(agnostic)} do not depend on the class: their two rows are the same map. "
            if agnostic else "")
    figure = image_grid(
        rows, row_labels=labels,
        column_titles=["Input"] + [f"{method_title(m)} [{numbers[m]}]" + ("" if specific[m] else "\n(class-agnostic)")
                                   for m in methods],
        title=f"One input, two classes: {first.class_name(0)} and {first.class_name(1)} ({model_name})",
        caption=f"{source}: each row explains one class. {note}\n{caption}")
    data = {"classes": [int(c) for c in classes], "class_names": [first.class_name(i) for i in range(len(classes))],
            "methods": list(methods), "maps": {m: e.relevance.clone() for m, e in explanations.items()},
            "rows_differ": differ, "class_specific": specific}
    return FigureResult(figure, data, caption)
