"""`explain(..., group="layer", depth=1)` of one gpt training step: one node per block, each
node's value and gradient equal to what jax computes there, its picture and its flat numpy code."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from difprog import explain, gates, models
from tests.models.test_gpt import _perturbed

IDS = jnp.array([[1, 5, 2, 12, 0, 3, 3, 7], [4, 4, 9, 1, 2, 8, 6, 0]], jnp.int32)
TARGETS = jnp.roll(IDS, -1, 1)
PATHS = ("embedding", "position", "block_0", "block_1", "norm", "head")
pytestmark = pytest.mark.slow  # the fixture explains a whole training step: 7 to 9 s here


@pytest.fixture(scope="module")
def step():
    """(explanation at depth 1, params, jax's loss, layer outputs and gradients there), float64."""
    model = models.gpt(13, layers=2, heads=2, features=8, context=8)
    with jax.enable_x64(True):
        params = jax.tree.map(lambda a: a.astype(jnp.float64),
                              _perturbed(model.init(jax.random.key(0), IDS)))
        loss = lambda p, ids: gates.softmax_cross_entropy(model.apply(p, ids), TARGETS)
        explanation = explain(loss, params, IDS, group="layer", depth=1)
        zeros = {n.name: jnp.zeros_like(n.value) for n in explanation.nodes if n.name in PATHS}
        at_layers = jax.value_and_grad(lambda d: _moved(model, params, d), has_aux=True)
        (value, outputs), grads = jax.jit(at_layers)(zeros)
    return explanation, params, value, outputs, grads


def _moved(model, params, delta):
    """(the loss, the layers' outputs) with delta added to the output of each layer it names."""
    logits, outputs, _ = model.run(params, IDS, capture=PATHS, perturb=delta)
    return gates.softmax_cross_entropy(logits, TARGETS), outputs


def test_depth_1_shows_one_node_per_block(step):
    explanation = step[0]
    ops = {n.name: n for n in explanation.nodes if n.kind not in ("input", "constant")}
    assert list(ops) == [*PATHS, "L"]
    assert "attention" in ops["block_0"].op and "gelu" in ops["block_1"].op
    reads = lambda node, source: set(ops[source].outputs) & set(ops[node].inputs)
    assert reads("block_1", "block_0") and reads("norm", "block_1") and reads("L", "head")
    assert explanation.agrees and explanation.reference_error < 1e-9


def test_deeper_levels_split_blocks_into_attention_and_mlp(step):
    two = [n.name for n in step[0].grouped("layer", 2).nodes if n.kind == "group"]
    assert two[2:6] == ["block_0/attention", "block_0/mlp", "block_1/attention", "block_1/mlp"]
    every = [n.name for n in step[0].grouped("layer").nodes if n.kind == "group"]
    assert "block_1/attention/multi_head_attention_0" in every and "block_0/mlp/gelu_0" in every


def test_each_node_value_and_gradient_equal_jax(step):
    explanation, _, value, outputs, grads = step
    nodes = {n.name: n for n in explanation.nodes}
    for path in PATHS:
        np.testing.assert_allclose(nodes[path].value, outputs[path], rtol=1e-12, atol=1e-14,
                                   err_msg=path)
        np.testing.assert_allclose(nodes[path].upstream, grads[path], rtol=1e-9, atol=1e-12,
                                   err_msg=path)
    np.testing.assert_allclose(nodes["L"].value, value, rtol=1e-12)


def test_render_writes_a_png(step, tmp_path):
    path = step[0].render(tmp_path / "gpt.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_flat_code_gives_the_same_value_and_gradients_without_jax(step):
    explanation, params, value, _, _ = step
    namespace = {}
    exec(explanation.flat_code(), namespace)  # noqa: S102 - the code explain wrote
    numpy_params = jax.tree.map(np.asarray, params)
    flat_value, (flat_grads, _) = namespace["f_and_grad"](numpy_params, np.asarray(IDS))
    np.testing.assert_allclose(flat_value, value, rtol=1e-12)
    for mine, theirs in zip(jax.tree.leaves(flat_grads),
                            jax.tree.leaves(explanation.input_grads[0]), strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-9, atol=1e-12)
