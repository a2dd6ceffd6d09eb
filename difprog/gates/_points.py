"""Points at which to check each gate: several shapes, broadcasting and a batch axis, chosen
away from kinks (relu at 0, ties of max) so finite differences are meaningful.

`check_points(name, seed)` gives a list of `(args, kwargs)` for `difprog.check_gate`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Point = tuple[tuple, dict]


def check_points(name: str, seed: int = 0) -> list[Point]:
    """The (args, kwargs) at which `difprog check` and the tests check the gate `name`."""
    return _POINTS[name](np.random.default_rng(seed))


def _normal(rng, *shape):
    return rng.standard_normal(shape)


def _away_from_zero(rng, *shape):
    """Values in +-[0.2, 2]: clear of the kink at 0."""
    return rng.choice([-1.0, 1.0], shape) * rng.uniform(0.2, 2.0, shape)


def _positive(rng, *shape):
    return rng.uniform(0.5, 2.0, shape)


def _distinct(rng, *shape):
    """Values at least 0.1 apart, so a maximum has no near-tie."""
    n = int(np.prod(shape))
    return (rng.permutation(n) * 0.1 - n * 0.05).reshape(shape)


def _labels(rng, *shape, classes):
    return rng.integers(0, classes, shape).astype(np.int32)


def _unary(sample: Callable) -> Callable:
    return lambda rng: [((sample(rng, *shape),), {}) for shape in [(), (5,), (3, 4), (2, 3, 4)]]


def _binary(sample: Callable) -> Callable:
    shapes = [((), ()), ((5,), (5,)), ((3, 4), (4,)), ((2, 1, 4), (3, 1)), ((), (2, 3))]
    return lambda rng: [((sample(rng, *a), sample(rng, *b)), {}) for a, b in shapes]


def _apart(rng, *shape):
    """Values on a grid of 0.5 plus jitter under 0.05: two draws tie or differ by >= 0.4."""
    return rng.integers(-4, 5, shape) * 0.5 + rng.uniform(0, 0.05, shape)


def _reduction(rng):
    return [((_distinct(rng, 6),), {}), ((_distinct(rng, 3, 4),), {"axis": 0}),
            ((_distinct(rng, 2, 3, 4),), {"axis": (0, 2)}), ((_distinct(rng, 2, 3, 4),), {})]


def _softmax_family(rng):
    return [((_normal(rng, 5),), {}), ((_normal(rng, 3, 4),), {"axis": 0}),
            ((_normal(rng, 2, 3, 4),), {"axis": -1})]


def _losses_with_labels(make_scores):
    return lambda rng: [((make_scores(rng, 4, 5), _labels(rng, 4, classes=5)), {}),
                        ((make_scores(rng, 2, 3, 4), _labels(rng, 2, 3, classes=4)), {})]


def _hinge_scores(rng, *shape):
    """Scores 0.3 k + 0.05: every margin s_j - s_y + 1 stays >= 0.1 away from the kink at 0."""
    return rng.integers(-5, 6, shape) * 0.3 + 0.05


_POINTS: dict[str, Callable] = {
    "add": _binary(_normal),
    "subtract": _binary(_normal),
    "multiply": _binary(_normal),
    "divide": lambda rng: [((_normal(rng, *a), _away_from_zero(rng, *b)), {})
                           for a, b in [((), ()), ((3, 4), (4,)), ((2, 1, 4), (3, 1))]],
    "negative": _unary(_normal),
    "square": _unary(_normal),
    "sqrt": _unary(_positive),
    "power": lambda rng: [((_positive(rng, 3, 4), 3), {}), ((_positive(rng, 5), 0.5), {}),
                          ((_positive(rng, 2, 3), -1.5), {}), ((_normal(rng, 4), 2), {})],
    "exp": _unary(_normal),
    "log": _unary(_positive),
    "reciprocal": _unary(_away_from_zero),
    "abs": _unary(_away_from_zero),
    "maximum": lambda rng: [((_apart(rng, *a), _apart(rng, *b) + 0.2), {})
                            for a, b in [((), ()), ((5,), (5,)), ((3, 4), (4,)), ((2, 1, 4), (3, 1))]],
    "minimum": lambda rng: [((_apart(rng, *a), _apart(rng, *b) + 0.2), {})
                            for a, b in [((), ()), ((5,), (5,)), ((3, 4), (4,)), ((2, 1, 4), (3, 1))]],
    "relu": _unary(_away_from_zero),
    "leaky_relu": lambda rng: [((_away_from_zero(rng, 3, 4),), {}),
                               ((_away_from_zero(rng, 6),), {"negative_slope": 0.2})],
    "sigmoid": _unary(_normal),
    "tanh": _unary(_normal),
    "softplus": _unary(_normal),
    "gelu": _unary(_normal),
    "matmul": lambda rng: [((_normal(rng, *a), _normal(rng, *b)), {}) for a, b in
                           [((4, 3), (3, 2)), ((3,), (3, 2)), ((4, 3), (3,)),
                            ((2, 4, 3), (3, 5)), ((2, 4, 3), (2, 3, 5))]],
    "sum": _reduction,
    "mean": _reduction,
    "max": _reduction,
    "logsumexp": _softmax_family,
    "softmax": _softmax_family,
    "log_softmax": _softmax_family,
    "conv2d": lambda rng: [
        ((_normal(rng, 2, 5, 5, 3), _normal(rng, 3, 3, 3, 4)), {}),
        ((_normal(rng, 1, 6, 7, 2), _normal(rng, 3, 2, 2, 3)), {"stride": 2, "padding": "VALID"}),
        ((_normal(rng, 1, 5, 6, 2), _normal(rng, 2, 3, 2, 2)), {"stride": (2, 1)}),
    ],
    "max_pool2d": lambda rng: [
        ((_distinct(rng, 2, 4, 4, 3),), {}),
        ((_distinct(rng, 1, 5, 5, 2),), {"window": 3, "stride": 2, "padding": "SAME"}),
        ((_distinct(rng, 1, 5, 6, 2),), {"window": (2, 3), "stride": 1}),
    ],
    "avg_pool2d": lambda rng: [
        ((_normal(rng, 2, 4, 4, 3),), {}),
        ((_normal(rng, 1, 5, 5, 2),), {"window": 3, "stride": 2, "padding": "SAME"}),
        ((_normal(rng, 1, 5, 6, 2),), {"window": (2, 3), "stride": 1}),
    ],
    "layer_norm": lambda rng: [
        ((_normal(rng, 5), _normal(rng, 5), _normal(rng, 5)), {}),
        ((_normal(rng, 3, 4), _normal(rng, 4), _normal(rng, 4)), {"eps": 1e-3}),
    ],
    "reshape": lambda rng: [((_normal(rng, 2, 3, 4), (6, 4)), {}), ((_normal(rng, 2, 3, 2), (2, -1)), {}),
                            ((_normal(rng, 5), (5, 1)), {})],
    "concatenate": lambda rng: [(([_normal(rng, 2, 3), _normal(rng, 2, 4)],), {}),
                                (((_normal(rng, 1, 3), _normal(rng, 2, 3), _normal(rng, 3, 3)),),
                                 {"axis": 0})],
    "mse_loss": lambda rng: [((_normal(rng, *a), _normal(rng, *b)), {})
                             for a, b in [((5,), (5,)), ((3, 4), (3, 4)), ((3, 4), (4,))]],
    "softmax_cross_entropy": _losses_with_labels(_normal),
    "multiclass_hinge_loss": _losses_with_labels(_hinge_scores),
    "l2_penalty": lambda rng: [((_normal(rng, 3, 2),), {}),
                               (({"dense_0": {"w": _normal(rng, 3, 2), "b": _normal(rng, 2)},
                                  "scale": _normal(rng)},), {})],
}
