"""conv2d's CPU paths (difprog/gates/conv_paths.py): XLA's convolution, shifted matmuls and
patches + matmul, each forced in turn and checked in float64 against jax.vjp and jax.jvp of
jax.lax.conv_general_dilated, with strides, dilation, every padding form and groups; the rule's
choice on the CPU; lax.conv alone in the cuda and tpu lowerings; and mutants (a flipped kernel,
a wrong shift) that the checks catch."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import difprog
from difprog import gates
from difprog.gates import conv
from difprog.gates import conv_paths as paths
from tests.gates.test_conv import CONV_CASES

RNG = np.random.default_rng(28)

CASES = [*CONV_CASES,  # (x shape, w shape, stride, padding, dilation, groups)
    ((3, 2, 2, 8), (3, 3, 8, 5), 1, 1, 1, 1),                         # a 2x2 map
    ((2, 4, 4, 6), (1, 1, 6, 4), 2, 0, 1, 1),                         # a strided 1x1
    ((2, 5, 4, 4), (3, 3, 2, 4), 3, ((2, 0), (0, 3)), 1, 2),          # stride > kernel's step
    # rows of at least ROW_WIDTH values: the patches' weight gradient by kernel rows
    ((2, 5, 6, 32), (3, 3, 32, 3), 1, 1, 1, 1),
    ((2, 7, 8, 96), (3, 2, 48, 4), (1, 2), "SAME", (2, 1), 2),
    ((3, 6, 5, 32), (2, 3, 32, 2), 1, ((2, 0), (1, 3)), (2, 1), 1),
]
ROWS = len(CASES) - 3
IDS = ["-".join(map(str, c[2:])) for c in CASES]


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _lax_padding(padding):
    if isinstance(padding, str):
        return padding.upper()
    return ((padding,) * 2,) * 2 if isinstance(padding, int) else \
        tuple((p, p) if isinstance(p, int) else tuple(p) for p in padding)


def _reference(stride, padding, dilation, groups):
    return lambda x, w: jax.lax.conv_general_dilated(
        x, w, _pair(stride), _lax_padding(padding), rhs_dilation=_pair(dilation),
        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups)


def _value_vjp_jvp(f):
    def run(x, w, g, dx, dw):
        out, vjp = jax.vjp(f, x, w)
        return (out, *vjp(g), jax.jvp(f, (x, w), (dx, dw))[1])
    return run


def _errors(case, path=None, gate=gates.conv2d):
    """The largest |difference| of value, VJP and JVP from lax.conv's, in float64, with conv2d
    computing by `path` (None: by the rule)."""
    x_shape, w_shape, stride, padding, dilation, groups = case
    static = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    with jax.enable_x64(True):
        x, w = (jnp.asarray(RNG.standard_normal(s)) for s in (x_shape, w_shape))
        dx, dw = (jnp.asarray(RNG.standard_normal(s)) for s in (x_shape, w_shape))
        reference = _reference(stride, padding, dilation, groups)
        g = jnp.asarray(RNG.standard_normal(jax.eval_shape(reference, x, w).shape))
        ref = jax.jit(_value_vjp_jvp(reference))(x, w, g, dx, dw)
        with paths.forced(path) if path else paths.forced():
            mine = jax.jit(_value_vjp_jvp(lambda x, w: gate(x, w, **static)))(x, w, g, dx, dw)
        return [float(jnp.max(jnp.abs(a - b))) if a.size else 0.0 for a, b in zip(mine, ref)]


@pytest.mark.parametrize("path", paths.PATHS)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_every_path_matches_lax_conv_value_vjp_and_jvp_in_float64(case, path):
    assert max(_errors(case, path)) < 1e-10


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_the_rule_matches_lax_conv(case):
    assert max(_errors(case)) < 1e-10


@pytest.mark.parametrize("case", [CASES[2], CASES[3], CASES[7]], ids=[IDS[2], IDS[3], IDS[7]])
def test_every_path_passes_check_gate(case):
    x_shape, w_shape, stride, padding, dilation, groups = case
    x, w = RNG.standard_normal(x_shape), RNG.standard_normal(w_shape)
    for path in paths.PATHS:
        with paths.forced(path):
            report = difprog.check_gate(gates.conv2d, x, w, stride=stride, padding=padding,
                                        dilation=dilation, groups=groups)
        assert report.ok, (path, report)


def test_paths_can_be_forced_per_computation_and_mixed():
    case = CASES[1]
    for mix in [dict(forward="patches", input_grad="shifted", weight_grad="xla"),
                dict(forward="xla", input_grad="patches", weight_grad="shifted")]:
        with paths.forced(**mix):
            assert max(_errors(case)) < 1e-10
    with pytest.raises(ValueError, match="unknown conv2d path"):
        with paths.forced("im2col"):
            pass
    with pytest.raises(ValueError, match="unknown conv2d path"):
        with paths.forced(backward="xla"):
            pass


def _primitives(path, x_shape, w_shape, **static):
    """The primitives of conv2d's forward and gradient, computed by `path`, on the CPU."""
    x, w = jnp.ones(x_shape), jnp.ones(w_shape)
    f = lambda x, w: jax.grad(lambda x, w: jnp.sum(gates.conv2d(x, w, **static) ** 2),
                              (0, 1))(x, w)
    with paths.forced(path) if path else paths.forced():
        text = jax.jit(f).lower(x, w).as_text()
    return {"convolution": text.count("stablehlo.convolution"),
            "dot": text.count("stablehlo.dot_general")}


