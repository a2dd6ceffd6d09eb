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


def _beyond(rng, kink, *shape):
    """Values at least 0.2 from `kink` on either side (softplus's threshold jumps there)."""
    return kink + _away_from_zero(rng, *shape)


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


def _probabilities(rng, *shape):
    """Probability targets: positive rows that sum to 1 along the last (class) axis."""
    weights = rng.uniform(0.1, 1.0, shape)
    return weights / weights.sum(-1, keepdims=True)


def _cross_entropy(rng):
    """Integer labels first (as ever), then each option: probability targets, class weights,
    label smoothing, ignored labels (-100, and a valid class), every reduction."""
    ignoring = _labels(rng, 3, 5, classes=6)
    ignoring[0, 1] = ignoring[2, 3] = -100
    return [*_losses_with_labels(_normal)(rng),
            ((_normal(rng, 3, 5), _probabilities(rng, 3, 5)), {"label_smoothing": 0.1}),
            ((_normal(rng, 2, 2, 4), _probabilities(rng, 2, 2, 4), _positive(rng, 4)),
             {"reduction": "none", "label_smoothing": 0.2}),
            ((_normal(rng, 3, 5, 6), ignoring, _positive(rng, 6)),
             {"label_smoothing": 0.2, "ignore_index": -100, "reduction": "sum"}),
            ((_normal(rng, 2, 3, 4), _labels(rng, 2, 3, classes=4), _positive(rng, 4)),
             {"ignore_index": 1, "label_smoothing": 0.1}),
            ((_normal(rng, 5), np.int32(2)), {"reduction": "none", "label_smoothing": 1.0})]


def _hinge(rng):
    """Integer labels first (as ever), then class weights, p = 2, a margin, every reduction."""
    return [*_losses_with_labels(_hinge_scores)(rng),
            ((_hinge_scores(rng, 4, 5), _labels(rng, 4, classes=5), 0.5, _positive(rng, 5)),
             {"p": 2, "reduction": "sum"}),
            ((_hinge_scores(rng, 2, 3, 4), _labels(rng, 2, 3, classes=4)),
             {"weights": _positive(rng, 4), "reduction": "none"}),
            ((_hinge_scores(rng, 3, 6), _labels(rng, 3, classes=6)), {"p": 2})]


def _attention(rng):
    """Self-attention first (both rules matter), then cross lengths, causal, a boolean mask
    (broadcast over heads, then over batch and heads), grouped-query heads and a scale."""
    qkv = lambda q, k, v: (_normal(rng, *q), _normal(rng, *k), _normal(rng, *v))
    return [(qkv((2, 5, 2, 3), (2, 5, 2, 3), (2, 5, 2, 3)), {}),
            (qkv((1, 6, 2, 4), (1, 4, 2, 4), (1, 4, 2, 3)), {"causal": True}),
            ((*qkv((2, 4, 4, 3), (2, 5, 2, 3), (2, 5, 2, 3)), rng.random((2, 1, 4, 5)) > 0.3),
             {}),
            ((*qkv((1, 5, 2, 3), (1, 5, 2, 3), (1, 5, 2, 3)), rng.random((5, 5)) > 0.3),
             {"causal": True, "scale": 0.5})]


