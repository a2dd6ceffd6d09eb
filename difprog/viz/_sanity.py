"""Sanity checks of attribution methods: completeness of integrated gradients, and the
cascading model-randomisation test (Adebayo, Gilmer, Muelly, Goodfellow, Hardt & Kim 2018,
"Sanity checks for saliency maps")."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from difprog import arguments, inline
from difprog.errors import ArgumentError
from difprog.layers import Layer
from difprog.viz._attribution import (
    _baseline,
    _chunk,
    _inputs,
    _integrated,
    _key,
    _scores,
    layer_outputs,
)
from difprog.viz._attribution_grid import GRADIENT_METHODS, attributions

COMPLETENESS_STEPS = (8, 16, 32, 64, 128)
_DEFAULT_STEPS = 64  # integrated_gradients' default
_INPUT_DOMINATED = {  # why these maps hold still where the input is 0, whatever the weights
    "gradient_times_input": "the input times a gradient is 0 wherever the input is 0",
    "integrated_gradients": "with a black baseline the maps are 0 wherever the input is black",
    "occlusion": "covering with 0 changes nothing where the input is already 0"}


@dataclasses.dataclass(frozen=True)
class Completeness:
    """How far integrated gradients' sums are from `score(x) - score(baseline)`, per steps.

    Attributes:
        steps: the numbers of path points tried.
        mean_errors, max_errors: the relative error |sum(attributions) - delta| / |delta| per
            steps, the mean and the largest over the images.
        tolerance: the largest error allowed at integrated_gradients' default 64 steps.
    """

    steps: tuple[int, ...]
    mean_errors: tuple[float, ...]
    max_errors: tuple[float, ...]
    tolerance: float

    @property
    def ok(self) -> bool:
        """Whether every image's error at the default 64 steps is within the tolerance."""
        return bool(self.max_errors[self.steps.index(_DEFAULT_STEPS)] <= self.tolerance)

    _repr_html_ = inline.text  # in a notebook: the table above

    def __str__(self) -> str:
        lines = [f"completeness of integrated gradients (Riemann midpoint rule) {self._verdict()}",
                 f"  {'steps':>6} {'mean error':>11} {'max error':>10}"]
        lines += [f"  {s:>6} {m:>11.2e} {w:>10.2e}"
                  for s, m, w in zip(self.steps, self.mean_errors, self.max_errors)]
        return "\n".join(lines)

    def _verdict(self) -> str:
        """'holds (...)', or by how much it misses at the default steps and what would do."""
        if self.ok:
            return f"holds (tolerance {self.tolerance:.0%} at {_DEFAULT_STEPS} steps)"
        worst = self.max_errors[self.steps.index(_DEFAULT_STEPS)]
        head = (f"is not met at {_DEFAULT_STEPS} steps: the attributions add up to the change of "
                f"the score only to within {worst:.1%} (tolerance {self.tolerance:.0%})")
        more = [(s, w) for s, w in zip(self.steps, self.max_errors) if s > _DEFAULT_STEPS]
        if not more:
            return f"{head}; try more steps than {_DEFAULT_STEPS}"
        if more[-1][1] >= worst:
            return (f"{head}, and more steps do not bring them closer: look for what the path "
                    f"from the baseline crosses (a non-finite score, a jump)")
        enough = [s for s, w in more if w <= self.tolerance]
        advice = (f"with {enough[0]} steps it holds (steps={enough[0]})" if enough else
                  f"none of the steps tried is enough; try more than {more[-1][0]}")
        return (f"{head}; the error falls as the steps grow, so it is the path integral's "
                f"discretisation error for this model, not a wrong gradient: {advice}")

    def to_json(self) -> dict:
        return {"rule": "riemann midpoint", "steps": list(self.steps), "ok": self.ok,
                "mean_relative_errors": list(self.mean_errors), "tolerance": self.tolerance,
                "max_relative_errors": list(self.max_errors)}


