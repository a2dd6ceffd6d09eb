"""difprog.explain: the lectures' worked examples node by node, flat code against jax.grad for
every gate, rendering, grouping by layer, the command line and errors."""

from __future__ import annotations

import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import difprog
from difprog import gates, layers
from difprog.gates import check_points
from difprog.graph import explain
from tests.conftest import GATE_NAMES, bound_arguments


@pytest.fixture(autouse=True)
def _float64():
    with jax.enable_x64(True):
        yield


def _nodes(explanation):
    return {n.name: n for n in explanation.nodes}


def _neuron(w0, x0, w1, x1, w2):
    return 1 / (1 + jnp.exp(-(w0 * x0 + w1 * x1 + w2)))


NEURON_AT = (2.0, -1.0, -3.0, -2.0, -3.0)


def _assert_nodes(explanation, expected):
    """expected: {node: (op, value, upstream, downstream by input)} with exact lecture numbers."""
    nodes = _nodes(explanation)
    for name, (op, value, upstream, downstream) in expected.items():
        node = nodes[name]
        assert node.op == op, (name, node.op)
        np.testing.assert_allclose(float(node.value), value, atol=5e-3, err_msg=name)
        np.testing.assert_allclose(float(node.upstream), upstream, atol=5e-3, err_msg=name)
        got = {i: float(g) for i, g in zip(node.inputs, node.downstream) if g is not None}
        assert got.keys() == downstream.keys(), (name, got)
        for i, g in downstream.items():
            np.testing.assert_allclose(got[i], g, atol=5e-3, err_msg=f"{name} -> {i}")


# --- the worked examples, node by node ---------------------------------------------------------

def test_add_multiply_circuit():
    e = explain(lambda x, y, z: (x + y) * z, -2.0, 5.0, -4.0)
    _assert_nodes(e, {"s0": ("add", 3, -4, {"x": -4, "y": -4}),
                      "L": ("multiply", -12, 1, {"s0": -4, "z": 3})})
    assert float(e.value) == -12.0
    assert [float(g) for g in e.input_grads] == [-4.0, -4.0, 3.0]
    assert [n.name for n in e.nodes] == ["x", "y", "z", "s0", "L"]
    assert e.agrees and e.reference_error == 0.0


def test_sigmoid_neuron():
    e = explain(_neuron, *NEURON_AT)
    _assert_nodes(e, {
        "s0": ("multiply", -2, 0.20, {"w0": -0.20, "x0": 0.39}),
        "s1": ("multiply", 6, 0.20, {"w1": -0.39, "x1": -0.59}),
        "s2": ("add", 4, 0.20, {"s0": 0.20, "s1": 0.20}),
        "s3": ("add", 1, 0.20, {"s2": 0.20, "w2": 0.20}),
        "s4": ("negative", -1, -0.20, {"s3": 0.20}),
        "s5": ("exp", 0.37, -0.53, {"s4": -0.20}),
        "s6": ("add", 1.37, -0.53, {"s5": -0.53}),
        "L": ("divide", 0.73, 1.00, {"s6": -0.53}),
    })
    np.testing.assert_allclose([float(g) for g in e.input_grads],
                               [-0.20, 0.39, -0.39, -0.59, 0.20], atol=5e-3)
    assert _nodes(e)["s6"].inputs == ("1", "s5")


def test_sigmoid_neuron_with_the_sigmoid_gate_folds_the_tail_into_one_node():
    e = explain(lambda w0, x0, w1, x1, w2: gates.sigmoid(w0 * x0 + w1 * x1 + w2), *NEURON_AT)
    _assert_nodes(e, {"L": ("sigmoid", 0.73, 1.0, {"s3": 0.20})})
    assert float(_nodes(e)["L"].local[0]) == pytest.approx(0.7311 * (1 - 0.7311), abs=1e-4)


def test_reciprocal_of_a_sum_with_exp():
    e = explain(lambda x, y: 1 / (y + jnp.exp(-x)), 0.0, 1.0)
    _assert_nodes(e, {"s0": ("negative", 0, -0.25, {"x": 0.25}),
                      "s1": ("exp", 1, -0.25, {"s0": -0.25}),
                      "s2": ("add", 2, -0.25, {"y": -0.25, "s1": -0.25}),
                      "L": ("divide", 0.5, 1, {"s2": -0.25})})
    assert [float(g) for g in e.input_grads] == [0.25, -0.25]


