"""Benchmark: a ResNet-18 training step in difprog, plain JAX and PyTorch eager, block by block.

One step is the softmax cross-entropy of ResNet-18's logits (10 classes, NHWC float32 images,
integer labels) and its gradient with respect to every param, with BatchNorm in training mode
(batch statistics) or evaluation mode (running statistics):

- difprog: `models.resnet18` through its gates, `jax.jit(jax.value_and_grad(loss))`;
- plain JAX: the same network on the same params written with lax.conv_general_dilated,
  lax.reduce_window and jax.numpy, differentiated by jax.grad;
- PyTorch eager (when importable), with torch.set_num_threads at the machine's cores and at 1
  (on this shared 2-core machine 2 threads can run 10x slower than 1 while other processes
  load it):
  torchvision's layout in plain torch.nn, `loss.backward()`.

The frameworks run interleaved in one process (each round times every variant once) and the
table keeps the median and the best of the rounds. The per-block table times each block's
forward and backward alone (jax.vjp, resp. torch's backward of the block's output against a
fixed cotangent): stem (conv1, bn1, relu, maxpool), layer1.0 ... layer4.1, head (avgpool, fc).

Usage:
    python -m benchmarks.resnet                        # 64x64 batch 16 and 224x224 batch 8
    python -m benchmarks.resnet --sizes 64:16 --rounds 3 --modes eval   # a shorter run
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from benchmarks import torch_resnet
from benchmarks.gates_vs_native import cpu_name
from difprog import gates, models

BLOCKS = {"stem": ("conv1", "bn1", "relu", "maxpool"),
          **{f"layer{s}.{b}": (f"layer{s}.{b}",) for s in range(1, 5) for b in range(2)},
          "head": ("avgpool", "fc")}
EPS = 1e-5


# --- plain JAX: the same network, on difprog's params ----------------------------------------

def _conv(x, w, stride):
    k = w.shape[0]
    return lax.conv_general_dilated(x, w, (stride, stride), [(k // 2, k // 2)] * 2,
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _bn(p, x, train):
    if train:
        mean, var = x.mean((0, 1, 2)), x.var((0, 1, 2))
    else:
        mean, var = p["mean"], p["var"]
    return (x - mean) * (p["scale"] * lax.rsqrt(var + EPS)) + p["offset"]


def _block(p, x, train, stride):
    h = jax.nn.relu(_bn(p["bn1"], _conv(x, p["conv1"]["w"], stride), train))
    h = _bn(p["bn2"], _conv(h, p["conv2"]["w"], 1), train)
    if "downsample.0" in p:
        x = _bn(p["downsample.1"], _conv(x, p["downsample.0"]["w"], stride), train)
    return jax.nn.relu(h + x)


def plain_block(name, p, x, train):
    """One of BLOCKS in plain JAX; p holds the params of the block's layers by name."""
    if name == "stem":
        x = jax.nn.relu(_bn(p["bn1"], _conv(x, p["conv1"]["w"], 2), train))
        return lax.reduce_window(x, -jnp.inf, lax.max, (1, 3, 3, 1), (1, 2, 2, 1),
                                 [(0, 0), (1, 1), (1, 1), (0, 0)])
    if name == "head":
        return x.mean((1, 2)) @ p["fc"]["w"] + p["fc"]["b"]
    stride = 2 if name.endswith(".0") and name != "layer1.0" else 1
    return _block(p[name], x, train, stride)


def plain_loss(params, x, y, train):
    for name, keys in BLOCKS.items():
        x = plain_block(name, {k: params[k] for k in keys if k in params}, x, train)
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(x), y[:, None], 1))


# --- difprog -----------------------------------------------------------------------------------

def difprog_block(model, name):
    layers = [model.children()[k] for k in BLOCKS[name]]

    def apply(p, x, train):
        for key, layer in zip(BLOCKS[name], layers):
            x = layer.apply(p.get(key, {}), x, train=train)
        return x
    return apply


def difprog_loss(model):
    return lambda params, x, y, train: gates.softmax_cross_entropy(
        model.apply(params, x, train=train), y)


# --- PyTorch -----------------------------------------------------------------------------------

def torch_resnet18(torch, num_classes):
    """torchvision's resnet18 in plain torch.nn, its blocks as a ModuleDict of BLOCKS ('.' in
    a name becomes '_')."""
    return torch_resnet.torch_blocks(torch, torch_resnet.torch_resnet18(torch, num_classes))


def torch_step(torch, net, x, y):
    def step():
        for p in net.parameters():
            p.grad = None
        h = x
        for block in net.values():
            h = block(h)
        loss = torch.nn.functional.cross_entropy(h, y)
        loss.backward()
        return loss
    return step


def torch_block_step(torch, block, x, g):
    def step():
        for p in block.parameters():
            p.grad = None
        block(x).backward(g)
    return step


# --- timing ------------------------------------------------------------------------------------

def _timer(f):
    def run():
        start = time.perf_counter()
        jax.block_until_ready(f())
        return 1e3 * (time.perf_counter() - start)
    return run


def _threads(torch, n, f):
    def run():
        torch.set_num_threads(n)
        return f()
    return run


