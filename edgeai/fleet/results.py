"""What a fleet run returns: the boxes that took part and one row per cell, grouped by target.

Every row says what ran where (target, host, CPU, engine, provider, precision). A cell that could
not run is a row too: ``unsupported: <reason>`` (the device or precision is not on that box) or
``failed: <reason>`` (the target died, timed out, the transfer was corrupted, the engine raised).
Nothing asked for is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def first_line(e: BaseException) -> str:
    """An error as the one line a row's reason carries."""
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:300]


@dataclass(frozen=True)
class TargetInfo:
    """One box that joined the fleet, as it describes itself (read on the box, not the driver)."""

    name: str  # from the node's ``edgeai-target:NAME`` resource
    node_id: str
    address: str  # the node's IP as Ray knows it
    host: str  # hostname read on the box ("" when the box did not answer)
    status: str = "ok"  # ok | failed: <reason>
    cpu: dict[str, Any] = field(default_factory=dict)  # edgeai.cpu.CPUInfo.to_dict()
    devices: tuple[str, ...] = ()
    engines: dict[str, str] = field(default_factory=dict)  # onnxruntime/openvino/torch/numpy versions
    machine: dict[str, Any] = field(default_factory=dict)  # edgeai.machine.machine_info() on the box

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def kind(self) -> tuple[Any, ...]:
        """What must match for two boxes to give the same numbers: CPU, features, devices, engines."""
        return (self.cpu.get("model"), self.cpu.get("arch"), tuple(self.cpu.get("features") or ()), self.devices,
                tuple(sorted(self.engines.items())))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "host": self.host, "address": self.address,
                "node_id": self.node_id, "cpu": self.cpu, "devices": list(self.devices), "engines": self.engines,
                "machine": self.machine}


@dataclass(frozen=True)
class FleetRow:
    """One cell on one target: a benchmark (model x device x precision x batch) or a parity check."""

    target: str  # target name; for a check split over several boxes of one kind, "a+b+c"
    host: str
    cpu: str  # CPU model name read on the box
    model: str  # model file name (for a check: the candidate)
    device: str  # as asked
    status: str  # ok | unsupported: <reason> | failed: <reason>
    precision: str | None = None  # in effect when it ran; as asked when it did not
    batch: int | None = None
    engine: str | None = None  # "onnxruntime 1.23.2"
    provider: str | None = None  # providers / execution devices in effect
    metrics: dict[str, Any] = field(default_factory=dict)  # headline numbers (see bench/check)
    detail: dict[str, Any] = field(default_factory=dict)  # the full BenchReport / ParityReport dict
    samples_ms: tuple[float, ...] = field(default=(), repr=False)  # a bench cell's timed runs (for plots)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def passed(self) -> bool | None:
        """For a check row that ran: whether the candidate met its tolerance; else None."""
        return self.metrics.get("passed") if self.ok else None

    def to_dict(self, samples: bool = False) -> dict[str, Any]:
        d = {"target": self.target, "host": self.host, "cpu": self.cpu, "model": self.model, "device": self.device,
             "status": self.status, "precision": self.precision, "batch": self.batch, "engine": self.engine,
             "provider": self.provider, "metrics": self.metrics, "detail": self.detail}
        if samples:
            d["samples_ms"] = list(self.samples_ms)
        return d


@dataclass(frozen=True)
class FleetReport:
    """One report over many boxes: a row group per target, in the order the targets were asked for."""

    kind: str  # bench | check
    rows: tuple[FleetRow, ...]
    targets: tuple[TargetInfo, ...]
    models: tuple[dict[str, Any], ...] = ()  # Shipment.to_dict() of each file shipped (name, sha256, bytes)
    settings: dict[str, Any] = field(default_factory=dict)  # what was asked: devices, batches, stop rule, ...
    wall_s: float = 0.0  # the whole fleet call, as the driver timed it

    def groups(self) -> dict[str, list[FleetRow]]:
        """Rows per target (or per group of targets a split check ran on), in order."""
        out: dict[str, list[FleetRow]] = {}
        for r in self.rows:
            out.setdefault(r.target, []).append(r)
        return out

    @property
    def complete(self) -> bool:
        """Every cell ran (none failed or unsupported)."""
        return all(r.ok for r in self.rows)

    @property
    def failed(self) -> list[FleetRow]:
        return [r for r in self.rows if r.status.startswith("failed")]

    @property
    def passed(self) -> bool:
        """A check: every row ran and every candidate met its tolerance. A bench: no row failed."""
        if self.kind == "check":
            return bool(self.rows) and all(r.ok and r.passed for r in self.rows)
        return not self.failed

    def to_dict(self, samples: bool = False) -> dict[str, Any]:
        return {"kind": f"edgeai.fleet.{self.kind}", "complete": self.complete, "passed": self.passed,
                "wall_s": round(self.wall_s, 3), "settings": self.settings, "models": list(self.models),
                "targets": [t.to_dict() for t in self.targets],
                "groups": {name: [r.to_dict(samples) for r in rows] for name, rows in self.groups().items()}}
