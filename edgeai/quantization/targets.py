"""What this machine can run: every device here x the precisions it supports, as candidate plans.

A plan is one way to run the model: a device, a graph (the FP32 export, onnxruntime's fused
transformer graph, an INT8 graph) and the precision the engine runs its float parts at. A plan the
machine cannot run is kept with ``unsupported`` saying why, so the report lists it and nothing
runs it. Support is decided from the CPU's features (:mod:`edgeai.cpu`; tests inject a CPU without
bf16) and from what each engine says about its devices (OpenVINO's ``OPTIMIZATION_CAPABILITIES``).

Simplicity orders plans where speed cannot separate them: the FP32 export (0) < a fused FP32 graph
(1) < bf16/f16 (2) < INT8 (3) < INT8 with sensitive parts kept in float (4); an OpenVINO plan
compiled for the timing feed's static shapes ranks half a step above its dynamic twin.

Static twins: OpenVINO's CPU plugin plans a graph whose shapes it knows better than one with
dynamic dims (zoo encoder at seq 128, bf16: 0.85 vs 1.08 ms). A twin is compiled for the shapes of
the data it is timed on and loads with ``other_shapes="dynamic"``: a feed of any other shape runs
on a dynamic compile made on first need, so the fast path never becomes an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from edgeai.cpu import CPUInfo
from edgeai.device_strings import parse_device
from edgeai.registry import import_attr

# Float precision -> simplicity; INT8 graphs add on top of their float precision's rank.
F32, FUSED, HALF, INT8, MIXED = 0, 1, 2, 3, 4
STATIC = 0.5  # added to a plan's rank for its static-shape twin

_ORT_BF16 = ("onnxruntime has no bf16 execution path on CPU: its CPU kernels compute in float32 and it has no "
             "precision hint (OpenVINO's INFERENCE_PRECISION_HINT=bf16 is the bf16 candidate)")
_ORT_F16_CPU = ("onnxruntime's CPU provider has float16 kernels for few ops on this architecture; an f16 graph "
                "runs mostly through inserted casts, so it is not a speed candidate (OpenVINO's f16 hint is)")


@dataclass(frozen=True)
class Plan:
    """One candidate way to run the model. ``graph``: ``original`` | ``fused`` | ``int8-dynamic`` (per-tensor) |
    ``int8-dynamic-pc`` (per-channel) | ``int8-static`` | ``nncf-int8`` | ``fp16``; ``load``: ``edgeai.load`` keyword arguments."""

    name: str
    device: str
    engine: str
    graph: str
    precision: str  # what runs: f32, bf16, f16, int8+f32, int8+bf16, ...
    simplicity: float
    load: dict[str, Any] = field(default_factory=dict)
    engine_config: dict[str, Any] = field(default_factory=dict)  # the engine settings this means
    unsupported: str | None = None
    excluded: tuple[str, ...] = ()  # nodes kept in float (mixed precision)

    @property
    def int8(self) -> bool:
        return self.graph in ("int8-dynamic", "int8-dynamic-pc", "int8-static", "nncf-int8")

    @property
    def tolerance_precision(self) -> str:
        """The precision whose default tolerance judges this plan."""
        return "int8" if self.int8 else self.precision.split("+")[-1]

    def with_excluded(self, nodes: Sequence[str]) -> Plan:
        return replace(self, name=f"{self.name}, {len(nodes)} nodes in float", excluded=tuple(nodes),
                       simplicity=MIXED + self.simplicity % 1)

    def run_with(self) -> dict[str, Any]:
        """What ``edgeai.load`` reads back from the written file's metadata."""
        return {"device": self.device, "engine": self.engine, "precision": self.precision, "load": dict(self.load),
                "engine_config": dict(self.engine_config)}

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "device": self.device, "engine": self.engine, "graph": self.graph,
                "precision": self.precision, "simplicity": self.simplicity, "load": dict(self.load),
                "engine_config": dict(self.engine_config), "unsupported": self.unsupported,
                "excluded_nodes": len(self.excluded)}