def test_max_routes_and_square():
    e = explain(lambda x, y, z: (gates.maximum(3 * x, 0.0) - y) ** 2 + z, 1.0, 0.0, -2.0)
    _assert_nodes(e, {"s0": ("multiply", 3, 6, {"x": 18}),
                      "s1": ("maximum", 3, 6, {"s0": 6}),
                      "s2": ("subtract", 3, 6, {"s1": 6, "y": -6}),
                      "s3": ("square", 9, 1, {"s2": 6}),
                      "L": ("add", 7, 1, {"s3": 1, "z": 1})})
    assert [float(g) for g in e.input_grads] == [18.0, -6.0, 1.0]


def test_a_wrong_backward_rule_shows_in_the_nodes(monkeypatch):
    """Mutation: with multiply's backward doubled, the neuron's nodes no longer match."""
    broken = gates.multiply.with_rules(
        backward=lambda g, out, x, y: (2 * g * y, 2 * g * x))
    monkeypatch.setitem(gates.ALL, "multiply", broken)
    e = explain(_neuron, *NEURON_AT)
    with pytest.raises(AssertionError):
        _assert_nodes(e, {"s0": ("multiply", -2, 0.20, {"w0": -0.20, "x0": 0.39})})
    # jax.grad differentiates jnp's `*` with JAX's own rule, so the report flags the difference
    assert not e.agrees and e.reference_error > 0.1
    assert "DIFFER FROM jax.grad(f)" in str(e)


# --- invariants on every node --------------------------------------------------------------------

def _programs():
    rng = np.random.default_rng(0)
    w1, w2 = rng.standard_normal((4, 5)), rng.standard_normal((5, 3))
    labels = np.array([0, 2])

    def mlp(x, w1, w2):
        return gates.softmax_cross_entropy(gates.matmul(gates.tanh(x @ w1), w2), labels)

    def numpy_style(x, w):
        h = jnp.where(x > 0, x, 0.1 * x).T @ w
        return jnp.mean(h[:, 1:] ** 2) + jnp.sum(jnp.take_along_axis(h, labels[:, None] % 2,
                                                                      axis=1))

    @jax.jit
    def inner(a):
        return jax.nn.relu(a) * jnp.linspace(0.0, 1.0, a.shape[-1])

    def jitted(x):
        return jnp.sum(inner(x) + jnp.broadcast_to(x[0], x.shape))

    x = rng.standard_normal((2, 4))
    return [(mlp, (x, w1, w2)), (numpy_style, (x.T, rng.standard_normal((4, 3)))),
            (jitted, (x,))]


@pytest.mark.parametrize("index", range(3))
def test_downstream_is_local_times_upstream_and_grads_equal_jax_grad(index):
    f, args = _programs()[index]
    e = explain(f, *args)
    assert e.agrees and e.reference_error < 1e-12
    reference = jax.grad(f, argnums=tuple(range(len(args))))(*args)
    for ours, theirs in zip(e.input_grads, reference):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)
    checked = 0
    for node in e.nodes:
        for local, g, name in zip(node.local or (), node.downstream, node.inputs):
            if local is None or g is None:
                continue
            value = np.asarray(node.value)
            local = np.reshape(local, (value.size, -1))
            np.testing.assert_allclose(np.ravel(node.upstream) @ local, np.ravel(g), atol=1e-12,
                                       err_msg=f"{node.name} -> {name}")
            checked += 1
    assert checked > 0


def test_every_value_gradient_is_the_sum_of_what_its_readers_send_back():
    f, args = _programs()[0]
    e = explain(f, *args)
    for name, grad in e.grads.items():
        sent = [g for n in e.nodes for i, g in zip(n.inputs, n.downstream)
                if i == name and g is not None]
        if sent:
            np.testing.assert_allclose(sum(sent), grad, atol=1e-12)


# --- flat code ----------------------------------------------------------------------------------

def _run_flat_code(explanation, *args):
    namespace = {}
    exec(compile(explanation.flat_code(), "<flat_code>", "exec"), namespace)  # noqa: S102
    return namespace["f_and_grad"](*jax.tree.map(np.asarray, args))


