"""Benchmark: ten channel visualisations of a 224x224 colour CNN, 512 steps, on this CPU.

Issue 19's target: 10 channel visualisations of a 224x224 colour model, 512 steps, within
2 minutes end to end (compilation included), with Lucid's colour tools: the decorrelated
Fourier parameterisation (`viz.fourier()`, colour-decorrelated for 3 channels) and the
standard transforms (for 224 pixels, `random_affine`: a shift of up to 28 pixels, a zoom in
[0.95, 1.05] and a rotation of up to 10 degrees, in one resample).

There is no pretrained network and nothing is downloaded. The model is a small strided CNN
built from difprog layers (four 3x3/5x5 stride-2 convolutions, global average pooling, a dense
layer), trained here for 150 steps (20 s on this 2-core CPU when nothing else runs) on
scikit-learn's two bundled sample photographs (china.jpg, flower.jpg, 427x640): each training
example is a random 224x224 crop, turned by a random quarter turn, and the label says which
photograph and which way up (8 classes). Its training time is reported apart; the
visualisation's time is the verdict. Besides wall time the table gives the process CPU time of
the visualisation: the loop runs on about one core, so on a machine shared with other work the
CPU time is the better estimate of a quiet run. The ten channels are the ten of layer
conv2d_2 (48 channels, 28x28) that respond most to the photographs' crops.

Usage:
    python -m benchmarks.colour_visualization              # 10 x 224x224x3, 512 steps
    python -m benchmarks.colour_visualization --size 32 --steps 8 --train-steps 0 \\
        --out /tmp/colour.png                            # smoke run, untrained
"""

from __future__ import annotations

import argparse
import os
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks.gates_vs_native import cpu_name
from difprog import layers, viz

ROOT = pathlib.Path(__file__).resolve().parents[1]
LAYER, BUDGET_SECONDS = "conv2d_2", 120.0


