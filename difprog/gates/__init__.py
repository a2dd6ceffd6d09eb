"""Every gate difprog ships, each with its hand-written backward and tangent rules.

`ALL` maps each gate's name to the gate; `check_points(name, seed)` gives the points at which
`difprog check` and the tests prove it. Two helpers for writing gates and layers:
`unbroadcast(g, shape)` sums a cotangent back to an input's shape, and `pair(value, name)` reads
an int or a pair of ints (a window, stride or kernel size) as a pair.
"""

from difprog.gate import unbroadcast
from difprog.gates._points import check_points
from difprog.gates._util import pair
from difprog.gates.activations import gelu, leaky_relu, relu, sigmoid, softplus, tanh
from difprog.gates.arithmetic import (
    abs,
    add,
    divide,
    exp,
    log,
    maximum,
    minimum,
    multiply,
    negative,
    power,
    reciprocal,
    sqrt,
    square,
    subtract,
)
from difprog.gates.attention import attention
from difprog.gates.conv import avg_pool2d, conv2d, max_pool2d
from difprog.gates.embedding import embedding
from difprog.gates.linalg import matmul
from difprog.gates.losses import (
    l2_penalty,
    mse_loss,
    multiclass_hinge_loss,
    softmax_cross_entropy,
)
from difprog.gates.normalization import layer_norm, rms_norm
from difprog.gates.reductions import log_softmax, logsumexp, max, mean, softmax, sum
from difprog.gates.shape import concatenate, reshape

ALL = {
    gate.name: gate
    for gate in (
        add, subtract, multiply, divide, negative, square, sqrt, power, exp, log, reciprocal,
        abs, maximum, minimum,
        relu, leaky_relu, sigmoid, tanh, softplus, gelu,
        matmul, sum, mean, max, logsumexp, softmax, log_softmax,
        conv2d, max_pool2d, avg_pool2d,
        layer_norm, rms_norm, embedding,
        reshape, concatenate,
        mse_loss, softmax_cross_entropy, multiclass_hinge_loss, l2_penalty,
        attention,
    )
}

__all__ = ["ALL", "check_points", "pair", "unbroadcast", *ALL]