def _gate_program(name, point):
    """sum(tanh(gate(inputs)) * r): the gate composed with two more, r a fixed constant."""
    gate = gates.ALL[name]
    inputs, others = bound_arguments(gate, *point)
    shape = jax.eval_shape(lambda: gate(**inputs, **others)).shape
    r = np.random.default_rng(7).standard_normal(shape)

    def f(*xs):
        out = gate(**dict(zip(inputs, xs)), **others)
        return gates.sum(gates.multiply(gates.tanh(out), r))

    return f, tuple(inputs.values())


@pytest.mark.parametrize("name", GATE_NAMES)
def test_flat_code_matches_jax_grad_on_fresh_inputs_for_every_gate(name):
    for k in range(2 if len(check_points(name)) > 1 else 1):
        f, args = _gate_program(name, check_points(name, seed=0)[k])
        e = explain(f, *args)
        assert e.agrees, (name, e.reference_error)
        _, fresh = _gate_program(name, check_points(name, seed=1)[k])
        value, grads = _run_flat_code(e, *fresh)
        np.testing.assert_allclose(value, f(*fresh), rtol=1e-10, atol=1e-12)
        reference = jax.grad(f, argnums=tuple(range(len(fresh))))(*fresh)
        for ours, theirs in zip(jax.tree.leaves(grads), jax.tree.leaves(reference)):
            np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-10, err_msg=name)


def test_a_graph_larger_than_max_nodes_is_refused_before_computing(capsys, tmp_path):
    calls = []

    def f(x):
        jax.debug.callback(lambda: calls.append(1))  # runs only when f is computed
        return gates.sum(gates.exp(gates.multiply(x, x)))

    x = np.array([0.5, -1.0])
    exact = explain(f, x).nodes
    calls.clear()
    with pytest.raises(difprog.errors.ArgumentError, match=f"f has {len(exact)} nodes, more "
                       f"than max_nodes={len(exact) - 1}; nothing was computed"):
        explain(f, x, max_nodes=len(exact) - 1)
    assert calls == []
    assert len(explain(f, x, max_nodes=len(exact)).nodes) == len(exact)
    from difprog.cli import main

    big = " + ".join(["exp(x)"] * 250)  # 501 nodes: more than a picture shows
    assert main(["explain", big, "--at", "x=1", "--out", str(tmp_path / "out")]) == 1
    assert "more than max_nodes=400; nothing was computed" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_hostile_gate_names_stay_inside_the_flat_codes_comments(tmp_path):
    """A gate named by a user's function with line breaks and other control characters: its
    node's name is escaped (table, pictures, page), and the written flat_code.py compiles, runs
    only its own code and gives the gradient."""
    from difprog.gate import elementwise

    marker = tmp_path / "ran"

    def forward(x):
        return jnp.sin(x)

    forward.__name__ = (f"evil\nopen({str(marker)!r}, 'w')\r\n#\x0c\u2028\x00\t"
                        "'\"\"\"\\")
    hostile = elementwise(forward, lambda out, x: jnp.cos(x))
    e = explain(lambda x: gates.sum(gates.multiply(hostile(x), x)), np.array([0.3, -0.2]))
    e.save(tmp_path / "out")
    assert all(n.op.isprintable() for n in e.nodes) and "evil\\nopen(" in e.table()
    source = (tmp_path / "out" / "flat_code.py").read_text()
    assert "\nopen(" not in source and "\r" not in source and "\x0c" not in source
    namespace = {}
    exec(compile(source, "flat_code.py", "exec"), namespace)  # noqa: S102
    x = np.array([0.7, 0.1])
    value, (grad,) = namespace["f_and_grad"](x)
    np.testing.assert_allclose(grad, np.sin(x) + x * np.cos(x), rtol=1e-6)
    assert not marker.exists()


def test_flat_code_uses_the_gate_rules_not_autodiff():
    """Mutation: a gate whose backward is doubled gives flat code with doubled gradients."""
    doubled = gates.tanh.with_rules(backward=lambda g, out, x: (2 * g * (1 - out * out),))
    e = explain(lambda x: gates.sum(doubled(x)), np.array([0.3, -0.2]))
    _, (grad,) = _run_flat_code(e, np.array([0.5, 1.0]))
    np.testing.assert_allclose(grad, 2 * (1 - np.tanh([0.5, 1.0]) ** 2), rtol=1e-12)


