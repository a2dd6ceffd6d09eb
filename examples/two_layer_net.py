"""The two-layer net in 20 lines (N=64, D_in=1000, H=100, D_out=10, sigmoid hidden layer,
squared loss), written with difprog gates: jax.grad runs each gate's hand-written backward rule.

Run: python examples/two_layer_net.py
"""

import jax
import jax.numpy as jnp

from difprog import gates

N, D_in, H, D_out = 64, 1000, 100, 10
kx, ky, k1, k2 = jax.random.split(jax.random.key(0), 4)
x, y = jax.random.normal(kx, (N, D_in)), jax.random.normal(ky, (N, D_out))
weights = {"w1": jax.random.normal(k1, (D_in, H)), "w2": jax.random.normal(k2, (H, D_out))}


def loss(weights):
    h = gates.sigmoid(gates.matmul(x, weights["w1"]))
    y_pred = gates.matmul(h, weights["w2"])
    return gates.sum(gates.square(gates.subtract(y_pred, y)))


def lecture_grads(w):
    """The backward pass the lecture writes by hand, to compare with the gates' rules."""
    h = 1 / (1 + jnp.exp(-x @ w["w1"]))
    grad_y_pred = 2.0 * (h @ w["w2"] - y)
    return {"w1": x.T @ (grad_y_pred @ w["w2"].T * h * (1 - h)), "w2": h.T @ grad_y_pred}


gap = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b))),
                   jax.grad(loss)(weights), lecture_grads(weights))
worst = max(gap.values())
print(f"gates' gradient vs the lecture's hand-derived one, max relative gap: {worst:.1e}")


@jax.jit
def step(weights):
    value, grads = jax.value_and_grad(loss)(weights)
    return jax.tree.map(lambda w, g: w - 1e-4 * g, weights, grads), value


for t in range(2000):
    weights, value = step(weights)
    if t % 200 == 0 or t == 1999:
        print(f"step {t:4d}  loss {float(value):12.4f}")
