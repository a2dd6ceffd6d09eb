"""The command line's pictures and reports written from Python: viz.write_visualizations,
viz.write_attributions (with the sanity checks) and viz.write_token_attribution."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from difprog import data, lm, models, viz
from difprog.errors import ArgumentError
from tests.conftest import digits_subset

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def linear():
    """An untrained linear model on a few digits: the writers do not care how well it does."""
    dataset = digits_subset("digits", 32, 8)
    model = models.build("linear", dataset.num_classes)
    return model, model.init(jax.random.key(0), dataset.x_train[:1]), dataset


def test_write_visualizations_writes_the_grid_the_npz_and_the_saliency(linear, tmp_path):
    model, params, dataset = linear
    written = viz.write_visualizations(model, params, dataset, tmp_path / "out", classes=[0, 3],
                                       steps=4, param="pixel", progress=False)
    assert [p.name for p in written] == ["classes.png", "visualizations.npz", "saliency.png"]
    assert all(p.parent == tmp_path / "out" and p.read_bytes().startswith(PNG)
               for p in (written[0], written[2]))
    with np.load(written[1]) as saved:
        assert saved["images"].shape == (2, 8, 8, 1) and saved["targets"].tolist() == [0, 3]
        assert saved["history"].shape[0] == 4 and np.isfinite(saved["images"]).all()
    layer = viz.write_visualizations(model, params, dataset, tmp_path / "layer", layer="dense_0",
                                     channels=[1, 2], steps=2, regularize=False,
                                     transforms=False, progress=False)
    assert layer[0].name == "channels_dense_0.png" and layer[0].read_bytes().startswith(PNG)
    with np.load(layer[1]) as saved:
        assert saved["targets"].tolist() == [1, 2]
    with pytest.raises(ArgumentError,
                       match=r"param must be one of \['fourier', 'pixel'\], got 'pixels'"):
        viz.write_visualizations(model, params, dataset, tmp_path / "bad", param="pixels")


def test_write_attributions_writes_the_maps_and_the_sanity_checks(linear, tmp_path):
    model, params, dataset = linear
    written, tables = viz.write_attributions(model, params, dataset, tmp_path, count=2, steps=4,
                                             samples=2, seed=3)
    assert [p.name for p in written] == ["attributions.png", "attributions.npz",
                                         "faithfulness.png", "sanity.json", "sanity.txt"]
    assert written[0].read_bytes().startswith(PNG) and written[2].read_bytes().startswith(PNG)
    methods = [m for m in viz.METHODS if m != "grad_cam"]  # a linear model has no feature maps
    with np.load(written[1]) as saved:
        assert sorted(saved.files) == sorted(["images", "labels", *methods])
        assert saved["images"].shape == (2, 8, 8, 1)
        assert all(saved[m].shape[0] == 2 for m in methods)
    report = json.loads(written[3].read_text())
    assert {"completeness", "randomization", "randomization_foreground",
            "faithfulness"} <= set(report)
    assert report["settings"]["seed"] == 3 and report["settings"]["images"] == 2
    assert written[4].read_text() == tables and "completeness" in tables.lower()
    x, y = dataset.x_test[:2], dataset.y_test[:2]
    for method in methods:
        with np.load(written[1]) as saved:
            maps = saved[method]  # ranked as drawn: saliency and smoothgrad by |gradient|
        if method in ("saliency", "smoothgrad"):
            maps = np.abs(maps).max(-1)
        curves = viz.deletion_insertion(model, params, x, y, maps)
        recorded = report["faithfulness"][method]
        assert recorded["deletion_area"] == pytest.approx(curves.deletion_area.mean())
        assert recorded["insertion_area"] == pytest.approx(curves.insertion_area.mean())
        assert recorded["infidelity_normalized"] >= 0
    assert "faithfulness: the label's probability" in tables


def test_write_attributions_without_sanity_and_its_refusals(linear, tmp_path):
    model, params, dataset = linear
    written, tables = viz.write_attributions(model, params, dataset, tmp_path, count=1,
                                             methods=["saliency"], sanity=False)
    assert [p.name for p in written] == ["attributions.png", "attributions.npz"] and tables == ""
    assert not (tmp_path / "sanity.json").exists()
    with pytest.raises(ArgumentError, match="--window 9: the images are 8x8 pixels"):
        viz.write_attributions(model, params, dataset, tmp_path, methods=["occlusion"], window=9)
    with pytest.raises(ArgumentError, match="count must be a positive int, got 0"):
        viz.write_attributions(model, params, dataset, tmp_path, count=0)


@pytest.mark.slow  # trains a tiny language model for two steps (two compilations)
def test_write_token_attribution_explains_a_trained_language_model(tmp_path):
    text = tmp_path / "code.py"
    text.write_text("def add(a, b):\n    return a + b\n\n" * 20)
    corpus = data.text(text, context=16)
    config = lm.LMConfig(layers=1, heads=2, features=16, context=16, steps=2, batch_size=4,
                         warmup=0, eval_every=2)
    lm.fit_lm(corpus, config, out=tmp_path / "run", progress=False)
    path = viz.write_token_attribution(tmp_path / "run", corpus)
    assert path == tmp_path / "run" / "attribution.png"
    assert path.read_bytes().startswith(PNG)


@pytest.mark.parametrize("param", ["fourier", "pixel"])
def test_channels_start_from_noise_so_a_relu_dead_on_grey_still_gets_a_gradient(
        param, tmp_path, monkeypatch):
    """A channel whose ReLU is inactive on every flat image (a zero-sum edge filter minus 0.1)
    passes no gradient from grey: from `viz.CHANNEL_NOISE` it is drawn, from a faint noise it
    stays at 0."""
    from difprog import layers

    dataset = digits_subset("digits", 32, 8)
    model = layers.serial(layers.Conv2D(1, 3, padding="VALID"), layers.Relu(), layers.Flatten(),
                          layers.Dense(dataset.num_classes))
    params = model.init(jax.random.key(0), dataset.x_train[:1])
    edge = np.array([[0, -1, 0], [-1, 4, -1], [0, -1, 0]], np.float32)[:, :, None, None]
    params["conv2d_0"] = {"w": edge, "b": np.array([-0.1], np.float32)}
    relu = lambda x: model.run(params, x, capture=["relu_0"]).captured["relu_0"]
    assert float(relu(np.full((1, 8, 8, 1), 0.5, np.float32)).max()) == 0

    def history():
        viz.write_visualizations(model, params, dataset, tmp_path, layer="relu_0",
                                 channels=[0], steps=32, param=param, regularize=False,
                                 transforms=False, progress=False)
        with np.load(tmp_path / "visualizations.npz") as saved:
            return saved["history"][:, 0], saved["images"]

    scores, images = history()
    assert scores[-1] > scores[0] > 0 and float(relu(images).mean()) > 0.1
    monkeypatch.setitem(viz.CHANNEL_NOISE, param, 0.001)  # nearly flat: the ReLU stays dead
    scores, _ = history()
    assert np.all(scores == 0)