def test_a_forced_path_is_the_one_that_runs():
    shape = ((2, 6, 6, 4), (3, 3, 4, 5))
    assert _primitives("xla", *shape) == {"convolution": 3, "dot": 0}
    for path in ("shifted", "patches"):
        counts = _primitives(path, *shape)
        assert counts["convolution"] == 0 and counts["dot"] > 0, (path, counts)


def test_the_cpu_rule_routes_small_maps_around_xla_convolution():
    geometry = lambda x, w, **kw: conv.geometry(x, w, kw.get("stride", 1), kw.get("padding", 1),
                                                 1, kw.get("groups", 1))
    # ResNet-18's layer4 at 64x64 inputs: a 2x2 map, 512 channels; XLA:CPU takes 100x longer.
    small = geometry((16, 2, 2, 512), (3, 3, 512, 512))
    assert paths.choose("forward", small, (3, 3, 512, 512)) == "shifted"
    assert paths.choose("input_grad", small, (3, 3, 512, 512)) == "shifted"
    assert _primitives(None, (2, 2, 2, 128), (3, 3, 128, 128))["convolution"] == 1  # dw
    # Large maps keep XLA's convolution for the forward and input gradient.
    large = geometry((8, 56, 56, 64), (3, 3, 64, 64))
    w = (3, 3, 64, 64)
    assert paths.choose("forward", large, w) == paths.choose("input_grad", large, w) == "xla"
    # Its weight gradient too with 64 channels (wide patches), or a stride; patches where they
    # are narrow: the digits CNN's 3x3 over 32 channels on a 28x28 map.
    assert paths.choose("weight_grad", large, w) == "xla"
    strided = geometry((8, 112, 112, 8), (3, 3, 8, 16), stride=2)
    assert paths.choose("weight_grad", strided, (3, 3, 8, 16)) == "xla"
    narrow = geometry((128, 28, 28, 32), (3, 3, 32, 64))
    assert paths.choose("weight_grad", narrow, (3, 3, 32, 64)) == "patches"
    # A single input channel: nine products that fuse with what follows (the digits CNN's first).
    assert paths.choose("forward", geometry((128, 28, 28, 1), (3, 3, 1, 32)), (3, 3, 1, 32)) \
        == "shifted"
    assert _primitives(None, (2, 16, 16, 8), (3, 3, 8, 8))["convolution"] >= 2


@pytest.mark.parametrize("platform", ["cuda", "tpu"])
def test_off_cpu_the_lowering_is_lax_conv_alone(platform):
    """On GPU and TPU every computation stays XLA's convolution, also where the CPU's rule picks
    matmuls (a 2x2 map), and under any forcing: lax.platform_dependent lowers one branch."""
    x, w = jnp.ones((2, 2, 2, 128)), jnp.ones((3, 3, 128, 128))
    f = lambda x, w: jax.value_and_grad(lambda x, w: jnp.sum(gates.conv2d(x, w) ** 2),
                                        (0, 1))(x, w)
    for forcing in (paths.forced(), paths.forced("shifted"), paths.forced("patches")):
        with forcing:
            text = jax.export.export(jax.jit(f), platforms=[platform])(x, w).mlir_module()
        assert text.count("stablehlo.convolution") == 3
        assert "dot_general" not in text
    cpu = jax.export.export(jax.jit(f), platforms=["cpu"])(x, w).mlir_module()
    assert cpu.count("stablehlo.convolution") == 1 and "dot_general" in cpu  # XLA's dw alone


# --- mutants: a wrong path fails the checks ----------------------------------------------------

def test_a_flipped_kernel_fails_the_check(monkeypatch):
    """Slices taken in reverse order pair each with the kernel point opposite: a flipped kernel."""
    slices = paths._slices
    monkeypatch.setattr(paths, "_slices", lambda x, geo: slices(x, geo)[::-1])
    for path in ("shifted", "patches"):
        errors = _errors(CASES[0], path)
        assert errors[0] > 0.1 and errors[2] > 0.1, (path, errors)  # value, weight gradient
    assert max(_errors(CASES[0], "xla")) < 1e-10


