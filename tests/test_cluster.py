"""study.cluster by hand: the resources a trial may ask of a local Ray or a cluster, the address check, the node's
name and how the launcher joins Ray. Ray's own API is stood in for where a real Ray would start one (the slow
tests in test_launch.py and test_multinode.py start real ones)."""

from __future__ import annotations

import os
import socket
from types import SimpleNamespace

import pytest
import torch

from errors import UsageError
from study import cluster, config
from tests.helpers import SMOKE


def cfg(*overrides: str) -> config.Config:
    return config.compose([*SMOKE, *overrides])[0]


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


def test_gpu_missing_only_for_a_local_ray_without_cuda(no_gpu: None, monkeypatch: pytest.MonkeyPatch) -> None:
    assert cluster.gpu_missing(cfg("resources.gpu=0.5"))
    assert not cluster.gpu_missing(cfg("resources.gpu=0"))
    assert not cluster.gpu_missing(cfg("resources.gpu=0.5", "ray.address=auto"))  # its autoscaler may add GPU nodes
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert not cluster.gpu_missing(cfg("resources.gpu=0.5"))


def test_a_gpu_request_without_a_gpu(no_gpu: None, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(UsageError) as err:
        cluster.check_resources(cfg("resources.gpu=0.5"))
    assert str(err.value) == ("resources.gpu=0.5 is invalid: it must be 0 where no GPU is visible, as here "
                              "(preset=smoke); or run these trials on CPU with resources.allow_cpu_fallback=true")
    assert cluster.check_resources(cfg("resources.gpu=0.5", "resources.allow_cpu_fallback=true")) == \
        {"cpu": 1.0, "gpu": 0}
    assert capsys.readouterr().err == ("note: no GPU visible, resources.gpu=0.5 becomes 0 "
                                       "(resources.allow_cpu_fallback=true)\n")


def test_a_local_ray_has_this_machines_cpus_and_gpus(no_gpu: None, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UsageError) as err:
        cluster.check_resources(cfg("resources.cpu=3", "ray.num_cpus=2"))
    assert str(err.value) == ("resources.cpu=3.0 is invalid: it must be at most 2, the CPUs of the local Ray "
                              "(ray.num_cpus, else this machine's cores); or join a cluster with ray.address")
    assert cluster.check_resources(cfg("resources.cpu=2", "ray.num_cpus=2")) == {"cpu": 2.0, "gpu": 0.0}
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    assert cluster.check_resources(cfg("resources.cpu=4")) == {"cpu": 4.0, "gpu": 0.0}
    with pytest.raises(UsageError, match=r"^resources.cpu=5.0 is invalid: it must be at most 4, "):
        cluster.check_resources(cfg("resources.cpu=5"))
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # unknown: one core
    with pytest.raises(UsageError, match=r"^resources.cpu=1.5 is invalid: it must be at most 1, "):
        cluster.check_resources(cfg("resources.cpu=1.5"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert cluster.check_resources(cfg("resources.gpu=1")) == {"cpu": 1.0, "gpu": 1.0}
    with pytest.raises(UsageError) as err:
        cluster.check_resources(cfg("resources.gpu=2"))
    assert str(err.value) == ("resources.gpu=2.0 is invalid: it must be at most 1, the GPUs visible to the local "
                              "Ray; or join a cluster with ray.address")


def test_a_cluster_is_not_checked_against_this_machine(no_gpu: None) -> None:
    assert cluster.check_resources(cfg("resources.cpu=64", "resources.gpu=8", "ray.address=10.0.0.1:6379")) == \
        {"cpu": 64.0, "gpu": 8.0}


def test_check_address(monkeypatch: pytest.MonkeyPatch) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    cluster.check_address(cfg(f"ray.address=127.0.0.1:{port}"))  # a head answers: nothing said
    server.close()
    with pytest.raises(UsageError) as err:
        cluster.check_address(cfg(f"ray.address=127.0.0.1:{port}"))
    assert str(err.value) == (f"ray.address='127.0.0.1:{port}' is unreachable: no Ray head answers there (start one "
                              "with `ray start --head`, or use ray.address=null for a local Ray)")
    with pytest.raises(UsageError, match=r"^ray.address='head:http' is unreachable"):  # no port number
        cluster.check_address(cfg("ray.address=head:http"))

    def silent(address: tuple[str, int], timeout: float | None = None) -> None:  # a host that drops the packets
        assert timeout is not None, "a host that never answers would hang the launch"
        raise TimeoutError("timed out")
    monkeypatch.setattr(cluster.socket, "create_connection", silent)
    with pytest.raises(UsageError, match=r"^ray.address='10.255.255.1:6379' is unreachable"):
        cluster.check_address(cfg("ray.address=10.255.255.1:6379"))

    def dialled(*args: object, **kwargs: object) -> None:
        raise AssertionError("connected")
    monkeypatch.setattr(cluster.socket, "create_connection", dialled)
    for given in ([], ["ray.address=auto"], ["ray.address=ray://head:10001"]):  # Ray resolves these itself
        cluster.check_address(cfg(*given))


def test_node_name_as_ray_status_lists_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    monkeypatch.setattr(ray, "get_runtime_context", lambda: SimpleNamespace(get_node_id=lambda: "b" * 56))
    monkeypatch.setattr(ray, "nodes", lambda: [{"NodeID": "a" * 56, "NodeManagerAddress": "10.0.0.1"},
                                               {"NodeID": "b" * 56, "NodeManagerAddress": "10.0.0.2"}])
    assert cluster.node_name() == f"{socket.gethostname()} (10.0.0.2, node {'b' * 12})"


def test_connect_joins_or_starts_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    calls = []

    def init(**kwargs: object) -> SimpleNamespace:
        calls.append(kwargs)
        if kwargs.get("address") == "auto":
            raise ConnectionError("Could not find any running Ray instance.\nPlease specify the one to connect to.")
        return SimpleNamespace(dashboard_url="127.0.0.1:8265")
    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.delenv("RAY_CHDIR_TO_TRIAL_DIR", raising=False)
    assert cluster.connect(cfg("ray.num_cpus=2")) == "127.0.0.1:8265"
    assert os.environ["RAY_CHDIR_TO_TRIAL_DIR"] == "0"  # trials keep the driver's working directory
    assert cluster.connect(cfg("ray.address=10.0.0.1:6379")) == "127.0.0.1:8265"
    with pytest.raises(UsageError) as err:
        cluster.connect(cfg("ray.address=auto"))
    assert str(err.value) == ("ray.address='auto' is invalid: it must be a running Ray cluster's (Could not find any "
                              "running Ray instance.)")
    monkeypatch.setattr(ray, "is_initialized", lambda: True)  # joined already by the storage check
    assert cluster.connect(cfg("ray.address=10.0.0.1:6379")) == "127.0.0.1:8265"
    assert calls == [{"address": "local", "num_cpus": 2}, {"address": "10.0.0.1:6379"}, {"address": "auto"},
                     {"ignore_reinit_error": True}]
