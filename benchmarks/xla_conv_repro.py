"""XLA:CPU's convolution is 50x to 500x slower than the same computation as matmuls on small
spatial maps with many channels (here a 3x3, 512 -> 512 convolution on a 2x2 map, NHWC, float32,
stride 1, padding 1: ResNet-18's last stage at 64x64 inputs). Plain JAX only.

For each shape this prints the best time of several calls of
  1. lax.conv_general_dilated (the forward convolution),
  2. the same convolution as a sum of nine matmuls of shifted slices of the padded input,
  3. the same as im2col (the nine slices stacked) and one matmul,
  4. the input gradient by jax.vjp of lax.conv_general_dilated (XLA's convolution with lhs
     dilation), and 5. by jax.vjp of the shifted matmuls,
and checks that 1 to 3 agree. Run: python benchmarks/xla_conv_repro.py
"""

import os
import platform
import time

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np
from jax import lax


def conv(x, w):
    return lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)),
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))


def shifted(x, w):
    h, wd = x.shape[1:3]
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    return sum(xp[:, i:i + h, j:j + wd, :] @ w[i, j] for i in range(3) for j in range(3))


def im2col(x, w):
    n, h, wd, c = x.shape
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    patches = jnp.stack([xp[:, i:i + h, j:j + wd, :] for i in range(3) for j in range(3)], -2)
    return patches.reshape(n, h, wd, 9 * c) @ w.reshape(9 * c, -1)


def input_grad(f):
    return lambda x, w, g: jax.vjp(lambda x: f(x, w), x)[1](g)[0]


def best_ms(f, *args, repeats=10):
    jax.block_until_ready(f(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(f(*args))
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


def main():
    print(f"jax {jax.__version__}, jaxlib {jaxlib.__version__}, {jax.devices()[0].device_kind}"
          f", {platform.machine()}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.2f}")
    rng = np.random.default_rng(0)
    print("x (NHWC)          w (HWIO)       | conv ms | shifted ms | im2col ms | "
          "conv dx ms | shifted dx ms")
    for n, hw, c in [(16, 2, 512), (64, 2, 512), (16, 4, 256), (8, 7, 512), (16, 16, 64)]:
        x = jnp.asarray(rng.standard_normal((n, hw, hw, c)), jnp.float32)
        w = jnp.asarray(rng.standard_normal((3, 3, c, c)) / np.sqrt(9 * c), jnp.float32)
        g = jnp.asarray(rng.standard_normal((n, hw, hw, c)), jnp.float32)
        fs = [jax.jit(conv), jax.jit(shifted), jax.jit(im2col)]
        outs = [f(x, w) for f in fs]
        for out in outs[1:]:
            np.testing.assert_allclose(out, outs[0], rtol=1e-3, atol=1e-3)
        times = [best_ms(f, x, w) for f in fs]
        times += [best_ms(jax.jit(input_grad(f)), x, w, g) for f in (conv, shifted)]
        print(f"{str((n, hw, hw, c)):17} {str((3, 3, c, c)):14} | " +
              " | ".join(f"{t:8.2f}" for t in times))


if __name__ == "__main__":
    main()
