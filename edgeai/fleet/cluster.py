"""The Ray side of the fleet: connecting, finding target boxes, and running one task per box.

A target is a Ray node started with a custom resource ``edgeai-target:NAME`` of capacity 1. Every
fleet task asks for that whole unit, so Ray itself guarantees that two benchmarks never overlap on
one box, even when several drivers share the cluster. Tasks never retry (a retried benchmark on a
box that died would wait forever for its resource): a box that dies, disconnects or runs past the
timeout is reported, and the other boxes finish.

``ray`` is imported inside functions: ``import edgeai`` never pays for it, and without the
``fleet`` extra installed only the fleet functions fail, with a message saying what to install.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from edgeai.errors import EdgeAIError

TARGET_PREFIX = "edgeai-target:"
LOCAL_TARGET = "local"  # the name of this box when no cluster address is given
_LIVENESS_EVERY_S = 1.0


class FleetError(EdgeAIError):
    """The fleet cannot run as asked: Ray missing, cluster unreachable, no or unknown targets."""


def require_ray() -> Any:
    try:
        import ray
    except ImportError as e:
        raise FleetError("the fleet runs on Ray, which is not installed; pip install 'edgeai[fleet]' "
                         "(on the driver and on every target box)") from e
    return ray


def _is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


@contextlib.contextmanager
def _loopback_driver() -> Iterator[None]:
    """Let ray.init reach (or start) a cluster on 127.0.0.1 without leaving loopback.

    ``ray.init`` rewrites a loopback address, and ``_node_ip_address="127.0.0.1"``, into this
    machine's interface address (``services.resolve_ip_for_localhost``), so a driver would look for a
    loopback-only head on the network, and a local instance would listen on it. Ray skips that
    rewrite only when multi-node clusters are off; that flag is read at call time, so it is turned
    off for the duration of ``ray.init`` alone.
    """
    from ray._private import ray_constants

    old = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = old


def _split_address(address: str) -> tuple[str, int | None]:
    text = address.removeprefix("ray://")
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        return text.strip("[]"), None
    return host.strip("[]"), int(port)


def _reachable(host: str, port: int, timeout: float = 5.0) -> None:
    """Fail in seconds on a wrong address; ray.init would retry for minutes."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as e:
        raise FleetError(f"cannot reach the Ray head at {host}:{port} ({e.strerror or e}); start it with "
                         "`ray start --head --port 6379` on the head box, or check the address and firewall") from e


@contextlib.contextmanager
def connect(address: str | None = None, *, object_store_mb: int | None = None,
            num_cpus: int | None = None) -> Iterator[None]:
    """A Ray session for fleet calls; reuses one the caller already holds.

    Args:
        address: ``HOST:PORT`` of the head (``ray start --head``); ``None`` starts a local instance,
            bound to 127.0.0.1 only, with this box as the target ``local``.
        object_store_mb / num_cpus: limits of that local instance (Ray's defaults when None).

    Raises:
        FleetError: Ray is not installed, or the head cannot be reached.
    """
    ray = require_ray()
    if ray.is_initialized():
        yield
        return
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address is None or address == "local":
        limits = {k: v for k, v in {"num_cpus": num_cpus, "object_store_memory": None if object_store_mb is None
                                    else object_store_mb * 2**20}.items() if v is not None}
        with _loopback_driver():
            ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=False,
                     resources={TARGET_PREFIX + LOCAL_TARGET: 1}, **limits, **quiet)
    else:
        host, port = _split_address(address)
        if port is not None:
            _reachable(host, port)
        try:
            if _is_loopback(host):
                with _loopback_driver():
                    ray.init(address=address, **quiet)
            else:
                ray.init(address=address, **quiet)
        except (ConnectionError, RuntimeError) as e:
            raise FleetError(f"cannot join the Ray cluster at {address}: {str(e).splitlines()[0][:200]}") from e
    try:
        yield
    finally:
        ray.shutdown()


def session_address() -> str:
    """The head this driver is connected to (``HOST:PORT``), for the report to say where it ran."""
    ray = require_ray()
    try:
        return str(ray.get_runtime_context().gcs_address)
    except Exception:  # an older Ray without it: say less rather than fail a finished run
        return "?"


@dataclass(frozen=True)
class TargetNode:
    """A target as Ray sees it (before asking the box itself)."""

    name: str
    node_id: str
    address: str
    hostname: str


