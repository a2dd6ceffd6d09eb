"""Compose a small CNN functionally, print its summary, and run it under jit and grad.

Run: python examples/cnn_summary.py
"""

import jax
import jax.numpy as jnp

from difprog import gates, layers

model = layers.serial(
    layers.Conv2D(16, 3), layers.Relu(), layers.MaxPool2D(2),
    layers.Conv2D(32, 3), layers.Relu(), layers.MaxPool2D(2),
    layers.Flatten(), layers.Dropout(0.1), layers.Dense(64), layers.Relu(), layers.Dense(10),
)
data_key, init_key, dropout_key = jax.random.split(jax.random.key(0), 3)
images = jax.random.uniform(data_key, (32, 8, 8, 1))
labels = jnp.arange(32) % 10
layers.summary(model, images)

params = model.init(init_key, images)
print("\nparams:", jax.tree.map(jnp.shape, params))


@jax.jit
def loss(params, images, labels, key):
    logits = model.apply(params, images, key=key, train=True)
    return gates.softmax_cross_entropy(logits, labels)


grads = jax.grad(loss)(params, images, labels, dropout_key)
norms = {name: float(jnp.linalg.norm(g["w"])) for name, g in grads.items()}
print("\ngradient norm of each weight:", {k: round(v, 4) for k, v in norms.items()})