def variants(size, batch, train, torch, threads=(), blocks=tuple(BLOCKS)):
    """{(block or 'step', framework): a function running it once}, warmed up, for the whole
    step and each of `blocks`."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((batch, size, size, 3)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 10, batch))
    model = models.resnet18(10)
    params = model.init(jax.random.key(0), x[:1])
    runs = {}
    for name, loss in [("difprog", difprog_loss(model)), ("plain JAX", plain_loss)]:
        step = jax.jit(jax.value_and_grad(loss), static_argnums=3)
        runs["step", name] = lambda step=step: step(params, x, y, train)
    h = x
    for block in BLOCKS:
        p = {k: params[k] for k in BLOCKS[block] if k in params}
        out = jax.jit(plain_block, static_argnums=(0, 3))(block, p, h, train)
        g = jnp.ones_like(out)
        for name, f in [] if block not in blocks else [("difprog", difprog_block(model, block)),
                        ("plain JAX", lambda p, h, train, b=block: plain_block(b, p, h, train))]:
            vjp = jax.jit(lambda p, h, g, f=f: jax.vjp(lambda p, h: f(p, h, train), p, h)[1](g))
            runs[block, name] = lambda vjp=vjp, p=p, h=h, g=g: vjp(p, h, g)
        for n in threads if block in blocks else ():
            runs[block, _torch_name(n)] = _threads(torch, n, _torch_block(torch, block, h, g,
                                                                          train))
        h = out
    if threads:
        net = torch_resnet18(torch, 10).train(train)
        tx = torch.tensor(np.asarray(x)).permute(0, 3, 1, 2).contiguous()
        step = torch_step(torch, net, tx, torch.tensor(np.asarray(y)).long())
        for n in threads:
            runs["step", _torch_name(n)] = _threads(torch, n, step)
    for f in runs.values():
        jax.block_until_ready(f())
    return runs, agreement(runs["step", "difprog"](), runs["step", "plain JAX"]())


def agreement(ours, plain):
    """How far difprog's (loss, gradient) is from plain JAX's: the largest difference of a
    trained param's gradient relative to that gradient's largest entry (BatchNorm's running
    statistics are not trained: difprog's rules give them no gradient)."""
    (loss, grads), (ref_loss, ref_grads) = ours, plain
    leaves = jax.tree_util.tree_flatten_with_path(grads)[0]
    worst, where = max(
        (float(jnp.max(jnp.abs(a - b)) / (jnp.max(jnp.abs(b)) + 1e-30)), jax.tree_util.keystr(k))
        for (k, a), b in zip(leaves, jax.tree.leaves(ref_grads))
        if jax.tree_util.keystr(k).split("'")[-2] not in ("mean", "var"))
    return (f"loss difprog {float(loss):.6f}, plain JAX {float(ref_loss):.6f}; largest gradient "
            f"difference / that param's largest gradient: {worst:.1e} (at {where})")


def _torch_name(threads):
    return f"PyTorch {threads} thread{'s' if threads > 1 else ''}"


def _torch_block(torch, block, h, g, train):
    net = torch_resnet18(torch, 10)[block.replace(".", "_")].train(train)
    nchw = lambda a: torch.tensor(np.asarray(a)).permute(0, 3, 1, 2).contiguous() \
        if a.ndim == 4 else torch.tensor(np.asarray(a))
    x = nchw(h).requires_grad_()
    return torch_block_step(torch, net, x, nchw(g))


def measure(runs, rounds, repeats=2):
    times = {key: [] for key in runs}
    timers = {key: _timer(f) for key, f in runs.items()}
    for _ in range(rounds):
        for key, timer in timers.items():
            times[key].append(min(timer() for _ in range(repeats)))
    return times


def tables(times, frameworks, blocks=tuple(BLOCKS)):
    head = "| | " + " | ".join(f"{f} median ms | best" for f in frameworks)
    lines = [head + " | difprog / plain JAX | difprog / PyTorch (its faster) |",
             "|---" * (2 * len(frameworks) + 3) + "|"]
    for block in ["step", *blocks]:
        med = {f: statistics.median(times[block, f]) for f in frameworks}
        cells = " | ".join(f"{med[f]:.2f} | {min(times[block, f]):.2f}" for f in frameworks)
        torch_med = [m for f, m in med.items() if f.startswith("PyTorch")]
        torch_ratio = f"{med['difprog'] / min(torch_med):.2f}" if torch_med else "-"
        label = "**whole step**" if block == "step" else f"{block} (forward + backward)"
        lines.append(f"| {label} | {cells} | {med['difprog'] / med['plain JAX']:.3f} | "
                     f"{torch_ratio} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64:16,224:8", help="image:batch pairs")
    parser.add_argument("--modes", default="train,eval")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--blocks", default=",".join(BLOCKS),
                        help="the blocks timed one by one, besides the whole step")
    parser.add_argument("--torch-threads", default=f"{os.cpu_count()},1",
                        help="PyTorch's thread counts, each its own variant ('' for none)")
    args = parser.parse_args(argv)
    threads = [int(n) for n in args.torch_threads.split(",") if n]
    blocks = [b for b in args.blocks.split(",") if b]
    if set(blocks) - set(BLOCKS):
        parser.error(f"--blocks: unknown {sorted(set(blocks) - set(BLOCKS))}; from {list(BLOCKS)}")
    try:
        import torch
        version = f"; torch {torch.__version__}"
    except ImportError:
        torch, threads, version = None, [], ""
    frameworks = ["difprog", "plain JAX", *map(_torch_name, threads)]
    print(f"machine: {platform.machine()} {cpu_name()}, {os.cpu_count()} cores; "
          f"jax {jax.__version__}{version}; float32; median and best of {args.rounds} "
          "interleaved rounds")
    for size, batch in (map(int, s.split(":")) for s in args.sizes.split(",")):
        for mode in args.modes.split(","):
            load = os.getloadavg()[0]
            runs, agree = variants(size, batch, mode == "train", torch, threads, blocks)
            times = measure(runs, args.rounds)
            print(f"\nResNet-18, {size}x{size}x3, batch {batch}, BatchNorm in {mode} mode "
                  f"(load average {load:.2f} before, {os.getloadavg()[0]:.2f} after)\n")
            print(tables(times, frameworks, blocks))
            print(f"\n{agree}")


if __name__ == "__main__":
    main()
