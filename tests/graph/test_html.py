"""The interactive page's data and file (issue 20), without a browser: the payload's numbers are
the Explanation's, the number format, escaping of hostile names, no network resources, NaN,
the flat code's line map, save() and `difprog explain --out`."""

from __future__ import annotations

import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from difprog import cli
from difprog.errors import ArgumentError
from difprog.graph import _flat_code, _html, explain
from difprog.graph._html import number
from tests.graph.html_page import EXAMPLES, short, steps


@pytest.fixture(scope="module")
def neuron():
    return EXAMPLES["neuron"]()


@pytest.fixture(scope="module")
def cnn():
    return EXAMPLES["cnn_layers"]()


def _payload_of(text: str) -> dict:
    body = re.search(r'<script type="application/json" id="payload">(.*?)</script>', text,
                     re.S).group(1)
    return json.loads(body)


def _array(t: dict) -> np.ndarray:
    return np.array([[float(v) for v in row] for row in t["data"]])


@pytest.mark.parametrize("x, text", [
    (0.0, "0"), (-0.0, "0"), (3.0, "3"), (-12.0, "-12"), (0.7310585786, "0.7311"),
    (1.0625, "1.063"), (-1.0625, "-1.063"), (9.99951, "10"), (9.9995, "9.999"),
    (0.19661193, "0.1966"), (1234.0, "1234"), (12345.0, "1.235e4"), (123456.0, "1.235e5"),
    (999999.0, "1e6"), (1234567.0, "1.235e6"), (1e-5, "0.00001"),
    (1.5e-7, "1.5e-7"), (6.02214076e23, "6.022e23"), (float("nan"), "NaN"),
    (float("inf"), "inf"), (float("-inf"), "-inf")])
def test_number_format(x, text):
    assert number(x) == text


def test_payload_numbers_are_the_explanations(neuron):
    data = _html.payload(neuron)
    grouping = data["groupings"]["gate"]
    assert [n["name"] for n in grouping["nodes"]] == [n.name for n in neuron.nodes]
    tensors = data["tensors"]
    for node, shown in zip(neuron.nodes, grouping["nodes"]):
        assert float(tensors[shown["value"][0]]["data"][0][0]) == float(node.value)
        if node.upstream is not None:
            assert float(tensors[shown["upstream"][0]]["data"][0][0]) == float(node.upstream)
        for mine, theirs in zip(shown["downstream"], node.downstream):
            assert (mine is None) == (theirs is None)
            if theirs is not None:
                assert float(mine["data"][0][0]) == float(theirs)
        if node.local is not None:
            assert [None if t is None else float(t["data"][0][0]) for t in shown["local"]] == \
                [None if v is None else float(v) for v in node.local]
    assert [(s["phase"], s.get("node")) for s in grouping["steps"]] == steps(neuron)
    assert "layer" not in data["groupings"]  # the neuron has no layers


def test_a_tensor_keeps_its_statistics_and_at_most_32_by_32_entries():
    x = np.arange(4096.0).reshape(64, 64) - 2000.0
    t = _html.tensor(x)
    assert t["shape"] == [64, 64] and t["size"] == 4096 and (t["rows"], t["cols"]) == (64, 64)
    np.testing.assert_array_equal(_array(t), x[:32, :32])
    assert (t["min"], t["max"]) == (-2000.0, 2095.0)
    assert t["norm"] == float(np.linalg.norm(x.ravel()))
    images = _html.tensor(np.ones((4, 8, 8, 1), np.float32))  # squeezed, leading axes as rows
    assert (images["rows"], images["cols"]) == (32, 8) and images["dtype"] == "float32"


def test_matmul_payload_is_dD_X_transposed():
    e = EXAMPLES["matmul"]()
    data = _html.payload(e)
    nodes = {n["name"]: n for n in data["groupings"]["gate"]["nodes"]}
    w, x = (np.asarray(e.values[n]) for n in ("w", "x"))
    upstream = np.asarray(e.grads["s0"])
    dw = _array(data["tensors"][nodes["w"]["upstream"][0]])
    np.testing.assert_allclose(dw, upstream @ x.T, rtol=1e-12)
    dx = _array(nodes["s0"]["downstream"][1])
    np.testing.assert_allclose(dx, w.T @ upstream, rtol=1e-12)
    assert nodes["s0"]["rules"] == ["matmul.backward", "matmul.tangent"]
    assert nodes["s0"]["math"].startswith("matmul(x, w) = x w; dL/dx = dL/dy w^T")


