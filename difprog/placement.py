"""Where a training run's arrays live: batches split over a one-axis device mesh ('data'), params
and optimiser state replicated on every device or, with shard='params', split over them; the
mesh spans every process of a multi-process run."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from difprog import arguments
from difprog.errors import ArgumentError

__all__ = ["SHARDS", "Placement", "split_axis"]

SHARDS = ("none", "params")


class Placement:
    """Puts batches on a one-axis device mesh ('data'); params and optimiser state are replicated
    on every device (data parallelism) or, with shard='params', split over the devices
    (FSDP-style: XLA gathers each array where a step needs it)."""

    def __init__(self, devices: int | None = None, shard: str = "none"):
        available = jax.devices()
        count = len(available) if devices is None else devices
        if not arguments.is_int(count) or not 1 <= count <= len(available):
            raise ArgumentError(f"devices must be between 1 and the {len(available)} devices "
                                f"available ({available[0].platform}), got {devices!r}")
        arguments.one_of("Placement", "shard", shard, SHARDS)
        self.mesh = Mesh(np.array(available[:count]), ("data",))
        self.replicated = NamedSharding(self.mesh, PartitionSpec())
        self.sharded = NamedSharding(self.mesh, PartitionSpec("data"))
        self.shard = shard

    @property
    def count(self) -> int:
        return self.mesh.size

    @property
    def spans_processes(self) -> bool:
        """Whether params are split over the devices of several processes (no process holds
        them whole, so checkpoints are sharded: `difprog.shards`)."""
        return self.shard == "params" and jax.process_count() > 1

    def replicate(self, tree: Any) -> Any:
        return jax.tree.map(lambda leaf: _put(leaf, self.replicated), tree)

    def batch(self, array: np.ndarray) -> jax.Array:
        """A batch split over the devices, or replicated when its size does not divide evenly."""
        sharding = self.sharded if len(array) % self.count == 0 else self.replicated
        if jax.process_count() == 1:
            return jax.device_put(array, sharding)
        local = array if sharding is self.replicated else np.array_split(
            array, jax.process_count())[jax.process_index()]
        return jax.make_array_from_process_local_data(sharding, local, array.shape)

    def place(self, tree: Any) -> Any:
        """Params or optimiser state on the devices: replicated, or each array split along
        `split_axis` of its shape (replicated where no axis divides evenly)."""
        return jax.tree.map(lambda leaf: _put(leaf, self.placed_as(np.shape(leaf))), tree)

    def abstract(self, tree: Any) -> Any:
        """`tree` as jax.ShapeDtypeStructs with the shardings `place` gives its leaves (what a
        checkpoint is loaded into, each process reading its own pieces)."""
        return jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(
            np.shape(leaf), leaf.dtype, sharding=self.placed_as(np.shape(leaf))), tree)

    def placed_as(self, shape: tuple[int, ...]) -> NamedSharding:
        """The sharding `place` gives params and optimiser state of `shape`."""
        return self.replicated if self.shard == "none" else self.sharding_of(shape)

    def sharding_of(self, shape: tuple[int, ...]) -> NamedSharding:
        """The sharding of an array of `shape` under shard='params'."""
        axis = split_axis(shape, self.count)
        if axis is None:
            return self.replicated
        return NamedSharding(self.mesh, PartitionSpec(*[None] * axis, "data"))


def _put(leaf: Any, sharding: NamedSharding) -> jax.Array:
    """`leaf` on the devices of `sharding`; with several processes each puts its own devices'
    pieces, from the value every process holds whole (an array already placed so stays)."""
    if isinstance(leaf, jax.Array) and leaf.sharding == sharding:
        return leaf
    if jax.process_count() == 1:
        return jax.device_put(leaf, sharding)
    host = np.asarray(jax.device_get(leaf))
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def split_axis(shape: tuple[int, ...], devices: int) -> int | None:
    """The axis an array is split along over `devices`: the longest one whose length they
    divide (the last of equals), so a Dense weight (in, out), a Conv2D kernel (h, w, in, out)
    and an embedding table (vocab, features) each split along their largest dimension; None
    (replicated) for scalars, and where no axis divides or there is one device."""
    fits = [(size, axis) for axis, size in enumerate(shape)
            if size >= devices and size % devices == 0]
    return max(fits)[1] if devices > 1 and fits else None
