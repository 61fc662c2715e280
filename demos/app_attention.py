"""The "Attention" tab: look inside the model with the views of :mod:`relevance.views`.

For the chosen image and model it shows the head, model or neuron view (Vig 2019, BertViz), the layers x heads
grid of attention heatmaps, the attention flow of the [CLS] decision (DeRose, Wang & Berger 2020), or the flows
of two models on the same image side by side, e.g. the model against an untrained copy of itself. The views
are the self-contained HTML documents the library writes, shown in a sandboxed frame (their inline script
runs there; Gradio would not run it in the page), with their PNG where they have one and the HTML for download.

:class:`AttentionHandlers` holds the event handler, a pure function of its inputs and of the read-only
catalog (a new view per request; nothing is kept between requests). A text model's tab can call
:meth:`AttentionHandlers.show` with ``text=`` (the views are generic over token streams).
"""

from __future__ import annotations

import copy
import html
import shutil
import tempfile
import time
import uuid
import weakref
from pathlib import Path
from typing import Any, Sequence

import gradio as gr
import numpy as np
import torch

import relevance.views as V
from demos import app_engine
from demos.app_common import DemoError, safe_filename_part, uploaded_file, user_facing_errors
from demos.app_models import ModelCatalog

__all__ = ["AttentionHandlers", "UNTRAINED", "VIEWS", "attention_tab", "untrained_copy"]

#: Dropdown label -> view kind.
VIEWS: dict[str, str] = {
    "Head view (one block, all heads)": "head",
    "Model view (every block and head)": "model",
    "Neuron view (queries, keys, scores)": "neuron",
    "Grid of heatmaps (blocks x heads)": "grid",
    "Attention flow of the decision": "flow",
    "Flow comparison with a second model": "comparison",
}
#: The comparison choice that means "the chosen model, re-initialised".
UNTRAINED = "the same model, untrained (random weights)"
FRAME_HEIGHT = 760
HINTS = {
    "head": "Hover a token to see only its lines; choose the block and toggle heads above the drawing.",
    "model": "Click a thumbnail to open that head; hover a token there to follow it through every head.",
    "neuron": "Hover a query token to see how its attention is computed from the query and key vectors.",
    "grid": "Each tile: one head's attention of [CLS] to every patch, drawn over the image.",
    "flow": "Edge width = attention flow towards the decision; hover a token to trace its flow, toggle heads.",
    "comparison": "Both flows on the same input and their difference (red: more flow in the first model).",
}


