"""The interactive page (issue 20) in a real browser: headless Chromium driven by Playwright.

Each page opens from a file:// URL with no console error and no request but its own; every step
is taken with the Next button, then back with the arrow keys and forward with the slider, and
the numbers shown at each step (each node's value, the upstream, local and downstream gradients
of the node being processed, the input gradients at the end) equal the Explanation's; a click on
a node shows its detail; the flat code's highlighted line is the step's statement; a screenshot
at 1280x800 is not blank. The layout fits the window (1280x800, or an iframe of 1000x700): code
lines wrap, the node inspector needs no scrolling, the CNN's graph is scaled to its pane, and a
switch of grouping brings the code back to step 1's lines. With DIFPROG_SCREENSHOTS=DIR the
screenshots are kept in DIR (docs/explain/page_*.png are the README's).

Skips, saying why, where Chromium (Debian's `chromium`, which .ci/run installs with apt-get) or
Playwright for Python (in the [test] extra) is missing.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from difprog.graph._html import number, payload
from tests import browser as pages
from tests.graph.html_page import EXAMPLES, short, steps


@pytest.fixture(scope="module")
def explanations():
    return lambda name: EXAMPLES[name]()  # each built once per session (functools.cache)


class Page(pages.Page):
    def state(self) -> dict:
        """What the page shows now: the step, the card's numbers, the nodes' labels, the
        highlighted code lines."""
        return self.page.evaluate(STATE)


STATE = """() => {
          const text = (root, sel) => {
            const e = root.querySelector(sel);
            return e ? e.textContent : null;
          };
          const card = document.getElementById("card");
          const products = {};
          card.querySelectorAll('[data-role="product"]').forEach(p => {
            products[p.dataset.input] = {downstream: text(p, '[data-role="downstream"]'),
                                         local: text(p, '[data-role="local"]')};
          });
          const leaves = {};
          card.querySelectorAll('[data-role="leaf"], [data-role="input-grad"]').forEach(p => {
            leaves[p.dataset.name] = p.querySelector('.v, .g').textContent; });
          const nodes = {};
          document.querySelectorAll("#graph .node").forEach(g => {
            nodes[g.dataset.name] = {value: g.querySelector(".value").textContent,
                                     grad: g.querySelector(".grad").textContent,
                                     now: g.classList.contains("now")}; });
          const code = [...document.querySelectorAll("#code div.now")].map(d => d.textContent);
          return {step: difprogPage.step, phase: card.dataset.phase,
                  value: text(card, '[data-role="value"]'),
                  upstream: text(card, '[data-role="upstream"]'), products, leaves, nodes, code,
                  slider: document.getElementById("slider").value};
        }"""


def _check_step(e, state, k: int, phase: str, index: int | None) -> None:
    """The numbers the page shows at step k equal the Explanation's."""
    assert state["step"] == k and state["phase"] == phase, (k, state["phase"], phase)
    assert state["slider"] == str(k)
    timeline = steps(e)
    done = {i for p, i in timeline[:k + 1] if p == "forward"}
    for i, node in enumerate(e.nodes):  # each node's value appears once computed
        shown = state["nodes"][node.name]["value"]
        if node.kind in ("input", "constant") or i in done:
            assert shown == "= " + short(node.value), (k, node.name, shown)
        else:
            assert shown == "", (k, node.name, shown)
    if phase == "start":
        for node in e.nodes:
            if node.kind in ("input", "constant"):
                assert state["leaves"][node.name] == short(node.value)
    elif phase == "forward":
        node = e.nodes[index]
        assert state["value"] == short(node.value), (node.name, state["value"])
        assert state["nodes"][node.name]["now"]
    elif phase == "backward":
        node = e.nodes[index]
        assert state["upstream"] == short(node.upstream), (node.name, state["upstream"])
        expected = {name: g for name, g in zip(node.inputs, node.downstream) if g is not None}
        assert set(state["products"]) == set(expected), (node.name, state["products"])
        for slot, name in enumerate(node.inputs):
            if name not in expected:
                continue
            shown = state["products"][name]
            assert shown["downstream"] == short(expected[name]), (node.name, name, shown)
            local = None if node.local is None else node.local[slot]
            assert shown["local"] == (None if local is None else short(local)), (node.name, name)
        assert state["nodes"][node.name]["grad"] == "\u2207 " + short(node.upstream)
        if node.kind in ("gate", "primitive"):  # the rule's lines are lit
            assert any(line.lstrip("0123456789").strip().startswith(f"# {node.op}:")
                       for line in state["code"]), (node.name, state["code"])
    else:
        for node in e.nodes:
            if node.kind == "input" and node.upstream is not None:
                assert state["leaves"][node.name] == short(node.upstream), node.name
    if phase == "forward" and e.nodes[index].kind in ("gate", "primitive"):
        outputs = e.nodes[index].outputs
        assert any(line.lstrip("0123456789").strip().startswith(f"{outputs[0]} =")
                   for line in state["code"]), (outputs, state["code"])


