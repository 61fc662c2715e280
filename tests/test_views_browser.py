"""The attention views in Chromium: they draw, show their tokens, react to hovering and selection with the
recorded numbers, coexist on one page, and show their static drawing without JavaScript."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("playwright.sync_api")

import relevance.models  # noqa: E402
import relevance.views as V  # noqa: E402
from demos.app_testing import chromium_context  # noqa: E402
from relevance.flows import attention_flow, through  # noqa: E402
from test_flows import SCENE  # noqa: E402
from text_standin import TinyTextModel  # noqa: E402

TEXT = "the film was not great acting a boring plot"


@pytest.fixture(scope="module")
def captures():
    vit = relevance.models.create("shapes-vit")
    text = TinyTextModel(heads=3, depth=3)
    other = TinyTextModel(heads=3, depth=3, seed=7)
    return {
        "text": V.capture(text, TEXT, query_key=True, gradients=True).sample(0),
        "other": V.capture(other, TEXT, gradients=True).sample(0),
        "vit": V.capture(vit, SCENE, query_key=True, gradients=True).sample(0),
    }


@pytest.fixture(scope="module")
def views(captures):
    text, other, vit = captures["text"], captures["other"], captures["vit"]
    return [V.head_view(text, layer=1), V.head_view(vit), V.model_view(text), V.neuron_view(text, layer=2, head=1),
            V.flow_view(text), V.flow_comparison_view(text, other, names=("pretrained", "fine-tuned")),
            V.neuron_view(vit), V.model_view(vit)]


@pytest.fixture(scope="module")
def page_file(views, tmp_path_factory):
    path = tmp_path_factory.mktemp("views") / "views.html"
    path.write_text(V.page(views), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def browser():
    with chromium_context(viewport=(1400, 1000)) as context:
        yield context


def open_page(browser, path, *, javascript: bool = True):
    page = browser.new_page() if javascript else browser.browser.new_context(java_script_enabled=False).new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
    page.goto(path.as_uri())
    return page, problems


def view(page, index: int):
    return page.locator(".rv-view").nth(index)


def hover(page, locator) -> None:
    locator.hover()
    page.wait_for_timeout(30)


def lines(locator, css: str) -> list[dict]:
    return locator.locator(css).evaluate_all(
        "els => els.map(e => Object.fromEntries(Array.from(e.attributes).map(a => [a.name, a.value])))")


def test_every_view_draws_its_tokens_with_no_console_errors(browser, page_file, captures):
    page, problems = open_page(browser, page_file)
    roots = page.locator(".rv-view")
    assert roots.count() == 8
    for index in range(8):
        root = roots.nth(index)
        assert root.get_attribute("data-rv-ready") == "1", root.get_attribute("data-rv-error")
        drawn = root.locator("svg path, svg line, svg circle, svg rect").count() + root.locator("canvas").count()
        assert drawn > 10, index
        text = root.inner_text()
        sample = captures["vit"] if index in (1, 6, 7) else captures["text"]
        assert all(token in text for token in sample.tokens), index
    canvases = view(page, 7).locator("canvas")
    assert canvases.count() == 16
    painted = canvases.nth(5).evaluate(
        "c => Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data).some(v => v > 0)")
    assert painted, "the thumbnails are painted"
    assert problems == []
    page.close()


def test_hovering_a_token_shows_only_its_lines_with_the_recorded_weights(browser, page_file, captures):
    page, problems = open_page(browser, page_file)
    data = captures["text"]
    first = view(page, 0)
    hover(page, first.locator('text.rv-token[data-side="q"][data-index="3"]'))
    shown = lines(first, ".rv-highlight line")
    expected = {(h, j): float(data.attention[1, h, 3, j]) for h in range(3) for j in range(data.num_tokens)
                if data.attention[1, h, 3, j] >= 0.01}
    assert {(int(l["data-head"]), int(l["data-k"])) for l in shown} == set(expected)
    assert all(int(l["data-q"]) == 3 for l in shown)
    for line in shown:
        assert float(line["data-w"]) == pytest.approx(expected[int(line["data-head"]), int(line["data-k"])], rel=1e-6)
    assert first.locator(".rv-base").evaluate("g => getComputedStyle(g).display") == "none"
    # keys: what attends to a token
    hover(page, first.locator('text.rv-token[data-side="k"][data-index="5"]'))
    assert {int(l["data-k"]) for l in lines(first, ".rv-highlight line")} == {5}
    # the image head view on the same page works on its own
    second = view(page, 1)
    assert second.locator(".rv-highlight line").count() == 0
    hover(page, second.locator('text.rv-token[data-side="q"][data-index="0"]'))
    shown = lines(second, ".rv-highlight line")
    vit = captures["vit"]
    assert len(shown) == int((vit.attention[3, :, 0] >= 0.01).sum()) and all(l["data-q"] == "0" for l in shown)
    assert first.locator(".rv-highlight line").count() == 0, "leaving the first view cleared its highlight"
    assert problems == []
    page.close()


def test_heads_and_blocks_are_selectable(browser, page_file, captures):
    page, problems = open_page(browser, page_file)
    first = view(page, 0)
    before = sorted({p["data-head"] for p in lines(first, ".rv-base path")})
    first.locator('.rv-swatch[data-head="0"]').click()
    after = sorted({p["data-head"] for p in lines(first, ".rv-base path")})
    assert before == ["0", "1", "2"] and after == ["1", "2"]
    first.locator("select.rv-layer").select_option("0")
    from relevance.views.svg import attention_paths, line_layout

    data = captures["text"]
    expected = attention_paths([(h, data.attention[0, h]) for h in (1, 2)], ["#1f77b4", "#ff7f0e", "#2ca02c"],
                               line_layout(data.tokens), 0.01)
    drawn = "".join(f'd="{p["d"]}"' for p in lines(first, ".rv-base path"))
    assert drawn == "".join(part.split(" d=")[1].rstrip("/>").join(["d=", ""]) for part in expected.split("<path")[1:])
    assert "Block 0, heads 1, 2" in first.locator(".rv-note").inner_text()
    assert problems == []
    page.close()


def test_the_model_view_opens_a_head_and_follows_a_token(browser, page_file, captures):
    page, problems = open_page(browser, page_file)
    model = view(page, 2)
    model.locator('canvas[data-layer="0"][data-head="1"]').click()
    assert model.locator(".rv-detail-caption").inner_text() == "Block 0, head 1"
    hover(page, model.locator('text.rv-token[data-side="q"][data-index="2"]'))
    data = captures["text"]
    shown = lines(model, ".rv-highlight line")
    assert shown and {(l["data-head"], l["data-q"]) for l in shown} == {("1", "2")}
    for line in shown:
        assert float(line["data-w"]) == pytest.approx(float(data.attention[0, 1, 2, int(line["data-k"])]), rel=1e-6)
    assert problems == []
    page.close()


def test_the_neuron_view_shows_the_hovered_querys_scores_and_attention(browser, page_file, captures):
    page, problems = open_page(browser, page_file)
    neuron = view(page, 3)
    data = captures["text"]
    for query in (4, 7):
        hover(page, neuron.locator(f'text.rv-token[data-side="q"][data-index="{query}"]'))
        numbers = V.neuron_numbers(data, 2, 1, query)
        shown = lines(neuron, "line.rv-nl")
        assert {int(l["data-q"]) for l in shown} == {query}
        for line in shown:
            assert float(line["data-w"]) == pytest.approx(float(numbers.attention[int(line["data-k"])]), rel=1e-6)
        scores = [float(t) for t in neuron.locator("text.rv-score").all_text_contents()]
        np.testing.assert_allclose(scores, numbers.scores, atol=0.006)
    assert problems == []
    page.close()


def node_values(panel) -> np.ndarray:
    values = panel.locator("circle.rv-node").evaluate_all(
        "els => els.map(e => [+e.dataset.layer, +e.dataset.index, +e.dataset.value])")
    layers = int(max(v[0] for v in values)) + 1
    tokens = int(max(v[1] for v in values)) + 1
    nodes = np.zeros((layers, tokens))
    for layer, index, value in values:
        nodes[int(layer), int(index)] = value
    return nodes


def test_the_flow_view_recomputes_flows_as_relevance_flows_does(browser, page_file, captures):
    page, problems = open_page(browser, page_file)
    flow_root = view(page, 4)
    panel = flow_root.locator("svg.rv-flow-svg")
    data = captures["text"]
    np.testing.assert_allclose(node_values(panel), attention_flow(data).nodes, atol=1e-6)
    # hovering an input token traces its flow: every block carries exactly its rollout value
    hover(page, panel.locator('text.rv-token[data-side="in"][data-index="4"]'))
    flow = attention_flow(data)
    totals = panel.locator(".rv-highlight").get_attribute("data-totals")
    np.testing.assert_allclose(eval(totals), [flow.inputs[4]] * 3, rtol=1e-6)
    traced = {(int(e["data-layer"]), int(e["data-to"]), int(e["data-from"])): float(e["data-flow"])
              for e in lines(panel, ".rv-highlight path")}
    expected = through(flow, 0, 4)
    kept = np.argwhere(np.abs(expected) >= 0.02 * np.abs(expected).max())
    assert set(traced) == {tuple(k) for k in kept.tolist()}
    for key, value in traced.items():
        assert value == pytest.approx(expected[key], rel=1e-6)
    flow_root.locator('.rv-swatch[data-head="1"]').click()
    np.testing.assert_allclose(node_values(panel), attention_flow(data, heads=[0, 2]).nodes, atol=1e-6)
    flow_root.locator("select.rv-weights").select_option("gradient")
    np.testing.assert_allclose(node_values(panel), attention_flow(data, heads=[0, 2], weights="gradient").nodes,
                               rtol=1e-5, atol=1e-6)
    flow_root.locator("select.rv-output").select_option("6")
    np.testing.assert_allclose(node_values(panel),
                               attention_flow(data, heads=[0, 2], weights="gradient", output=6).nodes,
                               rtol=1e-5, atol=1e-6)
    comparison = view(page, 5).locator("svg.rv-flow-svg")
    assert comparison.count() == 3
    first, second = attention_flow(data), attention_flow(captures["other"])
    np.testing.assert_allclose(node_values(comparison.nth(1)), second.nodes, atol=1e-6)
    np.testing.assert_allclose(node_values(comparison.nth(2)), first.nodes - second.nodes, atol=1e-6)
    assert problems == []
    page.close()


def test_without_javascript_the_static_drawings_show_and_equal_the_scripts(browser, page_file, views):
    with_script, problems = open_page(browser, page_file)
    static_page, _ = open_page(browser, page_file, javascript=False)
    for index in range(8):
        static, live = view(static_page, index), view(with_script, index)
        assert static.get_attribute("data-rv-ready") is None, "the script must not have run"
        for css in (".rv-base path", "circle.rv-node"):
            static_d = [(e.get("data-head"), e.get("data-layer"), e.get("d"), e.get("data-index")) for e in lines(static, css)]
            live_d = [(e.get("data-head"), e.get("data-layer"), e.get("d"), e.get("data-index")) for e in lines(live, css)]
            assert static_d == live_d, (index, css)
        assert static.locator(".rv-controls").count() == 0 or not static.locator(".rv-controls").first.is_visible()
        assert static.locator("svg").first.is_visible()
    model = view(static_page, 2)
    assert model.locator(".rv-fallback img").is_visible() and model.locator("canvas").count() == 0
    assert view(with_script, 2).locator(".rv-fallback img").is_hidden()
    assert static_page.locator("line.rv-nl").count() > 0, "the neuron view's lines are drawn in Python"
    assert problems == []
    static_page.context.close()
    with_script.close()
