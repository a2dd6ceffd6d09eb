"""Feature visualisation: objectives, parameterisations, transforms, the loop, saliency, the
command, and the targets on the digits CNN."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import difprog
from difprog import data, layers, models, viz
from difprog.cli import main
from tests.conftest import assert_trees_close

KEY = jax.random.key(0)
SHAPE = (3, 8, 8, 1)


@pytest.fixture(scope="module")
def tiny():
    model = layers.serial(layers.Conv2D(4, 3), layers.Relu(), layers.Flatten(), layers.Dense(5))
    return model, model.init(KEY, jnp.zeros(SHAPE))


OBJECTIVES = {
    "class_logit": viz.class_logit(3),
    "class_logit_per_image": viz.class_logit([0, 2, 4]),
    "neuron": viz.neuron("conv2d_0", 1),
    "neuron_at": viz.neuron("conv2d_0", 2, position=(1, 6)),
    "channel": viz.channel("conv2d_0", 2),
    "deepdream": viz.deepdream("conv2d_0"),
    "direction": viz.direction("conv2d_0", jnp.array([1.0, -1.0, 0.5, 0.0])),
    "dense_neuron": viz.neuron("dense_0", 4),
    "combined": viz.class_logit(1) + 0.5 * viz.channel("conv2d_0", 0) - viz.total_variation() * 0.1,
    "per_image": viz.per_image(viz.class_logit(0), viz.channel("conv2d_0", 3), viz.deepdream(
        "relu_0")),
    "minus_l1": -viz.l1(),
    "minus_l2": -1 * viz.l2(),
    "minus_l2_center": -viz.l2(center=np.full((8, 8, 1), 0.25)),
    "minus_blur": 0 - viz.blur(),
}


@pytest.mark.parametrize("name", OBJECTIVES)
def test_every_objective_increases(tiny, name):
    model, params = tiny
    result = viz.visualize(model, params, OBJECTIVES[name], SHAPE, steps=24, transforms=False,
                           parameterization=viz.pixel(scale=0.5), progress=False, chunk=8)
    assert result.history.shape == (24, 3) and result.images.shape == SHAPE
    assert np.mean(result.history[-1]) > np.mean(result.history[0]) + 1e-4


def test_l2_with_a_center_is_the_squared_distance_from_it():
    x = jax.random.uniform(KEY, SHAPE)
    center = jax.random.uniform(jax.random.key(1), SHAPE[1:])
    want = jnp.sum(jnp.square(x - center), axis=(1, 2, 3))
    np.testing.assert_allclose(viz.l2(center=center)({"input": x}), want, rtol=1e-6)
    np.testing.assert_allclose(viz.l2(center=jnp.stack([center] * 3))({"input": x}), want,
                               rtol=1e-6)
    np.testing.assert_allclose(viz.l2(center=np.zeros(SHAPE[1:], int))({"input": x}),
                               viz.l2()({"input": x}), rtol=1e-6)
    assert viz.l2(center=center).name == "l2(center)"


@pytest.mark.parametrize("center, error, match", [
    (np.zeros((8, 8)), "ArgumentError", r"'l2': center must be an image \(H, W, C\).*\[8, 8\]"),
    ("grey", "ArgumentError", r"'l2': center must be an image.*str"),
    (np.full((8, 8, 1), np.nan), "ArgumentError", r"'l2': center holds NaN"),
    (np.zeros((5, 5, 1)), "ShapeError", r"'l2': center of shape \[5, 5, 1\] does not fit images "
                                        r"of shape \[3, 8, 8, 1\]"),
])
def test_l2_refuses_a_center_that_is_not_an_image_of_the_batch(center, error, match):
    with pytest.raises(getattr(difprog.errors, error), match=match):
        viz.l2(center=center)({"input": jnp.zeros(SHAPE)})


def test_fixed_seed_gives_identical_images_and_other_seeds_do_not(tiny):
    model, params = tiny
    run = lambda seed: viz.visualize(model, params, viz.class_logit(1), SHAPE, steps=16,
                                     seed=seed, progress=False).images
    first, again, other = run(3), run(3), run(4)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize("parameterization", [viz.pixel(), viz.fourier(), viz.fourier(decay=2)])
@pytest.mark.parametrize("shape", [(2, 8, 8, 1), (1, 7, 9, 3)])
def test_parameterizations_give_images_in_range(parameterization, shape):
    params = parameterization.init(KEY, shape)
    image = parameterization.to_image(params + 3 * jax.random.normal(KEY, params.shape), shape)
    assert image.shape == shape
    assert float(image.min()) >= 0 and float(image.max()) <= 1 and float(image.std()) > 0.01


def test_value_range_maps_images_into_the_models_range(tiny):
    model, params = tiny
    result = viz.visualize(model, params, viz.class_logit(0), SHAPE, steps=4,
                           value_range=(-1.0, 2.0), progress=False)
    assert result.images.min() >= -1 and result.images.max() <= 2 and result.images.min() < 0.5


@pytest.mark.parametrize("transform", [viz.jitter(2), viz.pad_crop(1, 0.3), viz.random_scale(),
                                       viz.standard_transforms(8),
                                       viz.compose(viz.jitter(1), viz.random_scale(0.8, 1.2))])
def test_transforms_keep_the_shape_and_follow_the_key(transform):
    images = jax.random.uniform(KEY, (2, 8, 8, 3))
    apply = jax.jit(transform)
    out = apply(jax.random.key(1), images)
    assert out.shape == images.shape
    np.testing.assert_array_equal(out, apply(jax.random.key(1), images))
    assert any(not np.array_equal(out, apply(jax.random.key(k), images)) for k in range(2, 8))


def test_saliency_equals_the_gradient_of_the_reference_model():
    with jax.enable_x64(True):
        model = layers.serial(layers.Dense(6), layers.Tanh(), layers.Dense(3))
        x = jax.random.normal(KEY, (4, 5))
        params = model.init(KEY, x)
        classes = jnp.array([0, 2, 1, 2])
        reference = lambda p, x: jnp.tanh(x @ p["dense_0"]["w"] + p["dense_0"]["b"]) @ \
            p["dense_1"]["w"] + p["dense_1"]["b"]
        expected = jnp.stack([jax.grad(lambda xi, i=i: reference(params, xi)[classes[i]])(x[i])
                              for i in range(4)])
        assert_trees_close(viz.saliency(model, params, x, classes), expected)
        assert_trees_close(viz.gradient_times_input(model, params, x, classes), expected * x)


def test_objective_errors(tiny):
    model, params = tiny
    with pytest.raises(difprog.ArgumentError, match="combine with objectives or numbers"):
        viz.class_logit(0) + "x"
    with pytest.raises(difprog.ArgumentError, match=r"cannot capture \['conv9'\]"):
        viz.visualize(model, params, viz.channel("conv9", 0), SHAPE, steps=2, progress=False)
    for objective, message in [(viz.channel("conv2d_0", 4), r"'conv2d_0' has 4 channels"),
                               (viz.neuron("dense_0", 7), r"'dense_0' has 5 channels"),
                               (viz.neuron("conv2d_0", 0, position=(8, 0)), r"outside"),
                               (viz.class_logit([0, 5, 1]), r"must lie in \[0, 5\)"),
                               (viz.class_logit([0, 1]), r"2 classes for a batch of 3")]:
        with pytest.raises(difprog.ArgumentError, match=message):
            viz.visualize(model, params, objective, SHAPE, steps=2, progress=False)
    with pytest.raises(difprog.ArgumentError, match="steps must be a positive int"):
        viz.visualize(model, params, viz.class_logit(0), SHAPE, steps=0)


# What the command line adds to every objective (difprog visualize, without --no-regularizers).
def _regularized(objective):
    return objective - 0.05 * viz.total_variation() - 0.05 * viz.l1()


def test_regularizers_keep_their_part_of_the_score_through_sums_and_products_by_numbers(tiny):
    model, params = tiny
    images = jax.random.uniform(KEY, SHAPE)
    logits, captured, _ = model.run(params, images, capture=("conv2d_0", "relu_0", "dense_0"))
    acts = {"input": images, "output": logits, **captured}
    for objective in [*OBJECTIVES.values(), _regularized(viz.channel("conv2d_0", 1)),
                      2 * (viz.class_logit(0) - viz.blur()) + 1,
                      viz.per_image(viz.class_logit(0) - viz.l1(), viz.channel("conv2d_0", 3),
                                    -0.5 * viz.l2())]:
        feature, penalty = objective.parts()
        split = feature(acts) + (penalty(images) if penalty else 0)
        np.testing.assert_allclose(split, objective(acts), rtol=1e-6, atol=1e-6)
    assert viz.channel("conv2d_0", 1).parts()[1] is None  # no regulariser: all feature
    assert (viz.l1() * viz.class_logit(0)).parts()[1] is None  # a product mixes the parts
    feature, penalty = (-viz.l1()).parts()
    np.testing.assert_array_equal(feature(acts), 0)
    np.testing.assert_allclose(penalty(images), -jnp.abs(images).sum((1, 2, 3)), rtol=1e-6)


def test_objective_names_read_as_written():
    channels = viz.per_image(*(viz.channel("conv2d_1", c) for c in range(8)))
    assert _regularized(channels).name == \
        "per_image(channel('conv2d_1', 0..7)) - 0.05 * total_variation - 0.05 * l1"
    assert viz.per_image(*(viz.neuron("dense_0", c) for c in (0, 3, 5))).name == \
        "per_image(neuron('dense_0', [0, 3, 5]))"
    assert OBJECTIVES["combined"].name == \
        "class_logit(1) + 0.5 * channel('conv2d_0', 0) - total_variation * 0.1"
    assert (0.5 * (viz.l1() - (viz.l2() + viz.blur()))).name == "0.5 * (l1 - (l2 + blur))"
    assert OBJECTIVES["minus_blur"].name == "0 - blur"


def test_channels_and_neurons_show_patterns_with_the_default_regularizers():
    """Issue 16: `difprog visualize --layer conv2d_1` wrote uniform black images (std 1e-4).

    A channel's mean has a gradient of ~0.1 per image (RMS ~0.01 a pixel) where a class logit
    has ~4, so total variation and L1 at 0.05, summed over pixels, outweighed the channel ten
    to one. Scaled to the objective, they leave the contrast of an unregularised run: on the
    digits CNN, trained, its channel and neuron images have a per-image std of 0.3 to 0.46
    (test digits: 0.37), except the few units whose optimum is uniform; blank ones have 1e-4
    to 1e-3. A median above 0.1, a hundred times blank and a third of working, tells them
    apart; the untrained CNN behaves the same within 128 steps, so this stays fast.
    """
    model = models.cnn()
    params = model.init(KEY, jnp.zeros((1, 8, 8, 1)))
    objective = _regularized(viz.per_image(*(viz.channel("conv2d_1", c) for c in range(4)),
                                           *(viz.neuron("conv2d_1", c) for c in range(4))))
    contrast = {}
    for name, kwargs in [("fourier", {}), ("pixel", {"parameterization": viz.pixel()}),
                         ("unscaled", {"scale_regularizers": False})]:
        images = viz.visualize(model, params, objective, (8, 8, 8, 1), steps=128, progress=False,
                               **kwargs).images
        contrast[name] = images.reshape(8, -1).std(axis=1)
    assert np.median(contrast["fourier"]) > 0.1, contrast
    assert np.median(contrast["pixel"]) > 0.1, contrast
    assert np.max(contrast["unscaled"][:4]) < 0.01, contrast  # channels, weights as written


def test_grid_title_wraps_inside_the_figure_and_clears_the_labels():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from difprog.viz._render import _grid_figure

    title = _regularized(viz.per_image(*(viz.channel("conv2d_1", c) for c in range(4)))).name
    for n in (1, 4, 10):
        figure = _grid_figure(np.zeros((n, 8, 8, 1)), [f"conv2d_1:{c}" for c in range(n)],
                              (0.0, 1.0), None, f"{title}, 512 steps, seed 0")
        renderer = FigureCanvasAgg(figure).get_renderer()
        figure.draw(renderer)
        box, page = figure._suptitle.get_window_extent(renderer), figure.bbox
        assert page.x0 <= box.x0 and box.x1 <= page.x1 and box.y1 <= page.y1, (n, box, page)
        for ax in figure.axes:
            assert not box.overlaps(ax.title.get_window_extent(renderer)), n
            assert not box.overlaps(ax.get_window_extent(renderer)), n
        assert figure._suptitle.get_text().replace("\n", " ") == f"{title}, 512 steps, seed 0"


def test_visualize_command_writes_png_and_npz(tmp_path, capsys):
    assert main(["train", "--model", "linear", "--epochs", "1", "--out", str(tmp_path / "run"),
                 "--no-progress"]) == 0
    checkpoint = tmp_path / "run" / "checkpoint_0001.safetensors"
    assert main(["visualize", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "viz"),
                 "--classes", "1", "7", "--steps", "16", "--param", "pixel",
                 "--no-progress"]) == 0
    assert "classes.png" in capsys.readouterr().out
    for name in ("classes.png", "saliency.png"):
        assert (tmp_path / "viz" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with np.load(tmp_path / "viz" / "visualizations.npz") as saved:
        assert saved["images"].shape == (2, 8, 8, 1) and saved["targets"].tolist() == [1, 7]
        assert saved["images"].min() >= 0 and saved["images"].max() <= 1
    assert main(["visualize", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "ch"),
                 "--layer", "dense_0", "--channels", "0", "3", "--steps", "8",
                 "--no-progress"]) == 0
    assert (tmp_path / "ch" / "channels_dense_0.png").exists()
    assert main(["visualize", "--checkpoint", str(tmp_path / "nope.safetensors"), "--out",
                 str(tmp_path / "x"), "--no-progress"]) == 1


@pytest.mark.slow
def test_class_visualizations_of_the_digits_cnn_meet_the_targets(tmp_path):
    from sklearn.linear_model import LogisticRegression

    from difprog.train import TrainConfig, fit

    digits = data.digits()
    model = models.cnn()
    params = fit(model, digits, TrainConfig(), progress=False).params
    independent = LogisticRegression(max_iter=3000).fit(
        digits.x_train.reshape(len(digits.x_train), -1), digits.y_train)
    began = time.perf_counter()
    viz.write_visualizations(model, params, digits, tmp_path, progress=False)  # the CLI's recipe
    seconds = time.perf_counter() - began
    with np.load(tmp_path / "visualizations.npz") as saved:
        images = saved["images"]
    probabilities = jax.nn.softmax(model.apply(params, images))
    assert float(jnp.min(probabilities[jnp.arange(10), jnp.arange(10)])) >= 0.9
    recognised = independent.predict(images.reshape(10, -1)) == np.arange(10)
    assert recognised.sum() >= 8, recognised
    assert seconds < 30, seconds