_POINTS: dict[str, Callable] = {
    "add": _binary(_normal),
    "subtract": _binary(_normal),
    "multiply": _binary(_normal),
    "divide": lambda rng: [((_normal(rng, *a), _away_from_zero(rng, *b)), {})
                           for a, b in [((), ()), ((3, 4), (4,)), ((2, 1, 4), (3, 1))]],
    "negative": _unary(_normal),
    "square": _unary(_normal),
    "sqrt": _unary(_positive),
    "power": lambda rng: [((_positive(rng, 3, 4), 3.0), {}), ((_positive(rng, 5), 0.5), {}),
                          ((_positive(rng, 2, 3), -1.5), {}),
                          ((_positive(rng, 3, 4), _normal(rng, 4)), {}),
                          ((_positive(rng, 2, 1, 4), _normal(rng, 3, 1)), {}),
                          ((_positive(rng, 5), _normal(rng, 2, 5)), {})],
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
    "softplus": lambda rng: [*_unary(_normal)(rng),
                             ((_normal(rng, 3, 4),), {"beta": 2.0, "threshold": 30.0}),
                             ((_beyond(rng, 0.5, 6),), {"beta": 2.0, "threshold": 1.0}),
                             ((_beyond(rng, 1.0, 2, 3),), {"beta": -1.5, "threshold": -1.5})],
    "gelu": lambda rng: [*_unary(_normal)(rng), ((_normal(rng, 3, 4),), {"approximate": True}),
                         ((3 * _normal(rng, 6),), {"approximate": True})],
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
        ((_normal(rng, 1, 7, 6, 2), _normal(rng, 2, 3, 2, 3)), {"dilation": 2, "padding": 1}),
        ((_normal(rng, 2, 6, 5, 4), _normal(rng, 3, 3, 2, 6)),
         {"groups": 2, "padding": (1, 0), "stride": 2}),
        ((_normal(rng, 1, 5, 6, 3), _normal(rng, 3, 3, 1, 6)),
         {"groups": 3, "dilation": (1, 2), "padding": "same"}),
        ((_normal(rng, 1, 6, 5, 2), _normal(rng, 3, 2, 2, 2)),
         {"padding": ((0, 2), (1, 0)), "dilation": (2, 1), "stride": (1, 2)}),
    ],
    "max_pool2d": lambda rng: [
        ((_distinct(rng, 2, 4, 4, 3),), {}),
        ((_distinct(rng, 1, 5, 5, 2),), {"window": 3, "stride": 2, "padding": "SAME"}),
        ((_distinct(rng, 1, 5, 6, 2),), {"window": (2, 3), "stride": 1}),
        ((_distinct(rng, 1, 8, 7, 2),),
         {"window": 3, "stride": 2, "padding": 1, "dilation": 2, "ceil_mode": True}),
        ((_distinct(rng, 2, 5, 6, 1),),
         {"window": (2, 3), "stride": 2, "padding": (1, 0), "ceil_mode": True}),
        ((_distinct(rng, 1, 5, 5, 2),), {"padding": ((1, 0), (0, 1)), "stride": (1, 2)}),
    ],
    "avg_pool2d": lambda rng: [
        ((_normal(rng, 2, 4, 4, 3),), {}),
        ((_normal(rng, 1, 5, 5, 2),), {"window": 3, "stride": 2, "padding": "SAME"}),
        ((_normal(rng, 1, 5, 6, 2),), {"window": (2, 3), "stride": 1}),
        ((_normal(rng, 1, 6, 7, 2),),
         {"window": 3, "stride": 2, "padding": 1, "ceil_mode": True, "count_include_pad": False}),
        ((_normal(rng, 2, 7, 8, 1),),
         {"window": (2, 3), "dilation": 2, "padding": (1, 1), "ceil_mode": True}),
        ((_normal(rng, 1, 4, 5, 2),),
         {"padding": ((1, 0), (0, 1)), "stride": 1, "count_include_pad": False}),
    ],
    "layer_norm": lambda rng: [
        ((_normal(rng, 5), _normal(rng, 5), _normal(rng, 5)), {}),
        ((_normal(rng, 3, 4), _normal(rng, 4), _normal(rng, 4)), {"eps": 1e-3}),
    ],
    "rms_norm": lambda rng: [
        ((_normal(rng, 3, 4), _normal(rng, 4)), {}),
        ((_normal(rng, 5), _normal(rng, 5)), {"eps": 1e-3}),
        ((_normal(rng, 2, 3, 4), _normal(rng, 4)), {"eps": 0}),
    ],
    "embedding": lambda rng: [
        ((_normal(rng, 5, 3), np.array([[0, 2, 2], [4, 0, 1]], np.int32)), {}),
        ((_normal(rng, 4, 2), np.int32(3)), {}),
        ((_normal(rng, 6, 4), _labels(rng, 2, 3, 2, classes=6)), {}),
    ],
    "reshape": lambda rng: [((_normal(rng, 2, 3, 4), (6, 4)), {}), ((_normal(rng, 2, 3, 2), (2, -1)), {}),
                            ((_normal(rng, 5), (5, 1)), {})],
    "concatenate": lambda rng: [(([_normal(rng, 2, 3), _normal(rng, 2, 4)],), {}),
                                (((_normal(rng, 1, 3), _normal(rng, 2, 3), _normal(rng, 3, 3)),),
                                 {"axis": 0})],
    "mse_loss": lambda rng: [((_normal(rng, *a), _normal(rng, *b)), kwargs) for a, b, kwargs in
                             [((5,), (5,), {}), ((3, 4), (3, 4), {}), ((3, 4), (4,), {}),
                              ((3, 4), (4,), {"reduction": "sum"}),
                              ((2, 1, 3), (4, 1), {"reduction": "none"})]],
    "softmax_cross_entropy": _cross_entropy,
    "multiclass_hinge_loss": _hinge,
    "l2_penalty": lambda rng: [((_normal(rng, 3, 2),), {}),
                               (({"dense_0": {"w": _normal(rng, 3, 2), "b": _normal(rng, 2)},
                                  "scale": _normal(rng)},), {})],
    "attention": _attention,
}
