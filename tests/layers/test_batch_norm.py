"""BatchNorm and GlobalAvgPool: outputs and running statistics against a numpy reference (and
torch.nn.BatchNorm2d where torch is installed), gradients against jax autodiff of plain jax.numpy
in float64, and the statistics kept out of every gradient and optimiser."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from difprog import layers
from difprog.errors import ArgumentError, ShapeError


def _numpy_batch_norm(x, p, *, train, momentum=0.1, eps=1e-5, unbiased=True):
    """torch's BatchNorm in numpy: (y, new running mean, new running var)."""
    axes = tuple(range(x.ndim - 1))
    if not train:
        return (x - p["mean"]) / np.sqrt(p["var"] + eps) * p["scale"] + p["offset"], None, None
    mean, var = x.mean(axes), x.var(axes)
    n = x.size // x.shape[-1]
    y = (x - mean) / np.sqrt(var + eps) * p["scale"] + p["offset"]
    batch_var = var * n / (n - 1) if unbiased else var
    return (y, (1 - momentum) * p["mean"] + momentum * mean,
            (1 - momentum) * p["var"] + momentum * batch_var)


def _random_params(channels, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return {"scale": rng.uniform(0.5, 1.5, channels).astype(dtype),
            "offset": rng.normal(size=channels).astype(dtype),
            "mean": rng.normal(size=channels).astype(dtype),
            "var": rng.uniform(0.5, 2.0, channels).astype(dtype)}


def _x(shape, seed=1, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=shape) * 2 + 0.5).astype(dtype)


@pytest.mark.parametrize("shape", [(6, 5), (4, 3, 5, 5)])
def test_batch_norm_matches_a_numpy_reference_in_eval_and_training(shape):
    bn = layers.BatchNorm(momentum=0.3)
    p, x = _random_params(shape[-1]), _x(shape)
    y = bn.apply(p, x)
    want, _, _ = _numpy_batch_norm(x, p, train=False)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)
    y, _, stats = bn.run(p, x, train=True, update_stats=True)
    want, mean, var = _numpy_batch_norm(x, p, train=True, momentum=0.3)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(stats[""]["mean"], mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats[""]["var"], var, rtol=1e-5, atol=1e-6)
    # the test can fail: torch's unbiased running variance differs from the biased one here
    _, _, biased = _numpy_batch_norm(x, p, train=True, momentum=0.3, unbiased=False)
    assert np.abs(biased - var).max() > 1e-3
    merged = layers.merge_stats(p, stats)
    np.testing.assert_array_equal(merged["var"], stats[""]["var"])
    np.testing.assert_array_equal(merged["scale"], p["scale"])


