"""difprog.attacks: FGSM and PGD (L-inf and L2) proven in float64 against NumPy loops written
from the papers' formulas on a plain-jax twin of the model (JAX's autodiff of the forward),
the input gradient against finite differences, a wrong backward rule caught; the fooling
image, the robustness curve, and refusals of bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import difprog
from difprog import attacks, gates, layers
from difprog.attacks._gradient import loss_gradient

KEY = jax.random.key(0)


def _conv_model():
    return layers.serial(layers.Conv2D(4, 3), layers.Relu(), layers.MaxPool2D(2),
                         layers.Flatten(), layers.Dense(3))


def _reference(p, x):
    """The conv model in plain jax: conv (SAME) -> relu -> 2x2 max pool -> flatten -> dense."""
    y = jax.lax.conv_general_dilated(x, p["conv2d_0"]["w"], (1, 1), "SAME",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    y = jnp.maximum(y + p["conv2d_0"]["b"], 0)
    y = jax.lax.reduce_window(y, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    return y.reshape(len(y), -1) @ p["dense_0"]["w"] + p["dense_0"]["b"]


@pytest.fixture(scope="module")
def conv64():
    """The model, params scaled so that its predictions are not saturated, 4 images in [0, 1]
    and their labels, in float64."""
    with jax.enable_x64(True):
        model = _conv_model()
        x = jax.random.uniform(KEY, (4, 8, 6, 2), jnp.float64)
        params = jax.tree.map(lambda a: 3 * a + 0.1, model.init(KEY, x))
        np.testing.assert_allclose(model.apply(params, x), _reference(params, x), rtol=1e-12)
        yield model, params, x, np.array([0, 2, 1, 2])


def _reference_gradient(params, x, labels):
    """d CE(f(x_i), y_i) / d x_i for each image on its own, JAX's autodiff of the plain model."""
    one = jax.grad(lambda xi, y: -jax.nn.log_softmax(_reference(params, xi[None])[0])[y])
    return np.stack([np.asarray(one(xi, y)) for xi, y in zip(x, labels)])


def _reference_pgd(params, x, labels, eps, steps, step_size, norm, targeted=False,
                   bounds=(0.0, 1.0), start=None, mutant=None):
    """Madry et al.'s loop, written out in NumPy: step, project onto the ball, clip."""
    x = np.asarray(x)
    adversarial = x.copy() if start is None else np.asarray(start)
    per_image = lambda v: np.sqrt((v * v).sum(axis=(1, 2, 3), keepdims=True))
    for _ in range(steps):
        g = _reference_gradient(params, adversarial, labels)
        direction = np.sign(g) if norm == "inf" else g / np.maximum(per_image(g), 1e-12)
        adversarial = adversarial + (-1 if targeted else 1) * step_size * direction
        delta = adversarial - x
        if mutant != "no projection":
            delta = (np.clip(delta, -eps, eps) if norm == "inf" else
                     delta * np.minimum(1, eps / np.maximum(per_image(delta), 1e-12)))
        adversarial = np.clip(x + delta, *bounds)
    return adversarial


def test_input_gradient_matches_autodiff_of_the_plain_model_and_finite_differences(conv64):
    model, params, x, labels = conv64
    with jax.enable_x64(True):
        ours = loss_gradient(model.apply, params, x, jnp.asarray(labels))
        np.testing.assert_allclose(ours, _reference_gradient(params, x, labels), rtol=1e-10,
                                   atol=1e-13)
        loss = lambda z: float(gates.softmax_cross_entropy(model.apply(params, z), labels,
                                                           reduction="sum"))
        direction = jax.random.normal(jax.random.key(3), x.shape, jnp.float64)
        h = 1e-6
        central = (loss(x + h * direction) - loss(x - h * direction)) / (2 * h)
        np.testing.assert_allclose(jnp.vdot(ours, direction), central, rtol=1e-6)


@pytest.mark.parametrize("norm, eps, step_size", [("inf", 0.08, 0.03), ("l2", 0.5, 0.2)])
@pytest.mark.parametrize("targeted", [False, True])
def test_pgd_is_madrys_loop(conv64, norm, eps, step_size, targeted):
    model, params, x, labels = conv64
    with jax.enable_x64(True):
        ours = attacks.pgd(model, params, x, labels, eps, steps=6, step_size=step_size,
                           norm=norm, targeted=targeted)
        assert ours.dtype == jnp.float64 and ours.shape == x.shape
        expected = _reference_pgd(params, x, labels, eps, 6, step_size, norm, targeted)
        np.testing.assert_allclose(ours, expected, rtol=1e-8, atol=1e-8)
        delta = np.asarray(ours - x).reshape(len(x), -1)
        size = np.abs(delta).max(1) if norm == "inf" else np.linalg.norm(delta, axis=1)
        assert size.max() > eps / 2  # it moved


