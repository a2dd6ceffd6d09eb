"""difprog.interop.from_torch: torch state dicts onto difprog models. A ResNet-18 in plain
PyTorch (benchmarks/torch_resnet.py, no torchvision) gives the logits of the imported difprog
resnet18; small models cover layouts, the Flatten order, files, and the one error that lists
every mismatch. The tests that need torch skip without it."""

from __future__ import annotations

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy

from benchmarks.torch_resnet import torch_resnet18
from difprog import interop, layers, models
from difprog.errors import ArgumentError, CheckpointError
from difprog.layers import trainable_mask

RESNET_INPUT = (2, 3, 64, 64)  # NCHW, as torch takes it


@pytest.fixture(scope="module")
def resnet():
    """A randomly initialised torch ResNet-18 with non-trivial BatchNorm statistics, in eval
    mode, its logits, and the imported difprog model with one jitted apply."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch_resnet18(torch, 10)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.2)
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.num_batches_tracked.fill_(7)
    net.eval()
    x = np.random.default_rng(0).normal(size=RESNET_INPUT).astype(np.float32)
    with torch.no_grad():
        logits = net(torch.from_numpy(x)).numpy()
    model = models.resnet18(num_classes=10)
    x_nhwc = x.transpose(0, 2, 3, 1)
    state = net.state_dict()
    params = interop.from_torch(model, x_nhwc, state)
    apply = jax.jit(model.apply)
    return {"torch": torch, "net": net, "state": state, "x": x_nhwc, "logits": logits,
            "model": model, "params": params, "apply": apply}


def test_imported_resnet18_gives_torchs_logits(resnet):
    ours = np.asarray(resnet["apply"](resnet["params"], resnet["x"]))
    difference = np.abs(ours - resnet["logits"]).max()
    print(f"max |logit difference| = {difference:.2e}")
    assert difference < 1e-4, difference
    assert np.abs(resnet["logits"]).max() > 0.1  # the logits are not all near zero
    assert ours.dtype == np.float32


def test_resnet18_from_a_safetensors_file_and_numpy_arrays_is_the_same(resnet, tmp_path):
    arrays = {k: v.numpy() for k, v in resnet["state"].items()}
    path = tmp_path / "resnet18.safetensors"
    safetensors.numpy.save_file(arrays, path)
    from_file = interop.from_torch(resnet["model"], resnet["x"], str(path))
    jax.tree.map(np.testing.assert_array_equal, from_file, resnet["params"])
    pt = tmp_path / "resnet18.pt"
    resnet["torch"].save(resnet["state"], pt)
    jax.tree.map(np.testing.assert_array_equal,
                 interop.from_torch(resnet["model"], resnet["x"], pt), resnet["params"])


def test_resnet18_names_are_torchvisions_one_to_one(resnet):
    pairs = interop.torch_names(resnet["model"], resnet["params"])
    expected = {k for k in resnet["state"] if not k.endswith("num_batches_tracked")}
    assert [k for k, _ in pairs] == [k for k in resnet["state"] if k in expected]
    assert len({p for _, p in pairs}) == len(pairs) == len(jax.tree.leaves(resnet["params"]))
    assert ("layer2.0.downsample.1.running_var", "layer2.0/downsample.1/var") in pairs
    assert ("fc.weight", "fc/w") in pairs


def test_resnet18_names_without_torch():
    model = models.resnet18()
    shapes = jax.eval_shape(model.init, jax.random.key(0),
                            jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32))
    pairs = interop.torch_names(model, shapes)
    # torchvision's resnet18 state dict: 122 keys, of which 20 are num_batches_tracked
    assert len(pairs) == len(set(pairs)) == len(jax.tree.leaves(shapes)) == 102
    assert pairs[:6] == [("conv1.weight", "conv1/w"), ("bn1.weight", "bn1/scale"),
                         ("bn1.bias", "bn1/offset"), ("bn1.running_mean", "bn1/mean"),
                         ("bn1.running_var", "bn1/var"), ("layer1.0.conv1.weight",
                                                          "layer1.0/conv1/w")]
    assert pairs[-2:] == [("fc.weight", "fc/w"), ("fc.bias", "fc/b")]
    assert ("layer4.0.downsample.0.weight", "layer4.0/downsample.0/w") in pairs
    assert not any("layer1.0.downsample" in k for k, _ in pairs)


def test_resnet18_has_torchvisions_parameter_count():
    model = models.resnet18()
    shapes = jax.eval_shape(model.init, jax.random.key(0),
                            jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32))
    mask = trainable_mask(model, shapes)
    count = sum(math.prod(s.shape) for s, t in zip(jax.tree.leaves(shapes),
                                                   jax.tree.leaves(mask)) if t)
    assert count == 11_689_512  # torchvision.models.resnet18(): sum of p.numel() of parameters()
    assert jax.eval_shape(model.apply, shapes, jax.ShapeDtypeStruct((1, 224, 224, 3),
                                                                    jnp.float32)).shape == (1, 1000)


def _small():
    """A difprog serial mirroring nn.Sequential(Conv2d(3, 4, 3, padding=1), BatchNorm2d(4),
    ReLU(), MaxPool2d(2), Flatten(), Dropout(), Linear(4 * 3 * 3, 5), ReLU(), Linear(5, 2))."""
    return layers.serial(layers.Conv2D(4, 3, padding=1), layers.BatchNorm(), layers.Relu(),
                         layers.MaxPool2D(2), layers.Flatten(), layers.Dropout(0.5),
                         layers.Dense(5), layers.Relu(), layers.Dense(2))


def _small_state(seed=0):
    rng = np.random.default_rng(seed)
    f = lambda *shape: rng.normal(size=shape).astype(np.float32)
    return {"0.weight": f(4, 3, 3, 3), "0.bias": f(4), "1.weight": f(4) + 1, "1.bias": f(4),
            "1.running_mean": f(4), "1.running_var": np.abs(f(4)) + 0.5,
            "1.num_batches_tracked": np.array(3), "6.weight": f(5, 36), "6.bias": f(5),
            "8.weight": f(2, 5), "8.bias": f(2)}


def _numpy_small(state, x_nchw):
    """The torch Sequential's eval forward in numpy, NCHW, torch's flatten order."""
    w, b = state["0.weight"], state["0.bias"]
    n, c, h, wd = x_nchw.shape
    padded = np.pad(x_nchw, ((0, 0), (0, 0), (1, 1), (1, 1)))
    y = np.zeros((n, 4, h, wd))
    for i in range(3):
        for j in range(3):
            y += np.einsum("nchw,oc->nohw", padded[:, :, i:i + h, j:j + wd], w[:, :, i, j])
    y += b[None, :, None, None]
    s = lambda k: state[k][None, :, None, None]
    y = (y - s("1.running_mean")) / np.sqrt(s("1.running_var") + 1e-5) * s("1.weight") + s("1.bias")
    y = np.maximum(y, 0).reshape(n, 4, h // 2, 2, wd // 2, 2).max((3, 5))
    y = np.maximum(y.reshape(n, -1) @ state["6.weight"].T + state["6.bias"], 0)
    return y @ state["8.weight"].T + state["8.bias"]


def test_a_sequential_model_from_numpy_arrays_matches_a_reference_with_torchs_flatten_order():
    state = _small_state()
    x = np.random.default_rng(1).normal(size=(2, 3, 6, 6)).astype(np.float32)
    model = _small()
    params = interop.from_torch(model, jnp.zeros((1, 6, 6, 3)), state)
    assert params["conv2d_0"]["w"].shape == (3, 3, 3, 4) and params["dense_0"]["w"].shape == (36, 5)
    y = model.apply(params, x.transpose(0, 2, 3, 1))
    np.testing.assert_allclose(y, _numpy_small(state, x), rtol=1e-4, atol=1e-4)
    # the test can fail: without the (C, H, W) -> (H, W, C) reordering of the rows it differs
    plain = {**params, "dense_0": {**params["dense_0"], "w": jnp.asarray(state["6.weight"].T)}}
    assert np.abs(model.apply(plain, x.transpose(0, 2, 3, 1)) - _numpy_small(state, x)).max() > 1e-2
    again = interop.from_torch(model, jnp.zeros((1, 6, 6, 3)), _small_state())
    jax.tree.map(np.testing.assert_array_equal, again, params)  # deterministic


def test_a_sequential_model_matches_torch():
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(0.5), nn.Linear(36, 5),
                        nn.ReLU(), nn.Linear(5, 2))
    with torch.no_grad():
        net[1].running_mean.normal_()
        net[1].running_var.uniform_(0.5, 2)
    net.eval()
    x = np.random.default_rng(2).normal(size=(3, 3, 6, 6)).astype(np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    model = _small()
    params = interop.from_torch(model, jnp.zeros((1, 6, 6, 3)), net.state_dict())
    np.testing.assert_allclose(model.apply(params, x.transpose(0, 2, 3, 1)), want, rtol=1e-5,
                               atol=1e-5)


def test_a_single_layer_without_bias_maps_to_a_torch_linear_without_bias():
    dense = layers.Dense(2, use_bias=False)
    weight = np.arange(6, dtype=np.float32).reshape(2, 3)
    params = interop.from_torch(dense, jnp.zeros((1, 3)), {"weight": weight})
    assert set(params) == {"w"} and repr(dense) == "Dense(2, use_bias=False)"
    np.testing.assert_array_equal(dense.apply(params, jnp.ones((1, 3))), [[3.0, 12.0]])
    assert interop.torch_names(dense, params) == [("weight", "w")]


def test_embedding_and_norm_layers_map_as_they_are():
    model = layers.serial(layers.Embedding(7, 4), layers.LayerNorm(), layers.RMSNorm(),
                          layers.Dense(3))
    rng = np.random.default_rng(4)
    state = {"0.weight": rng.normal(size=(7, 4)), "1.weight": rng.normal(size=4),
             "1.bias": rng.normal(size=4), "2.weight": rng.normal(size=4),
             "3.weight": rng.normal(size=(3, 4)), "3.bias": rng.normal(size=3)}
    params = interop.from_torch(model, jnp.zeros((1, 5), jnp.int32), state)
    pairs = dict(interop.torch_names(model, params))
    for key, path in pairs.items():
        leaf = params
        for part in path.split("/"):
            leaf = leaf[part]
        want = state[key].T if key == "3.weight" else state[key]
        np.testing.assert_allclose(leaf, want.astype(np.float32))
        assert leaf.dtype == jnp.float32
    assert set(pairs) == set(state)


def test_every_mismatch_is_listed_in_one_error(tmp_path):
    state = _small_state()
    state["0.weight"] = state["0.weight"][:, :2]          # wrong shape
    state["8.weight"] = state["8.weight"].T               # (5, 2): transposed by mistake
    del state["6.bias"]                                   # missing
    state["9.weight"] = np.ones((2, 2), np.float32)       # unexpected
    path = tmp_path / "bad.safetensors"
    safetensors.numpy.save_file(state, path)
    with pytest.raises(CheckpointError) as error:
        interop.from_torch(_small(), jnp.zeros((1, 6, 6, 3)), path)
    message = str(error.value)
    for part in ("bad.safetensors", "'6.bias' (5,)", "'9.weight' (2, 2)",
                 "'0.weight' is (4, 2, 3, 3)", "needs (4, 3, 3, 3)", "'8.weight' is (5, 2)",
                 "missing", "unexpected", "wrong shape", "torch_names"):
        assert part in message, (part, message)
    assert "num_batches_tracked" not in message
    poisoned = _small_state()
    poisoned["0.weight"] = np.full_like(poisoned["0.weight"], np.nan)
    variances = [k for k in poisoned if k.endswith("running_var")]
    poisoned[variances[0]] = -np.ones_like(poisoned[variances[0]])
    with pytest.raises(CheckpointError) as error:
        interop.from_torch(_small(), jnp.zeros((1, 6, 6, 3)), poisoned)
    assert "'0.weight' holds NaN" in str(error.value)
    assert f"{variances[0]!r} holds negative variances" in str(error.value)
    wrapped = {f"module.{k}": v for k, v in _small_state().items()}
    with pytest.raises(CheckpointError, match="module."):
        interop.from_torch(_small(), jnp.zeros((1, 6, 6, 3)), wrapped)


def test_bad_sources_and_unsupported_models_are_refused(tmp_path):
    x = jnp.zeros((1, 6, 6, 3))
    with pytest.raises(CheckpointError, match="no file"):
        interop.from_torch(_small(), x, tmp_path / "none.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="junk.safetensors.*safetensors"):
        interop.from_torch(_small(), x, junk)
    (tmp_path / "w.npz").write_bytes(b"")
    with pytest.raises(CheckpointError, match="format"):
        interop.from_torch(_small(), x, tmp_path / "w.npz")
    with pytest.raises(CheckpointError, match="'0.weight' \\(a str, not a tensor\\)"):
        interop.from_torch(_small(), x, {**_small_state(), "0.weight": "text"})
    complex_weight = _small_state()["0.weight"] * (1 + 1j)
    with pytest.raises(CheckpointError, match="'0.weight' \\(complex values"):
        interop.from_torch(_small(), x, {**_small_state(), "0.weight": complex_weight})
    with pytest.raises(ArgumentError, match="repeat"):
        interop.from_torch(layers.repeat(layers.Dense(3), 2), jnp.zeros((1, 3)), {})
    with pytest.raises(ArgumentError, match="multi_head_attention|MultiHeadAttention"):
        interop.from_torch(layers.MultiHeadAttention(2), jnp.zeros((1, 4, 8)), {})
    mixes = layers.serial(layers.Flatten(), layers.LayerNorm(), layers.Dense(2))
    with pytest.raises(ArgumentError, match="flattened"):
        interop.from_torch(mixes, jnp.zeros((1, 2, 2, 3)), {})


def test_values_beyond_the_params_dtype_are_refused_naming_the_key():
    """float64 weights that float32 cannot hold would become inf params: refused, key named;
    the same weights load into float64 params."""
    state = {k: v.astype(np.float64) for k, v in _small_state().items()}
    state["8.bias"][1] = 1e39
    with pytest.raises(CheckpointError, match="'8.bias' holds 1e\\+39, beyond float32's largest"):
        interop.from_torch(_small(), jnp.zeros((1, 6, 6, 3)), state)
    with jax.enable_x64(True):
        params = interop.from_torch(_small(), jnp.zeros((1, 6, 6, 3), jnp.float64), state)
        assert float(params["dense_1"]["b"][1]) == 1e39


def test_tensors_without_real_dense_data_are_refused_naming_the_key():
    torch = pytest.importorskip("torch")
    state = {k: torch.from_numpy(v) for k, v in _small_state().items()}
    weight = state["0.weight"]
    with warnings.catch_warnings():  # torch deprecates making quantized tensors, not reading
        warnings.simplefilter("ignore", UserWarning)
        quantized = torch.quantize_per_tensor(weight, 0.1, 0, torch.qint8)
    cases = {
        "complex values": weight.to(torch.complex64),
        "meta tensor": torch.empty(weight.shape, device="meta"),
        "sparse_coo": weight.to_sparse(),
        "quantized": quantized,
    }
    for reason, tensor in cases.items():
        with pytest.raises(CheckpointError) as error:
            interop.from_torch(_small(), jnp.zeros((1, 6, 6, 3)), {**state, "0.weight": tensor})
        assert "'0.weight' (" in str(error.value) and reason in str(error.value), str(error.value)


class Payload:
    """An object that torch.load(weights_only=True) must refuse to unpickle."""


def test_a_pt_file_needs_torch_and_is_read_without_pickle(tmp_path):
    path = tmp_path / "w.pt"
    try:
        import torch
    except ImportError:
        path.write_bytes(b"\x80\x04N.")
        with pytest.raises(CheckpointError, match="needs PyTorch.*safetensors"):
            interop.from_torch(_small(), jnp.zeros((1, 6, 6, 3)), path)
        return

    torch.save({"0.weight": Payload()}, path)
    with pytest.raises(CheckpointError, match="weights_only"):
        interop.from_torch(_small(), jnp.zeros((1, 6, 6, 3)), path)
    torch.save({k: torch.from_numpy(np.asarray(v)) for k, v in _small_state().items()}, path)
    params = interop.from_torch(_small(), jnp.zeros((1, 6, 6, 3)), path)
    assert params["dense_0"]["w"].shape == (36, 5)