def test_nan_and_inf_are_text_in_the_data():
    with jax.enable_x64(True):
        e = explain(lambda x: jnp.sqrt(x) * 2.0 + jnp.log(x + 1.0), -1.0)
    data = _html.payload(e)
    values = [data["tensors"][f"v:{n.name}"]["data"][0][0] for n in e.nodes if n.steps]
    assert "NaN" in values and "-inf" in values
    json.dumps(data, allow_nan=False)  # no bare NaN anywhere


def test_a_hostile_name_cannot_close_the_script(tmp_path):
    hostile = "</script><script>alert(1)</script><!--&"

    def f(x):
        with jax.named_scope(hostile):
            y = x * 2.0
        return y * x

    e = explain(f, 3.0, group="layer")
    text = e.to_html(tmp_path / "page.html", title=hostile).read_text()
    assert hostile not in text and "<script>alert" not in text
    assert text.count("</script>") == 2  # the payload's end and the script's end
    assert text.count("<!--") == 0
    data = _payload_of(text)
    assert data["title"] == hostile
    assert any(hostile in n["scope"] for n in data["groupings"]["layer"]["nodes"])
    assert f"<title>{hostile.replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')}" \
        in text


def test_the_page_loads_nothing_from_anywhere(neuron, tmp_path):
    text = neuron.to_html(tmp_path / "page.html").read_text()
    urls = set(re.findall(r"[a-z]+://[^\s\"'<>)]*", text))
    assert urls <= {"http://www.w3.org/2000/svg"}, urls  # the SVG namespace is a name only
    for pattern in (r"\bsrc\s*=\s*[\"']", r"<link\b", r"@import", r"\bfetch\(", "XMLHttpRequest",
                    r"url\((?!#)", "WebSocket", "EventSource", "sendBeacon"):
        assert not re.search(pattern, text), pattern
    assert "default-src 'none'" in text  # and the browser is told so


def test_flat_code_lines_point_at_each_steps_statements(neuron):
    source, forward, backward = _flat_code.flat_code_lines(neuron.program, neuron.values)
    assert source == neuron.flat_code()
    lines = source.splitlines()
    for index, step in enumerate(neuron.program.steps):
        first, last = forward[index]
        assert any(lines[k - 1].strip().startswith(f"{step.outputs[0]} = ")
                   for k in range(first, last + 1)), (step.op, lines[first - 1:last])
        first, last = backward[index]
        assert lines[first - 1].strip().startswith(f"# {step.op}: {step.outputs[0]} = ")
        assert all(lines[k - 1].strip().startswith(("grad_", "t")) for k in range(first + 1,
                                                                                  last + 1))


def test_flat_code_lines_count_the_helpers_lines(cnn):
    e = cnn
    source, forward, _ = _flat_code.flat_code_lines(e.program, e.values)
    lines = source.splitlines()
    conv = next(i for i, s in enumerate(e.program.steps) if s.op == "conv2d")
    first, last = forward[conv]
    assert any(lines[k - 1].strip().startswith(f"{e.program.steps[conv].outputs[0]} = ")
               for k in range(first, last + 1))


def test_the_cnn_page_has_both_groupings(cnn):
    e = cnn
    data = _html.payload(e)
    assert data["initial"] == "layer" and set(data["groupings"]) == {"gate", "layer"}
    layer = {n["name"]: n for n in data["groupings"]["layer"]["nodes"]}
    assert layer["conv2d_0"]["kind"] == "group" and layer["conv2d_0"]["lines"]["forward"]
    assert len(data["groupings"]["gate"]["nodes"]) == len(e.grouped("gate").nodes)


def test_to_html_refuses_other_suffixes(neuron, tmp_path):
    with pytest.raises(ArgumentError, match="to_html writes an .html file"):
        neuron.to_html(tmp_path / "page.svg")


def test_save_and_the_command_line_write_the_page(tmp_path, capsys):
    assert cli.main(["explain", "(x + y) * z", "--at", "x=-2,y=5,z=-4", "--out",
                     str(tmp_path)]) == 0
    assert "graph.html" in capsys.readouterr().out
    data = _payload_of((tmp_path / "graph.html").read_text())
    nodes = data["groupings"]["gate"]["nodes"]
    assert [n["name"] for n in nodes] == ["x", "y", "z", "s0", "L"]
    assert short(-12.0) == "-12" and data["tensors"]["v:L"]["data"] == [[-12.0]]
