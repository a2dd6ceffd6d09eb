"""Feature visualisation: objectives, parameterisations, transforms, the loop, saliency, the
command, and the targets on the digits CNN."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_trees_close

import difprog
from difprog import data, layers, models, viz
from difprog.cli import main

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
    "minus_blur": 0 - viz.blur(),
}


@pytest.mark.parametrize("name", OBJECTIVES)
def test_every_objective_increases(tiny, name):
    model, params = tiny
    result = viz.visualize(model, params, OBJECTIVES[name], SHAPE, steps=24, transforms=False,
                           parameterization=viz.pixel(scale=0.5), progress=False, chunk=8)
    assert result.history.shape == (24, 3) and result.images.shape == SHAPE
    assert np.mean(result.history[-1]) > np.mean(result.history[0]) + 1e-4


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
def test_class_visualizations_of_the_digits_cnn_meet_the_targets():
    from sklearn.linear_model import LogisticRegression

    from difprog.train import TrainConfig, fit

    digits = data.digits()
    model = models.cnn()
    params = fit(model, digits, TrainConfig(), progress=False).params
    independent = LogisticRegression(max_iter=3000).fit(
        digits.x_train.reshape(len(digits.x_train), -1), digits.y_train)
    objective = viz.class_logit(range(10)) - 0.05 * viz.total_variation() - 0.05 * viz.l1()
    began = time.perf_counter()
    images = viz.visualize(model, params, objective, (10, 8, 8, 1), progress=False).images
    seconds = time.perf_counter() - began
    probabilities = jax.nn.softmax(model.apply(params, images))
    assert float(jnp.min(probabilities[jnp.arange(10), jnp.arange(10)])) >= 0.9
    recognised = independent.predict(images.reshape(10, -1)) == np.arange(10)
    assert recognised.sum() >= 8, recognised
    assert seconds < 30, seconds
