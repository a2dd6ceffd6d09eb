"""Colour feature visualisation: Lucid's decorrelated colours, the diversity objective,
random rotation, and visualize at any size and channel count."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import difprog
from difprog import layers, viz
from difprog.viz import _images

KEY = jax.random.key(0)

# lucid/optvis/param/color.py, typed in again here (not imported from difprog).
LUCID_SQRT = np.array([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])


def _lucid_decorrelate(t):
    """Lucid's _linear_decorrelate_color in numpy: t_flat @ (C / max column norm).T."""
    normalized = LUCID_SQRT / np.max(np.linalg.norm(LUCID_SQRT, axis=0))
    return (t.reshape(-1, 3) @ normalized.T).reshape(t.shape)


def test_colour_matrix_is_lucids_normalised_by_its_largest_column_norm():
    largest = np.sqrt(0.26**2 + 2 * 0.27**2)  # column 0, the luminance, is the longest
    np.testing.assert_allclose(viz.COLOUR_MIXING * largest, LUCID_SQRT, atol=1e-6)
    assert np.max(np.linalg.norm(viz.COLOUR_MIXING, axis=0)) == pytest.approx(1, abs=1e-6)
    t = np.asarray(jax.random.normal(KEY, (2, 5, 4, 3)))
    np.testing.assert_allclose(viz.decorrelated_to_rgb(jnp.asarray(t)), _lucid_decorrelate(t),
                               rtol=1e-5, atol=1e-6)
    with jax.enable_x64(True):
        x = jax.random.normal(KEY, (3, 7, 3), jnp.float64)
        np.testing.assert_allclose(viz.rgb_to_decorrelated(viz.decorrelated_to_rgb(x)), x,
                                   atol=1e-12)
        np.testing.assert_allclose(viz.decorrelated_to_rgb(viz.rgb_to_decorrelated(x)), x,
                                   atol=1e-12)


def test_a_transposed_colour_matrix_fails_the_reference_check():
    """Mutation check: the reference test above tells C from C^T on the same numbers."""
    t = np.asarray(jax.random.normal(KEY, (64, 3)))
    transposed = t @ np.asarray(viz.COLOUR_MIXING)  # x @ C instead of x @ C.T
    assert np.max(np.abs(transposed - _lucid_decorrelate(t))) > 0.1


@pytest.mark.parametrize("make", [viz.fourier, viz.pixel])
def test_decorrelated_images_are_lucids_sigmoid_of_mixed_colours_and_stay_in_range(make):
    shape = (2, 9, 6, 3)
    param, plain = make(), make(decorrelate=False)
    z = param.init(KEY, shape) * 300  # far into the sigmoid's tails
    image, raw = param.to_image(z, shape), plain.to_image(z, shape)
    assert float(image.min()) >= 0 and float(image.max()) <= 1 and float(image.std()) > 0.1
    logits = np.log(np.asarray(raw, np.float64)) - np.log1p(-np.asarray(raw, np.float64))
    inside = np.all(np.abs(logits) < 12, axis=-1)  # where float32 sigmoid can be inverted
    expected = 1 / (1 + np.exp(-_lucid_decorrelate(logits)))
    np.testing.assert_allclose(np.asarray(image)[inside], expected[inside], atol=1e-4)
    assert inside.mean() > 0.3


def test_decorrelation_is_on_for_three_channels_only_and_refuses_other_counts():
    z = jax.random.normal(KEY, (1, 4, 4, 3))
    assert not np.allclose(viz.pixel().to_image(z, z.shape), jax.nn.sigmoid(z))
    for c in (1, 5):  # None leaves other channel counts as they were
        z = jax.random.normal(KEY, (1, 4, 4, c))
        np.testing.assert_array_equal(viz.pixel().to_image(z, z.shape), jax.nn.sigmoid(z))
    with pytest.raises(difprog.ArgumentError, match=r"fourier\(decorrelate=True\).*5 channels"):
        viz.fourier(decorrelate=True).init(KEY, (1, 8, 8, 5))
    with pytest.raises(difprog.ArgumentError, match=r"pixel\(decorrelate=True\).*1 channels"):
        viz.pixel(decorrelate=True).to_image(jnp.zeros((1, 8, 8, 1)), (1, 8, 8, 1))
    with pytest.raises(difprog.DtypeError, match="decorrelate must be None, True or False"):
        viz.fourier(decorrelate="yes")
    with pytest.raises(difprog.ArgumentError, match=r"\(N, H, W, C\) of positive ints"):
        viz.fourier().init(KEY, (1, 0, 8, 3))


