"""Many target boxes, one report: ``edgeai bench`` and ``edgeai check`` across a Ray cluster.

Each box joins with ``ray start --address HEAD:PORT --resources '{"edgeai-target:NAME": 1}'``
(edgeai and ``edgeai[fleet]`` installed). The driver ships model files once through Ray's object
store (sha256-checked on arrival); every box runs its own cells locally, one benchmark at a time;
the results come back as one :class:`FleetReport` with a row group per box, every row saying what
ran where. A box that dies, times out or lacks a device is a row with the reason, not a gap.

Without a cluster address a local Ray instance (loopback only) runs this box as target ``local``.
Ray is imported only when a fleet function runs (``pip install 'edgeai[fleet]'``).

    >>> import edgeai.fleet
    >>> edgeai.fleet.targets("10.0.0.5:6379")
    >>> report = edgeai.fleet.bench(["cnn.onnx", "cnn.int8.onnx"], address="10.0.0.5:6379",
    ...                             devices=["cpu", "openvino:CPU"], batches=[1, 8])
    >>> report = edgeai.fleet.check("cnn.onnx", ["cnn.int8.onnx"], "digits.npz", address="10.0.0.5:6379")
"""

from __future__ import annotations

from edgeai.fleet.checks import check
from edgeai.fleet.cluster import LOCAL_TARGET, TARGET_PREFIX, FleetError, connect
from edgeai.fleet.inventory import targets
from edgeai.fleet.matrix import bench
from edgeai.fleet.results import FleetReport, FleetRow, TargetInfo
from edgeai.fleet.shipping import Shipment, TransferError, ship

__all__ = ["targets", "bench", "check", "ship", "connect", "Shipment", "FleetReport", "FleetRow", "TargetInfo",
           "FleetError", "TransferError", "TARGET_PREFIX", "LOCAL_TARGET"]