def test_the_pgd_check_catches_a_wrong_loop(conv64):
    model, params, x, labels = conv64
    with jax.enable_x64(True):
        for norm, eps in (("inf", 0.08), ("l2", 0.3)):
            ours = attacks.pgd(model, params, x, labels, eps, steps=6, step_size=0.1, norm=norm)
            wrong = _reference_pgd(params, x, labels, eps, 6, 0.1, norm, mutant="no projection")
            assert np.abs(np.asarray(ours) - wrong).max() > 1e-3, norm
            flipped = _reference_pgd(params, x, labels, eps, 6, 0.1, norm, targeted=True)
            assert np.abs(np.asarray(ours) - flipped).max() > 1e-3


def test_a_wrong_backward_rule_changes_the_attack_and_fails_the_checks(conv64):
    """A model with a skip path around a tanh: tanh's backward doubled turns the gradient."""
    _, _, x, labels = conv64
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        w1, w2 = (jnp.asarray(rng.normal(size=(96, 3))) for _ in range(2))
        doubled = gates.tanh.with_rules(backward=lambda g, out, **kw: tuple(
            2 * c for c in gates.tanh.backward(g, out, **kw)))

        def model(tanh):
            return lambda p, z: tanh(z.reshape(len(z), -1) @ p[0]) + z.reshape(len(z), -1) @ p[1]

        right, wrong = model(gates.tanh), model(doubled)
        plain = model(jnp.tanh)
        one = jax.grad(lambda z, y: -jax.nn.log_softmax(plain((w1, w2), z[None])[0])[y])
        truth = jax.vmap(one)(x, jnp.asarray(labels))
        good = loss_gradient(right, (w1, w2), x, jnp.asarray(labels))
        bad = loss_gradient(wrong, (w1, w2), x, jnp.asarray(labels))
        np.testing.assert_allclose(good, truth, rtol=1e-10, atol=1e-13)
        assert np.abs(np.asarray(bad - truth)).max() > 1e-3
        attacked = [attacks.pgd(f, (w1, w2), x, labels, 0.5, steps=3, norm="l2")
                    for f in (right, wrong, plain)]
        np.testing.assert_allclose(attacked[0], attacked[2], rtol=1e-10, atol=1e-12)
        assert np.abs(np.asarray(attacked[1] - attacked[2])).max() > 1e-4


def test_fgsm_is_one_signed_step_clipped_to_the_bounds(conv64):
    model, params, x, labels = conv64
    with jax.enable_x64(True):
        g = _reference_gradient(params, x, labels)
        for eps in (0.0, 0.05, 0.7):
            expected = np.clip(np.asarray(x) + eps * np.sign(g), 0, 1)
            np.testing.assert_allclose(attacks.fgsm(model, params, x, labels, eps), expected,
                                       rtol=0, atol=1e-15)
        toward = attacks.fgsm(model, params, x, labels, 0.05, targeted=True)
        np.testing.assert_allclose(toward, np.clip(np.asarray(x) - 0.05 * np.sign(g), 0, 1),
                                   atol=1e-15)
        wide = attacks.fgsm(model, params, 4 * x - 2, labels, 0.05, bounds=(-2, 2))
        assert float(wide.min()) >= -2 and float(wide.max()) <= 2