def _gram_cosines(a):
    """Cosine similarities of the images' Gram matrices, by loops (the reference)."""
    n = a.shape[0]
    grams = [a[i].reshape(-1, a.shape[-1]).T @ a[i].reshape(-1, a.shape[-1]) for i in range(n)]
    grams = [g / max(np.linalg.norm(g), 1e-5) for g in grams]
    return np.array([[np.sum(grams[i] * grams[j]) for j in range(n)] for i in range(n)])


def test_diversity_by_hand_and_against_lucids_sum():
    # Two images of one position and two channels: Grams [[1,0],[0,0]] and [[1,1],[1,1]]/2,
    # cosine 1 * 0.5 = 0.5, so each image scores -0.5.
    diversity = jax.jit(lambda a: viz.diversity("x")({"x": a}))
    a = jnp.array([[[[1.0, 0.0]]], [[[1.0, 1.0]]]])
    np.testing.assert_allclose(diversity(a), [-0.5, -0.5], rtol=1e-6)
    a = np.asarray(jax.random.normal(KEY, (4, 3, 5, 6)))
    cos = _gram_cosines(a)
    score = np.asarray(diversity(jnp.asarray(a)))
    np.testing.assert_allclose(score, -(cos.sum(1) - 1) / 3, rtol=1e-5)
    lucid = (cos.sum() - 4) / 4  # sum over i != j of <G_i, G_j>, over batch_n
    np.testing.assert_allclose(score.sum(), -4 / 3 * lucid, rtol=1e-5)
    combined = viz.channel("x", 0) - 2 * viz.diversity("x")
    assert combined.parts()[1] is None and combined.paths == {"x"}
    np.testing.assert_allclose(jax.jit(lambda a: combined({"x": a}))(jnp.asarray(a)),
                               a[..., 0].mean((1, 2)) - 2 * score, rtol=1e-5)


def test_diversity_needs_two_images():
    with pytest.raises(difprog.ArgumentError, match=r"diversity\('x'\).*at least 2 images"):
        viz.diversity("x")({"x": jnp.ones((1, 4, 4, 2))})


@pytest.fixture(scope="module")
def colour_model():
    model = layers.serial(layers.Conv2D(6, 3, stride=2), layers.Relu(), layers.Flatten(),
                          layers.Dense(4))
    return model, model.init(KEY, jnp.zeros((1, 12, 12, 3)))


def test_maximising_diversity_makes_the_batch_differ(colour_model):
    """Four images of the same objective: with diversity their Grams part, without they stay
    alike (they start from nearly the same point)."""
    model, params = colour_model
    same = viz.per_image(*(viz.channel("conv2d_0", 1) for _ in range(4)))
    cosines = {}
    for weight in (0.0, 10.0):
        objective = same + weight * viz.diversity("relu_0") if weight else same
        images = viz.visualize(model, params, objective, (4, 12, 12, 3), steps=48,
                               transforms=False, progress=False, chunk=48).images
        acts = model.run(params, jnp.asarray(images), capture=("relu_0",)).captured
        cos = _gram_cosines(np.asarray(acts["relu_0"]))
        cosines[weight] = (cos.sum() - 4) / 12
    assert cosines[10.0] < cosines[0.0] - 0.05, cosines


_ROTATE = jax.jit(lambda images, degrees: _images._resample(images, degrees, 1.0, jnp.zeros(2),
                                                              "edge"))


def test_random_rotate_by_zero_is_identity_and_by_90_is_rot90():
    images = jax.random.uniform(KEY, (2, 9, 9, 3))
    np.testing.assert_array_equal(jax.jit(viz.random_rotate(0))(KEY, images), images)
    np.testing.assert_allclose(jax.jit(viz.random_rotate([90]))(KEY, images),
                               jnp.rot90(images, 1, axes=(1, 2)), atol=1e-5)
    for k, angle in [(-1, -90.0), (2, 180.0)]:
        np.testing.assert_allclose(_ROTATE(images, angle), jnp.rot90(images, k, axes=(1, 2)),
                                   atol=1e-5)
    wide = jax.random.uniform(KEY, (1, 6, 10, 2))  # 180 degrees keeps any rectangle
    np.testing.assert_allclose(_ROTATE(wide, 180.0), wide[:, ::-1, ::-1],
                               atol=1e-5)


def test_random_rotate_interpolates_a_small_angle_against_scipy():
    from scipy import ndimage

    image = np.asarray(jax.random.uniform(KEY, (1, 11, 11, 1)))
    out = np.asarray(_ROTATE(jnp.asarray(image), 12.0))
    # scipy rotates counter-clockwise as displayed too; compare away from the edges
    expected = ndimage.rotate(image[0, :, :, 0], 12.0, reshape=False, order=1, mode="nearest")
    np.testing.assert_allclose(out[0, 3:-3, 3:-3, 0], expected[3:-3, 3:-3], atol=1e-5)