def target_nodes() -> list[TargetNode]:
    """Alive nodes carrying an ``edgeai-target:NAME`` resource, by name."""
    ray = require_ray()
    found: dict[str, list[TargetNode]] = {}
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        for key in node.get("Resources", {}):
            if key.startswith(TARGET_PREFIX):
                name = key[len(TARGET_PREFIX):]
                found.setdefault(name, []).append(TargetNode(name, node["NodeID"], node.get("NodeManagerAddress", ""),
                                                             node.get("NodeManagerHostname", "")))
    shared = {n: len(v) for n, v in found.items() if len(v) > 1}
    if shared:
        raise FleetError(f"target name(s) {sorted(shared)} are on several nodes; give each box its own name "
                         "in --resources '{\"edgeai-target:NAME\": 1}'")
    return sorted((v[0] for v in found.values()), key=lambda t: t.name)


def select_targets(names: Sequence[str] | str | None = None) -> list[TargetNode]:
    """The targets asked for (all that joined when None), in the order asked."""
    nodes = {t.name: t for t in target_nodes()}
    if not nodes:
        raise FleetError("no target box has joined this cluster; on each box run: ray start --address HEAD:PORT "
                         "--resources '{\"edgeai-target:NAME\": 1}'")
    if names is None:
        return list(nodes.values())
    wanted = [n.strip() for n in (names.split(",") if isinstance(names, str) else names) if n.strip()]
    unknown = [n for n in wanted if n not in nodes]
    if unknown or not wanted:
        raise FleetError(f"unknown target(s) {unknown or wanted}; the boxes that joined are {sorted(nodes)}")
    return [nodes[n] for n in dict.fromkeys(wanted)]


_REMOTES: dict[Callable[..., Any], Any] = {}


def _remote(fn: Callable[..., Any]) -> Any:
    """``fn`` as a Ray task: no retries, a fresh worker process per call (clean memory numbers, no
    engine state carried over), and no CPU claim (the target resource is what serializes work)."""
    ray = require_ray()
    if fn not in _REMOTES:
        _REMOTES[fn] = ray.remote(num_cpus=0, max_retries=0, max_calls=1)(fn)
    return _REMOTES[fn]


def _reason(target: TargetNode, e: BaseException) -> str:
    from ray import exceptions as rx

    if isinstance(e, (rx.NodeDiedError, rx.WorkerCrashedError, rx.ObjectLostError, rx.OwnerDiedError,
                      rx.LocalRayletDiedError, rx.RaySystemError)):
        return f"failed: target {target.name} ({target.address}) died or disconnected during the run " \
               f"({type(e).__name__})"
    if isinstance(e, rx.TaskCancelledError):
        return f"failed: the run on target {target.name} was cancelled"
    cause = getattr(e, "cause", None) or e
    text = (str(cause).strip().splitlines() or [type(cause).__name__])[-1][:300]
    return f"failed: on target {target.name}: {type(cause).__name__}: {text}"


def run_on_targets(fn: Callable[..., Any], calls: Sequence[tuple[TargetNode, tuple[Any, ...]]], *,
                   timeout: float | None = None, on_done: Callable[[TargetNode, Any], None] | None = None
                   ) -> list[Any]:
    """Run ``fn(*args)`` on each target (holding its whole target resource); results in call order.

    A call that does not come back is a ``"failed: <reason>"`` string in its place: the box died or
    left the cluster (its node is no longer alive), or ``timeout`` seconds passed since submission
    (the task is then cancelled). The other calls run on.
    """
    ray = require_ray()
    task = _remote(fn)
    refs = [task.options(resources={TARGET_PREFIX + t.name: 1}).remote(*args) for t, args in calls]
    results: list[Any] = [None] * len(calls)
    pending = {ref: i for i, ref in enumerate(refs)}
    start = time.monotonic()
    checked = start
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=_LIVENESS_EVERY_S)
        for ref in ready:
            i = pending.pop(ref)
            target = calls[i][0]
            try:
                results[i] = ray.get(ref)
            except Exception as e:  # any Ray failure of this one task becomes its row, not the run's end
                results[i] = _reason(target, e)
            if on_done:
                on_done(target, results[i])
        now = time.monotonic()
        if not pending or (now - checked < _LIVENESS_EVERY_S and not (timeout and now - start > timeout)):
            continue
        checked = now
        alive = {n["NodeID"] for n in ray.nodes() if n.get("Alive")}
        for ref, i in list(pending.items()):
            target = calls[i][0]
            if target.node_id not in alive:
                reason = f"failed: target {target.name} ({target.address}) left the cluster during the run"
            elif timeout and now - start > timeout:
                reason = f"failed: target {target.name} did not finish within the {timeout:g} s timeout"
            else:
                continue
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
            pending.pop(ref)
            results[i] = reason
            if on_done:
                on_done(target, reason)
    return results

