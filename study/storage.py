"""One storage root for a study: runs, datasets, .beton cache and confusion artifacts live under it.

storage.root, else $STUDY_ROOT, else the per-user cache (~/.cache/label-noise-study). It is resolved once,
in the driver, and every path a trial reads is made absolute from it there (trial_base): a node
never resolves ~ or an environment variable of its own. Explicit data.root, data.cache, noise.confusion and
run_dir still win. On a cluster, check_nodes proves every alive node sees the root before any trial starts,
and every trial checks its own node again before it trains (check_token): nodes the autoscaler adds later too.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from errors import UsageError, invalid
from loaders import datasets
from study.cluster import node_name
from study.config import TRIAL_SECTIONS, Config

NODE_TIMEOUT_S = 120  # a node's first task starts a worker process (imports, runtime env): seconds, not minutes


def named_root(cfg: Config) -> str | None:
    """The root the user named (storage.root, else $STUDY_ROOT), if any."""
    return cfg.storage.root or os.environ.get("STUDY_ROOT") or None


@contextlib.contextmanager
def resolving(key: str, value: Any) -> Iterator[None]:
    """A path key resolved in the block: one that cannot be (a folder on its way one may not search) is one line."""
    try:
        yield
    except OSError as exc:
        raise invalid(key, value, f"a path you may read ({exc.strerror}: {exc.filename})") from None
    except RuntimeError as exc:  # a symlink loop, before Python 3.13 (an OSError since)
        raise invalid(key, value, f"a path you may read ({exc})") from None


def absolute(key: str, path: str | Path) -> Path:
    """The path a key names, absolute (~ expanded, links followed); one line if it cannot be resolved."""
    with resolving(key, str(path)):
        resolved = Path(path).expanduser().resolve()
        resolved.exists()  # a name too long for the file system raises here (resolve lets it through)
        return resolved


def storage_root(cfg: Config) -> Path:
    """The study's storage root, absolute."""
    return absolute("storage.root", named_root(cfg) or datasets.user_dir())


def runs_root(cfg: Config) -> Path:
    """Where run dirs go by default: <root>/runs when a root is named, else ./runs (a local study stays beside you)."""
    return storage_root(cfg) / "runs" if named_root(cfg) else Path("runs")


def place(base: dict[str, Any], root: Path) -> dict[str, Any]:
    """The trial base with its data root, .beton cache and confusion artifact absolute, under root unless set."""
    data, noise = dict(base["data"]), dict(base["noise"])
    with resolving("data.root", data["root"] or os.environ.get("STUDY_DATA_ROOT")):
        data["root"] = str(datasets.resolve_root(data["root"], root))
    data["cache"] = str(absolute("data.cache", data["cache"] or root / "ffcv"))
    confusion = noise["confusion"] or datasets.default_confusion_path(data["dataset"], root)
    noise["confusion"] = str(absolute("noise.confusion", confusion))
    return {**base, "data": data, "noise": noise}


def trial_base(cfg: Config) -> dict[str, Any]:
    """The sections a trial sees, as plain dicts, with their paths (data root, .beton cache, confusion artifact)
    made absolute under the storage root and every file they name absolute: no node resolves them again."""
    base = place({name: asdict(getattr(cfg, name)) for name in TRIAL_SECTIONS}, storage_root(cfg))
    for section, key in (("data", "path"), ("noise", "matrix"), ("noise", "labels")):
        value = base[section][key]
        if value and not str(value).startswith("cifar10n:"):  # cifar10n:<kind> names annotations, not a file
            base[section][key] = str(absolute(f"{section}.{key}", value))
    return base


def _read_token(path: str) -> tuple[str, str | None, str]:
    """On one node: its name, the token it reads at path (None if it cannot), and why not."""
    node = node_name()
    try:
        return node, Path(path).read_text(), ""
    except OSError as exc:
        return node, None, exc.strerror or type(exc).__name__


class NotVisible(RuntimeError):
    """A node that cannot read the storage root's token: its trials would read other data and lose results."""


def not_visible(root: Path, node: str, why: str, path: Path) -> str:
    return (f"storage.root={str(root)!r} is not visible on node {node} ({why or 'another file'} at {path}): mount "
            "the shared file system there at the same path, or set storage.root (STUDY_ROOT) to a path every node sees")


def token(root: Path) -> tuple[str, str]:
    """A fresh token written under root for this launch, kept until the driver exits: every trial reads it
    before training (check_token), so a node the autoscaler adds later is checked too. (path, token)."""
    value = secrets.token_hex(16)
    try:
        root.mkdir(parents=True, exist_ok=True)
        path = root / f".visible-{value}"
        path.write_text(value)
    except OSError as exc:
        raise invalid("storage.root", str(root), f"a folder you may write ({exc.strerror}: {exc.filename})") from None
    atexit.register(path.unlink, missing_ok=True)
    return str(path), value


def check_token(path: str, expected: str) -> None:
    """In a trial, before it trains: this node reads the launch's token, else the trial fails in one line."""
    node, seen, why = _read_token(path)
    if seen != expected:
        raise NotVisible(not_visible(Path(path).parent, node, why, Path(path)))


def check_nodes(root: Path) -> tuple[str, str]:
    """One task pinned to each alive node reads a token the driver wrote under root: a node that cannot
    (another file system, no mount) is named in one line before any trial starts. Needs ray.init. The token
    (path, value), which every trial checks again on its own node."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    path, value = token(root)
    read = ray.remote(num_cpus=0, max_retries=0)(_read_token)
    pending = {read.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False))
               .remote(path): node for node in ray.nodes() if node["Alive"]}
    ready, late = ray.wait(list(pending), num_returns=len(pending), timeout=NODE_TIMEOUT_S)
    if late:
        node = pending[late[0]]
        name = f"{node['NodeManagerHostname']} ({node['NodeManagerAddress']}, node {node['NodeID'][:12]})"
        raise UsageError(f"storage.root={str(root)!r}: node {name} did not answer within {NODE_TIMEOUT_S} s, "
                         "so it is not known to see the root")
    check_answers(ray.get(ready), value, root, Path(path))
    return path, value


def check_answers(answers: list[tuple[str, str | None, str]], token: str, root: Path, path: Path) -> None:
    """Each node's (name, what it read at path, why it could not): the first that did not read the token (no such
    file, another file system, a stale copy) is named in one line."""
    for name, seen, why in answers:
        if seen != token:
            raise UsageError(not_visible(root, name, why, path))


def link_datasets(found: Path) -> str:
    """Set-up (`make`): <storage root>/datasets becomes a link to `found` (the datasets beside the checkout) unless
    it exists, so that every command of the checkout reads the data `make demo` found; what was done, in a line."""
    target = storage_root(Config()) / "datasets"
    found = Path(found).resolve()
    if target.is_symlink() and target.resolve() == found:
        return ""
    if target.exists() or target.is_symlink():
        return (f"data root: {target} exists, kept (the data beside the checkout, {found}, is read only with "
                f"STUDY_DATA_ROOT={found} or data.root={found})")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(found, target_is_directory=True)
    return f"data root: {target} -> {found} (every command of this checkout reads it)"


if __name__ == "__main__":  # python -m study.storage <datasets dir>: what `make` runs
    import sys

    if line := link_datasets(Path(sys.argv[1])):
        print(line)
