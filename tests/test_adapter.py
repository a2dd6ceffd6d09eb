"""The adapter: the one module that talks to JAX internals, on every supported JAX version."""

from __future__ import annotations

import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import difprog
from difprog import adapter, gates

_PACKAGE = pathlib.Path(difprog.__file__).parent
_INTERNALS = re.compile(r"jax\._src|hijax|get_bind_params|ft_in|num_consts|jax\.core\.Tracer")


def test_no_module_but_the_adapter_touches_jax_internals():
    touching = sorted(str(p.relative_to(_PACKAGE)) for p in _PACKAGE.rglob("*.py")
                      if _INTERNALS.search(p.read_text()))
    assert touching == ["adapter.py"]


def test_private_jax_names_only_before_jax_0_12():
    if jax.__version_info__ >= (0, 12):
        assert adapter._FAST_PRIMITIVE is None
        jaxpr = jax.make_jaxpr(gates.tanh)(1.0)
        assert "difprog_gate" not in str(jaxpr)
    elif jax.__version_info__[:2] == (0, 10):
        assert adapter._FAST_PRIMITIVE is not None


def test_explain_finds_the_gate_in_a_traced_program():
    f = lambda x: gates.sum(gates.leaky_relu(x, negative_slope=0.2), axis=0)
    jaxpr = jax.make_jaxpr(f)(jnp.ones((2, 3)))
    calls = [adapter.gate_call(e.primitive, e.params) for e in jaxpr.jaxpr.eqns]
    assert [c.gate.name for c in calls] == ["leaky_relu", "sum"]
    assert calls[0].static == {"negative_slope": 0.2} and calls[1].static == {"axis": 0}


def test_scan_counts_on_this_jax():
    def f(c, xs, k):
        return jax.lax.scan(lambda c, x: ((c[0] * x + k, c[1] + k), c[0]), (c, c), xs)

    eqns = jax.make_jaxpr(f)(1.0, jnp.ones(3), jnp.ones(())).jaxpr.eqns
    (scan,) = [e for e in eqns if e.primitive.name == "scan"]
    assert adapter.scan_counts(scan.params) == (1, 2)


@pytest.mark.parametrize("logits, labels", [(jnp.zeros((2, 4)), np.array([0, 2**32 + 3])),
                                            (jnp.zeros(4), 2**40)])
def test_integers_that_would_wrap_are_refused(logits, labels):
    """With x64 off JAX would wrap 2**32 + 3 to 3: a finite, wrong loss."""
    if jax.config.jax_enable_x64:
        pytest.skip("64-bit integers fit when x64 is on")
    with pytest.raises(difprog.DtypeError, match="does not fit"):
        gates.softmax_cross_entropy(logits, labels)


def test_python_numbers_stay_weak_and_arrays_keep_their_dtype():
    x = jnp.ones(2, jnp.bfloat16)
    assert gates.add(x, 1.0).dtype == jnp.bfloat16
    assert gates.add(np.ones(2, np.float32), 1.0).dtype == jnp.float32


def test_python_scalars_under_grad_and_jvp_are_arrays_to_the_rules():
    """Eager jax.grad and jax.jvp hand over Python floats: forward and rules see arrays."""
    assert float(jax.grad(gates.reciprocal)(0.0)) == -np.inf
    assert float(jax.grad(gates.divide)(1.0, 0.0)) == np.inf
    value, tangent = jax.jvp(gates.square, (3.0,), (1.0,))
    assert isinstance(value, jax.Array) and float(tangent) == 6.0
    assert isinstance(jax.jvp(gates.add, (1.0, 2.0), (1.0, 1.0))[0], jax.Array)


@pytest.mark.parametrize("call", [
    lambda: gates.conv2d(jnp.ones((1, 4, 4, 1)), jnp.ones((1, 1, 1, 1)),
                         padding=((2**62, 0), (0, 0))),
    lambda: gates.max_pool2d(jnp.ones((1, 4, 4, 1)), stride=2**70),
    lambda: gates.reshape(jnp.ones(0), (2**62, 2**62, 0)),
], ids=["conv2d padding", "max_pool2d stride", "reshape shape"])
def test_sizes_xla_cannot_index_are_refused_before_they_reach_it(call):
    """Unchecked, these abort the process (JAX 0.10.2) or raise a raw runtime error."""
    with pytest.raises(difprog.ArgumentError, match="largest size XLA can index"):
        call()