def test_a_wrong_shift_in_the_input_gradient_fails_the_check_and_check_gate(monkeypatch):
    place = paths._place
    monkeypatch.setattr(paths, "_place", lambda part, offset, x_shape, geo: place(
        part, (offset[0], max(offset[1] - 1, 0)), x_shape, geo))
    x_shape, w_shape, stride, padding, dilation, groups = case = CASES[0]
    for path in ("shifted", "patches"):
        errors = _errors(case, path)
        assert errors[0] < 1e-10 and errors[1] > 0.1, (path, errors)  # only dx is wrong
        with paths.forced(path):
            report = difprog.check_gate(gates.conv2d, RNG.standard_normal(x_shape),
                                        RNG.standard_normal(w_shape), padding=padding)
        assert not report.ok and report.errors["reverse"] > 0.1


def test_the_patches_weight_gradient_goes_by_kernel_rows_where_they_are_wide(monkeypatch):
    calls = []
    by_rows = paths._weight_grad_by_rows
    monkeypatch.setattr(paths, "_weight_grad_by_rows", lambda *a: calls.append(a) or by_rows(*a))
    for case in CASES:
        _errors(case, "patches")
    wide_rows = [c for c in CASES if _pair(c[2])[0] == 1 and c[1][1] * c[1][2] >= paths.ROW_WIDTH]
    assert len(calls) == len(wide_rows) == 3  # the three cases at the end of CASES, no other


def test_the_rows_weight_gradient_adds_every_slice_of_the_batch(monkeypatch):
    """With PATCH_BYTES at one byte each slice is one image (five of them in the last case)."""
    monkeypatch.setattr(paths, "PATCH_BYTES", 1)
    for case in [*CASES[ROWS:], ((5, 4, 5, 32), (3, 3, 32, 2), 1, 1, 1, 1)]:
        assert max(_errors(case, "patches")) < 1e-10


@pytest.mark.parametrize("mutant", ["kernel rows reversed", "kernel columns reversed"])
def test_a_kernel_flipped_in_the_rows_weight_gradient_fails_the_check(monkeypatch, mutant):
    if mutant == "kernel rows reversed":
        offsets = paths._row_offsets
        monkeypatch.setattr(paths, "_row_offsets", lambda *a: offsets(*a)[::-1])
    else:
        patches = paths._row_patches
        monkeypatch.setattr(paths, "_row_patches", lambda x, geo, kw: patches(x, geo, kw)[:, ::-1])
    for case in CASES[ROWS:]:
        errors = _errors(case, "patches")
        assert errors[0] < 1e-10 and errors[1] < 1e-10 and errors[2] > 0.1, errors  # dw only
        assert max(_errors(case, "xla")) < 1e-10


def test_a_wrong_group_split_fails_the_check(monkeypatch):
    grouped = paths._grouped
    monkeypatch.setattr(paths, "_grouped", lambda a, groups: jnp.flip(grouped(a, groups), -2))
    for path in ("shifted", "patches"):
        assert max(_errors(CASES[2], path)) > 0.1, path
    assert max(_errors(CASES[0], "shifted")) < 1e-10  # no groups: the mutant never runs


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_shifted_matmuls_accumulate_16_bit_floats_as_xlas_convolution_does(dtype):
    """Summing nine rounded matmuls would triple the rounding error of a 3x3 map in 16 bits:
    the shifted path sums in float32 and rounds once, as XLA's convolution. The patches' weight
    gradient by kernel rows (which adds its batch slices in float32) is as accurate as XLA's."""
    kx, kw, kg = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(kx, (4, 3, 3, 256))
    w = 0.05 * jax.random.normal(kw, (3, 3, 256, 64))
    g = jax.random.normal(kg, (4, 3, 3, 64))
    with paths.forced("xla"):
        y, pullback = jax.vjp(gates.conv2d, x, w)
        exact = (y, *pullback(g))  # float32
    errors = {}
    for path in ("xla", "shifted", "patches"):
        with paths.forced(path):
            y, pullback = jax.vjp(gates.conv2d, x.astype(dtype), w.astype(dtype))
            low = (y, *pullback(g.astype(dtype)))
        assert all(a.dtype == dtype for a in low)
        errors[path] = [float(jnp.max(jnp.abs(a.astype(jnp.float32) - b)))
                        for a, b in zip(low, exact)]
    for ours, xla in zip(errors["shifted"], errors["xla"]):
        assert ours <= 1.5 * xla, errors
    assert errors["patches"][2] <= 1.5 * errors["xla"][2], errors  # dw, by kernel rows