def completeness(model: Layer, params: Any, x: jax.Array, classes: int | Sequence[int],
                 baseline: Any = None, steps: Sequence[int] = COMPLETENESS_STEPS,
                 tolerance: float = 0.01) -> Completeness:
    """The completeness axiom of integrated gradients (Sundararajan et al. 2017): the
    attributions of each image sum to `score(x) - score(baseline)`; the relative error of the
    midpoint rule for each number of `steps` (64, the default, is always included).

    Example:
        >>> print(viz.completeness(model, params, data.x_test[:16], data.y_test[:16]))
    """
    x, targets = _inputs("completeness", model, params, x, classes)
    base = _baseline("completeness", baseline, x)
    if any(not arguments.is_int(s) or s <= 0 for s in steps):
        raise ArgumentError(f"completeness: steps must be positive ints, got {list(steps)}")
    steps = tuple(sorted({*map(int, steps), _DEFAULT_STEPS}))
    delta = np.asarray(_scores(model, params, x, targets) - _scores(model, params, base, targets),
                       np.float64)
    means, worst = [], []
    chunk = _chunk(math.gcd(*steps), x.size)  # one compile for every number of steps
    for count in steps:
        summed = np.asarray(_integrated(model, params, x, targets, base, count, chunk),
                            np.float64).reshape(len(x), -1).sum(1)
        error = np.abs(summed - delta) / np.maximum(np.abs(delta), 1e-12)
        means.append(float(error.mean()))
        worst.append(float(error.max()))
    return Completeness(steps, tuple(means), tuple(worst), tolerance)


@dataclasses.dataclass(frozen=True)
class Randomization:
    """The cascading randomisation test: `correlations[m][k]` is the mean over images of the
    Spearman rank correlation of |maps| of method m between the trained model and the model
    with `layers[:k + 1]` (top first) re-initialised.

    `ok` when, for every gradient method tested, the correlation with every layer re-initialised
    is below `threshold`: the maps depend on what the model learnt.
    """

    methods: tuple[str, ...]
    layers: tuple[str, ...]
    correlations: tuple[tuple[float, ...], ...]
    threshold: float
    over: str = "all"

    @property
    def passed(self) -> dict[str, bool]:
        """Per method: whether its correlation with every layer re-initialised is below the
        threshold."""
        return {m: bool(row[-1] < self.threshold)
                for m, row in zip(self.methods, self.correlations)}

    @property
    def ok(self) -> bool:
        return all(passed for m, passed in self.passed.items() if m in GRADIENT_METHODS)

    def verdict(self, method: str) -> str:
        """What the test says of `method`'s maps, in words."""
        if self.passed[method]:
            return "follows the model's weights"
        if method in _INPUT_DOMINATED:
            return f"dominated by the input ({_INPUT_DOMINATED[method]})"
        return "barely changes with the weights: it explains the input, not the model"

    _repr_html_ = inline.text  # in a notebook: the table above

    def __str__(self) -> str:
        width = max(len(m) for m in self.methods)
        lines = [f"model randomisation (Adebayo et al. 2018), {self.over} positions: the "
                 f"Spearman rank correlation of |maps| with the trained model's as the layers "
                 f"are re-initialised, top first; a method follows the model's weights when it "
                 f"falls below {self.threshold} with all of them re-initialised",
                 f"  {'method':<{width}} " + " ".join(f"{'+' + n:>10}" for n in self.layers)]
        lines += [f"  {m:<{width}} " + " ".join(f"{c:>10.3f}" for c in row)
                  + f"  {self.verdict(m)}" for m, row in zip(self.methods, self.correlations)]
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {"methods": list(self.methods), "layers_randomized_top_first": list(self.layers),
                "spearman": {m: list(row) for m, row in zip(self.methods, self.correlations)},
                "threshold": self.threshold, "passed": self.passed, "ok": self.ok,
                "positions": self.over}


def model_randomization(model: Layer, params: Any, x: jax.Array, classes: int | Sequence[int],
                        key: jax.Array, *, methods: Sequence[str] = GRADIENT_METHODS,
                        threshold: float = 0.5, over: str = "all", **settings: Any
                        ) -> Randomization:
    """The cascading model-randomisation test of Adebayo et al. (2018).

    The layers with params are re-initialised from `model.init` with `key`, the top (output)
    layer first, then the next one down, and so on; after each, every method's maps are
    computed again and compared with the trained model's by the Spearman rank correlation of
    their absolute values, per image, averaged over the images. A method whose maps barely
    change when the weights are random explains the input, not the model. A map that is
    constant (such as an all-zero Grad-CAM) has no ranks: its correlation counts as 0.

    Gradient x input and integrated gradients (black baseline) are 0 wherever the input is 0,
    whatever the weights; on images with a black background (the digits: 49% of the pixels)
    those tied zeros alone keep their correlation high (0.9 on the digits CNN), Adebayo et al.'s
    observation that these maps are dominated by the input. `over='foreground'` ranks only the
    positions where the image is not 0 (any channel), which measures what the weights decide.

    Args:
        model, params, x, classes: the trained model and the images explained.
        key: a PRNG key: the random weights (and SmoothGrad's noise, the same for both models).
        methods: names from `viz.METHODS`.
        threshold: the correlation a method must fall below with every layer re-initialised.
        over: 'all' positions, or 'foreground': those where the image is not 0.
        settings: the methods' settings, as `viz.attributions` takes (steps, samples, layer...).

    Example:
        >>> check = viz.model_randomization(model, params, x, y, jax.random.key(1))
        >>> print(check); assert check.ok
    """
    return randomizations(model, params, x, classes, key, methods=methods, threshold=threshold,
                          over=(over,), **settings)[0]


