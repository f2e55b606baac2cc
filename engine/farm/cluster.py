"""Connecting to Ray: a local cluster on loopback only (the default), or an existing cluster by address.

Runs on the thread that drives the farm.
"""

from __future__ import annotations

import logging
import os

from engine.farm import RAY_MISSING_HINT, FarmError, ray_available

log = logging.getLogger(__name__)

# Ray binds its servers to the node's IP; this switch (Ray's own, read when Ray starts its processes) makes
# the node IP the loopback address, so a local cluster listens on 127.0.0.1 only and nothing is reachable
# from other machines. It is set only for a cluster we start ourselves.
_LOOPBACK_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def connect(address: str | None = None, *, num_cpus: int | None = None, num_gpus: int | None = None) -> bool:
    """Join the Ray cluster at ``address`` or, with None, start a local one (loopback only, no dashboard,
    no usage reporting). Returns True when this call started a cluster (the caller shuts it down).
    Reuses a connection this process already has. Raises FarmError with one line."""
    if not ray_available():
        raise FarmError(RAY_MISSING_HINT)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address is None:
        os.environ[_LOOPBACK_SWITCH] = "0"
        # Ray starts workers at niceness 15 (to keep its own daemons responsive); on a user's machine the
        # workers are the work, and at 15 any other program starves them.
        os.environ.setdefault("RAY_worker_niceness", "0")
    import ray
    from ray._private import ray_constants

    if ray.is_initialized():
        return False
    if address is None:
        ray_constants.ENABLE_RAY_CLUSTER = False  # if Ray was imported before the switch was set
    elif (silent := unanswered(address)):
        # Ray would retry a head that is not there for ever, printing a warning every 30 s.
        raise FarmError(f"could not reach the Ray cluster at {address}: {silent}")
    try:
        ray.init(address=address or "local", num_cpus=num_cpus if address is None else None,
                 num_gpus=num_gpus if address is None else None, include_dashboard=False,
                 log_to_driver=False, configure_logging=True, logging_level=logging.WARNING,
                 namespace="easel")
    except (ConnectionError, ValueError, RuntimeError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
        raise FarmError(f"could not reach {where}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") \
            from None
    return address is None


def unanswered(address: str, seconds: float = 10.0) -> str:
    """Why nothing answers at a ``host:port`` address ("" when something does, or for Ray's own "auto" /
    "ray://…" forms, which Ray resolves itself)."""
    import socket

    if address == "auto" or "://" in address or ":" not in address:
        return ""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=seconds):
            return ""
    except ValueError:
        return f"{port!r} is not a port number"
    except socket.timeout:
        return f"nothing answered within {seconds:.0f} s (is the head machine on, and its port open?)"
    except OSError as exc:
        return f"{exc.strerror or exc} (is `ray start --head` running there?)"


def shutdown() -> None:
    """Disconnect (and stop a cluster this process started)."""
    import ray

    if ray.is_initialized():
        ray.shutdown()


def resources() -> dict[str, float]:
    """The cluster's total resources (CPU, GPU, ...)."""
    import ray

    return dict(ray.cluster_resources())


def nodes() -> list[tuple[str, int, int]]:
    """(node id, CPUs, GPUs) of each live node, in the order Ray lists them (the head first)."""
    import ray

    return [(n["NodeID"], int(n.get("Resources", {}).get("CPU", 0)), int(n.get("Resources", {}).get("GPU", 0)))
            for n in ray.nodes() if n.get("Alive")]


def plan_workers(node_list: list[tuple[str, int, int]], workers: int | None = None,
                 use_gpu: bool = True) -> list[tuple[str, int, int]]:
    """Where the farm's workers go: (node id, CPUs, GPUs) for each, planned node by node so that every
    worker fits on one machine (a worker asking for more CPUs than any one node has would wait forever).

    With GPUs (``use_gpu`` and a node has one): one worker per GPU, each asking for 1 GPU (``workers``
    caps the count). Without: one per 2 CPUs of each node, at least one per node, or ``workers`` dealt
    round the nodes; a node's cores are shared out among its workers for torch's threads. Listed with
    the nodes interleaved (each node's first worker, then each node's second...).
    """
    gpu_nodes = [(nid, gpus) for nid, _cpus, gpus in node_list if gpus > 0] if use_gpu else []
    if gpu_nodes:
        per_node = [[(nid, 0, 1)] * gpus for nid, gpus in gpu_nodes]
        return _interleave(per_node)[:workers or None]
    cpu_nodes = [(nid, max(1, cpus)) for nid, cpus, _gpus in node_list]
    counts = [max(1, cpus // 2) for _nid, cpus in cpu_nodes]
    if workers and cpu_nodes:
        counts = [min(cpus, workers // len(cpu_nodes) + (i < workers % len(cpu_nodes)))  # a CPU each at least
                  for i, (_nid, cpus) in enumerate(cpu_nodes)]
    return _interleave([[(nid, max(1, cpus // count), 0)] * count
                        for (nid, cpus), count in zip(cpu_nodes, counts) if count])


def _interleave(groups: list[list]) -> list:
    return [group[i] for i in range(max(map(len, groups), default=0)) for group in groups if i < len(group)]
