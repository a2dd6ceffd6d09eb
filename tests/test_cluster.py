"""difprog.cluster: the environment read before jax.distributed.initialize, and the arguments of
start_devices, refused by name (joining a real cluster: tests/train/test_distributed.py)."""

from __future__ import annotations

import pytest

from difprog import cluster
from difprog.errors import ArgumentError, DifprogError


@pytest.fixture
def environment(monkeypatch):
    """Sets the given JAX_* variables (and unsets the other ones)."""
    def set_only(**given):
        for name in cluster.VARIABLES:
            monkeypatch.delenv(name, raising=False)
        for name, value in given.items():
            monkeypatch.setenv(name, value)
    return set_only


def test_some_of_the_variables_are_refused_naming_the_missing_ones(environment):
    environment(JAX_COORDINATOR_ADDRESS="localhost:1234")
    with pytest.raises(DifprogError, match="--distributed: set all of JAX_COORDINATOR_ADDRESS "
                                           r"\(host:port of process 0\).*missing "
                                           "JAX_NUM_PROCESSES, JAX_PROCESS_ID"):
        cluster.join(owner="--distributed")


@pytest.mark.parametrize("count, index, message", [
    ("two", "0", "cluster.join: JAX_NUM_PROCESSES and JAX_PROCESS_ID must be integers, got "
                 "'two' and '0'"),
    ("2", "2", "cluster.join: JAX_PROCESS_ID must be from 0 to JAX_NUM_PROCESSES - 1 = 1, "
               "got 2"),
    ("2", "-1", "JAX_PROCESS_ID must be from 0"),
])
def test_process_count_and_id_must_be_integers_in_range(environment, count, index, message):
    environment(JAX_COORDINATOR_ADDRESS="localhost:1234", JAX_NUM_PROCESSES=count,
                JAX_PROCESS_ID=index)
    with pytest.raises(DifprogError, match=message):
        cluster.join()


@pytest.mark.parametrize("devices, distributed, message", [
    (0, False, "cluster.start_devices: devices must be an int from 1 to 1024, got 0"),
    (True, False, "devices must be an int from 1 to 1024, got True"),
    (1, "yes", "cluster.start_devices: distributed must be True or False, got 'yes'"),
])
def test_start_devices_refuses_bad_arguments(devices, distributed, message):
    with pytest.raises(ArgumentError, match=message):
        cluster.start_devices(devices, distributed)


def test_one_device_and_no_cluster_changes_nothing():
    cluster.start_devices(1, False)
    cluster.start_devices(None)
