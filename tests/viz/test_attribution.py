"""Attribution (integrated gradients, SmoothGrad, Grad-CAM, occlusion) proven against
independent references, its sanity checks on the digits CNN, the grid, and `difprog attribute`."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import difprog
from difprog import data, layers, models, viz
from difprog.cli import main
from tests.conftest import assert_trees_close, digits_subset

KEY = jax.random.key(0)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The digits CNN after 2 epochs on half the training digits (~93% test accuracy),
    checkpointed as `difprog train` does."""
    from difprog.train import TrainConfig, fit

    out = tmp_path_factory.mktemp("run")
    model, digits = models.cnn(), digits_subset("digits-half", 720, 360)
    result = fit(model, digits, TrainConfig(epochs=2), out=out, progress=False,
                 extra_metrics={"model": "cnn", "dataset": "digits"})
    assert result.test_accuracy > 0.9
    return model, result.params, digits, out


# Plain-jax twins of small difprog models, in float64: conv (SAME) -> relu -> 2x2 max pool ->
# flatten -> dense.
def _conv_model():
    return layers.serial(layers.Conv2D(4, 3), layers.Relu(), layers.MaxPool2D(2),
                         layers.Flatten(), layers.Dense(3))


def _features(p, x, upto):
    y = jax.lax.conv_general_dilated(x, p["conv2d_0"]["w"], (1, 1), "SAME",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    y = y + p["conv2d_0"]["b"]
    if upto == "conv2d_0":
        return y
    y = jnp.maximum(y, 0)
    if upto == "relu_0":
        return y
    return jax.lax.reduce_window(y, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")


def _head(p, features, upto):
    y = features
    if upto == "conv2d_0":
        y = jnp.maximum(y, 0)
    if upto in ("conv2d_0", "relu_0"):
        y = jax.lax.reduce_window(y, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    return y.reshape(len(y), -1) @ p["dense_0"]["w"] + p["dense_0"]["b"]


def _reference(p, x):
    return _head(p, _features(p, x, "max_pool2d_0"), "max_pool2d_0")


@pytest.fixture(scope="module")
def conv64():
    with jax.enable_x64(True):
        model = _conv_model()
        x = jax.random.uniform(KEY, (3, 8, 6, 2), jnp.float64)
        params = model.init(KEY, x)
        np.testing.assert_allclose(model.apply(params, x), _reference(params, x), rtol=1e-12)
        yield model, params, x, jnp.array([0, 2, 1])


def _per_image_grads(f, points, classes):
    """d f(point)[c] / d point for each image alone (jax.grad of one image, vmapped)."""
    one = jax.grad(lambda xi, c: f(xi[None])[0, c])
    return jax.jit(jax.vmap(one))(points, classes)


def test_integrated_gradients_of_a_linear_model_is_x_minus_baseline_times_w():
    with jax.enable_x64(True):
        model = layers.serial(layers.Flatten(), layers.Dense(4))
        x = jax.random.normal(KEY, (3, 5, 6, 2), jnp.float64)
        params = model.init(KEY, x)
        baseline = jax.random.normal(jax.random.key(1), (5, 6, 2), jnp.float64)
        classes = np.array([3, 0, 2])
        w = params["dense_0"]["w"].T[classes].reshape(x.shape)
        for steps in (1, 7):
            maps = viz.integrated_gradients(model, params, x, classes, baseline, steps)
            assert_trees_close(maps, (x - baseline) * w, rtol=1e-12, atol=1e-13)
        wrong_sign = viz.integrated_gradients(model, params, x, classes, -baseline, 7)
        assert not np.allclose(wrong_sign, (x - baseline) * w)


def test_integrated_gradients_is_the_midpoint_rule_of_the_path_gradient(conv64):
    model, params, x, classes = conv64
    with jax.enable_x64(True):
        baseline = 0.5 * jnp.ones_like(x)

        def by_loop(alphas):  # every (alpha, image) on its own, then the mean over alphas
            points = jnp.concatenate([baseline + a * (x - baseline) for a in alphas])
            grads = _per_image_grads(lambda z: _reference(params, z), points,
                                     jnp.tile(classes, len(alphas)))
            return (x - baseline) * grads.reshape(len(alphas), *x.shape).mean(0)

        steps = 9
        ours = viz.integrated_gradients(model, params, x, classes, baseline, steps)
        assert_trees_close(ours, by_loop((np.arange(steps) + 0.5) / steps), rtol=1e-10)
        for mutant in (np.arange(steps) / steps, (np.arange(steps - 1) + 0.5) / (steps - 1)):
            assert np.abs(np.asarray(ours - by_loop(mutant))).max() > 1e-6


def test_smoothgrad_is_the_mean_saliency_at_the_same_noisy_inputs(conv64):
    model, params, x, classes = conv64
    with jax.enable_x64(True):
        key = jax.random.key(7)
        x = 3 * x  # a range of ~3, so that sigma differs from the noise fraction
        ours = viz.smoothgrad(model, params, x, classes, key, samples=5, noise=0.2)
        spread = (x.max(axis=(1, 2, 3)) - x.min(axis=(1, 2, 3)))[:, None, None, None]

        def at(sigma):
            noisy = [x + sigma * jax.random.normal(k, x.shape, x.dtype)
                     for k in jax.random.split(key, 5)]
            return jnp.mean(jnp.stack([viz.saliency(model, params, n, classes) for n in noisy]),
                            0)

        assert_trees_close(ours, at(0.2 * spread), rtol=1e-10)
        assert np.abs(np.asarray(ours - at(0.2))).max() > 1e-6  # noise not scaled by the range
        again = viz.smoothgrad(model, params, x, classes, key, samples=5, noise=0.2)
        np.testing.assert_array_equal(ours, again)
        other = viz.smoothgrad(model, params, x, classes, jax.random.key(8), samples=5, noise=0.2)
        assert not np.allclose(ours, other)


@pytest.mark.parametrize("layer", ["conv2d_0", "relu_0", "max_pool2d_0"])
def test_grad_cam_matches_a_plain_jax_reference(conv64, layer):
    model, params, x, classes = conv64
    with jax.enable_x64(True):
        features = _features(params, x, layer)
        gradient = jax.grad(lambda a: jnp.sum(jnp.take_along_axis(
            _head(params, a, layer), classes[:, None], 1)))(features)
        weights = gradient.mean(axis=(1, 2))  # (N, K)
        combined = np.einsum("nhwk,nk->nhw", np.asarray(features), np.asarray(weights))
        expected = jax.image.resize(np.maximum(combined, 0), x.shape[:3], "bilinear")
        ours = viz.grad_cam(model, params, x, classes, layer)
        assert ours.shape == x.shape[:3]
        assert_trees_close(ours, expected, rtol=1e-10, atol=1e-12)
        unrectified = jax.image.resize(combined, x.shape[:3], "bilinear")
        assert np.abs(np.asarray(ours - unrectified)).max() > 1e-6 or combined.min() >= 0
        summed = np.einsum("nhwk,nk->nhw", np.asarray(features), np.asarray(gradient.sum((1, 2))))
        assert not np.allclose(ours, jax.image.resize(np.maximum(summed, 0), x.shape[:3],
                                                      "bilinear"))
        if layer == "relu_0":  # at the input's resolution the upsampling is the identity
            assert_trees_close(ours, np.maximum(combined, 0), rtol=1e-10, atol=1e-12)


def _occlusion_by_loop(params, x, classes, window, starts_rows, starts_columns, value=0.0):
    x = np.asarray(x)
    base = np.asarray(_reference(params, x))[np.arange(len(x)), classes]
    total, count = np.zeros(x.shape[:3]), np.zeros(x.shape[1:3])
    for i in starts_rows:
        for j in starts_columns:
            hidden = x.copy()
            hidden[:, i:i + window[0], j:j + window[1], :] = value
            score = np.asarray(_reference(params, hidden))[np.arange(len(x)), classes]
            total[:, i:i + window[0], j:j + window[1]] += (base - score)[:, None, None]
            count[i:i + window[0], j:j + window[1]] += 1
    with np.errstate(invalid="ignore"):  # pixels no window covers: nan
        return total / count


def test_occlusion_matches_a_naive_loop(conv64):
    model, params, x, classes = conv64
    with jax.enable_x64(True):
        # 8x6 images, 3x2 windows every 2 pixels: rows start 0, 2, 4 and 5 (flush with the
        # bottom edge), columns 0, 2, 4
        ours = viz.occlusion(model, params, x, classes, window=(3, 2), stride=2, value=0.25)
        expected = _occlusion_by_loop(params, x, classes, (3, 2), [0, 2, 4, 5], [0, 2, 4], 0.25)
        assert ours.shape == x.shape[:3]
        assert_trees_close(ours, expected, rtol=1e-10, atol=1e-12)
        no_flush = _occlusion_by_loop(params, x, classes, (3, 2), [0, 2, 4], [0, 2, 4], 0.25)
        assert not np.allclose(ours[:, :7], no_flush[:, :7])
        assert_trees_close(viz.occlusion(model, params, x, 1, window=1, stride=1),
                           _occlusion_by_loop(params, x, [1] * 3, (1, 1), range(8), range(6)),
                           rtol=1e-10, atol=1e-12)


@pytest.fixture(scope="module")
def small():
    """The conv model on a batch of two 7x9 RGB images, float32."""
    model, x = _conv_model(), jax.random.uniform(KEY, (2, 7, 9, 3))
    return model, model.init(KEY, x), x


def test_every_method_takes_any_channels_and_size(small):
    model, params, x = small
    shape = x.shape
    maps = viz.attributions(model, params, x, 1, key=KEY, steps=4, samples=2)
    assert list(maps) == list(viz.METHODS)
    for name, values in maps.items():
        expected = shape[:3] if name in ("grad_cam", "occlusion") else shape
        assert values.shape == expected and np.isfinite(values).all(), name
    assert viz.last_spatial_layer(model, params, x) == "max_pool2d_0"


def test_argument_errors_name_the_function(small):
    model, params, x = small
    ig = lambda **kw: viz.integrated_gradients(model, params, x, 0, **{"steps": 4, **kw})
    cases = [
        (lambda: ig(steps=0), difprog.ArgumentError, "integrated_gradients: steps must be a "
                                                     "positive int, got 0"),
        (lambda: ig(steps=2.5), difprog.ArgumentError, "steps must be a positive int"),
        (lambda: ig(steps=True), difprog.ArgumentError, "steps must be a positive int"),
        (lambda: ig(baseline=jnp.zeros((3, 7, 9, 3))), difprog.ShapeError,
         r"baseline of shape \(3, 7, 9, 3\) does not broadcast"),
        (lambda: ig(baseline=jnp.zeros((9, 3))), None, None),
        (lambda: viz.smoothgrad(model, params, x, 0, KEY, samples=0), difprog.ArgumentError,
         "smoothgrad: samples must be a positive int"),
        (lambda: viz.smoothgrad(model, params, x, 0, KEY, noise=-1), difprog.ArgumentError,
         "smoothgrad: noise must be a finite number >= 0, got -1"),
        (lambda: viz.occlusion(model, params, x, 0, window=2, value=float("nan")),
         difprog.ArgumentError, "occlusion: value must be a finite number, got nan"),
        (lambda: viz.model_randomization(model, params, x, 0, KEY, threshold=2),
         difprog.ArgumentError,
         "model_randomization: threshold must be a finite number >= -1 and <= 1, got 2"),
        (lambda: viz.smoothgrad(model, params, x, 0, 3), difprog.ArgumentError,
         "smoothgrad: key must be one PRNG key"),
        (lambda: viz.grad_cam(model, params, x, 0, "conv9"), difprog.ArgumentError,
         r"grad_cam: .*cannot capture \['conv9'\].*paths are"),
        (lambda: viz.grad_cam(model, params, x, 0, "dense_0"), difprog.ShapeError,
         r"grad_cam: layer 'dense_0' gives outputs of shape \(2, 3\)"),
        (lambda: viz.grad_cam(model, params, x[0], 0, "conv2d_0"), difprog.ShapeError,
         r"grad_cam: x must be a non-empty batch of images \(N, H, W, C\), got shape "
         r"\(7, 9, 3\)"),
        (lambda: viz.occlusion(model, params, x, 0, window=(2, 10), stride=1),
         difprog.ArgumentError, r"occlusion: window \(2, 10\) does not fit in images of "
                                r"\(7, 9\)"),
        (lambda: viz.occlusion(model, params, x, 0, window=2, stride=3), difprog.ArgumentError,
         r"occlusion: stride \(3, 3\) is larger than the window"),
        (lambda: viz.occlusion(model, params, x, 0, window=(2, 0)), difprog.ArgumentError,
         "occlusion: window must be a positive int"),
        (lambda: viz.saliency(model, params, x, 3), difprog.ArgumentError,
         r"saliency: classes must lie in \[0, 3\)"),
        (lambda: ig(), None, None),
        (lambda: viz.integrated_gradients(model, params, x, [0, 1, 2]), difprog.ArgumentError,
         "integrated_gradients: 3 classes for a batch of 2"),
        (lambda: viz.integrated_gradients(model, params, x, 0.5), difprog.ArgumentError,
         "classes must be an int"),
        (lambda: viz.integrated_gradients(model, params, x.astype(jnp.int32), 0),
         difprog.DtypeError, "integrated_gradients: x must be a floating array"),
        (lambda: viz.attributions(model, params, x, 0, ["saliency", "lime"]),
         difprog.ArgumentError, r"attributions: methods must be names from"),
        (lambda: viz.model_randomization(model, params, x, 0, KEY, over="edges"),
         difprog.ArgumentError, "over must be 'all' or 'foreground'"),
    ]
    for call, error, message in cases:
        if error is None:
            call()
            continue
        with pytest.raises(error, match=message):
            call()


def test_completeness_of_integrated_gradients_on_the_digits_cnn(trained):
    model, params, digits, _ = trained
    check = viz.completeness(model, params, digits.x_test[:8], digits.y_test[:8])
    print(check)
    assert check.ok and check.steps == (8, 16, 32, 64, 128)
    at = dict(zip(check.steps, check.max_errors))
    assert at[64] <= 0.01 and at[128] < at[32] < at[8], check
    assert "Riemann midpoint rule) holds" in str(check).splitlines()[0]
    strict = viz.completeness(model, params, digits.x_test[:8], digits.y_test[:8],
                              steps=(4,), tolerance=at[64] / 2)
    assert not strict.ok and strict.steps == (4, 64)  # the default steps always included
    assert ("is not met at 64 steps: the attributions add up to the change of the score only to "
            "within" in str(strict).splitlines()[0])
    assert str(strict).splitlines()[0].endswith("; try more steps than 64")
    finer = viz.completeness(model, params, digits.x_test[:8], digits.y_test[:8], steps=(512,))
    fine = dict(zip(finer.steps, finer.max_errors))
    assert fine[512] < at[64] / 2, fine
    enough = viz.completeness(model, params, digits.x_test[:8], digits.y_test[:8],
                              steps=(512,), tolerance=fine[512] * 2)
    assert not enough.ok and "with 512 steps it holds (steps=512)" in str(enough)


@pytest.mark.parametrize("errors, words", [
    ((0.02, 0.015, 0.012), "the error falls as the steps grow, so it is the path integral's "
                           "discretisation error for this model, not a wrong gradient: none of "
                           "the steps tried is enough; try more than 256"),
    ((0.02, 0.008, 0.001), "not a wrong gradient: with 128 steps it holds (steps=128)"),
    ((0.02, 0.03, 0.02), "and more steps do not bring them closer: look for what the path"),
])
def test_completeness_says_in_words_what_more_steps_would_do(errors, words):
    check = viz.Completeness((64, 128, 256), errors, errors, 0.01)
    assert not check.ok and words in str(check).splitlines()[0]


def test_cascading_randomization_on_the_digits_cnn(trained):
    """Saliency, SmoothGrad and Grad-CAM fall below 0.5 over all positions; gradient x input
    and integrated gradients (black baseline) stay ~0.9 there, since they are 0 on the digits'
    black background (49% of the pixels) whatever the weights, and fall below 0.5 on the
    foreground (Adebayo et al. 2018 find the same input dominance)."""
    model, params, digits, _ = trained
    x, y = digits.x_test[:8], digits.y_test[:8]
    everywhere, foreground = viz.randomizations(model, params, x, y, jax.random.key(1),
                                                steps=16, samples=8, layer="conv2d_1")
    print(everywhere, foreground, sep="\n")
    assert everywhere.layers == ("dense_1", "dense_0", "conv2d_1", "conv2d_0")
    assert everywhere.methods == viz.GRADIENT_METHODS
    last = {m: row[-1] for m, row in zip(everywhere.methods, everywhere.correlations)}
    assert all(last[m] < 0.5 for m in ("saliency", "smoothgrad", "grad_cam")), everywhere
    assert all(last[m] > 0.8 for m in ("gradient_times_input", "integrated_gradients"))
    assert not everywhere.ok and "FAILED" not in str(everywhere)
    text = str(everywhere)
    for method in ("saliency", "smoothgrad", "grad_cam"):
        assert everywhere.verdict(method) == "follows the model's weights"
    for method in ("gradient_times_input", "integrated_gradients"):
        assert everywhere.verdict(method).startswith("dominated by the input (")
        assert f"{everywhere.verdict(method)}" in text
    assert foreground.ok, foreground
    record = json.loads(json.dumps(foreground.to_json()))
    assert record["ok"] and record["positions"] == "foreground"
    # the test can fail: the trained model's maps correlate fully with themselves
    same = viz.spearman(np.abs(viz.saliency(model, params, x, y)),
                        np.abs(viz.saliency(model, params, x, y)))
    assert same == pytest.approx(1.0)


def test_spearman_against_scipy():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    a = rng.integers(0, 4, (3, 5, 4, 2)).astype(float)  # many ties
    b = a + rng.normal(size=a.shape)
    expected = np.mean([spearmanr(a[i].ravel(), b[i].ravel())[0] for i in range(3)])
    assert viz.spearman(a, b) == pytest.approx(expected, abs=1e-12)
    where = rng.random((3, 5, 4)) > 0.4
    masked = np.mean([spearmanr(a[i][where[i]].ravel(), b[i][where[i]].ravel())[0]
                      for i in range(3)])
    assert viz.spearman(a, b, where) == pytest.approx(masked, abs=1e-12)
    assert viz.spearman(np.zeros((2, 3, 3)), b[:2, :3, :3, 0]) == 0.0


def test_save_attributions_draws_a_png_and_refuses_wrong_shapes(tmp_path):
    x = np.random.default_rng(0).random((3, 8, 8, 3))
    maps = {"saliency": x - 0.5, "grad_cam": x[..., 0], "occlusion": -x[..., 1]}
    path = viz.save_attributions(x, maps, tmp_path / "a.png", labels=["a", "b", "c"],
                                 title="a long title " * 12)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(difprog.ShapeError, match=r"maps\['grad_cam'\] has shape \(3, 8\)"):
        viz.save_attributions(x, {"grad_cam": x[..., 0, 0]}, tmp_path / "b.png")
    with pytest.raises(difprog.ArgumentError, match="2 labels for 3 images"):
        viz.save_attributions(x, maps, tmp_path / "b.png", labels=["a", "b"])
    assert not (tmp_path / "b.png").exists()


def test_attribute_command_writes_the_grid_and_the_sanity_checks(trained, tmp_path, capsys):
    *_, run = trained
    out = tmp_path / "attr"
    assert main(["attribute", "--checkpoint", str(run), "--out", str(out), "--count", "4",
                 "--steps", "8", "--methods", "saliency", "integrated_gradients",
                 "grad_cam"]) == 0
    printed = capsys.readouterr().out
    assert "completeness of integrated gradients" in printed and "+conv2d_0" in printed
    assert (out / "attributions.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    sanity = json.loads((out / "sanity.json").read_text())
    assert set(sanity) == {"completeness", "randomization", "randomization_foreground",
                           "faithfulness", "empty_maps", "settings"}
    assert sorted(sanity["faithfulness"]) == ["grad_cam", "infidelity_noise",
                                              "integrated_gradients", "saliency"]
    assert (out / "faithfulness.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sanity["randomization"]["methods"] == ["saliency", "integrated_gradients",
                                                  "grad_cam"]
    assert sanity["settings"]["steps"] == 8 and sanity["settings"]["layer"] == "max_pool2d_0"
    assert sanity["completeness"]["ok"] and (out / "sanity.txt").read_text() in printed
    with np.load(out / "attributions.npz") as saved:
        assert saved["images"].shape == (4, 8, 8, 1) and saved["grad_cam"].shape == (4, 8, 8)
    again = tmp_path / "again"
    assert main(["attribute", "--checkpoint", str(run), "--out", str(again), "--count", "2",
                 "--methods", "occlusion", "--no-sanity", "--window", "3", "--stride", "2"]) == 0
    assert sorted(p.name for p in again.iterdir() if not p.name.startswith(".")) == \
        ["attributions.npz", "attributions.png"]
    with np.load(again / "attributions.npz") as saved:
        assert sorted(saved.files) == ["images", "labels", "occlusion"]
        assert saved["occlusion"].shape == (2, 8, 8)


def test_a_map_that_is_0_everywhere_says_why_and_names_a_layer_that_works(tmp_path, capsys):
    """A model whose class-0 score falls as every ReLU activation grows: Grad-CAM at relu_0 is
    0 for every image (the weighted sum of non-negative maps with negative weights); the log
    and sanity.json say so and name a layer whose maps are not 0, and they indeed are not."""
    model = layers.serial(layers.Conv2D(3, 3), layers.Relu(), layers.GlobalAvgPool(),
                          layers.Dense(2))
    x = jax.random.uniform(jax.random.key(0), (4, 6, 6, 1))
    y = np.zeros(4, np.int32)
    params = model.init(jax.random.key(1), x[:1])
    params["dense_0"]["w"] = -jnp.abs(params["dense_0"]["w"]) - 0.1
    toy = data.Dataset("toy", np.asarray(x), y, np.asarray(x), y, 2)
    assert viz.empty_maps({"grad_cam": viz.grad_cam(model, params, x, y, "relu_0")}) == \
        {"grad_cam": 4}
    viz.write_attributions(model, params, toy, tmp_path, methods=["grad_cam", "saliency"],
                           layer="relu_0", samples=2)
    line = ("grad_cam is 0 everywhere for 4 of 4 images at relu_0: there the channel-weighted "
            "sum of the activations is negative everywhere")
    assert line in capsys.readouterr().err
    [note] = json.loads((tmp_path / "sanity.json").read_text())["empty_maps"]
    assert note.startswith(line) and line in (tmp_path / "sanity.txt").read_text()
    better = note.rsplit("(--layer ", 1)[1].rstrip(")")
    assert better == "conv2d_0"
    assert viz.empty_maps({"grad_cam": viz.grad_cam(model, params, x, y, better)}) == {}


@pytest.mark.parametrize("arguments, status, message", [
    (["--count", "0"], 2, "argument --count: expected an integer from 1 to 64, got 0"),
    (["--methods", "lime"], 2, "argument --methods: invalid choice: 'lime'"),
    (["--layer", "dense_0", "--methods", "grad_cam"], 1, "grad_cam: layer 'dense_0' gives"),
    (["--layer", "conv9", "--methods", "grad_cam"], 1, "cannot capture ['conv9']"),
    (["--window", "9", "--methods", "occlusion"], 1, "--window 9: the images are 8x8 pixels"),
    (["--window", "2", "--stride", "3", "--methods", "occlusion"], 1,
     "--stride 3: larger than --window 2"),
    (["--checkpoint", "nowhere"], 1, "no file or directory 'nowhere'"),
])
def test_attribute_command_errors_are_one_line(trained, tmp_path, capsys, arguments, status,
                                               message):
    *_, run = trained
    command = ["attribute", "--checkpoint", str(run), "--out", str(tmp_path / "o"),
               "--no-sanity", *arguments]
    assert main(command) == status
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err, err


def test_attribute_help_shows_the_defaults(capsys):
    assert main(["attribute", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for default in ("(default: 64)", "(default: 32)", "(default: 8)", "(default: 0.15)",
                    "(default: difprog-attribute)"):
        assert default in text, default


def test_grad_cams_default_layer_is_the_last_block_not_its_last_inner_layer():
    """Of a residual block the default is the block (its shortcut and final relu included):
    layers are ordered by when they finish, a container after its inner layers."""
    from difprog import models
    from difprog.viz._attribution_grid import _finish_order

    assert _finish_order(["a", "b", "b/c", "b/d", "e/f", "e"]) == ["a", "b/c", "b/d", "b",
                                                                   "e/f", "e"]
    net = models.resnet18(3)
    x = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
    shapes = jax.eval_shape(net.init, jax.random.key(0), x)
    assert viz.last_spatial_layer(net, shapes, x) == "layer4.1"
    assert viz.last_spatial_layer(_conv_model(), jax.eval_shape(
        _conv_model().init, jax.random.key(0), jnp.zeros((1, 8, 8, 1))),
        jnp.zeros((1, 8, 8, 1))) == "max_pool2d_0"


def test_hostile_sanity_arguments_are_difprog_errors(small):
    model, params, x = small
    y = jnp.array([0, 2])
    with pytest.raises(difprog.ArgumentError, match="spearman: where has shape"):
        viz.spearman(np.ones((2, 3, 3)), np.ones((2, 3, 3)), np.ones((2, 4, 4), bool))
    assert viz.spearman(np.ones((1, 3, 3)), np.ones((1, 3, 3)), np.zeros((1, 3, 3), bool)) == 0
    with pytest.raises(difprog.ArgumentError, match="key must be one PRNG key"):
        viz.model_randomization(model, params, x, y, 3)
    with pytest.raises(difprog.ArgumentError, match="no gradient method"):
        viz.model_randomization(model, params, x, y, jax.random.key(0), methods=("occlusion",))
    with pytest.raises(difprog.DtypeError, match="baseline must be None"):
        viz.integrated_gradients(model, params, x, y, baseline="a")
    noisy = viz.smoothgrad(model, params, x, y, jax.random.key(0), samples=2,
                           noise=np.float32(0.1))
    assert noisy.shape == x.shape
