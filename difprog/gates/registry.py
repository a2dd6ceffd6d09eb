"""The one registry of gates: each gate is registered in the module where it is written, with the
points at which it is proven, and everything that fans out over gates reads it from here.

    add = register(linear(_add, _add_backward), points=binary(normal), zero_size=..., ...)

`ALL` (name -> gate), `check_points(name, seed)` (what `difprog check` and the tests prove a gate
at), the hostile-input tests (zero-size inputs, bad constants, inputs whose derivatives ignore
their value) and the functions an expression may call (`difprog.expression.FUNCTIONS`) all come
from `REGISTRY`. A `Registry()` of one's own holds gates apart from the shipped ones.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable, Iterator, Mapping

import numpy as np

from difprog.arguments import one_of
from difprog.errors import ArgumentError
from difprog.gate import Gate

__all__ = ["ALL", "DOMAINS", "REGISTRY", "Entry", "Point", "Registry", "check_points", "register",
           "unregister"]

Point = tuple[tuple, dict]
DOMAINS = ("real", "positive")


@dataclasses.dataclass(frozen=True)
class Entry:
    """A registered gate and what the tests and tools need to know about it.

    Attributes:
        gate: the gate.
        points: `points(rng) -> [(args, kwargs), ...]`, where `check_gate` proves it: several
            shapes, broadcasting and a batch axis, away from kinks and ties.
        zero_size: `zero_size() -> [(args, kwargs), ...]` with an empty array among the
            arguments: the gate must give what jax.numpy gives there.
        bad: constant parameter -> values the gate must refuse with a difprog error naming it.
        affine: differentiable inputs whose derivatives do not depend on their value (a NaN
            there leaves the derivatives finite), such as every input of a linear gate.
        domain: 'real' or 'positive' for an elementwise gate or a reduction over `axis` that
            generated inputs of that domain may test (property tests); None otherwise.
        expression: the names under which `difprog explain` expressions call the gate.
    """

    gate: Gate
    points: Callable[[np.random.Generator], list[Point]]
    zero_size: Callable[[], list[Point]] | None = None
    bad: Mapping[str, tuple] = dataclasses.field(default_factory=dict)
    affine: tuple[str, ...] = ()
    domain: str | None = None
    expression: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.gate.name

    def check_points(self, seed: int = 0) -> list[Point]:
        """The (args, kwargs) at which `difprog check` and the tests check the gate."""
        return self.points(np.random.default_rng(seed))


class Registry(Mapping):
    """Gates by name, in the order registered, each with its `Entry`.

    `gates` is a plain dict name -> gate (for the shipped registry, `difprog.gates.ALL`) and
    `functions` one expression name -> gate; both follow `register` and `unregister`.
    """

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self.gates: dict[str, Gate] = {}
        self.functions: dict[str, Gate] = {}

    def register(self, gate: Gate, *, points: Callable, zero_size: Callable | None = None,
                 bad: Mapping[str, tuple] | None = None, affine: tuple[str, ...] = (),
                 domain: str | None = None, expression: bool | tuple[str, ...] = False) -> Gate:
        """Registers `gate` with its check points (see `Entry`) and returns it, so that a gate
        module writes `name = register(gate(...), points=...)`.

        `expression=True` lets expressions call the gate by its name; a tuple gives the names.
        """
        if not isinstance(gate, Gate):
            raise ArgumentError(f"register: expected a difprog gate, got {type(gate).__name__}")
        entry = Entry(gate, points, zero_size, types.MappingProxyType(dict(bad or {})),
                      tuple(affine), domain, _expression_names(gate, expression))
        self._check(entry)
        self.entries[gate.name] = entry
        self.gates[gate.name] = gate
        self.functions.update({name: gate for name in entry.expression})
        return gate

    def unregister(self, name: str) -> Entry:
        """Removes the gate `name` and returns its entry."""
        entry = self[name]
        del self.entries[name], self.gates[name]
        for function in entry.expression:
            self.functions.pop(function, None)
        return entry

    def check_points(self, name: str, seed: int = 0) -> list[Point]:
        """The (args, kwargs) at which `difprog check` and the tests check the gate `name`."""
        return self[name].check_points(seed)

    def __getitem__(self, name: str) -> Entry:
        if name not in self.entries:
            raise KeyError(f"no gate {name!r} is registered; the gates are "
                           f"{', '.join(self.entries) or 'none'}")
        return self.entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def _check(self, entry: Entry) -> None:
        gate, what = entry.gate, f"register: gate {entry.gate.name!r}"
        if gate.name in self.entries:
            raise ArgumentError(f"{what} is registered already; unregister it first")
        if not callable(entry.points) or (entry.zero_size is not None
                                          and not callable(entry.zero_size)):
            raise ArgumentError(f"{what}: points and zero_size must be functions giving a list "
                                f"of (args, kwargs)")
        checks = [("bad", set(entry.bad) - set(gate.static_names), "constant parameters",
                   gate.static_names),
                  ("affine", set(entry.affine) - set(gate.input_names), "differentiable inputs",
                   gate.input_names)]
        for argument, unknown, kind, names in checks:
            if unknown:
                raise ArgumentError(f"{what}: {argument} names {sorted(unknown)}, which are not "
                                    f"its {kind} {list(names)}")
        one_of(f"register: gate {gate.name!r}", "domain", entry.domain, (None, *DOMAINS))
        taken = [n for n in entry.expression if n in self.functions]
        if taken:
            raise ArgumentError(f"{what}: expressions already call "
                                f"{', '.join(f'{n!r} ({self.functions[n].name})' for n in taken)}")


def _expression_names(gate: Gate, expression: bool | tuple[str, ...]) -> tuple[str, ...]:
    if expression is True:
        return (gate.name,)
    if expression is False:
        return ()
    if isinstance(expression, tuple) and all(isinstance(n, str) and n.isidentifier()
                                             for n in expression):
        return expression
    raise ArgumentError(f"register: gate {gate.name!r}: expression must be True, False or a "
                        f"tuple of names, got {expression!r}")


REGISTRY = Registry()
ALL = REGISTRY.gates
register = REGISTRY.register
unregister = REGISTRY.unregister
check_points = REGISTRY.check_points