def test_random_rotate_is_jittable_keyed_and_checks_its_argument():
    images = jax.random.uniform(KEY, (2, 16, 16, 3))
    rotate = jax.jit(viz.random_rotate(20))
    first = rotate(jax.random.key(1), images)
    np.testing.assert_array_equal(first, rotate(jax.random.key(1), images))
    assert not np.allclose(first, rotate(jax.random.key(2), images))
    grad = jax.grad(lambda x: rotate(jax.random.key(1), x).sum())(images)
    assert grad.shape == images.shape and float(grad.sum()) == pytest.approx(images.size, 1e-4)
    with pytest.raises(difprog.ArgumentError, match="must be >= 0"):
        viz.random_rotate(-5)
    with pytest.raises(difprog.DtypeError, match="number or a sequence of numbers"):
        viz.random_rotate("10")
    with pytest.raises(difprog.ArgumentError, match="at least one angle"):
        viz.random_rotate([])


def test_random_affine_shifts_with_reflection_and_checks_its_arguments():
    images = jax.random.uniform(KEY, (1, 7, 8, 2))
    np.testing.assert_array_equal(jax.jit(viz.random_affine(0, (1.0, 1.0)))(KEY, images), images)
    shifted = jax.jit(lambda x: _images._resample(x, 0.0, 1.0, jnp.array([2.0, -3.0]),
                                                  "reflect"))(images)
    # out[y, x] = in[y - 2, x + 3], reflected about the end pixels as numpy's "reflect" pad
    padded = np.pad(np.asarray(images), ((0, 0), (2, 2), (3, 3), (0, 0)), mode="reflect")
    np.testing.assert_allclose(shifted, padded[:, 0:7, 6:14], atol=1e-6)
    out = jax.jit(viz.random_affine(10, (0.9, 1.1), 3))(KEY, images)
    assert out.shape == images.shape and not np.allclose(out, images)
    with pytest.raises(difprog.ArgumentError, match="0 < low <= high"):
        viz.random_affine(scale=(1.1, 0.9))
    with pytest.raises(difprog.ArgumentError, match="shift must be an int >= 0"):
        viz.random_affine(shift=-1)
    for scale in (1.0, (0.9, float("inf")), ("a", 1.0), (0.9, 1.0, 1.1)):
        with pytest.raises(difprog.ArgumentError, match="scale must be a pair of finite"):
            viz.random_affine(scale=scale)


def test_standard_transforms_rotate_large_images_only():
    images = jax.random.uniform(KEY, (1, 8, 8, 1))
    before = viz.compose(viz.pad_crop(1), viz.jitter(1), viz.random_scale(0.95, 1.05))
    np.testing.assert_array_equal(jax.jit(viz.standard_transforms(8))(KEY, images),
                                  jax.jit(before)(KEY, images))
    assert viz.standard_transforms(63).__qualname__.startswith("compose.")
    assert viz.standard_transforms(64).__qualname__.startswith("random_affine.")


@pytest.mark.parametrize("shape", [(2, 13, 9, 3), (2, 7, 11, 5)])  # 1 channel: test_viz
def test_visualize_runs_at_odd_sizes_and_channel_counts_and_follows_the_seed(shape):
    model = layers.serial(layers.Conv2D(4, 3, stride=2), layers.Relu(), layers.Flatten(),
                          layers.Dense(3))
    params = model.init(KEY, jnp.zeros((1, *shape[1:])))
    objective = viz.per_image(*(viz.channel("conv2d_0", c) for c in range(shape[0])))
    run = lambda seed: viz.visualize(model, params, objective, shape, steps=12, chunk=12,
                                     transforms=viz.compose(viz.jitter(1), viz.random_rotate(5)),
                                     seed=seed, progress=False)
    first = run(0)
    assert first.images.shape == shape and first.history.shape == (12, shape[0])
    assert 0 <= first.images.min() and first.images.max() <= 1
    assert np.mean(first.history[-1]) > np.mean(first.history[0])
    if shape[-1] == 3:  # a seed reproduces the run (once: every run compiles; that other
        np.testing.assert_array_equal(first.images, run(0).images)  # seeds differ: test_viz)


@pytest.mark.slow
def test_colour_benchmark_smoke(tmp_path, capsys):
    from benchmarks.colour_visualization import main

    out = tmp_path / "colour.png"
    main(["--size", "32", "--steps", "8", "--train-steps", "0", "--count", "2", "--out",
          str(out)])  # untrained: a training step compiles for 5 s more
    stdout = capsys.readouterr().out
    row = next(line for line in stdout.splitlines() if line.startswith("| 2x32x32x3 |"))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[1] == "8" and float(cells[4]) > 0 and cells[7] in ("OK", "over")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
