"""One storage root for a study: runs, datasets, .beton cache and confusion artifacts live under it.

storage.root, else $STUDY_ROOT, else the per-user cache (~/.cache/label-noise-study). It is resolved once,
in the driver, and every path a trial reads is made absolute from it there (study.grid.trial_base): a node
never resolves ~ or an environment variable of its own. Explicit data.root, data.cache, noise.confusion and
run_dir still win. On a cluster, check_nodes proves every alive node sees the root before any trial starts.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from loaders import datasets
from loaders.errors import UsageError
from study.cluster import node_name

NODE_TIMEOUT_S = 120  # a node's first task starts a worker process (imports, runtime env): seconds, not minutes


def named_root(cfg: dict[str, Any]) -> str | None:
    """The root the user named (storage.root, else $STUDY_ROOT), if any."""
    return (cfg.get("storage") or {}).get("root") or os.environ.get("STUDY_ROOT") or None


def storage_root(cfg: dict[str, Any]) -> Path:
    """The study's storage root, absolute."""
    return Path(named_root(cfg) or datasets.user_dir()).expanduser().resolve()


def runs_root(cfg: dict[str, Any]) -> Path:
    """Where run dirs go by default: <root>/runs when a root is named, else ./runs (a local study stays beside you)."""
    return storage_root(cfg) / "runs" if named_root(cfg) else Path("runs")


def place(base: dict[str, Any], root: Path) -> dict[str, Any]:
    """The trial base with its data root, .beton cache and confusion artifact absolute, under root unless set."""
    data, noise = dict(base["data"]), dict(base["noise"])
    data["root"] = str(datasets.resolve_root(data["root"], root))
    data["cache"] = str(Path(data.get("cache") or root / "ffcv").expanduser().resolve())
    noise["confusion"] = str(Path(noise.get("confusion") or datasets.default_confusion_path(data["dataset"], root))
                             .expanduser().resolve())
    return {**base, "data": data, "noise": noise}


def _read_token(path: str) -> tuple[str, str | None, str]:
    """On one node: its name, the token it reads at path (None if it cannot), and why not."""
    node = node_name()
    try:
        return node, Path(path).read_text(), ""
    except OSError as exc:
        return node, None, exc.strerror or type(exc).__name__


def check_nodes(root: Path) -> None:
    """One task pinned to each alive node reads a token the driver wrote under root: a node that cannot
    (another file system, no mount) is named in one line before any trial starts. Needs ray.init."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    token = secrets.token_hex(16)
    try:
        root.mkdir(parents=True, exist_ok=True)
        path = root / f".visible-{token}"
        path.write_text(token)
    except OSError as exc:
        raise UsageError(f"storage.root={str(root)!r} is invalid: it must be a folder you may write "
                         f"({exc.strerror}: {exc.filename})") from None
    read = ray.remote(num_cpus=0, max_retries=0)(_read_token)
    try:
        pending = {read.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False))
                   .remote(str(path)): node for node in ray.nodes() if node["Alive"]}
        ready, late = ray.wait(list(pending), num_returns=len(pending), timeout=NODE_TIMEOUT_S)
        if late:
            node = pending[late[0]]
            name = f"{node['NodeManagerHostname']} ({node['NodeManagerAddress']}, node {node['NodeID'][:12]})"
            raise UsageError(f"storage.root={str(root)!r}: node {name} did not answer within {NODE_TIMEOUT_S} s, "
                             "so it is not known to see the root")
        for name, seen, why in ray.get(ready):
            if seen != token:
                raise UsageError(f"storage.root={str(root)!r} is not visible on node {name} "
                                 f"({why or 'another file'} at {path}): mount the shared file system there at "
                                 "the same path, or set storage.root (STUDY_ROOT) to a path every node sees")
    finally:
        path.unlink(missing_ok=True)