@pytest.mark.parametrize("name", ["circuit", "neuron", "matmul", "patterns", "thirty",
                                  "cnn_layers"])
def test_every_step_shows_the_explanations_numbers(browser, explanations, tmp_path, name):
    e = explanations(name)
    page = Page(browser, e.to_html(tmp_path / f"{name}.html"))
    try:
        timeline = steps(e)
        assert page.page.evaluate("difprogPage.steps()") == len(timeline)
        _check_step(e, page.state(), 0, *timeline[0])
        for k in (1, 2):  # the Next button, clicked with the mouse
            page.page.click("#next")
            _check_step(e, page.state(), k, *timeline[k])
        # ... then clicked from the page, one round trip for the remaining steps
        states = page.page.evaluate(f"""() => {{ const out = [];
            for (let k = 3; k < {len(timeline)}; k++) {{
              document.getElementById("next").click(); out.push(({STATE})()); }}
            return out; }}""")
        for k, state in enumerate(states, 3):
            _check_step(e, state, k, *timeline[k])
        assert page.page.is_disabled("#next")
        page.page.locator("body").press("Home")
        assert page.state()["step"] == 0
        for k in (1, 2):  # the arrow keys
            page.page.keyboard.press("ArrowRight")
            _check_step(e, page.state(), k, *timeline[k])
        page.page.keyboard.press("ArrowLeft")
        _check_step(e, page.state(), 1, *timeline[1])
        middle = len(timeline) // 2 + 1  # the slider
        page.page.locator("#slider").fill(str(middle))
        _check_step(e, page.state(), middle, *timeline[middle])
        if name == "neuron":
            page.page.locator("#slider").fill(str(timeline.index(("backward", 10))))  # exp
        pages.screenshot(page, tmp_path, f"page_{name}")
        assert page.errors == [] and page.dialogs == []
        assert page.requests == [page.url], page.requests
    finally:
        page.close()


def test_a_click_shows_the_nodes_detail(browser, explanations, tmp_path):
    e = explanations("neuron")
    page = Page(browser, e.to_html(tmp_path / "neuron.html"))
    try:
        page.page.click('#graph .node[data-name="L"]')
        detail = page.page.locator("#detail")
        assert detail.get_attribute("data-node") == "L"
        assert page.page.text_content('#detail [data-role="op"]') == "divide"
        assert page.page.text_content('#detail [data-role="gate"]') == "divide"
        assert page.page.text_content('#detail [data-role="rules"]') == \
            "divide.backward, divide.tangent"
        assert page.page.text_content('#detail [data-role="math"]').startswith(
            "divide(x, y) = x / y; d/dx = 1 / y")
        node = next(n for n in e.nodes if n.name == "L")
        assert page.page.text_content('#detail [data-role="detail-value"]') == short(node.value)
        assert page.page.text_content('#detail [data-role="detail-grad"]') == short(node.upstream)
        assert page.errors == []
    finally:
        page.close()