@pytest.mark.parametrize("norm, eps", [("inf", 0.1), ("l2", 0.6)])
def test_pgd_stays_in_the_ball_and_the_bounds_and_its_random_start_is_keyed(conv64, norm, eps):
    model, params, x, labels = conv64
    with jax.enable_x64(True):
        runs = [attacks.pgd(model, params, x, labels, eps, steps=3, norm=norm,
                            random_start=True, key=jax.random.key(k)) for k in (1, 1, 2)]
        np.testing.assert_array_equal(runs[0], runs[1])
        assert not np.allclose(runs[0], runs[2])
        for run in runs:
            delta = np.asarray(run - x).reshape(len(x), -1)
            size = np.abs(delta).max(1) if norm == "inf" else np.linalg.norm(delta, axis=1)
            assert (size <= eps * (1 + 1e-12)).all() and float(run.min()) >= 0 and (
                float(run.max()) <= 1)
        # the start itself (one step of a tiny size, bounds too wide to clip): uniform in the
        # ball, so in 96 dimensions almost all of it lies near the surface, eps * u^(1/96) (a
        # radius of eps * u, the mutant, would put half the starts within eps / 2)
        starts = [attacks.pgd(model, params, x, labels, eps, steps=1, step_size=1e-12,
                              norm=norm, random_start=True, key=jax.random.key(k),
                              bounds=(-9, 9)) for k in range(8)]
        moved = np.concatenate([np.asarray(s - x).reshape(len(x), -1) for s in starts])
        size = np.abs(moved).max(1) if norm == "inf" else np.linalg.norm(moved, axis=1)
        assert (size <= eps * (1 + 1e-9)).all() and np.median(size) > 0.97 * eps, size
        if norm == "inf":  # each value uniform in [-eps, eps]: mean |d| = eps / 2
            assert abs(np.abs(moved).mean() / eps - 0.5) < 0.05


def test_l2_steps_on_a_zero_gradient_stay_finite_in_float16():
    model = lambda z: jnp.zeros((len(z), 3), z.dtype)  # a constant: its gradient is 0
    x = jnp.full((2, 4, 4, 1), 0.5, jnp.float16)
    for norm in ("l2", "inf"):
        adversarial = attacks.pgd(model, None, x, 0, 0.1, steps=2, norm=norm)
        assert adversarial.dtype == jnp.float16
        np.testing.assert_array_equal(adversarial, x)
    np.testing.assert_array_equal(attacks.fooling_image(model, None, x, 1, max_steps=2), x)


def test_a_function_of_the_images_alone_is_attacked_like_a_model(conv64):
    model, params, x, labels = conv64
    with jax.enable_x64(True):
        as_layer = attacks.pgd(model, params, x, labels, 0.1, steps=4)
        function = jax.tree_util.Partial(model.apply, params)
        np.testing.assert_array_equal(attacks.pgd(function, None, x, labels, 0.1, steps=4),
                                      as_layer)


@pytest.fixture(scope="module")
def digits_mlp():
    """The digits MLP after 3 epochs (about 96% test accuracy) and 120 test digits."""
    from difprog import data, models
    from difprog.train import TrainConfig, fit

    digits = data.digits()
    model = models.mlp()
    result = fit(model, digits, TrainConfig(epochs=3, batch_size=64), progress=False)
    assert result.test_accuracy > 0.93
    return model, result.params, digits.x_test[:120], digits.y_test[:120]


def test_robustness_falls_with_eps_and_does_not_depend_on_the_batching(digits_mlp):
    model, params, x, y = digits_mlp
    clean = int((model.apply(params, x).argmax(-1) == y).sum()) / len(y)
    curve = attacks.robustness(model, params, x, y, [0, 0.05, 0.2], steps=10, batch_size=50)
    assert curve[0] == clean
    assert curve[0] > curve[1] > curve[2] and curve[2] < 0.3, curve
    assert attacks.robustness(model, params, x, y, np.array([0.05, 0.2]), steps=10) == curve[1:]
    fgsm = attacks.robustness(model, params, x, y, [0.05, 0.2], attack="fgsm")
    assert fgsm[0] >= curve[1] - 0.02 and fgsm[1] >= curve[2]  # PGD is the stronger attack
    keyed = [attacks.robustness(model, params, x, y, [0.1], steps=5, random_start=True,
                                key=jax.random.key(k), batch_size=50) for k in (0, 0)]
    assert keyed[0] == keyed[1]


def test_targeted_pgd_and_fooling_images_reach_their_targets(digits_mlp):
    model, params, x, y = digits_mlp
    targets = (np.asarray(y) + 1) % 10
    reached = attacks.pgd(model, params, x, targets, 0.3, steps=20, targeted=True)
    assert (model.apply(params, reached).argmax(-1) == targets).mean() >= 0.9
    fooled = attacks.fooling_image(model, params, x, targets)
    assert (model.apply(params, fooled).argmax(-1) == targets).mean() >= 0.95
    clipped = attacks.fooling_image(model, params, x, targets, bounds=(0, 1))
    assert float(clipped.min()) >= 0 and float(clipped.max()) <= 1
    assert (model.apply(params, clipped).argmax(-1) == targets).mean() >= 0.9
    # each image stops at its target: one already there is returned unchanged
    same = attacks.fooling_image(model, params, x, model.apply(params, x).argmax(-1))
    np.testing.assert_array_equal(same, x)


