"""The nodes of an explained graph: one per input, constant and step, or one per layer."""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

from difprog.graph._trace import Program, Step


@dataclasses.dataclass(frozen=True)
class Node:
    """One node of an explained graph, with its values and gradients.

    Attributes:
        name: the value it computes (`s3`; `L` for f's output; an input's name; a layer's path).
        op: the gate or primitive (`multiply`, `reshape`), `input`, `constant`, or for a group the
            operations inside it.
        inputs: the values it reads: names of other nodes, or constants such as 1.0.
        outputs: the values it computes (its own name, or a group's values read outside it).
        value: its output: an array, or a tuple of arrays for several outputs.
        upstream: dL/d value, in the shape of value (for an input: the total gradient).
        local: d value / d input for each input, where that Jacobian is small (scalars give
            numbers); None where it is not formed.
        downstream: this node's share of dL/d input for each input: local x upstream, computed
            by the node's backward rule (None for constants and integer inputs).
        kind: `input`, `constant`, `gate`, `primitive` or `group`.
        scope: the layer path (jax.named_scope) it ran in; '' outside any layer.
        rule: which backward rule computed downstream.
        steps: the indices of the program's steps it stands for (one, or a layer's; none for
            an input or a constant).
    """

    name: str
    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    value: Any
    upstream: Any
    local: tuple[Any, ...] | None
    downstream: tuple[Any, ...]
    kind: str
    scope: str = ""
    rule: str = ""
    steps: tuple[int, ...] = ()


def nodes(program: Program, passes: Any) -> tuple[Node, ...]:
    """One node per input, constant and step, from the values and gradients of the passes."""
    values, grads = passes.values, passes.grads
    out = [Node(name=n, op="input", inputs=(), outputs=(n,), value=values[n],
                upstream=grads.get(n), local=None, downstream=(), kind="input")
           for n in program.inputs]
    out += [Node(name=n, op="constant", inputs=(), outputs=(n,), value=v, upstream=None,
                 local=None, downstream=(), kind="constant")
            for n, v in program.constants.items()]
    for index, (step, downstream, local) in enumerate(
            zip(program.steps, passes.contributions, passes.locals)):
        out.append(Node(
            name=node_name(step), op=step.op, inputs=tuple(map(str, step.inputs)),
            outputs=step.outputs, value=_one_or_tuple([values[o] for o in step.outputs]),
            upstream=_one_or_tuple([grads.get(o) for o in step.outputs]), local=local,
            downstream=tuple(downstream or [None] * len(step.inputs)), kind=step.kind,
            scope=step.scope, rule=step.rule, steps=(index,)))
    return tuple(out)


def by_layer(program: Program, passes: Any, depth: int | None) -> tuple[Node, ...]:
    """One node per layer path (steps outside any layer stay single nodes)."""
    single = {n.name: n for n in nodes(program, passes)}
    members = _layer_members(program, depth)
    produced_in = {o: key for key, idx in members.items()
                   for i in idx for o in program.steps[i].outputs}
    out = [n for n in single.values() if n.kind in ("input", "constant")]
    for key, indices in members.items():
        if key.startswith("\0"):
            out.append(single[node_name(program.steps[indices[0]])])
        else:
            out.append(_group(program, passes, key, indices, produced_in))
    return tuple(out)


def _layer_members(program: Program, depth: int | None) -> dict[str, list[int]]:
    """Step indices by layer key (a path, numbered when called again); "\0i" for a lone step."""
    scopes = [step.scope.split("/") for step in program.steps if step.scope]
    shared = 0
    while scopes and all(len(s) > shared + 1 and s[shared] == scopes[0][shared] for s in scopes):
        shared += 1
    members: dict[str, list[int]] = {}
    previous, calls = None, Counter()
    for index, step in enumerate(program.steps):
        path = "/".join(step.scope.split("/")[shared:][:depth])
        if not step.scope:
            previous = None
            members[f"\0{index}"] = [index]
            continue
        if path != previous:  # a layer called again (shared weights) is a new node
            calls[path] += 1
            previous = path
        key = path if calls[path] == 1 else f"{path} ({calls[path]})"
        members.setdefault(key, []).append(index)
    return members


def _group(program: Program, passes: Any, key: str, indices: list[int],
           produced_in: dict[str, str]) -> Node:
    """The node of one layer: its steps' inputs from outside, and outputs read outside."""
    steps = [program.steps[i] for i in indices]
    inputs: dict[str, Any] = {}
    for i in indices:
        step_inputs = program.steps[i].inputs
        for ref, g in zip(step_inputs, passes.contributions[i] or [None] * len(step_inputs)):
            if isinstance(ref, str) and produced_in.get(ref) != key:
                inputs[ref] = g if inputs.get(ref) is None else (
                    inputs[ref] if g is None else inputs[ref] + g)
    read_outside = {r for j, s in enumerate(program.steps) if j not in indices
                    for r in s.inputs if isinstance(r, str)} | {program.output}
    outputs = tuple(o for s in steps for o in s.outputs if o in read_outside)
    ops = list(dict.fromkeys(s.op for s in steps))
    return Node(name=key, op=", ".join(ops), inputs=tuple(inputs), outputs=outputs,
                value=_one_or_tuple([passes.values[o] for o in outputs]),
                upstream=_one_or_tuple([passes.grads.get(o) for o in outputs]), local=None,
                downstream=tuple(inputs.values()), kind="group", scope=steps[0].scope,
                rule=f"{len(steps)} steps: the backward rules of {', '.join(ops)}",
                steps=tuple(indices))


def node_name(step: Step) -> str:
    """A step's node name: its output, or its outputs joined."""
    return step.outputs[0] if len(step.outputs) == 1 else ", ".join(step.outputs)


def _one_or_tuple(items: list) -> Any:
    return items[0] if len(items) == 1 else tuple(items)