@pytest.mark.parametrize("index", range(3))
def test_flat_code_of_numpy_programs_with_jits_gathers_and_slices(index):
    f, args = _programs()[index]
    e = explain(f, *args)
    fresh = jax.tree.map(lambda a: a + 0.1 * np.random.default_rng(3).standard_normal(a.shape),
                         args)
    value, grads = _run_flat_code(e, *fresh)
    np.testing.assert_allclose(value, f(*fresh), rtol=1e-10)
    for ours, theirs in zip(grads, jax.grad(f, argnums=tuple(range(len(args))))(*fresh)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12)


def test_flat_code_reads_like_the_lecture_notes():
    code = explain(lambda x, y, z: (x + y) * z, -2.0, 5.0, -4.0).flat_code()
    for line in ("def f_and_grad(x, y, z):", "s0 = x + y", "L = s0 * z", "grad_L = np.ones_like(L)",
                 "grad_s0 = grad_L * z", "grad_z = grad_L * s0", "grad_x = grad_s0",
                 "return L, (grad_x, grad_y, grad_z)"):
        assert line in code, line
    assert "jax" not in code.replace("difprog.explain", "")
    sigmoid = explain(lambda x: gates.sigmoid(x), 0.5).flat_code()
    assert "grad_x = grad_L * (L * (1.0 - L))" in sigmoid


def test_flat_code_of_a_model_with_pytree_params_and_float32():
    with jax.enable_x64(False):
        model = layers.serial(layers.Conv2D(4, 3), layers.Relu(), layers.MaxPool2D(2),
                              layers.Flatten(), layers.LayerNorm(), layers.Dense(3))
        x = np.random.default_rng(0).uniform(size=(2, 6, 6, 1)).astype(np.float32)
        params = model.init(jax.random.key(0), x)
        labels = np.array([1, 2])
        f = lambda params, x: gates.softmax_cross_entropy(model.apply(params, x), labels)
        e = explain(f, params, x)
        fresh = jax.tree.map(lambda a: a * np.float32(0.9), (params, x))
        value, grads = _run_flat_code(e, *fresh)
        reference = jax.grad(f, argnums=(0, 1))(*fresh)
    assert np.asarray(value).dtype == np.float32
    np.testing.assert_allclose(value, f(*fresh), rtol=1e-5)
    assert jax.tree.structure(grads) == jax.tree.structure(reference)
    for ours, theirs in zip(jax.tree.leaves(grads), jax.tree.leaves(reference)):
        np.testing.assert_allclose(ours, theirs, rtol=2e-4, atol=1e-5)


# --- grouping, rendering, the command line, errors ---------------------------------------

def _cnn_explanation():
    model = layers.serial(layers.Conv2D(4, 3), layers.Relu(), layers.MaxPool2D(2),
                          layers.residual(layers.Dense(4), layers.Tanh()), layers.Flatten(),
                          layers.Dense(3))
    x = np.random.default_rng(0).uniform(size=(2, 4, 4, 1))
    params = model.init(jax.random.key(0), x)
    labels = np.array([0, 2])
    return explain(lambda p, x: gates.softmax_cross_entropy(model.apply(p, x), labels), params, x)


def test_grouping_by_layer_summarises_a_cnn_per_layer():
    e = _cnn_explanation()
    by_layer = e.grouped("layer")
    groups = [n for n in by_layer.nodes if n.kind == "group"]
    assert [n.name for n in groups] == ["conv2d_0", "relu_0", "max_pool2d_0",
                                        "residual_0/dense_0", "residual_0/tanh_0", "residual_0",
                                        "flatten_0", "dense_0"]
    assert groups[0].op == "conv2d, add"
    assert len(by_layer.nodes) < len(e.nodes)
    nodes = _nodes(e)
    for group in groups:  # a group's upstream is that of the value it hands on
        np.testing.assert_allclose(group.upstream, nodes[group.outputs[0]].upstream)
    conv = groups[0]
    for name, g in zip(conv.inputs, conv.downstream):
        if name.startswith("p_"):
            np.testing.assert_allclose(g, e.grads[name], atol=1e-12)
    top = e.grouped("layer", depth=1)
    assert "residual_0" in [n.name for n in top.nodes]
    assert "residual_0/dense_0" not in [n.name for n in top.nodes]
    for depth in (0, True, 1.0):
        with pytest.raises(difprog.ArgumentError,
                           match=f"explain: depth must be None or a positive int, got {depth!r}"):
            e.grouped("layer", depth=depth)
    plain = explain(_neuron, *NEURON_AT)
    assert plain.grouped("layer").nodes == plain.nodes  # no layers: nothing to group


