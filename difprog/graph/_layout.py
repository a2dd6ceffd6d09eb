"""Where the nodes of an explained graph go: columns by longest path from an input, rows so that
a chain of layers runs straight (see `difprog.graph._render`, which draws them)."""

from __future__ import annotations

import numpy as np


def layout(n: int, edges: list[tuple[int, int, int]]) -> tuple[list[int], list[float]]:
    """Columns by longest path from an input, inputs just before the node that reads them.

    Rows: a computed node sits at the mean row of the computed nodes it reads, so a chain of
    layers runs straight; the inputs a node reads go above and below it in turn when it also
    reads a computed value (a layer's weights), else centre on it (a lecture graph's leaves).
    Nodes of a column keep at least one row apart.
    """
    column = [0] * n
    reads: list[list[int]] = [[] for _ in range(n)]
    consumers: list[list[int]] = [[] for _ in range(n)]
    for i, j, _ in sorted(edges, key=lambda e: (e[1], e[2])):
        if i < j:
            column[j] = max(column[j], column[i] + 1)
            if i not in reads[j]:
                reads[j].append(i)
            if j not in consumers[i]:
                consumers[i].append(j)
    source = [not reads[i] and bool(consumers[i]) for i in range(n)]
    for i in range(n):
        if source[i]:
            column[i] = min(column[j] for j in consumers[i]) - 1
    row = [0.0] * n
    for c in sorted(set(column)):
        members = [i for i in range(n) if column[i] == c and not source[i]]
        desired = {}
        for i in members:
            computed = [row[r] for r in reads[i] if not source[r]]
            desired[i] = float(np.mean(computed)) if computed else 0.0
        _pack(members, desired, row, [])
    wanted: dict[int, float] = {}
    for j in range(n):
        fed = [r for r in reads[j] if source[r] and consumers[r][0] == j]
        above = any(not source[r] for r in reads[j])
        for k, r in enumerate(fed):  # above: -1, +1, -2, +2...; else centred in order
            wanted[r] = row[j] + ((k // 2 + 1) * (1 if k % 2 else -1) if above
                                  else k - (len(fed) - 1) / 2)
    for c in sorted(set(column)):
        fixed = [row[i] for i in range(n) if column[i] == c and not source[i]]
        _pack([i for i in range(n) if column[i] == c and source[i]], wanted, row, fixed)
    return column, row


def _pack(members: list[int], desired: dict[int, float], row: list[float],
          fixed: list[float]) -> None:
    """Rows near the desired ones, at least 1 apart, in the desired order, clear of `fixed`."""
    members = sorted(members, key=lambda i: (desired.get(i, 0.0), i))
    placed = []
    for i in members:
        placed.append(max(desired.get(i, 0.0), placed[-1] + 1) if placed else
                      desired.get(i, 0.0))
    if placed:  # centre the block on what was desired
        shift = float(np.mean([desired.get(i, 0.0) - p for i, p in zip(members, placed)]))
        placed = [p + shift for p in placed]
    taken = list(fixed)
    for i, wish in zip(members, placed):
        for step in range(4 * len(members) + 4 * len(fixed) + 4):
            offset = (step + 1) // 2 * 0.5 * (1 if step % 2 else -1)
            candidate = wish + offset
            if all(abs(candidate - t) >= 1 - 1e-9 for t in taken):
                break
        row[i] = candidate
        taken.append(candidate)