def test_a_tensor_shows_as_a_heat_map_with_its_statistics(browser, explanations, tmp_path):
    e = explanations("cnn_layers")
    page = Page(browser, e.to_html(tmp_path / "cnn.html"))
    try:
        page.page.click('#graph .node[data-name="conv2d_0"]')
        stats = page.page.text_content('#detail [data-role="detail-value"] .stats')
        value = np.asarray(next(n for n in e.nodes if n.name == "conv2d_0").value, np.float64)
        assert stats == (f"float32[{','.join(map(str, value.shape))}]  min {number(value.min())}"
                         f"  max {number(value.max())}  \u2016\u00b7\u2016 "
                         f"{number(np.linalg.norm(value.ravel()))}")
        assert page.page.locator('#detail [data-role="detail-value"] .heat span').count() == \
            32 * 4  # 2 x 8 x 8 rows of 4 channels, the first 32 rows
        assert "showing 128 of 512 entries" in page.page.text_content(
            '#detail [data-role="detail-value"]')
        # the other grouping: one node per gate
        page.page.click("#group-gate")
        gates_view = e.grouped("gate")
        assert page.page.locator("#graph .node").count() == len(gates_view.nodes)
        assert page.page.evaluate("difprogPage.steps()") == len(steps(gates_view))
        for k, (phase, index) in list(enumerate(steps(gates_view)))[:4]:
            page.page.evaluate(f"difprogPage.go({k})")
            _check_step(gates_view, page.state(), k, phase, index)
        page.page.click("#group-layer")
        page.page.locator("#slider").fill(str(len(steps(e)) - 4))
        pages.screenshot(page, tmp_path, "page_cnn_layers_detail")
        assert page.errors == [] and page.requests == [page.url]
    finally:
        page.close()


def test_the_formatter_is_pythons(browser, tmp_path):
    """The page's fmt and difprog.graph._html.number agree, ties and extremes included."""
    with jax.enable_x64(True):
        e = EXAMPLES["circuit"]()
    page = Page(browser, e.to_html(tmp_path / "circuit.html"))
    try:
        cases = [0.0, -0.0, 1.0, -12.0, 0.7310585786300049, 1.0625, 2.5e-5, 9.9995, 99999.5,
                 999999.0, 1e6, 1234567.0, 1.5e-7, -3.25e-12, 6.02214076e23, 1e-5, 0.000123456,
                 float("nan"), float("inf"), float("-inf"), 5e-324, 1.7976931348623157e308]
        cases += list(np.random.default_rng(0).standard_normal(50) * 10.0 **
                      np.random.default_rng(1).integers(-8, 8, 50))
        shown = page.page.evaluate("xs => xs.map(x => difprogFormat(x))",
                                   [x if np.isfinite(x) else number(x) for x in cases])
        assert shown == [number(x) for x in cases]
    finally:
        page.close()


def test_a_hostile_name_stays_text_and_nan_shows_as_nan(browser, tmp_path):
    hostile = "</script><script>alert(1)</script><!--"

    def f(x):
        with jax.named_scope(hostile):
            y = jax.numpy.sqrt(x) * 2.0
        return y + x

    from difprog.graph import explain

    e = explain(f, -1.0, group="layer")
    page = Page(browser, e.to_html(tmp_path / "hostile.html", title=hostile))
    try:
        assert page.page.title() == hostile
        assert hostile not in e.to_html(tmp_path / "again.html").read_text()
        names = page.page.evaluate(
            "[...document.querySelectorAll('#graph .node')].map(g => g.dataset.name)")
        assert names == [n.name for n in e.nodes]
        layer = next(n for n in e.nodes if n.kind == "group")
        assert hostile in layer.scope
        page.page.click(f'#graph .node[data-index="{e.nodes.index(layer)}"]')
        assert page.page.text_content('#detail [data-role="scope"]') == layer.scope
        page.page.evaluate("difprogPage.go(1)")
        assert page.state()["value"] == "NaN"
        assert page.dialogs == [] and page.errors == [] and page.requests == [page.url]
    finally:
        page.close()


# ---- layout: the page fits its window (1280x800 here, 1000x700 in an iframe) ----------------

def test_long_code_lines_wrap_inside_the_code_pane(browser, explanations, tmp_path):
    """No code line is wider than the pane (no hidden horizontal scroll): long lines wrap,
    their continuation indented past the line's own indentation."""
    e = explanations("cnn_layers")
    page = Page(browser, e.to_html(tmp_path / "cnn.html"))
    try:
        code = page.page.evaluate("""() => {
            const pre = document.getElementById("code"), lines = [...pre.querySelectorAll("div")];
            const tall = lines.filter(d => d.getBoundingClientRect().height > 25);
            return {pane: [pre.scrollWidth, pre.clientWidth], lines: lines.length,
                    wide: lines.filter(d => d.scrollWidth > d.clientWidth).map(d => d.dataset.line),
                    longest: Math.max(...lines.map(d => d.textContent.length)),
                    tall: tall.length, text: lines.map(d => d.textContent)}; }""")
        assert code["lines"] > 200 and code["longest"] > 100  # long lines to wrap
        assert code["wide"] == [], code["wide"]
        assert code["pane"][0] <= code["pane"][1], code["pane"]
        assert code["tall"] > 0  # the long ones wrapped onto several lines
        code_text = payload(e)["code"]  # the text itself is unchanged
        assert code["text"] == [f"{k}{line}" for k, line in enumerate(code_text, 1)]
    finally:
        page.close()


