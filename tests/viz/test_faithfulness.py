"""Faithfulness of attribution maps: infidelity and max-sensitivity against NumPy loops of Yeh
et al.'s formulas and against captum.metrics given the same perturbations (skipped without
captum), the deletion and insertion curves against a loop, and refusals of bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import difprog
from difprog import layers, models, viz
from tests.conftest import digits_subset

KEY = jax.random.key(0)


def _conv_model():
    return layers.serial(layers.Conv2D(4, 3), layers.Relu(), layers.MaxPool2D(2),
                         layers.Flatten(), layers.Dense(3))


@pytest.fixture(scope="module")
def conv64():
    with jax.enable_x64(True):
        model = _conv_model()
        x = jax.random.uniform(KEY, (3, 6, 6, 2), jnp.float64)
        params = jax.tree.map(lambda a: 2 * a + 0.05, model.init(KEY, x))
        yield model, params, x, np.array([0, 2, 1])


def _logit(model, params, image, c):
    return float(model.apply(params, image[None])[0, c])


def test_infidelity_is_yehs_mean_squared_error_of_the_linear_prediction(conv64):
    model, params, x, classes = conv64
    with jax.enable_x64(True):
        maps = viz.saliency(model, params, x, classes) + 0.1
        noise = 0.05 * jax.random.normal(jax.random.key(1), (4, *x.shape), jnp.float64)
        ours = viz.infidelity(model, params, x, classes, maps, perturbations=noise)
        normalized = viz.infidelity(model, params, x, classes, maps, perturbations=noise,
                                    normalize=True)
        for i, c in enumerate(classes):
            a = np.array([float(jnp.sum(maps[i] * noise[s, i])) for s in range(4)])
            d = np.array([_logit(model, params, x[i], c) -
                          _logit(model, params, x[i] - noise[s, i], c) for s in range(4)])
            assert float(ours[i]) == pytest.approx(np.mean((a - d) ** 2), rel=1e-10)
            beta = (a * d).sum() / (a * a).sum()
            assert float(normalized[i]) == pytest.approx(np.mean((beta * a - d) ** 2),
                                                         rel=1e-9)
        assert (normalized <= ours + 1e-15).all()


def test_a_linear_models_gradient_has_zero_infidelity_and_zero_sensitivity():
    with jax.enable_x64(True):
        model = layers.serial(layers.Flatten(), layers.Dense(4))
        x = jax.random.uniform(KEY, (3, 5, 5, 1), jnp.float64)
        params = model.init(KEY, x)
        classes = np.array([3, 0, 1])
        gradient = viz.saliency(model, params, x, classes)
        key = jax.random.key(2)
        np.testing.assert_allclose(viz.infidelity(model, params, x, classes, gradient, key=key),
                                   0, atol=1e-20)
        doubled = viz.infidelity(model, params, x, classes, 2 * gradient, key=key)
        assert (doubled > 1e-8).all()
        np.testing.assert_allclose(viz.infidelity(model, params, x, classes, 2 * gradient,
                                                  key=key, normalize=True), 0, atol=1e-20)
        # a linear model's gradient does not depend on the input: it never changes
        explain = lambda z, c: viz.saliency(model, params, z, c)
        np.testing.assert_allclose(viz.sensitivity_max(explain, x, classes, key=key), 0,
                                   atol=1e-12)
    # in float32 the normalised infidelity of a nearly faithful map is tiny, never negative
    params32 = jax.tree.map(lambda a: a.astype(jnp.float32), params)
    x32 = x.astype(jnp.float32)
    gradient32 = viz.saliency(model, params32, x32, classes)
    for seed in range(2):
        values = viz.infidelity(model, params32, x32, classes, gradient32 * 1.01,
                                key=jax.random.key(seed), samples=32, normalize=True)
        assert (values >= 0).all() and (values < 1e-9).all(), values


def test_sensitivity_max_is_the_largest_relative_change_of_the_map(conv64):
    model, params, x, classes = conv64
    with jax.enable_x64(True):
        explain = lambda z, c: viz.gradient_times_input(model, params, z, c)
        offsets = jax.random.uniform(jax.random.key(3), (5, *x.shape), jnp.float64, -0.1, 0.1)
        ours = viz.sensitivity_max(explain, x, classes, perturbations=offsets)
        for i, c in enumerate(classes):
            base = np.asarray(explain(x[i:i + 1], c)).ravel()
            moved = [np.asarray(explain(x[i:i + 1] + offsets[s, i], c)).ravel()
                     for s in range(5)]
            expected = max(np.linalg.norm(m - base) for m in moved) / np.linalg.norm(base)
            assert float(ours[i]) == pytest.approx(expected, rel=1e-10)
        assert (ours > 0).all()


def test_deletion_and_insertion_curves_follow_the_ranking(conv64):
    model, params, x, classes = conv64
    with jax.enable_x64(True):
        maps = jax.random.normal(jax.random.key(4), x.shape, jnp.float64)
        curves = viz.deletion_insertion(model, params, x, classes, maps, steps=7, baseline=0.2)
        np.testing.assert_allclose(curves.fractions, np.round(np.arange(8) * 36 / 7) / 36)
        probability = lambda image, c: float(jax.nn.softmax(model.apply(params, image[None]))[
            0, c])
        for i, c in enumerate(classes):
            ranking = np.argsort(-np.asarray(maps[i]).sum(-1).ravel(), kind="stable")
            for k, fraction in enumerate(curves.fractions):
                chosen = np.zeros(36, bool)
                chosen[ranking[:round(fraction * 36)]] = True
                chosen = chosen.reshape(6, 6, 1)
                deleted = np.where(chosen, 0.2, np.asarray(x[i]))
                inserted = np.where(chosen, np.asarray(x[i]), 0.2)
                assert curves.deletion[i, k] == pytest.approx(probability(deleted, c), rel=1e-10)
                assert curves.insertion[i, k] == pytest.approx(probability(inserted, c),
                                                               rel=1e-10)
        assert curves.deletion_area.shape == (3,)
        np.testing.assert_allclose(curves.deletion_area, np.trapezoid(curves.deletion,
                                                                      curves.fractions))
        positions = viz.deletion_insertion(model, params, x, classes, maps.sum(-1), steps=7,
                                           baseline=0.2)
        np.testing.assert_array_equal(positions.deletion, curves.deletion)


def test_integrated_gradients_beat_a_random_map_on_deletion_and_insertion():
    from difprog.train import TrainConfig, fit

    digits = digits_subset("digits-half", 720, 360)
    model = models.mlp()
    params = fit(model, digits, TrainConfig(epochs=2), progress=False).params
    x, y = digits.x_test[:32], digits.y_test[:32]
    maps = viz.integrated_gradients(model, params, x, y, steps=16)
    noise = jax.random.normal(KEY, x.shape)
    good, random = (viz.deletion_insertion(model, params, x, y, m, steps=16)
                    for m in (maps, noise))
    assert good.deletion_area.mean() < random.deletion_area.mean() - 0.1
    assert good.insertion_area.mean() > random.insertion_area.mean() + 0.1


def test_bad_input_is_refused_naming_the_metric(conv64):
    model, params, x, classes = conv64
    x = x.astype(jnp.float32)
    params = jax.tree.map(lambda a: a.astype(jnp.float32), params)
    maps = jnp.ones_like(x)
    explain = lambda z, c: viz.saliency(model, params, z, c)
    for call, error, words in [
        (lambda: viz.infidelity(model, params, x, classes, maps[:2], key=KEY),
         difprog.ShapeError, "infidelity: maps must be shaped like the images'"),
        (lambda: viz.infidelity(model, params, x, classes, maps), difprog.ArgumentError,
         "infidelity: the perturbations are drawn from a key"),
        (lambda: viz.infidelity(model, params, x, classes, maps, perturbations=maps),
         difprog.ShapeError, "perturbations must be (samples, *x.shape)"),
        (lambda: viz.infidelity(model, params, x, classes, maps, key=KEY, noise=0),
         difprog.ArgumentError, "noise must be a positive"),
        (lambda: viz.infidelity(model, params, x, classes, maps, key=KEY, samples=0),
         difprog.ArgumentError, "samples must be a positive int"),
        (lambda: viz.sensitivity_max("saliency", x, classes, key=KEY), difprog.ArgumentError,
         "explain must be a function"),
        (lambda: viz.sensitivity_max(explain, x, classes, key=KEY, radius=-1),
         difprog.ArgumentError, "radius must be a positive"),
        (lambda: viz.deletion_insertion(model, params, x, classes, maps[..., :1, :]),
         difprog.ShapeError, "deletion_insertion: maps must be shaped like"),
        (lambda: viz.deletion_insertion(model, params, x, classes, maps, steps=0),
         difprog.ArgumentError, "steps must be a positive int"),
        (lambda: viz.deletion_insertion(model, params, x, 5, maps), difprog.ArgumentError,
         "classes must lie in [0, 3)"),
        (lambda: viz.deletion_insertion(model, params, x, classes, maps.at[0, 0].set(jnp.nan)),
         difprog.ArgumentError, "the maps hold NaN or infinite values"),
        (lambda: viz.sensitivity_max(explain, x.astype(jnp.int32), classes, key=KEY),
         difprog.DtypeError, "sensitivity_max: x must be a floating array"),
        (lambda: viz.sensitivity_max(explain, x, classes[:2], key=KEY), difprog.ArgumentError,
         "sensitivity_max: 2 classes for a batch of 3 images"),
        (lambda: viz.sensitivity_max(explain, x, 1.5, key=KEY), difprog.ArgumentError,
         "sensitivity_max: classes must be an int"),
    ]:
        with pytest.raises(error) as caught:
            call()
        assert words in str(caught.value), str(caught.value)


@pytest.fixture(scope="module")
def captum_case():
    torch = pytest.importorskip("torch")
    metrics = pytest.importorskip("captum.metrics")
    attr = pytest.importorskip("captum.attr")
    from difprog import interop

    torch.manual_seed(0)
    torch_model = torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(4 * 3 * 3, 3)).double().eval()
    model = layers.serial(layers.Conv2D(4, 3, padding=1), layers.Relu(), layers.MaxPool2D(2),
                          layers.Flatten(), layers.Dense(3))
    with jax.enable_x64(True):
        x = jax.random.uniform(KEY, (4, 6, 6, 2), jnp.float64)
        params = interop.from_torch(model, x, torch_model.state_dict())
    return torch, metrics, attr, torch_model, model, params, x, np.array([0, 1, 2, 1])


def _nchw(torch, a):
    return torch.tensor(np.ascontiguousarray(np.asarray(a).transpose(0, 3, 1, 2)))


def _interleaved(torch, samples):
    """(S, N, ...) NHWC perturbations as captum orders them: row i * S + s, NCHW."""
    s, n = samples.shape[:2]
    return _nchw(torch, np.swapaxes(np.asarray(samples), 0, 1).reshape(s * n,
                                                                        *samples.shape[2:]))


@pytest.mark.parametrize("normalize", [False, True])
def test_infidelity_equals_captums(captum_case, normalize):
    torch, metrics, _, torch_model, model, params, x, classes = captum_case
    with jax.enable_x64(True):
        maps = jax.random.normal(jax.random.key(5), x.shape, jnp.float64)
        noise = 0.1 * jax.random.normal(jax.random.key(6), (6, *x.shape), jnp.float64)
        ours = viz.infidelity(model, params, x, classes, maps, perturbations=noise,
                              normalize=normalize)
    theirs = metrics.infidelity(
        torch_model, lambda inputs: (_interleaved(torch, noise),
                                     inputs - _interleaved(torch, noise)),
        _nchw(torch, x), _nchw(torch, maps), target=torch.tensor(classes), n_perturb_samples=6,
        normalize=normalize)
    np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-9)


@pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require")
def test_sensitivity_max_equals_captums(captum_case):
    torch, metrics, attr, torch_model, model, params, x, classes = captum_case
    with jax.enable_x64(True):
        offsets = jax.random.uniform(jax.random.key(7), (5, *x.shape), jnp.float64, -0.05,
                                     0.05)
        ours = viz.sensitivity_max(lambda z, c: viz.saliency(model, params, z, c), x, classes,
                                   perturbations=offsets)
    saliency = attr.Saliency(torch_model)
    theirs = metrics.sensitivity_max(
        saliency.attribute, _nchw(torch, x),
        perturb_func=lambda inputs, radius: inputs + _interleaved(torch, offsets),
        n_perturb_samples=5, target=torch.tensor(classes), abs=False)
    np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-9)