def test_render_writes_valid_svg_and_png(tmp_path):
    from PIL import Image

    e = explain(_neuron, *NEURON_AT)
    svg, png = e.render(tmp_path / "g.svg"), e.render(tmp_path / "g.png")
    text = svg.read_text()
    assert text.startswith("<?xml") and "<svg" in text and "</svg>" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as image:
        image.verify()
    with Image.open(io.BytesIO(png.read_bytes())) as image:
        assert image.size[0] > 800 and image.size[1] > 200
    e.grouped("layer").render(tmp_path / "same.png")
    _cnn_explanation().grouped("layer").render(tmp_path / "cnn.svg")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cnn.svg", "g.png", "g.svg", "same.png"]
    with pytest.raises(difprog.ArgumentError, match="svg or .png"):
        e.render(tmp_path / "g.pdf")


def test_table_prints_scalars_in_full_and_summarises_tensors():
    table = explain(_neuron, *NEURON_AT).table()
    assert table.splitlines()[0].split() == ["node", "op", "inputs", "value", "upstream", "local",
                                             "downstream"]
    assert "w0: -0.1966, x0: 0.3932" in table
    cnn = _cnn_explanation().grouped("layer").table()
    assert "f64[2,4,4,4] |" in cnn and "conv2d, add" in cnn


