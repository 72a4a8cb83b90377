"""Ray for the lab: start a local single-node cluster or join one, and check that its nodes carry what the sweep
schedules on: a CPU-model label (variants are measured on nodes with the driver's CPU model, the machine the run's
fingerprint names) and a timing resource of 1 per node (latency is timed by one task at a time per node).

`python -m optim.distributed.cluster` prints the `ray start` flags that give a node both.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

from optim.environment import cpu_name
from optim.errors import OptimError

TIMING_RESOURCE = "optim_timing"  # 1 per node: a timing task holds it, so timings on a node never overlap
CPU_LABEL = "optim-cpu"  # the node's CPU model, as a Ray label value
INSTALL_HINT = "install the 'ray' extra: pip install -e '.[ray]'"


@dataclass(frozen=True)
class RayOptions:
    """Where to run: `address` None starts a local single-node Ray with `workers` CPUs (default: every core)."""

    address: str | None = None
    workers: int | None = None


@dataclass
class Node:
    """A live node of the cluster that may measure this run's variants."""

    node_id: str
    hostname: str
    cpus: int
    gpus: int
    timing: bool  # carries the timing resource


def cpu_label(name: str | None = None) -> str:
    """The CPU model as a Ray label value (alphanumerics, '-', '_', '.'; at most 63 characters)."""
    slug = re.sub(r"[^A-Za-z0-9_.]+", "-", name or cpu_name()).strip("-_.")
    return slug[:63].rstrip("-_.") or "unknown-cpu"


def import_ray():
    """The `ray` module, or a clear error naming the extra."""
    try:
        import ray
    except ImportError:
        raise OptimError("--ray needs Ray, which is not installed", field="--ray", fix=INSTALL_HINT) from None
    return ray


@contextlib.contextmanager
def connected(options: RayOptions) -> Iterator[object]:
    """Ray, initialized for the sweep (a local cluster is stopped again on exit; a joined one is only left)."""
    ray = import_ray()
    quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
    if options.address is None:
        workers = options.workers or os.cpu_count() or 1
        try:
            ray.init(address="local", num_cpus=workers, resources={TIMING_RESOURCE: 1},
                     labels={CPU_LABEL: cpu_label()}, **quiet)
        except Exception as error:  # noqa: BLE001 -- Ray raises a bare Exception when its raylet is late
            raise OptimError(f"the local Ray cluster did not start: {error}", field="--ray",
                             fix="run again when the machine is less loaded (Ray waits 30 s for its raylet), or "
                                 "run without --ray") from None
    else:
        try:
            ray.init(address=options.address, log_to_driver=False, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise OptimError(f"cannot join the Ray cluster at {options.address}: {error}", field="--ray-address",
                             fix="start it first (ray start --head ...; see docs/ray.md) and pass its address, "
                                 "e.g. 10.0.0.1:6379, with RAY_AUTH_MODE=token and the cluster's token here "
                                 "(~/.ray/auth_token or RAY_AUTH_TOKEN), or use --ray for a local one") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def usable_nodes(ray, need_timing: bool) -> list[Node]:
    """The live nodes labelled with the driver's CPU model; an error naming the fix when there are none (or, for a
    timed run, none with the timing resource)."""
    label = cpu_label()
    nodes = [Node(n["NodeID"], n.get("NodeManagerHostname", "?"), int(n["Resources"].get("CPU", 0)),
                  int(n["Resources"].get("GPU", 0)), n["Resources"].get(TIMING_RESOURCE, 0) >= 1)
             for n in ray.nodes() if n.get("Alive") and (n.get("Labels") or {}).get(CPU_LABEL) == label]
    nodes = [node for node in nodes if node.cpus > 0]
    if not nodes or (need_timing and not any(node.timing for node in nodes)):
        what = "no live node" if not nodes else "no node with the timing resource"
        raise OptimError(f"the Ray cluster has {what} with label {CPU_LABEL}={label} (this machine's CPU model: "
                         "variants are measured on nodes of the CPU the run's fingerprint names)", field="--ray-address",
                         fix=f"start a node of that CPU with: ray start {node_flags()} (python -m "
                             "optim.distributed.cluster prints these flags)")
    return nodes


def node_flags() -> str:
    """The `ray start` flags that give this machine's node the sweep's label and timing resource."""
    return f"--labels={CPU_LABEL}={cpu_label()} --resources='{{\"{TIMING_RESOURCE}\": 1}}'"


if __name__ == "__main__":
    print(node_flags())