def openvino_capabilities(target: str) -> tuple[str, ...]:
    """OpenVINO's ``OPTIMIZATION_CAPABILITIES`` of a device (``FP32``, ``BF16``, ``FP16``, ``INT8``...)."""
    try:
        core = import_attr("edgeai.runtimes.openvino:core")()
        return tuple(str(c) for c in core.get_property(target, "OPTIMIZATION_CAPABILITIES"))
    except Exception:  # an engine that cannot answer offers nothing beyond FP32
        return ("FP32",)


def _ov_hint(device: str, precision: str) -> tuple[dict[str, Any], dict[str, Any]]:
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": precision}
    if precision == "f32" and parse_device(device).target.startswith("CPU"):
        config["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = 0  # what edgeai's f32 load sets: no on-the-fly INT8
    return {"precision": precision}, config


def plans_for(devices: Sequence[str], cpu: CPUInfo, *, transformer: bool, fuse: bool = True,
              capabilities: Any = openvino_capabilities,
              static_shapes: dict[str, list[int]] | None = None) -> list[Plan]:
    """Every candidate plan for ``devices`` on ``cpu``, unsupported ones included with the reason.

    Args:
        devices: device strings (``edgeai.devices()``); ``torch`` is skipped.
        transformer: whether the graph is a transformer (only then is the fused graph tried).
        capabilities: ``target -> OpenVINO capability names`` (tests pass a fixed answer).
        static_shapes: the timing feed's shapes of the inputs with dynamic dims; each OpenVINO plan
            then gets a static twin compiled for them (None: no twins).
    """
    feats = set(cpu.features)
    plans: list[Plan] = []
    for device in devices:
        req = parse_device(device)
        if req.engine == "onnxruntime" and req.target == "CPU":
            plans += _ort_cpu(req.device, cpu, transformer, fuse)
        elif req.engine == "onnxruntime":  # UNVERIFIED: no GPU where this was written
            plans.append(Plan(f"{req.device} f32", req.device, "onnxruntime", "original", "f32", F32))
            if req.target == "CUDA":
                plans.append(Plan(f"{req.device} f16", req.device, "onnxruntime", "fp16", "f16", HALF))
            else:
                plans.append(Plan(f"{req.device} f16", req.device, "onnxruntime", "fp16", "f16", HALF,
                                  unsupported="edgeai's TensorRT session has no fp16 switch yet"))
        elif req.engine == "openvino":
            found = _openvino(req.device, req.target, cpu, feats, tuple(capabilities(req.target)))
            plans += found + (static_twins(found, static_shapes) if static_shapes else [])
    return plans


def static_twins(plans: Sequence[Plan], shapes: dict[str, list[int]]) -> list[Plan]:
    """Each OpenVINO plan compiled for ``shapes``, other shapes served by a dynamic compile."""
    said = ", ".join(f"{n}={'x'.join(str(d) for d in s)}" for n, s in shapes.items())
    return [replace(p, name=f"{p.name} static", simplicity=p.simplicity + STATIC,
                    load={**p.load, "static_shapes": {n: list(s) for n, s in shapes.items()}, "other_shapes": "dynamic"},
                    engine_config={**p.engine_config, "static_shapes": said,
                                   "other_shapes": "a dynamic compile, made on first need"})
            for p in plans if p.engine == "openvino" and not parse_device(p.device).target.startswith("NPU")]


def _ort_cpu(device: str, cpu: CPUInfo, transformer: bool, fuse: bool) -> list[Plan]:
    ort = "onnxruntime"
    plans = [Plan(f"{device} f32", device, ort, "original", "f32", F32, engine_config={"graph_optimization": "all"})]
    # One intra-op thread: a small model's batch-1 call (tens of microseconds) can spend more on
    # waking and joining onnxruntime's thread pool than on arithmetic (digits CNN: 38.6 vs 43.7 us
    # with the default pool on 2 cores). A setting, not a new graph: it wins only on its interval.
    plans.append(Plan(f"{device} f32 1 thread", device, ort, "original", "f32", FUSED, load={"threads": 1},
                      engine_config={"graph_optimization": "all", "intra_op_num_threads": 1},
                      unsupported=None if cpu.cores > 1 else "this CPU has one core: the default is one thread"))
    if fuse:
        why = None if transformer else "not a transformer graph (no attention + layer normalization to fuse)"
        plans.append(Plan(f"{device} fused f32", device, ort, "fused", "f32", FUSED, unsupported=why,
                          engine_config={"graph_optimization": "all", "fusion": "onnxruntime transformer optimizer"}))
    plans.append(Plan(f"{device} bf16", device, ort, "original", "bf16", HALF, unsupported=_ORT_BF16))
    plans.append(Plan(f"{device} f16", device, ort, "fp16", "f16", HALF, unsupported=_ORT_F16_CPU))
    vnni = "VNNI-class INT8 dot products" if cpu.has_vnni else "no VNNI: reduce_range (7-bit weights)"
    # Per-tensor is onnxruntime's (and Optimum's) default and the lighter kernel; per-channel keeps
    # more accuracy. Both are cheap to build (no calibration): the race and parity decide.
    plans.append(Plan(f"{device} int8-dynamic", device, ort, "int8-dynamic", "int8+f32", INT8,
                      engine_config={"quantization": f"quantize_dynamic, per-tensor, {vnni}"}))
    plans.append(Plan(f"{device} int8-dynamic-per-channel", device, ort, "int8-dynamic-pc", "int8+f32", INT8,
                      engine_config={"quantization": f"quantize_dynamic, per-channel, {vnni}"}))
    plans.append(Plan(f"{device} int8-static", device, ort, "int8-static", "int8+f32", INT8,
                      engine_config={"quantization": f"quantize_static QDQ U8S8, per-channel, {vnni}"}))
    return plans


def _openvino(device: str, target: str, cpu: CPUInfo, feats: set[str], caps: tuple[str, ...]) -> list[Plan]:
    ov, base = "openvino", target.split(".")[0]
    plans: list[Plan] = []
    if base == "NPU":
        return [Plan(f"{device} f16", device, ov, "original", "f16", HALF,
                     unsupported="NPUs compile static shapes only; auto searches the model's own (dynamic) shapes")]
    if base in ("AUTO", "MULTI", "HETERO"):
        return []  # a virtual device: its members are searched themselves
    half: dict[str, str | None] = {}
    if base == "CPU":
        half["bf16"] = (None if cpu.has_bf16 and "BF16" in caps else
                        f"this CPU has no AVX512-BF16 or AMX-BF16 (features: {', '.join(sorted(feats)) or 'none'})"
                        if not cpu.has_bf16 else f"OpenVINO reports no BF16 on CPU (capabilities {list(caps)})")
        fp16_isa = bool({"avx512_fp16", "amx_fp16", "fp16"} & feats)
        half["f16"] = (None if fp16_isa and "FP16" in caps else
                       f"this CPU has no AVX512-FP16/AMX-FP16 (features: {', '.join(sorted(feats)) or 'none'})"
                       if not fp16_isa else f"OpenVINO reports no FP16 on CPU (capabilities {list(caps)})")
    else:
        half["f16"] = None if "FP16" in caps else f"OpenVINO reports no FP16 on {target} (capabilities {list(caps)})"
    load, config = _ov_hint(device, "f32")
    plans.append(Plan(f"{device} f32", device, ov, "original", "f32", F32, load, config))
    for prec, why in half.items():
        load, config = _ov_hint(device, prec)
        plans.append(Plan(f"{device} {prec}", device, ov, "original", prec, HALF, load, config, unsupported=why))
    int8_why = None if "INT8" in caps else f"OpenVINO reports no INT8 on {target} (capabilities {list(caps)})"
    # INT8 where it tolerates it, the rest at the device's fastest float precision (bf16 before f16)
    # and at f32: two plans, the second for parts too sensitive for 16 bits.
    floats = [p for p, why in half.items() if why is None][:1] + ["f32"]
    for prec in floats:
        load, config = _ov_hint(device, prec)
        plans.append(Plan(f"{device} nncf-int8+{prec}", device, ov, "nncf-int8", f"int8+{prec}", INT8, load,
                          {**config, "quantization": "nncf.quantize (ignored scopes for parts kept in float)"},
                          unsupported=int8_why))
    return plans
