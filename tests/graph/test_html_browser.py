"""The interactive page (issue 20) in a real browser: headless Chromium driven by Playwright.

Each page opens from a file:// URL with no console error and no request but its own; every step
is taken with the Next button, then back with the arrow keys and forward with the slider, and
the numbers shown at each step (each node's value, the upstream, local and downstream gradients
of the node being processed, the input gradients at the end) equal the Explanation's; a click on
a node shows its detail; the flat code's highlighted line is the step's statement; a screenshot
at 1280x800 is not blank. With DIFPROG_SCREENSHOTS=DIR the screenshots are kept in DIR
(docs/explain/page_*.png are the README's).

Skips, saying why, where Chromium (Debian's `chromium`, which .ci/run installs with apt-get) or
Playwright for Python (in the [test] extra) is missing.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from difprog.graph._html import number
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
