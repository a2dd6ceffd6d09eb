"""The one jaxpr walker of graph/: explain's tracing and flat code both interpret jaxprs with it.

`CALLS` is the one table of call-like primitives, each with the param that holds its body;
`Walker.walk` runs a jaxpr equation by equation over values of a subclass's own kind (a traced
step's names, numpy source text), reads literals and constants once, and inlines calls unless
the subclass's `descend` says no.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax.extend.core as jex
import numpy as np

from difprog.adapter import open_jaxpr


class Call(NamedTuple):
    """A call-like primitive: the param holding its body, and whether the body has custom rules."""

    body: str
    custom: bool = False


CALLS = {
    "jit": Call("jaxpr"), "pjit": Call("jaxpr"), "closed_call": Call("call_jaxpr"),
    "core_call": Call("call_jaxpr"), "checkpoint": Call("jaxpr"), "remat": Call("jaxpr"),
    "remat2": Call("jaxpr"), "custom_jvp_call": Call("call_jaxpr", custom=True),
    "custom_vjp_call": Call("call_jaxpr", custom=True),
    "custom_vjp_call_jaxpr": Call("fun_jaxpr", custom=True),
}


def call_of(eqn: Any) -> Call | None:
    """The equation's entry in CALLS, or None when it calls nothing (or its body is not there)."""
    call = CALLS.get(eqn.primitive.name)
    return call if call is not None and call.body in eqn.params else None


def function_name(eqn: Any) -> str | None:
    """The name of the function a call equation calls (`relu`), where JAX recorded one."""
    call = call_of(eqn)
    name = eqn.params.get("name")
    if name is None and call is not None:
        jaxpr, _ = open_jaxpr(eqn.params[call.body])
        name = getattr(jaxpr.debug_info, "func_name", None)
    return name if isinstance(name, str) and name.isidentifier() else None


def literal_value(var: Any) -> np.ndarray | None:
    """A literal operand's value as a numpy array of its dtype; None for a variable."""
    if isinstance(var, jex.Literal):
        return np.asarray(var.val, var.aval.dtype)
    return None


class Walker:
    """Runs jaxprs over values of a subclass's kind; the subclass says what an equation gives."""

    prune = False  # True: write only the equations that the wanted outputs need

    def walk(self, body: Any, args: Sequence, wanted: Sequence[bool] | None = None,
             consts: Sequence | None = None) -> list:
        """body's outputs (None where not wanted) from its arguments; consts replace its own."""
        jaxpr, own = open_jaxpr(body)
        env = dict(zip(jaxpr.constvars, map(self.constant, own) if consts is None else consts))
        env.update(zip(jaxpr.invars, args))
        wanted = [True] * len(jaxpr.outvars) if wanted is None else list(wanted)
        equations = _needed(jaxpr, wanted) if self.prune else list(jaxpr.eqns)
        uses = Counter(v for eqn in equations for v in eqn.invars if isinstance(v, jex.Var))
        returned = Counter(v for v, w in zip(jaxpr.outvars, wanted)
                           if w and isinstance(v, jex.Var))
        for eqn in equations:
            ins = [self.read(env, v) for v in eqn.invars]
            call = call_of(eqn)
            if call is not None and self.descend(eqn, call):
                outs = self.call(eqn, call, ins)
            else:
                outs = self.equation(eqn, ins)
            for var, out in zip(eqn.outvars, outs):
                if not isinstance(var, jex.DropVar):
                    env[var] = self.bind(out, uses[var], returned[var])
        return [self.read(env, v) if w else None for v, w in zip(jaxpr.outvars, wanted)]

    def call(self, eqn: Any, call: Call, ins: list) -> list:
        """A call's outputs: its body walked on the operands it takes (the last ones)."""
        body = eqn.params[call.body]
        jaxpr, _ = open_jaxpr(body)
        return self.walk(body, ins[len(ins) - len(jaxpr.invars):])

    def read(self, env: dict, var: Any) -> Any:
        value = literal_value(var)
        return env[var] if value is None else self.literal(value)

    def descend(self, eqn: Any, call: Call) -> bool:
        """Whether to inline this call (True) or treat it as one equation (False)."""
        return True

    def bind(self, value: Any, uses: int, returned: int) -> Any:
        """What later equations read for an output (`uses` reads of it, `returned` as outputs)."""
        return value

    def literal(self, value: np.ndarray) -> Any:
        raise NotImplementedError

    def constant(self, value: Any) -> Any:
        return self.literal(np.asarray(value))

    def equation(self, eqn: Any, ins: list) -> list:
        raise NotImplementedError


def _needed(jaxpr: Any, wanted: Sequence[bool]) -> list:
    """The equations the wanted outputs depend on, in order."""
    live = {v for v, w in zip(jaxpr.outvars, wanted) if w and isinstance(v, jex.Var)}
    equations = []
    for eqn in reversed(jaxpr.eqns):
        if any(v in live for v in eqn.outvars):
            equations.append(eqn)
            live |= {v for v in eqn.invars if isinstance(v, jex.Var)}
    return equations[::-1]
