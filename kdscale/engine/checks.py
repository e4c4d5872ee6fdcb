"""What the engine checks on Ray before anything runs, and how a failure on Ray becomes one line.

A trial's CPUs and GPUs must fit on one node: Ray places a task or an actor on one node, and one
that fits nowhere waits forever without a word. So before the first teacher starts, the request is
checked against the nodes of the cluster (`ray.nodes()`, `ray.cluster_resources()`), and against
the node types of an autoscaling cluster started by `ray up` (its `~/ray_bootstrap_config.yaml` on
the head, where the driver runs), which may add the node later. `KDSCALE_RESOURCE_CHECK=0` skips
the check (an autoscaler kdscale cannot see, such as KubeRay's).
"""
from __future__ import annotations

import os
from pathlib import Path

import ray

from kdscale.errors import EnvironmentFault, find_fault, os_reason

BOOTSTRAP_CONFIG = Path("~/ray_bootstrap_config.yaml")


def _autoscaler_node_types() -> list[dict[str, float]] | None:
    """The declared resources of each node type of a `ray up` cluster, or None if there is none."""
    path = BOOTSTRAP_CONFIG.expanduser()
    if not path.is_file():
        return None
    try:
        import yaml

        config = yaml.safe_load(path.read_text()) or {}
        return [dict(node.get("resources") or {}) for node in (config.get("available_node_types") or {}).values()]
    except (OSError, ValueError, AttributeError, yaml.YAMLError):
        return None


def _fits(resources: dict[str, float], cpus: float, gpus: float) -> bool:
    return resources.get("CPU", 0.0) >= cpus and resources.get("GPU", 0.0) >= gpus


def check_resources(cpus: float, gpus: float) -> None:
    """Raise one EnvironmentFault if no node of the cluster (now or by its autoscaler) holds a trial
    of `cpus` CPUs and `gpus` GPUs."""
    if os.environ.get("KDSCALE_RESOURCE_CHECK", "1") == "0":
        return
    nodes = [node.get("Resources", {}) for node in ray.nodes() if node.get("Alive")]
    if any(_fits(node, cpus, gpus) for node in nodes):
        return
    node_types = _autoscaler_node_types()
    if node_types is not None and any(not t or _fits(t, cpus, gpus) for t in node_types):
        return  # a node type that fits (or whose resources are detected at start): the autoscaler adds it
    total = ray.cluster_resources()
    largest = max(nodes, key=lambda n: (n.get("GPU", 0.0), n.get("CPU", 0.0)), default={})
    where = f"the Ray cluster at {ray.get_runtime_context().gcs_address}"
    raise EnvironmentFault(
        f"resources: a trial asks for {cpus:g} CPU and {gpus:g} GPU on one node; no node of {where} has that "
        f"(largest node: {largest.get('CPU', 0):g} CPU, {largest.get('GPU', 0):g} GPU; cluster total: "
        f"{total.get('CPU', 0):g} CPU, {total.get('GPU', 0):g} GPU{'' if node_types is None else ', nor any node type of the autoscaler'}): "
        "lower --cpus-per-trial / --gpus-per-trial, or add a node that has them")


def task_fault(error: BaseException, where: str) -> EnvironmentFault | None:
    """The EnvironmentFault behind a Ray task's failure: one it raised, or an OSError it met (`where`:
    what it was doing, e.g. 'cache'); None for anything else (a bug keeps its traceback)."""
    found = find_fault(error)
    if found is not None:
        return found
    cause = getattr(error, "cause", None)
    if isinstance(cause, OSError):
        name = f" {cause.filename}" if getattr(cause, "filename", None) else ""
        return EnvironmentFault(f"{where}:{name} {os_reason(cause)}")
    return None