def test_batch_norm_training_and_running_averages_match_torch():
    torch = pytest.importorskip("torch")
    bn_torch = torch.nn.BatchNorm2d(3, momentum=0.1, eps=1e-5)
    p = _random_params(3)
    with torch.no_grad():
        for name, key in (("weight", "scale"), ("bias", "offset"), ("running_mean", "mean"),
                          ("running_var", "var")):
            getattr(bn_torch, name).copy_(torch.from_numpy(p[key]))
    bn = layers.BatchNorm(name="bn")
    model = layers.serial(bn)
    params = {"bn": {k: jnp.asarray(v) for k, v in p.items()}}
    bn_torch.train()
    for step in range(3):
        x = _x((4, 5, 6, 3), seed=10 + step)
        want = bn_torch(torch.from_numpy(x.transpose(0, 3, 1, 2))).detach().numpy()
        y, _, stats = model.run(params, x, train=True, update_stats=True)
        np.testing.assert_allclose(y, want.transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-5)
        params = layers.merge_stats(params, stats)
        np.testing.assert_allclose(params["bn"]["mean"], bn_torch.running_mean.numpy(),
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(params["bn"]["var"], bn_torch.running_var.numpy(),
                                   rtol=1e-5, atol=1e-6)
    bn_torch.eval()
    x = _x((2, 5, 6, 3), seed=99)
    want = bn_torch(torch.from_numpy(x.transpose(0, 3, 1, 2))).detach().numpy()
    np.testing.assert_allclose(model.apply(params, x), want.transpose(0, 2, 3, 1), rtol=1e-5,
                               atol=1e-5)


def _jnp_batch_norm(p, x, train, eps=1e-5):
    axes = tuple(range(x.ndim - 1))
    mean, var = ((x.mean(axes), x.var(axes)) if train
                 else (jax.lax.stop_gradient(p["mean"]), jax.lax.stop_gradient(p["var"])))
    return (x - mean) / jnp.sqrt(var + eps) * p["scale"] + p["offset"]


@pytest.mark.parametrize("train", [False, True])
def test_batch_norm_gradients_match_jax_autodiff_in_float64(train):
    with jax.enable_x64(True):
        p = jax.tree.map(jnp.asarray, _random_params(4, dtype=np.float64))
        x = jnp.asarray(_x((3, 2, 5, 4), dtype=np.float64))
        w = jnp.asarray(_x((3, 2, 5, 4), seed=5, dtype=np.float64))
        bn = layers.BatchNorm()

        @jax.jit
        def both(p, x):  # (gradients, tangent) of difprog's and of the jax.numpy BatchNorm
            out = []
            for f in (lambda p, x: bn.apply(p, x, train=train),
                      lambda p, x: _jnp_batch_norm(p, x, train)):
                grads = jax.grad(lambda p, x, f=f: jnp.sum(f(p, x) * w), (0, 1))(p, x)
                out.append((grads, jax.jvp(lambda x, f=f: f(p, x), (x,), (w,))[1]))
            return out

        ours, ref = both(p, x)
        for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(ref)):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
        assert not np.any(ours[0][0]["mean"]) and not np.any(ours[0][0]["var"])


def test_global_avg_pool_output_and_gradient_in_float64():
    with jax.enable_x64(True):
        x = jnp.asarray(_x((2, 3, 4, 5), dtype=np.float64))
        pool = layers.GlobalAvgPool()
        np.testing.assert_allclose(pool.apply({}, x), np.asarray(x).mean((1, 2)), rtol=1e-12)
        w = jnp.asarray(_x((2, 5), seed=3, dtype=np.float64))
        g = jax.grad(lambda x: jnp.sum(pool.apply({}, x) * w))(x)
        np.testing.assert_allclose(g, jax.grad(lambda x: jnp.sum(x.mean((1, 2)) * w))(x),
                                   rtol=1e-12)
    with pytest.raises(ShapeError, match="global_avg_pool.*NHWC"):
        pool.apply({}, jnp.ones((2, 5)))


@pytest.fixture(scope="module")
def small():
    """A conv, BatchNorm, pool and dense model, an input and params, shared by the tests."""
    model = layers.serial(layers.Conv2D(4, 3, use_bias=False), layers.BatchNorm(), layers.Relu(),
                          layers.GlobalAvgPool(), layers.Dense(2))
    rng = np.random.default_rng(2)
    params = {"conv2d_0": {"w": rng.normal(size=(3, 3, 3, 4)).astype(np.float32)},
              "batch_norm_0": _random_params(4),
              "dense_0": {"w": rng.normal(size=(4, 2)).astype(np.float32),
                          "b": np.zeros(2, np.float32)}}
    return model, jnp.asarray(_x((4, 6, 6, 3))), jax.tree.map(jnp.asarray, params)


def test_statistics_get_no_gradient_and_no_optimiser_moves_them(small):
    model, x, params = small
    params = layers.merge_stats(params, model.run(params, x, train=True, update_stats=True).stats)
    grads = jax.jit(jax.grad(lambda p: jnp.sum(model.apply(p, x, train=True) ** 2)))(params)
    assert not np.any(grads["batch_norm_0"]["mean"]) and not np.any(grads["batch_norm_0"]["var"])
    assert np.any(grads["batch_norm_0"]["scale"])
    mask = layers.trainable_mask(model, params)
    assert mask["batch_norm_0"] == {"scale": True, "offset": True, "mean": False, "var": False}
    assert mask["conv2d_0"] == {"w": True}
    optimizer = optax.masked(optax.adamw(0.1, weight_decay=0.5), mask)
    step = jax.jit(lambda g, p: optax.apply_updates(
        p, optimizer.update(g, optimizer.init(p), p)[0]))
    moved = step(grads, params)
    for k in ("mean", "var"):
        np.testing.assert_array_equal(moved["batch_norm_0"][k], params["batch_norm_0"][k])
    assert not np.allclose(moved["batch_norm_0"]["scale"], params["batch_norm_0"]["scale"])


