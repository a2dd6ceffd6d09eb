"""models.resnet, the small residual network with BatchNorm and augmentation for 28x28 images:
its layout, augmentation in training only, and training through fit and the command line."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from difprog import data, layers, models
from difprog.cli import main
from difprog.train import TrainConfig, fit

KEY = jax.random.key(0)


def test_layout_and_parameter_count():
    model = models.resnet()
    params = model.init(KEY, jnp.zeros((1, 28, 28, 1)))
    assert list(params) == ["conv2d_0", "batch_norm_0", "block_0", "block_1", "block_2",
                            "dense_0"]
    assert sorted(params["block_1"]) == ["bn1", "bn2", "conv1", "conv2", "downsample.0",
                                         "downsample.1"]
    assert sum(p.size for p in jax.tree.leaves(params)) == 309_418
    assert params["dense_0"]["w"].shape == (128, 10)
    assert model.apply(params, jnp.zeros((3, 28, 28, 1))).shape == (3, 10)


def test_augmentation_acts_in_training_only():
    model = models.resnet()
    x = jax.random.uniform(KEY, (8, 28, 28, 1))
    params = model.init(KEY, x)
    evaluate = [model.apply(params, x, key=jax.random.key(k)) for k in (1, 2)]
    np.testing.assert_array_equal(evaluate[0], evaluate[1])
    seen = model.run(params, x, key=KEY, capture=["random_flip_0"]).captured["random_flip_0"]
    np.testing.assert_array_equal(seen, x)
    seen = [model.run(params, x, key=jax.random.key(k), train=True,
                      capture=["random_flip_0"]).captured["random_flip_0"] for k in (1, 2)]
    assert not np.array_equal(seen[0], x) and not np.array_equal(seen[0], seen[1])


def test_trains_on_the_digits_and_updates_its_running_statistics(tmp_path):
    digits = data.digits()
    model = models.resnet()
    result = fit(model, digits, TrainConfig(epochs=3, batch_size=64), progress=False)
    # shifts of 2 pixels and flips are strong for 8x8 digits: it learns, if slowly (0.11, 0.46,
    # 0.62 after each of 3 epochs here; 0.82 after 10); chance is 0.1
    accuracies = [h["test_accuracy"] for h in result.history]
    assert accuracies[-1] > 0.4 and accuracies[-1] > accuracies[0], result.history
    fresh = model.init(jax.random.key(0), digits.x_train[:1])
    assert not np.allclose(result.params["batch_norm_0"]["mean"], fresh["batch_norm_0"]["mean"])
    assert layers.stat_paths(model)[:2] == ["batch_norm_0", "block_0/bn1"]
    assert main(["train", "--model", "resnet", "--epochs", "1", "--out", str(tmp_path / "run"),
                 "--no-progress"]) == 0
    # two of the six methods: a gradient through every layer, and Grad-CAM's layer in a block
    assert main(["attribute", "--checkpoint", str(tmp_path / "run"), "--out",
                 str(tmp_path / "attribution"), "--count", "2", "--methods", "saliency",
                 "grad_cam", "--no-sanity"]) == 0
    assert (tmp_path / "attribution" / "attributions.png").exists()
