"""cluster.yaml passes the cluster launcher's own validation, offline (no AWS call)."""

from __future__ import annotations

from pathlib import Path

import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER_YAML = Path(__file__).resolve().parents[1] / "cluster.yaml"


def test_cluster_yaml_validates() -> None:
    config = prepare_config(yaml.safe_load(CLUSTER_YAML.read_text()))
    validate_config(config)
    types = config["available_node_types"]
    for node_type in types.values():  # the launcher rejects fractional node resources
        assert all(isinstance(v, int) for v in node_type["resources"].values())
    assert {"g5.xlarge", "p4d.24xlarge"} <= {t["node_config"]["InstanceType"] for t in types.values()}
    assert all("RAY_AUTH_MODE=token" in " ".join(config[k])
               for k in ("head_start_ray_commands", "worker_start_ray_commands"))
    assert "--dashboard-host=127.0.0.1" in " ".join(config["head_start_ray_commands"])