def _bad_calls(model, params, x, y):
    nan = x.at[0, 0, 0, 0].set(jnp.nan)
    return [
        (lambda: attacks.pgd(model, params, x * 3, y, 0.1), "must lie within bounds [0, 1]"),
        (lambda: attacks.pgd(model, params, nan, y, 0.1), "range over [nan"),
        (lambda: attacks.pgd(model, params, x, y[:2], 0.1), "2 labels for a batch of 4"),
        (lambda: attacks.pgd(model, params, x, 7, 0.1), "must lie in [0, 3)"),
        (lambda: attacks.pgd(model, params, x, 1.5, 0.1), "labels must be an int"),
        (lambda: attacks.fgsm(model, params, x, y, -0.1), "eps must be a finite number >= 0"),
        (lambda: attacks.fgsm(model, params, x, y, float("nan")), "eps must be"),
        (lambda: attacks.pgd(model, params, x, y, 0.1, norm="linf"), "norm must be one of"),
        (lambda: attacks.pgd(model, params, x, y, 0.1, steps=0), "steps must be a positive"),
        (lambda: attacks.pgd(model, params, x, y, 0.1, step_size=0), "step_size must be"),
        (lambda: attacks.pgd(model, params, x, y, 0.1, random_start=True), "pass key="),
        (lambda: attacks.pgd(model, params, x, y, 0.1, random_start=True, key=3), "PRNG key"),
        (lambda: attacks.pgd(model, params, x, y, 0.1, bounds=(1, 0)), "low < high"),
        (lambda: attacks.pgd(model, params, x, y, 0.1, targeted=1), "targeted must be True"),
        (lambda: attacks.pgd("model", params, x, y, 0.1), "a difprog layer or a function"),
        (lambda: attacks.pgd(model, params, x.astype(jnp.int32), y, 0.1), "floating array"),
        (lambda: attacks.pgd(model, params, x[0, 0, 0, 0], y, 0.1), "non-empty batch"),
        (lambda: attacks.fooling_image(model, params, x, 1, max_steps=0), "max_steps"),
        (lambda: attacks.fooling_image(model, params, x, 1, learning_rate=-1), "learning_rate"),
        (lambda: attacks.fooling_image(model, params, x, [1, 2]), "2 target for a batch"),
        (lambda: attacks.robustness(model, params, x, y, []), "non-empty list"),
        (lambda: attacks.robustness(model, params, x, y, "0.1"), "non-empty list"),
        (lambda: attacks.robustness(model, params, x, y, [0.1, -1]), "each eps must be"),
        (lambda: attacks.robustness(model, params, x, y, [0.1], attack="cw"), "attack must be"),
        (lambda: attacks.robustness(model, params, x, y, [0.1], targeted=True), "no targeted"),
        (lambda: attacks.robustness(model, params, x, y, [0.1], batch_size=0), "batch_size"),
        (lambda: attacks.robustness(model, params, x, y, [0.1], attack="fgsm", key=KEY),
         "fgsm takes one step of eps and draws nothing; key is pgd's"),
        (lambda: attacks.robustness(model, params, x, y, [0.1], attack="fgsm", steps=5),
         "steps is pgd's"),
        (lambda: attacks.robustness(model, params, x, y, np.array(0.1)), "non-empty list"),
    ]


def test_bad_input_is_refused_with_a_difprog_error_naming_the_attack(conv64):
    model, params, x, labels = conv64
    x = x.astype(jnp.float32)
    params = jax.tree.map(lambda a: a.astype(jnp.float32), params)
    for call, words in _bad_calls(model, params, x, labels):
        with pytest.raises(difprog.DifprogError) as caught:
            call()
        message = str(caught.value)
        assert words in message, message
        assert message.split(":")[0] in ("pgd", "fgsm", "fooling_image", "robustness"), message
    with pytest.raises(difprog.ShapeError, match="to \\(N, classes\\) logits"):
        attacks.fgsm(layers.serial(layers.Relu()), {}, x, 0, 0.1)