FITS = """sel => {  // whether each element of sel lies inside the viewport and inside #detail
    const detail = document.getElementById("detail"), d = detail.getBoundingClientRect();
    const inside = r => r.top >= Math.max(0, d.top) - 1
                        && r.bottom <= Math.min(innerHeight, d.bottom) + 1
                        && r.left >= d.left - 1 && r.right <= Math.min(innerWidth, d.right) + 1;
    const parts = [...detail.querySelectorAll(sel)];
    return {scrolls: detail.scrollHeight > detail.clientHeight + 1, count: parts.length,
            out: parts.filter(p => !inside(p.getBoundingClientRect()))
                      .map(p => p.textContent.slice(0, 40))};
}"""


def test_the_node_inspector_fits_without_scrolling(browser, explanations, tmp_path):
    """At 1280x800, during the backward pass, a click on any node of the CNN (or of the neuron)
    shows all of its inspector, downstream sections included, with no scrolling."""
    for name in ("cnn_layers", "neuron"):
        e = explanations(name)
        page = Page(browser, e.to_html(tmp_path / f"{name}.html"))
        try:
            backward = [k for k, (phase, _) in enumerate(steps(e)) if phase == "backward"]
            page.page.evaluate(f"difprogPage.go({backward[1]})")  # the backward pass's 2nd step
            for node in e.nodes:
                page.page.click(f'#graph .node[data-name="{node.name}"]')
                assert page.page.locator("#detail").get_attribute("data-node") == node.name
                fits = page.page.evaluate(FITS, "#detail > *, #detail [data-role], #detail .heat")
                assert not fits["scrolls"] and fits["out"] == [], (name, node.name, fits)
                downstream = sum(g is not None for g in node.downstream)
                assert page.page.locator('#detail [data-role="detail-downstream"]').count() == \
                    downstream, node.name
            if name == "cnn_layers":
                page.page.click('#graph .node[data-name="conv2d_0"]')
                pages.screenshot(page, tmp_path, "page_cnn_layers_inspector")
        finally:
            page.close()


GRAPH_BOX = """() => {  // the pane's box and the drawing's (its nodes and edges) on screen
    const pane = document.getElementById("graph"), p = pane.getBoundingClientRect();
    const rs = [...pane.querySelectorAll(".node, .edge")].map(e => e.getBoundingClientRect());
    const box = {left: Math.min(...rs.map(r => r.left)), right: Math.max(...rs.map(r => r.right)),
                 top: Math.min(...rs.map(r => r.top)), bottom: Math.max(...rs.map(r => r.bottom))};
    return {pane: {left: p.left, right: p.right, top: p.top, bottom: p.bottom,
                   width: pane.clientWidth, height: pane.clientHeight,
                   scrollWidth: pane.scrollWidth, scrollHeight: pane.scrollHeight}, box};
}"""


def _check_fit(geometry) -> None:
    pane, box = geometry["pane"], geometry["box"]
    assert pane["scrollWidth"] <= pane["width"] and pane["scrollHeight"] <= pane["height"], pane
    assert box["left"] >= pane["left"] - 1 and box["right"] <= pane["right"] + 1, geometry
    assert box["top"] >= pane["top"] - 1 and box["bottom"] <= pane["bottom"] + 1, geometry
    width, height = box["right"] - box["left"], box["bottom"] - box["top"]
    pane_w, pane_h = pane["right"] - pane["left"], pane["bottom"] - pane["top"]
    assert width >= 0.8 * pane_w or height >= 0.8 * pane_h, geometry  # fills one way
    assert height >= 0.5 * pane_h, geometry  # and uses the height, not only its top
    centre = ((box["left"] + box["right"]) / 2, (box["top"] + box["bottom"]) / 2)
    assert abs(centre[0] - (pane["left"] + pane["right"]) / 2) <= 0.1 * pane_w, geometry
    assert abs(centre[1] - (pane["top"] + pane["bottom"]) / 2) <= 0.1 * pane_h, geometry