def test_command_line_explains_an_expression(tmp_path, capsys):
    from difprog.cli import main

    assert main(["explain", "(x + y) * z", "--at", "x=-2,y=5,z=-4", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "equal jax.grad(f)" in out and "f = -12" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "flat_code.py", "graph.html", "graph.png", "graph.svg", "table.txt"]
    namespace = {}
    exec((tmp_path / "flat_code.py").read_text(), namespace)  # noqa: S102
    value, grads = namespace["f_and_grad"](1.0, 2.0, 3.0)
    assert value == 9.0 and [float(g) for g in grads] == [3.0, 3.0, 3.0]
    assert main(["explain", "sum(tanh(w * x))", "--at", "w=[1,2],x=[0.5,-1]"]) == 0
    assert main(["explain", "max(3*x, 0)", "--at", "x=1,y=2"]) == 2
    assert "y, which" in capsys.readouterr().err
    assert main(["explain", "x +", "--at", "x=1"]) == 2
    assert main(["explain", "q", "--at", "x=1"]) == 2
    assert "uses q" in capsys.readouterr().err


def test_errors_name_what_is_wrong():
    with pytest.raises(difprog.ArgumentError, match="one real scalar"):
        explain(lambda x: x * 2, np.ones(3))
    with pytest.raises(difprog.ArgumentError, match="needs a function"):
        explain(3.0, 1.0)
    with pytest.raises(difprog.ArgumentError, match="arrays or numbers"):
        explain(lambda x: x, "a")
    with pytest.raises(difprog.ArgumentError, match="group by"):
        explain(lambda x: x * 2, 1.0, group="module")
    with pytest.raises(difprog.ShapeError, match="matmul"):
        explain(lambda x, w: gates.sum(gates.matmul(x, w)), np.ones((2, 3)), np.ones((2, 3)))


def test_integer_arguments_get_no_gradient():
    e = explain(lambda x, labels: gates.softmax_cross_entropy(x, labels), np.ones((2, 3)),
                np.array([0, 2]))
    assert e.input_grads[1] is None and e.agrees
    _, (grad, none) = _run_flat_code(e, np.zeros((2, 3)), np.array([1, 1]))
    assert none is None
    np.testing.assert_allclose(grad, np.array([[1, -2, 1], [1, -2, 1]]) / 6, atol=1e-12)


# --- edge cases found in review ----------------------------------------------------------------

def test_integer_arguments_anywhere_are_skipped_when_checking_against_jax_grad():
    f = lambda n, x, y: jnp.sum(x * n) * jnp.sum(y)
    e = explain(f, np.arange(3), np.ones(3), np.ones(4))
    assert e.agrees and e.input_grads[0] is None
    np.testing.assert_allclose(e.input_grads[1], 4 * np.arange(3))
    e = explain(lambda x, i: x[i] * x[0], np.array([1.0, 2.0, 3.0]), 2)
    assert e.agrees and float(e.value) == 3.0 and e.input_grads[1] is None


def test_a_wrong_gradient_with_an_integer_argument_first_is_caught(monkeypatch):
    from difprog.graph import _explain

    passes = _explain._passes

    def wrong(program, args):
        result = passes(program, args)
        result.grads["x"] = 7 * result.grads["x"]
        return result

    monkeypatch.setattr(_explain, "_passes", wrong)
    e = explain(lambda n, x: jnp.sum(x * n), np.arange(3), np.ones(3))
    assert not e.agrees


def test_flat_code_parenthesises_comparisons_and_negative_powers():
    @jax.custom_jvp
    def g(x, y):
        return jnp.where((x > 0) == (y > 0), x * y, x + y)

    g.defjvps(lambda t, out, x, y: t * y, lambda t, out, x, y: t * x)
    e = explain(g, 0.5, -0.3)
    value, _ = _run_flat_code(e, 0.5, -0.3)
    assert value == pytest.approx(0.2)
    with jax.enable_x64(False):
        e = explain(lambda x: x * jax.jit(lambda: jax.lax.integer_pow(-1.5, 4))(),
                    np.float32(2.0))
        value, _ = _run_flat_code(e, np.float32(2.0))
    assert value == pytest.approx(2 * 1.5 ** 4)


def test_nodes_without_forward_mode_get_no_local_jacobian():
    @jax.custom_vjp
    def double(x):
        return 2 * x

    double.defvjp(lambda x: (2 * x, None), lambda _, g: (2 * g,))
    e = explain(lambda x: jnp.sum(double(x)), np.ones(3))
    assert e.agrees and [float(v) for v in e.input_grads[0]] == [2.0, 2.0, 2.0]
    assert any(n.local == (None,) for n in e.nodes)


def test_dropout_with_a_key_argument_and_remat_are_explained_through_the_gates(tmp_path):
    model = layers.serial(layers.Dense(3), layers.Dropout(0.5), layers.remat(layers.Dense(2)))
    x = np.ones((2, 4))
    params = model.init(jax.random.key(0), x)
    f = lambda p, x, key: gates.sum(model.apply(p, x, key=key, train=True))
    e = explain(f, params, x, jax.random.key(1))
    assert e.agrees and e.input_grads[2] is None
    assert "key[]" in e.table()
    e.render(tmp_path / "dropout.png")
    assert [n.op for n in e.nodes if n.scope.endswith("dense_1")] == ["matmul", "add"]
    with pytest.raises(difprog.ArgumentError, match="numpy, which has no key"):
        e.flat_code()


def test_bfloat16_agrees_within_its_rounding_and_flat_code_says_numpy_lacks_it():
    x = jnp.linspace(-1, 1, 3, dtype=jnp.bfloat16)
    e = explain(lambda x: jnp.sum(jnp.tanh(x) * x + 0.5), x)
    assert e.agrees
    with pytest.raises(difprog.ArgumentError, match="no bfloat16"):
        e.flat_code()


def test_flat_code_refuses_arguments_that_would_hide_numpy():
    e = explain(lambda np, x: np * x + jnp.exp(x), 1.0, 2.0)
    assert e.agrees
    with pytest.raises(difprog.ArgumentError, match="'np' would hide"):
        e.flat_code()


def test_a_layer_called_twice_is_two_nodes_in_order():
    dense = layers.Dense(2)
    params = dense.init(jax.random.key(0), np.ones((1, 2)))
    f = lambda p, x: gates.sum(dense.apply(p, gates.tanh(dense.apply(p, x))))
    e = explain(f, params, np.ones((1, 2))).grouped("layer")
    groups = [n.name for n in e.nodes if n.kind == "group"]
    assert groups == ["dense", "dense (2)"]
    seen = set()
    for node in e.nodes:  # topological: every input was produced before it is read
        assert all(i in seen or not i.isidentifier() for i in node.inputs), node.name
        seen |= set(node.outputs)


def test_more_bad_input():
    with pytest.raises(difprog.ArgumentError, match="at least one argument"):
        explain(lambda: 1.0)
    with pytest.raises(difprog.ArgumentError, match="pass floats"):
        explain(lambda x: x * 2, 3)
    e = explain(_neuron, *NEURON_AT)
    with pytest.raises(difprog.ArgumentError, match="depth"):
        e.grouped("layer", depth=1.5)
    with pytest.raises(difprog.ArgumentError, match="width"):
        e.table(width=2)


def test_command_line_variables_may_shadow_function_names(capsys):
    from difprog.cli import main

    assert main(["explain", "e * 2 + exp(e)", "--at", "e=1"]) == 0
    assert main(["explain", "foo(x)", "--at", "x=1"]) == 2
    assert "calls foo" in capsys.readouterr().err
    assert main(["explain", "x * 2", "--at", "x=1,x=2"]) == 2
    assert main(["explain", "x.__class__", "--at", "x=1"]) == 2


def _control_flow_programs():
    model = layers.repeat(layers.serial(layers.Dense(3), layers.Tanh()), 3)
    x = np.linspace(-1, 1, 6).reshape(2, 3)
    params = model.init(jax.random.key(0), x)
    return [
        (lambda x: jax.lax.fori_loop(0, 3, lambda i, c: gates.tanh(c * x + i), 0.5), (0.7,),
         (0.3,)),
        (lambda x, y: jax.lax.cond(x > 0, lambda a: a * y, lambda a: a + y, x), (0.7, 2.0),
         (-0.3, 1.5)),
        (lambda x, y: jax.lax.cond(x > 0, lambda a: a * y, lambda a: a + y, x), (-0.7, 2.0),
         (0.3, 1.5)),
        (lambda p, x: gates.sum(model.apply(p, x)), (params, x),
         jax.tree.map(lambda a: 0.9 * a, (params, x))),
        (lambda x: jnp.sum(jax.lax.scan(lambda c, xi: (c + xi, c * xi), 0.0, x, reverse=True)[1]),
         (np.arange(4.0),), (np.arange(4.0) + 1,)),
    ]


@pytest.mark.parametrize("index", range(5))
def test_flat_code_writes_loops_and_branches(index):
    """fori_loop, cond (traced on one branch, run on the other), layers.repeat, reverse scan."""
    f, args, fresh = _control_flow_programs()[index]
    e = explain(f, *args)
    assert e.agrees
    value, grads = _run_flat_code(e, *fresh)
    np.testing.assert_allclose(value, f(*fresh), rtol=1e-12)
    reference = jax.grad(f, argnums=tuple(range(len(fresh))))(*fresh)
    for ours, theirs in zip(jax.tree.leaves(grads), jax.tree.leaves(reference), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)



@jax.custom_vjp
def _sine(x):
    return jnp.sin(x)


_sine.defvjp(lambda x: (jnp.sin(x), x), lambda x, g: (g * jnp.cos(x),))


def _every_call(x):
    """jit (closing over an array), checkpoint, custom_jvp (relu), custom_vjp, scan and cond."""
    c = jnp.array([0.5, 1.0, 2.0])
    y = jax.jit(lambda a: a * c)(x)
    y = jax.checkpoint(lambda a: jnp.sin(a) * a)(y)
    y = jax.nn.relu(y) + _sine(y)
    y, _ = jax.lax.scan(lambda carry, a: (carry * 0.5 + a * c, carry), y, jnp.ones((3, 3)))
    y = jax.lax.cond(jnp.sum(y) > 0, lambda a: 2 * a, lambda a: -a, y)
    return jnp.sum(y * y)


def _call_like(jaxpr, found):
    """Names of the primitives in jaxpr (and its bodies) that hold one body: the call-like ones."""
    for eqn in jaxpr.eqns:
        bodies = [v for v in eqn.params.values()
                  if isinstance(v, (jax.extend.core.Jaxpr, jax.extend.core.ClosedJaxpr))]
        branches = [b for v in eqn.params.values() if isinstance(v, tuple) for b in v
                    if isinstance(b, (jax.extend.core.Jaxpr, jax.extend.core.ClosedJaxpr))]
        if bodies and eqn.primitive.name != "scan":
            found.add(eqn.primitive.name)
        for body in bodies + branches:
            _call_like(getattr(body, "jaxpr", body), found)
    return found


def test_the_one_call_table_covers_every_call_explain_and_flat_code_meet():
    from difprog.graph._jaxpr import CALLS

    x = np.array([0.3, -0.2, 0.7])
    met = _call_like(jax.make_jaxpr(_every_call)(x).jaxpr, set())
    met = _call_like(jax.make_jaxpr(jax.grad(_every_call))(x).jaxpr, met)
    assert {"custom_jvp_call", "custom_vjp_call"} <= met and met <= set(CALLS), met
    e = explain(_every_call, x)
    assert e.agrees
    ops = [n.op for n in e.nodes]
    assert {"relu", "_sine", "scan", "cond"} <= set(ops), ops  # custom calls keep their rules
    assert not any(op in CALLS for op in ops), ops  # every other call is inlined
    fresh = np.array([0.1, 0.4, -0.6])
    value, (grad,) = _run_flat_code(e, fresh)
    np.testing.assert_allclose(value, _every_call(fresh), rtol=1e-12)
    np.testing.assert_allclose(grad, jax.grad(_every_call)(fresh), rtol=1e-10, atol=1e-12)


def test_a_backward_rule_with_too_few_cotangents_is_named():
    broken = gates.multiply.with_rules(backward=lambda g, out, x, y: (g * y,))
    with pytest.raises(difprog.RuleError, match="multiply.*2 cotangents"):
        explain(lambda x, y: broken(x, y), 2.0, 3.0)


# --- `@` as the matmul gate, and non-finite values flagged -------------------------------------

@pytest.mark.parametrize("x_shape, w_shape", [((2, 3), (3, 4)), ((3,), (3, 4)), ((2, 3), (3,)),
                                              ((3,), (3,)), ((5, 2, 3), (3, 4)),
                                              ((5, 2, 3), (5, 3, 4))])
def test_the_at_operator_is_the_matmul_gate_like_plus_is_add(x_shape, w_shape):
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    e = explain(lambda x, w: jnp.sum(jnp.tanh(x @ w)), x, w)
    [node] = [n for n in e.nodes if n.kind != "input" and n.op not in ("tanh", "sum")]
    assert (node.op, node.kind) == ("matmul", "gate")
    assert node.rule == "hand-written backward of gate matmul"
    assert e.agrees and e.reference_error < 1e-12
    fresh = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    value, grads = _run_flat_code(e, *fresh)
    f = lambda x, w: jnp.sum(jnp.tanh(x @ w))
    np.testing.assert_allclose(value, f(*fresh), rtol=1e-12)
    for ours, theirs in zip(grads, jax.grad(f, argnums=(0, 1))(*fresh)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)


def test_a_dot_general_that_is_not_jnp_matmul_keeps_jax_rule():
    x, w = np.ones((5, 2, 3)), np.ones((5, 3, 4))
    ops = lambda f, *args: [n.op for n in explain(f, *args).nodes if n.kind != "input"]
    assert ops(lambda x, w: jnp.sum(jnp.dot(x, w)), x, w) == ["dot_general", "sum"]  # no batch
    assert ops(lambda x, w: jnp.sum(jnp.matmul(x[0], w[0], precision="highest")), x, w)[-2] == (
        "dot_general")
    assert ops(lambda x, w: jnp.sum(jnp.einsum("ij,kj->ik", x[0], w[0].T)), x, w)[-2] == (
        "dot_general")
    assert "matmul" in ops(lambda x, w: jnp.sum(x[0] @ w[0]), x, w)


def test_non_finite_values_and_gradients_are_flagged_in_the_report(capsys):
    log = explain(jnp.log, -1.0)
    assert np.isnan(log.value) and log.agrees and not log.finite
    assert "warning: f = nan is not finite" in str(log) and "node L (log of x)" in str(log)
    sqrt = explain(lambda x: 2 * jnp.sqrt(x), 0.0)
    assert float(sqrt.value) == 0.0 and not sqrt.finite
    assert "gradient of x is not finite" in str(sqrt) and "node s0 (sqrt of x)" in str(sqrt)
    neuron = explain(_neuron, *NEURON_AT)
    assert neuron.finite and "warning" not in str(neuron)
    from difprog.cli import main

    assert main(["explain", "log(x)", "--at", "x=-1"]) == 0  # the warning is the signal
    assert "\nwarning: f = nan is not finite" in capsys.readouterr().out


def test_nan_gradients_on_both_sides_agree():
    """sqrt at -1: difprog's gradient and jax.grad's are both NaN, which is agreement."""
    with jax.enable_x64(True):
        e = difprog.explain(lambda x: gates.sqrt(x), -1.0)
    assert e.agrees and not e.finite and "equal jax.grad" in str(e)
