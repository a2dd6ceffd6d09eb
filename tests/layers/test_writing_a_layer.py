"""The public layer contract: a user's layer with params (the README's LoRA Dense) and a user's
container, written on `difprog.layers.__all__` alone, initialised, checked and trained."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.nn import initializers

import difprog
from difprog import gates, layers


class LoRADense(layers.Layer):
    """y = x (w + a b) + bias, a and b of rank `rank`."""
    features: int
    rank: int = 2
    takes = layers.Input(min_rank=1, text="features on the last axis")

    def params(self, x):
        return {"w": layers.Param((x.shape[-1], self.features)),
                "a": layers.Param((x.shape[-1], self.rank), initializers.normal(0.01)),
                "b": layers.Param((self.rank, self.features), initializers.zeros),
                "bias": layers.Param((self.features,), initializers.zeros)}

    def forward(self, params, x, ctx):
        low_rank = gates.matmul(gates.matmul(x, params["a"]), params["b"])
        return gates.add(gates.add(gates.matmul(x, params["w"]), low_rank), params["bias"])


class GatedResidual(layers.Layer):
    """x + sigmoid(gate(x)) * body(x)."""
    body: layers.Layer

    def children(self):
        return {"body": self.body, "gate": layers.Dense(1)}

    def forward(self, params, x, ctx):
        body, gate = ctx("body", x), gates.sigmoid(ctx("gate", x))
        return gates.add(x, gates.multiply(gate, body))


def test_the_lora_layer_declares_its_params_and_gets_repr_key_and_default_init():
    model = layers.serial(LoRADense(16), layers.Relu(), LoRADense(1, rank=1))
    params = model.init(jax.random.key(0), jnp.zeros((8, 3)))
    assert jax.tree.map(jnp.shape, params) == {
        "lo_ra_dense_0": {"w": (3, 16), "a": (3, 2), "b": (2, 16), "bias": (16,)},
        "lo_ra_dense_1": {"w": (16, 1), "a": (16, 1), "b": (1, 1), "bias": (1,)}}
    assert repr(model) == "Serial(LoRADense(16), Relu(), LoRADense(1, rank=1))"
    assert not np.any(params["lo_ra_dense_0"]["b"])  # the low-rank product starts at zero
    # Param(shape) with no initialiser: He normal before a relu, as a Dense's weights
    wide = layers.serial(LoRADense(512), layers.Relu()).init(jax.random.key(1),
                                                             jnp.zeros((1, 256)))
    assert float(jnp.std(wide["lo_ra_dense_0"]["w"])) == pytest.approx(np.sqrt(2 / 256), rel=0.05)
    with pytest.raises(AttributeError):  # settings are frozen
        model.layers[0].features = 3


def test_errors_name_the_user_layers_path():
    model = layers.serial(layers.Dense(4), layers.residual(LoRADense(4)))
    params = model.init(jax.random.key(0), jnp.zeros((2, 3)))
    with pytest.raises(difprog.ShapeError, match=r"layer 'residual_0/lo_ra_dense_0' "
                                                 r"\(LoRADense\(4\)\) expects features on the "
                                                 r"last axis, got an input of shape \(\)"):
        layers.serial(layers.residual(LoRADense(4))).init(jax.random.key(0), jnp.zeros(()))
    with pytest.raises(difprog.ShapeError, match=r"layer 'lo_ra_dense' \(LoRADense\(4\)\)"):
        LoRADense(4).init(jax.random.key(0), jnp.zeros(()))
    wrong = {**params, "residual_0": {"lo_ra_dense_0": {
        **params["residual_0"]["lo_ra_dense_0"], "a": jnp.zeros((4, 3))}}}
    with pytest.raises(difprog.ShapeError, match=r"param 'residual_0/lo_ra_dense_0/a' has shape "
                                                 r"\(4, 3\).*needs \(4, 2\)"):
        model.apply(wrong, jnp.zeros((2, 3)))
    block = layers.residual(LoRADense(3))
    with pytest.raises(difprog.DtypeError, match=r"layer 'lo_ra_dense_0'.*floating.*int32"):
        block.apply(block.init(jax.random.key(0), jnp.zeros((2, 3))), jnp.zeros((2, 3), jnp.int32))


def test_the_error_path_inside_a_model_names_the_layer_not_the_model():
    model = layers.serial(layers.Flatten(), layers.residual(LoRADense(5)))
    with pytest.raises(difprog.ShapeError, match=r"layer 'residual_0'.*adds its input.*\(2, 3\) "
                                                 r"to \(2, 5\)"):
        model.init(jax.random.key(0), jnp.zeros((2, 3)))


def test_a_lora_model_trains_with_w_frozen_and_the_loss_falls():
    key_x, key_w = jax.random.split(jax.random.key(3))
    x = jax.random.normal(key_x, (64, 4))
    y = jnp.tanh(x @ jax.random.normal(key_w, (4, 1)))
    model = layers.serial(LoRADense(16), layers.Relu(), LoRADense(1, rank=1))
    params = model.init(jax.random.key(0), x)
    labels = jax.tree_util.tree_map_with_path(
        lambda path, _: "frozen" if path[-1].key == "w" else "trained", params)
    optimizer = optax.multi_transform({"trained": optax.adam(3e-2),
                                       "frozen": optax.set_to_zero()}, labels)
    loss = lambda p: gates.mse_loss(model.apply(p, x), y)

    @jax.jit
    def step(p, state):
        value, grads = jax.value_and_grad(loss)(p)
        updates, state = optimizer.update(grads, state, p)
        return optax.apply_updates(p, updates), state, value

    state, first = optimizer.init(params), float(loss(params))
    trained = params
    for _ in range(60):
        trained, state, _ = step(trained, state)
    assert float(loss(trained)) < 0.5 * first
    for name in ("lo_ra_dense_0", "lo_ra_dense_1"):
        np.testing.assert_array_equal(trained[name]["w"], params[name]["w"])
        assert not np.allclose(trained[name]["b"], params[name]["b"])


def test_a_user_container_infers_its_init_and_is_walked_with_paths():
    block = GatedResidual(layers.serial(LoRADense(3), layers.Tanh()), name="gated")
    x = jax.random.normal(jax.random.key(2), (4, 3))
    params = block.init(jax.random.key(1), x)
    assert jax.tree.map(jnp.shape, params["gate"]) == {"b": (1,), "w": (3, 1)}
    assert set(params) == {"body", "gate"} and set(params["body"]) == {"lo_ra_dense_0"}
    visits = layers.walk(block, params, x)
    assert [v.path for v in visits] == ["", "body", "body/lo_ra_dense_0", "body/tanh_0", "gate"]
    assert visits[2].output.shape == (4, 3) and visits[4].output.shape == (4, 1)
    shapes = jax.eval_shape(block.init, jax.random.key(1), x)
    assert [v.output.shape for v in layers.walk(block, shapes, x)][-1] == (4, 1)
    body = layers.serial(LoRADense(3), layers.Tanh()).apply(params["body"], x)
    gate = jax.nn.sigmoid(x @ params["gate"]["w"] + params["gate"]["b"])
    np.testing.assert_allclose(block.apply(params, x), x + gate * body, rtol=1e-6)
    with pytest.raises(difprog.ShapeError, match=r"params has entries \['extra'\]"):
        block.apply({**params, "extra": {}}, x)


def test_everything_a_layer_author_uses_is_public():
    for name in ("Layer", "Param", "Input", "Context", "Applied", "Visit", "walk", "keyed"):
        assert name in layers.__all__


def test_what_a_layer_author_gets_wrong_is_refused_naming_the_layer():
    class Mix(layers.Layer):  # a container with params of its own
        def children(self):
            return {"a": layers.Dense(3), "b": layers.Dense(3)}

        def params(self, x):
            return {"alpha": layers.Param((), initializers.ones)}

        def forward(self, params, x, ctx):
            return gates.add(ctx("a", x), ctx("b", x))

    class Twice(layers.Layer):  # one child called on inputs of two shapes
        def children(self):
            return {"d": layers.Dense(3)}

        def forward(self, params, x, ctx):
            return ctx("d", ctx("d", x))

    class Bare(layers.Layer):  # params() without Param records
        def params(self, x):
            return {"w": (3, 3)}

        def forward(self, params, x, ctx):
            return x

    x = jnp.ones((2, 5))
    with pytest.raises(difprog.ArgumentError, match="layer 'mix'.*put them in a child layer"):
        Mix().init(jax.random.key(0), x)
    with pytest.raises(difprog.ShapeError, match=r"layer 'd'.*\(5, 3\).*\(3, 3\).*one shape"):
        Twice().init(jax.random.key(0), x)
    with pytest.raises(difprog.DtypeError, match=r"'bare'.*layers.Param.*'w': 'tuple'"):
        Bare().init(jax.random.key(0), x)
    with pytest.raises(difprog.ArgumentError, match="dtype must be one of"):
        layers.Input(dtype="float")
    assert layers.Input(min_rank=1).text == "an input of rank >= 1"
    with pytest.raises(TypeError, match="positional"):  # settings after the first are keywords
        layers.Dense(3, "x")
    with pytest.raises(difprog.ArgumentError, match=r"\['capture'\].*model\.run"):
        layers.Dense(3).apply({}, x, capture=True)


def test_an_activation_takes_its_gates_constants_by_keyword():
    leaky = layers.Activation(gates.leaky_relu, negative_slope=0.2)
    assert repr(leaky) == "Activation(gates.leaky_relu, negative_slope=0.2)"
    np.testing.assert_allclose(leaky.apply({}, -jnp.ones(2)), [-0.2, -0.2])
    with pytest.raises(difprog.ArgumentError, match=r"unknown settings \['slope'\]"):
        layers.Activation(gates.leaky_relu, slope=0.2)
    with pytest.raises(difprog.DtypeError, match="must be a difprog gate"):
        layers.Activation(jnp.tanh)