def randomizations(model: Layer, params: Any, x: jax.Array, classes: int | Sequence[int],
                   key: jax.Array, *, methods: Sequence[str] = GRADIENT_METHODS,
                   threshold: float = 0.5, over: Sequence[str] = ("all", "foreground"),
                   **settings: Any) -> tuple[Randomization, ...]:
    """`model_randomization` for each of `over` from one cascade of maps: the same maps ranked
    over all positions and over the foreground."""
    x, targets = _inputs("model_randomization", model, params, x, classes)
    if isinstance(over, str) or not over or any(o not in ("all", "foreground") for o in over):
        raise ArgumentError(f"model_randomization: over must be 'all' or 'foreground', got "
                            f"{over!r}")
    arguments.real("model_randomization", "threshold", threshold, minimum=-1, maximum=1)
    if not any(m in GRADIENT_METHODS for m in methods):
        raise ArgumentError(f"model_randomization: methods {list(methods)} hold no gradient "
                            f"method, so there is nothing to pass or fail; add one of "
                            f"{list(GRADIENT_METHODS)}")
    init_key, noise_key = jax.random.split(_key("model_randomization", key))
    params = jax.tree.map(_committed, params)  # one placement for every stage: one compile
    explain = lambda p: attributions(model, p, x, targets, methods, key=noise_key, **settings)
    trained = explain(params)
    fresh = model.init(init_key, x)
    layers = trainable_layers(model, params, x)[::-1]
    wheres = {"all": None, "foreground": np.asarray(x).any(-1)}
    rows = {(o, m): [] for o in over for m in methods}
    randomized = params
    for path in layers:  # fresh weights placed as the trained ones (no recompiles)
        placed = jax.tree.map(lambda new, old: jax.device_put(new, getattr(old, "sharding", None)),
                              _at(fresh, path), _at(params, path))
        randomized = _replace(randomized, path, placed)
        maps = explain(randomized)
        for o, m in rows:
            rows[o, m].append(spearman(np.abs(trained[m]), np.abs(maps[m]), wheres[o]))
    return tuple(Randomization(tuple(methods), tuple(layers),
                               tuple(tuple(rows[o, m]) for m in methods), float(threshold), o)
                 for o in over)


def _committed(leaf: Any) -> jax.Array:
    leaf = jax.numpy.asarray(leaf)
    return jax.device_put(leaf, leaf.sharding)


def trainable_layers(model: Layer, params: Any, x: jax.Array) -> list[str]:
    """The paths of the layers that own params (not containers), in the order they run."""
    return [path for path in layer_outputs(model, params, x) if _owns_params(_at(params, path))]


def _owns_params(node: Any) -> bool:
    return isinstance(node, Mapping) and bool(node) and \
        not any(isinstance(v, Mapping) for v in node.values())


def _at(params: Any, path: str) -> Any:
    for key in path.split("/"):
        if not isinstance(params, Mapping) or key not in params:
            return None
        params = params[key]
    return params


def _replace(params: Mapping, path: str, value: Any) -> dict:
    head, _, rest = path.partition("/")
    return {**params, head: _replace(params[head], rest, value) if rest else value}


def spearman(a: Any, b: Any, where: Any = None) -> float:
    """The Spearman rank correlation of a[i] and b[i] (flattened, ties given their mean rank),
    averaged over i; a constant map counts as 0. `where` (N, H, W), when given, keeps only
    those positions of each map (all channels of a position)."""
    from scipy.stats import rankdata

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ArgumentError(f"spearman: maps of shapes {a.shape} and {b.shape}; expected equal")
    if where is not None and np.shape(where) != a.shape[:3]:
        raise ArgumentError(f"spearman: where has shape {np.shape(where)}; expected the maps' "
                            f"positions {a.shape[:3]} (N, H, W)")
    values = []
    for i in range(len(a)):
        keep = None if where is None else np.asarray(where[i], bool)
        if keep is not None and keep.sum() < 2:  # no ranks to correlate
            values.append(0.0)
            continue
        p, q = (rankdata(m.ravel() if keep is None else m[keep].ravel()) for m in (a[i], b[i]))
        p, q = p - p.mean(), q - q.mean()
        norm = np.sqrt((p @ p) * (q @ q))
        values.append(float(p @ q / norm) if norm > 0 else 0.0)
    return float(np.mean(values))