def untrained_copy(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """A copy of ``model`` with every layer re-initialised (``reset_parameters``), deterministically."""
    twin = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in twin.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
        for name, parameter in twin.named_parameters():
            if name.endswith(("cls_token", "pos_embed", "dist_token", "reg_token")):
                torch.nn.init.trunc_normal_(parameter.data, std=0.02)
    return twin


class AttentionHandlers:
    """The tab's handler, bound to a catalog of loaded models."""

    def __init__(self, catalog: ModelCatalog, root: str | Path | None = None) -> None:
        self.catalog = catalog
        if root is None:
            self.root = Path(tempfile.mkdtemp(prefix="relevance-views-"))
            weakref.finalize(self, shutil.rmtree, self.root, True)
        else:
            self.root = Path(root)
            self.root.mkdir(parents=True, exist_ok=True)

    def _second(self, model: Any, model_label: str, compare_label: Any) -> tuple[Any, str]:
        if compare_label in (None, "", UNTRAINED):
            return untrained_copy(model), f"{model_label} (untrained)"
        return self.catalog.get(compare_label), str(compare_label)

    def _file(self, document: str, filename: str) -> str:
        folder = self.root / uuid.uuid4().hex
        folder.mkdir()
        path = folder / filename
        path.write_text(document, encoding="utf-8")
        return str(path)

    @user_facing_errors
    def show(self, image_value: Any, model_label: Any, view_label: Any, compare_label: Any = UNTRAINED,
             text: str | None = None) -> tuple[str, np.ndarray | None, str, str]:
        """Draw the chosen view.

        Returns the framed HTML view, its PNG (grid, model view, flows; ``None`` otherwise), the HTML file for
        download, and the status line.
        """
        if view_label not in VIEWS:
            raise DemoError(f"Unknown view {str(view_label)[:80]!r}. Choose one of: {', '.join(VIEWS)}.")
        kind = VIEWS[view_label]
        model = self.catalog.get(model_label)
        if text is not None and text.strip():
            inputs, name = [text], "text"
        else:
            path, display_name = uploaded_file(image_value)
            inputs, name = [app_engine.read_image(path, display_name=display_name)], Path(display_name).stem
        started = time.perf_counter()
        captured = V.capture(model, inputs, query_key=kind == "neuron", gradients=kind in ("flow", "comparison"))
        picture = None
        if kind == "head":
            view = V.head_view(captured)
        elif kind == "neuron":
            view = V.neuron_view(captured)
        elif kind == "model":
            view, picture = V.model_view(captured), V.model_view_image(captured)
        elif kind == "flow":
            view = V.flow_view(captured, name=str(model_label))
            picture = V.flow_image(view.extras["flows"][0], title=str(model_label))
        elif kind == "comparison":
            second, second_label = self._second(model, str(model_label), compare_label)
            other = V.capture(second, inputs, gradients=True)
            view = V.flow_comparison_view(captured, other, names=(str(model_label), second_label))
            picture = V.flow_comparison_image(view.extras["comparison"])
        else:
            grid = V.attention_grid(captured)
            picture, view = grid.image, None
        sample = captured.sample(0)
        document = view.document() if view is not None else _picture_page(picture, f"Attention grid · {model_label}")
        download = self._file(document, f"{safe_filename_part(name)}_{kind}.html")
        status = (f"**{view_label}** of {html.escape(str(model_label))}: {sample.num_tokens} tokens, "
                  f"{sample.num_layers} blocks x {sample.num_heads} heads, {time.perf_counter() - started:.2f} s. "
                  + HINTS[kind])
        return frame(document), picture, download, status


def frame(document: str, height: int = FRAME_HEIGHT) -> str:
    """A sandboxed frame showing ``document`` (its inline script runs in the frame, never in the page)."""
    return (f'<iframe class="rv-frame" title="attention view" sandbox="allow-scripts" '
            f'style="width: 100%; height: {height}px; border: 1px solid #ddd; border-radius: 6px; background: #fff;" '
            f'srcdoc="{html.escape(document, quote=True)}"></iframe>')


def _picture_page(picture: np.ndarray, title: str) -> str:
    import base64
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG")
    uri = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title></head>'
            f'<body style="margin: 12px; background: #fff;"><img alt="{html.escape(title)}" src="{uri}" '
            'style="max-width: 100%;"></body></html>')


def attention_tab(catalog: ModelCatalog, *, examples: Sequence[str] = (), concurrency_limit: int = 2,
                  handlers: AttentionHandlers | None = None) -> AttentionHandlers:
    """Lay out the "Attention" tab inside the current ``gr.Blocks`` and wire its event."""
    handlers = handlers or AttentionHandlers(catalog)
    with gr.Tab("Attention", id="attention"):
        gr.Markdown("Look inside the model: which tokens (patches) each head attends to, and how attention flows "
                    "from the input to the decision. Views after BertViz (Vig 2019), exBERT (Hoover et al. 2020) "
                    "and Attention Flows (DeRose et al. 2020); they are interactive (hover tokens, pick blocks "
                    "and heads).", elem_id="attention-intro")
        with gr.Row():
            with gr.Column(scale=1, min_width=280):
                image = gr.Image(label="Image", type="filepath", sources=["upload", "clipboard"], height=240,
                                 elem_id="attention-image")
                if examples:
                    gr.Examples(examples=[[p] for p in examples], inputs=[image], label="Examples",
                                elem_id="attention-examples")
                model = gr.Dropdown(choices=catalog.labels, value=catalog.default_label, label="Model",
                                    filterable=False, elem_id="attention-model")
                view = gr.Dropdown(choices=list(VIEWS), value=next(iter(VIEWS)), label="View", filterable=False,
                                   elem_id="attention-view")
                compare = gr.Dropdown(choices=[UNTRAINED, *catalog.labels], value=UNTRAINED,
                                      label="Second model (flow comparison)", filterable=False,
                                      elem_id="attention-compare")
                show = gr.Button("Show", variant="primary", elem_id="attention-show")
                status = gr.Markdown("Pick an image and a view, then press **Show**.", elem_id="attention-status")
            with gr.Column(scale=3):
                drawing = gr.HTML("", elem_id="attention-view-output")
                picture = gr.Image(label="Picture (PNG)", type="numpy", format="png", interactive=False,
                                   elem_id="attention-picture")
                download = gr.DownloadButton("Download the view (HTML)", elem_id="attention-download")
    show.click(handlers.show, inputs=[image, model, view, compare], outputs=[drawing, picture, download, status],
               preprocess=False, api_name="attention", concurrency_id="explain",
               concurrency_limit=concurrency_limit)
    return handlers
