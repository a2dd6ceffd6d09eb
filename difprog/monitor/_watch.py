"""What a monitor watches in a model, and when a number is a diagnosis: `Thresholds`, `Watch`,
`watch(model, example_input)`."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax

from difprog import arguments, layers
from difprog.errors import ArgumentError

SATURATING = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0)}  # kind: the bounds of its outputs
DYING = ("relu",)  # activations whose units die (output 0 for every input)


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """When a recorded number is a diagnosis (each is one line in the log when it starts and
    when it stops, and one entry of health.json's `diagnoses`).

    Attributes:
        vanishing: a weight's gradient norm below `vanishing` times that of the top weight (the
            one nearest the loss) is vanishing (default: 4 orders of magnitude below).
        exploding: above `exploding` times the top weight's, it is exploding.
        update_ratio: ||update|| / ||weight|| of a step above this says the learning rate is too
            large (CS231n's rule of thumb: about 1e-3 is healthy). Adam's first update is the
            learning rate times the gradient's sign, a ratio of lr / rms(w): at difprog's
            default 2e-3, 0.14 for the 9,216 inputs of the Fashion-MNIST CNN's dense layer;
            at 30 times that rate, 4.2.
        dead: a ReLU layer with more than this fraction of its units dead (output 0 for every
            example and position of the batch; a unit is a feature or channel, the last axis).
        saturated: a sigmoid or tanh layer with more than this fraction of its outputs within
            `margin` of its bounds (sigmoid: below 0.01 or above 0.99; tanh: |y| above 0.98).
        margin: that margin, as a fraction of the output range.
        patience: a statistic of the batch (vanishing, exploding, dead, saturated) is diagnosed
            once seen in this many records in a row (from the first of them) and ends once
            missing from as many, so the noise of one batch starts nothing; the update ratio,
            the step's own size, counts at once.
    """

    vanishing: float = 1e-4
    exploding: float = 1e4
    update_ratio: float = 0.3
    dead: float = 0.75
    saturated: float = 0.5
    margin: float = 0.01
    patience: int = 3

    def __post_init__(self):
        for name in ("vanishing", "exploding", "update_ratio"):
            arguments.real("Thresholds", name, getattr(self, name), positive=True)
        for name in ("dead", "saturated", "margin"):
            arguments.real("Thresholds", name, getattr(self, name), minimum=0, maximum=1)
        object.__setattr__(self, "patience",
                           arguments.positive_int("Thresholds", "patience", self.patience))


@dataclasses.dataclass(frozen=True)
class Watch:
    """What a monitor records of one model, every `every` steps.

    Attributes:
        every: record every this many steps (step 0 first).
        thresholds: when a number is a diagnosis.
        weights: the paths of the weights ('dense_0/w': params of two or more axes), in the
            order the forward pass uses them; the last is the top weight. The weights of a
            `layers.repeat` are one stack (its norms are the whole stack's).
        activations: `{path: kind}` of the activation layers ('relu_1': 'relu'), in forward order;
            their outputs are captured (`model.run(..., capture=watch.capture)`). Those inside
            `remat` or `repeat` (a checkpoint or a scan) cannot be captured and are not watched.
        sources: `{activation path: the layer whose output it takes}` where there is one.
    """

    every: int
    thresholds: Thresholds
    weights: tuple[str, ...]
    activations: dict[str, str]
    sources: dict[str, str]

    @property
    def capture(self) -> tuple[str, ...]:
        """The paths to pass to `model.run(..., capture=...)`."""
        return tuple(self.activations)

    def layer(self, path: str) -> str:
        """The layer of a weight or an activation: 'dense_0' for 'dense_0/w'."""
        return path if path in self.activations or "/" not in path else path.rsplit("/", 1)[0]

    def label(self, path: str) -> str:
        """How a diagnosis names a weight or an activation: 'dense_0', 'relu_1 (after conv2d_1)'."""
        source = self.sources.get(path)
        return f"{path} (after {source})" if source else self.layer(path)

    def __hash__(self) -> int:  # a static argument of jitted code
        return hash((self.every, self.thresholds, self.weights, tuple(self.activations.items())))


def watch(model: layers.Layer, example_input: Any, *, every: int = 10,
          thresholds: Thresholds | None = None) -> Watch:
    """What to record of `model` for inputs like `example_input` (only its shape and dtype are
    used; nothing is computed).

    Example:
        >>> w = monitor.watch(models.mlp(), jnp.zeros((1, 8, 8, 1)))
        >>> w.weights, w.activations
        (('dense_0/w', 'dense_1/w', 'dense_2/w'), {'relu_0': 'relu', 'relu_1': 'relu'})
    """
    every = arguments.positive_int("monitor.watch", "every", every)
    thresholds = Thresholds() if thresholds is None else thresholds
    if not isinstance(thresholds, Thresholds):
        raise ArgumentError(f"monitor.watch: thresholds must be a monitor.Thresholds, got "
                            f"{type(thresholds).__name__}")
    x = jax.ShapeDtypeStruct(example_input.shape, example_input.dtype)
    params = jax.eval_shape(model.init, jax.random.key(0), x)
    visits: list = []

    def leaves(p, x):  # traced, so that `is` tells which layer takes which one's output
        rows = [v for v in layers.walk(model, p, x) if v.path]
        visits.extend((v.path, v.layer, next((u.path for u in reversed(rows[:i])
                                              if u.output is v.input
                                              and not u.layer.children()), None))
                      for i, v in enumerate(rows))

    jax.eval_shape(leaves, params, x)
    order = {path: i for i, (path, _, _) in enumerate(visits)}
    named = [("/".join(str(getattr(k, "key", k)) for k in path), leaf)
             for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]]
    weights = sorted((name for name, leaf in named if len(leaf.shape) >= 2),
                     key=lambda name: _position(name, order))
    watched = [(path, layer, source) for path, layer, source in visits
               if isinstance(layer, (layers.Activation, layers.LeakyRelu))]
    return Watch(every, thresholds, tuple(weights),
                 {path: layer.kind for path, layer, _ in watched},
                 {path: source for path, _, source in watched if source})


def _position(name: str, order: dict[str, int]) -> int:
    """Where a param is used in the forward pass: its layer's visit, or (inside `remat` or
    `repeat`, whose layers the walk does not visit) its nearest visited container's."""
    parts = name.split("/")[:-1]
    for end in range(len(parts), 0, -1):
        if "/".join(parts[:end]) in order:
            return order["/".join(parts[:end])]
    return len(order)