def colour_cnn(size: int = 224, classes: int = 8) -> layers.Serial:
    """Four stride-2 convolutions (16, 32, 48, 64 channels), a global average pool over the
    last one's size / 16 square, and a dense layer."""
    return layers.serial(
        layers.Conv2D(16, 5, stride=2), layers.Relu(),
        layers.Conv2D(32, 3, stride=2), layers.Relu(),
        layers.Conv2D(48, 3, stride=2), layers.Relu(),
        layers.Conv2D(64, 3, stride=2), layers.Relu(),
        layers.AvgPool2D(-(-size // 16)), layers.Flatten(), layers.Dense(classes))


def photographs() -> np.ndarray:
    """scikit-learn's two sample photographs, (2, 427, 640, 3) in [0, 1]."""
    from sklearn.datasets import load_sample_images

    return np.stack(load_sample_images().images).astype(np.float32) / 255


def crops(key: jax.Array, photos: jax.Array, batch: int, size: int):
    """Random size x size crops, each given a random quarter turn; label = 4 * photograph +
    quarter turns."""
    k_photo, k_y, k_x, k_turn = jax.random.split(key, 4)
    which = jax.random.randint(k_photo, (batch,), 0, 2)
    ys = jax.random.randint(k_y, (batch,), 0, photos.shape[1] - size + 1)
    xs = jax.random.randint(k_x, (batch,), 0, photos.shape[2] - size + 1)
    turns = jax.random.randint(k_turn, (batch,), 0, 4)

    def one(w, y, x, t):
        crop = jax.lax.dynamic_slice(photos[w], (y, x, 0), (size, size, 3))
        return jax.lax.switch(t, [lambda c, k=k: jnp.rot90(c, k) for k in range(4)], crop)

    return jax.vmap(one)(which, ys, xs, turns), 4 * which + turns


def train(model, size: int, steps: int, batch: int = 16, seed: int = 0):
    """Adam on cross-entropy over fresh random crops; returns params, held-out accuracy,
    seconds, and LAYER's mean response per channel on held-out crops."""
    photos = jnp.asarray(photographs())
    key = jax.random.key(seed)
    params = model.init(key, jnp.zeros((1, size, size, 3)))
    optimizer = optax.adam(2e-3)
    state = optimizer.init(params)

    def loss(p, x, y):
        return optax.softmax_cross_entropy_with_integer_labels(model.apply(p, x), y).mean()

    @jax.jit
    def step(p, s, k):
        x, y = crops(k, photos, batch, size)
        value, grads = jax.value_and_grad(loss)(p, x, y)
        updates, s = optimizer.update(grads, s, p)
        return optax.apply_updates(p, updates), s, value

    began = time.perf_counter()
    for k in jax.random.split(key, steps):
        params, state, _ = step(params, state, k)
    jax.block_until_ready(params)
    seconds = time.perf_counter() - began

    @jax.jit
    def evaluate(p, k):  # accuracy on fresh crops, and LAYER's mean response per channel
        x, y = crops(k, photos, 32, size)
        logits, captured, _ = model.run(p, x, capture=(LAYER,))
        return jnp.mean(jnp.argmax(logits, -1) == y), captured[LAYER].mean(axis=(0, 1, 2))

    accuracy, responses = evaluate(params, jax.random.key(seed + 1))
    return params, float(accuracy), seconds, np.asarray(responses)


class _CompileClock:
    """Sums JAX's compile-time events (tracing, lowering, XLA compilation) while active."""

    def __init__(self):
        self.seconds, self.active = 0.0, False
        jax.monitoring.register_event_duration_secs_listener(self._listen)

    def _listen(self, event, duration, **_):
        if self.active and event.startswith("/jax/core/compile"):
            self.seconds += duration


def _load() -> str:
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except (AttributeError, OSError):
        return "n/a"


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224, help="image height and width")
    parser.add_argument("--count", type=int, default=10, help="channels (images) at once")
    parser.add_argument("--steps", type=int, default=512, help="visualisation steps")
    parser.add_argument("--train-steps", type=int, default=150,
                        help="training steps (0: the randomly initialised model)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "viz" / "colour_channels.png"))
    args = parser.parse_args(argv)

    model = colour_cnn(args.size)
    params, accuracy, train_seconds, responses = train(model, args.size, args.train_steps)
    # the channels of LAYER that respond most to the photographs' crops
    chosen = sorted(np.argsort(-responses)[:args.count].tolist())
    objective = viz.per_image(*(viz.channel(LAYER, c) for c in chosen))
    shape = (len(chosen), args.size, args.size, 3)

    clock = _CompileClock()
    clock.active = True
    began, cpu = time.perf_counter(), time.process_time()
    result = viz.visualize(model, params, objective, shape, steps=args.steps, progress=False)
    total, cpu = time.perf_counter() - began, time.process_time() - cpu
    clock.active = False
    run = total - clock.seconds

    viz.save_grid(result.images, args.out, labels=[f"{LAYER}:{c}" for c in chosen], columns=5,
                  title=f"{objective.name}, decorrelated fourier, {args.steps} steps")
    verdict = "OK" if total <= BUDGET_SECONDS else "over"
    print(f"CPU: {cpu_name()}, {jax.device_count()} JAX device(s), JAX {jax.__version__}")
    print(f"model: {LAYER} of a 4-conv colour CNN trained {args.train_steps} steps "
          f"({train_seconds:.1f} s, held-out accuracy {accuracy:.2f} on 8 classes)")
    print()
    print("| shape | steps | compile s | run s | total s | steps/s | process CPU s | "
          "verdict vs 120 s |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {'x'.join(map(str, shape))} | {args.steps} | {clock.seconds:.1f} | {run:.1f} | "
          f"{total:.1f} | {args.steps / max(run, 1e-9):.1f} | {cpu:.1f} | {verdict} |")
    print(f"\n(wall seconds, compilation included in total; load average at the end "
          f"{_load()}: other processes on these cores slow the wall times)")
    contrast = result.images.reshape(len(chosen), -1, 3).std(axis=1).mean()
    colour = np.abs(result.images - result.images.mean(-1, keepdims=True)).mean()
    print(f"\nimages: per-image std {contrast:.3f}, mean distance from grey {colour:.3f}; "
          f"score {result.history[0].mean():.3f} -> {result.history[-1].mean():.3f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