def test_statistics_come_through_jit_remat_and_repeat_unchanged():
    x = jnp.asarray(_x((6, 3)))
    block = lambda: layers.serial(layers.Dense(3), layers.BatchNorm())
    rng = np.random.default_rng(3)
    params = {f"serial_{i}": {"dense_0": {"w": rng.normal(size=(3, 3)).astype(np.float32),
                                          "b": np.zeros(3, np.float32)},
                              "batch_norm_0": _random_params(3, seed=i)} for i in range(2)}
    stats_of = lambda m: jax.jit(lambda p, x: m.run(p, x, train=True, update_stats=True)[::2])
    want = stats_of(layers.serial(block(), block()))(params, x)
    got = stats_of(layers.serial(block(), block(), remat=1))(params, x)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6), got, want)
    stacked = jax.tree.map(lambda a, b: jnp.stack([a, b]), params["serial_0"], params["serial_1"])
    for remat in (None, "sqrt"):
        y, stats = stats_of(layers.repeat(block(), 2, remat=remat))(stacked, x)
        np.testing.assert_allclose(y, want[0], rtol=1e-6, atol=1e-6)
        for i, key in enumerate(("serial_0/batch_norm_0", "serial_1/batch_norm_0")):
            np.testing.assert_allclose(stats["batch_norm_0"]["var"][i], want[1][key]["var"],
                                       rtol=1e-6)
        merged = layers.merge_stats(stacked, stats)
        assert merged["batch_norm_0"]["mean"].shape == (2, 3)


def test_update_stats_with_capture_returns_both_and_bad_calls_are_refused(small):
    model, x, params = small
    y, captured, stats = model.run(params, x, train=True, update_stats=True,
                                   capture=("relu_0",))
    assert set(captured) == {"relu_0"} and set(stats) == {"batch_norm_0"}
    np.testing.assert_array_equal(y, model.apply(params, x, train=True))
    with pytest.raises(ArgumentError, match="update_stats.*train=True"):
        model.run(params, x, update_stats=True)
    with pytest.raises(ArgumentError, match=r"\['update_stats'\].*model\.run"):
        model.apply(params, x, train=True, update_stats=True)
    assert model.run(params, x).stats == {}
    with pytest.raises(ShapeError, match="more than one value per channel"):
        layers.BatchNorm().apply(params["batch_norm_0"], jnp.ones((1, 4)), train=True)
    with pytest.raises(ArgumentError, match="no BatchNorm at 'nope'"):
        layers.merge_stats(params, {"nope": stats["batch_norm_0"]})
    with pytest.raises(ArgumentError, match="momentum"):
        layers.BatchNorm(momentum=0)
    with pytest.raises(ShapeError, match="keys"):
        model.apply({**params, "batch_norm_0": {"scale": params["batch_norm_0"]["scale"]}}, x)
    assert repr(layers.BatchNorm(momentum=0.5)) == "BatchNorm(momentum=0.5)"


def test_a_training_step_updates_the_running_statistics(small):
    from difprog.train import TrainConfig, make_optimizer, make_train_step

    model, x, params = small
    config = TrainConfig(optimizer="adam", schedule="constant", learning_rate=0.1)
    optimizer = make_optimizer(config, 10)
    y = jnp.arange(4) % 2
    new = make_train_step(model, config, optimizer)(params, optimizer.init(params), x, y,
                                                    jax.random.key(0))[0]
    stats = model.run(params, x, train=True, update_stats=True).stats["batch_norm_0"]
    for k in ("mean", "var"):
        np.testing.assert_allclose(new["batch_norm_0"][k], stats[k], rtol=1e-6, atol=1e-7)
        assert not np.allclose(new["batch_norm_0"][k], params["batch_norm_0"][k])
    assert not np.allclose(new["batch_norm_0"]["scale"], params["batch_norm_0"]["scale"])