def test_the_cnn_graph_fits_its_pane(browser, explanations, tmp_path):
    """The CNN's graph, one node per layer, is scaled to its pane: no scrolling, centred,
    filling its width or height and using its height; again after the window shrinks to
    1000x700 (an iframe's size in a notebook)."""
    e = explanations("cnn_layers")
    page = Page(browser, e.to_html(tmp_path / "cnn.html"))
    try:
        _check_fit(page.page.evaluate(GRAPH_BOX))
        page.page.evaluate(f"difprogPage.go({len(steps(e)) - 3})")  # a step does not move it
        _check_fit(page.page.evaluate(GRAPH_BOX))
        page.page.set_viewport_size({"width": 1000, "height": 700})
        page.page.evaluate("() => new Promise(r => requestAnimationFrame(() => "
                           "requestAnimationFrame(r)))")  # two frames: the page has redrawn
        _check_fit(page.page.evaluate(GRAPH_BOX))
        assert page.state()["step"] == len(steps(e)) - 3
        assert page.errors == []
    finally:
        page.close()


CODE_NOW = """() => {  // the highlighted code lines, and whether the first is in the pane's view
    const pre = document.getElementById("code"), lines = [...pre.querySelectorAll("div.now")];
    if (!lines.length) return {lines: [], text: "", visible: false};
    const p = pre.getBoundingClientRect(), r = lines[0].getBoundingClientRect();
    return {lines: lines.map(d => d.dataset.line), text: lines[0].textContent,
            visible: r.top >= p.top && r.bottom <= p.bottom};
}"""


def test_switching_the_grouping_moves_the_code_to_the_first_step(browser, explanations,
                                                                tmp_path):
    """A switch between layers and gates starts again at step 1, the inputs: the code pane
    highlights f_and_grad's header (its arguments) and scrolls to it, from wherever it was."""
    e = explanations("cnn_layers")
    page = Page(browser, e.to_html(tmp_path / "cnn.html"))
    try:
        for other in ("gate", "layer"):
            page.page.evaluate("difprogPage.go(difprogPage.steps() - 3)")  # a late step
            late = page.page.evaluate(CODE_NOW)
            assert late["visible"] and int(late["lines"][0]) > 200, late
            page.page.click(f"#group-{other}")
            assert page.page.evaluate("[difprogPage.group, difprogPage.step]") == [other, 0]
            now = page.page.evaluate(CODE_NOW)
            assert now["text"].lstrip("0123456789").startswith("def f_and_grad(p, x):"), now
            assert now["visible"], now
        page.page.goto(page.url)  # on opening, too
        assert page.page.evaluate(CODE_NOW)["text"].lstrip("0123456789").startswith(
            "def f_and_grad(p, x):")
        page.page.evaluate("difprogPage.go(difprogPage.steps() - 1)")  # done: the return
        assert page.page.evaluate(CODE_NOW)["text"].lstrip("0123456789").strip().startswith(
            "return L, ")
        assert page.errors == []
    finally:
        page.close()


def test_the_page_fits_an_iframe(browser, explanations, tmp_path):
    """Embedded as a notebook embeds it, an iframe of 1000x700 with the page as its srcdoc,
    the page sizes itself to the iframe: the graph fits its pane, no code line is cut."""
    e = explanations("cnn_layers")
    html = e.to_html(tmp_path / "cnn.html").read_text()
    page = Page(browser, tmp_path / "cnn.html")
    try:
        page.page.set_content("<body style='margin:0'></body>")
        page.page.evaluate("""html => new Promise(done => {
            const f = document.createElement("iframe");
            f.style.cssText = "width: 1000px; height: 700px; border: 0";
            f.onload = done; f.srcdoc = html; document.body.append(f); })""", html)
        frame = page.page.frames[1]
        frame.evaluate("difprogPage.go(difprogPage.steps() - 3)")
        _check_fit(frame.evaluate(GRAPH_BOX))
        assert frame.evaluate("""() => [...document.querySelectorAll("#code div")]
            .every(d => d.scrollWidth <= d.clientWidth)""")
        pages.screenshot(page, tmp_path, "page_cnn_layers_iframe")
        assert page.errors == [] and page.dialogs == []
    finally:
        page.close()
