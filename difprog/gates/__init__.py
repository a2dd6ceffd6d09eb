"""Every gate difprog ships, each with its hand-written backward and tangent rules.

Each gate is registered where it is written (`difprog.gates.registry.register`), with the points
at which it is proven: `ALL` maps each gate's name to the gate, `REGISTRY` holds each gate's
entry, and `check_points(name, seed)` gives the points at which `difprog check` and the tests
prove it. Helpers for writing gates and layers: `unbroadcast(g, shape)` sums a cotangent back
to an input's shape, `pair(value, name)` reads an int or a pair of ints (a window, stride or
kernel size) as a pair, and `layer_padding(owner, padding)` checks any padding form a
convolution or pool takes and returns it as the gate will read it.
"""

# isort: skip_file
# The family modules register their gates as they are imported: this order is ALL's order
# (difprog check's and the tests'), so these imports are not sorted.
from difprog.gate import unbroadcast
from difprog.gates._util import layer_padding, pair
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
from difprog.gates.activations import gelu, leaky_relu, relu, sigmoid, softplus, tanh
from difprog.gates.linalg import matmul
from difprog.gates.reductions import log_softmax, logsumexp, max, mean, softmax, sum
from difprog.gates.conv import avg_pool2d, conv2d, max_pool2d
from difprog.gates.normalization import batch_norm, layer_norm, rms_norm
from difprog.gates.embedding import embedding
from difprog.gates.shape import concatenate, reshape
from difprog.gates.losses import (
    l2_penalty,
    mse_loss,
    multiclass_hinge_loss,
    softmax_cross_entropy,
)
from difprog.gates.attention import attention
from difprog.gates.registry import ALL, REGISTRY, check_points, register, unregister

__all__ = ["ALL", "REGISTRY", "check_points", "layer_padding", "pair", "register", "unbroadcast",
           "unregister", *ALL]
