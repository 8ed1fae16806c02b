"""Layerwise localization: where does an ONNX candidate start to diverge from its ONNX reference?

Both files are copied to a temp folder with every intermediate tensor that the two graphs share
added as a graph output (the inputs are never touched), both copies run on the same feeds -- the
reference on onnxruntime CPU, the candidate on its own device (onnxruntime or OpenVINO) -- and the
error of each reference node's output is computed in topological order, like Polygraphy's
``--onnx-outputs mark all`` but reduced to the few nodes that matter.

Matching. Tensors are matched by name. Converters keep the names of the tensors they do not
touch and chain new nodes behind them: ORT's QDQ quantizer turns ``relu`` into ``relu ->
QuantizeLinear -> DequantizeLinear -> relu_DequantizeLinear_Output``, the FP16 converter inserts
``Cast`` nodes around inputs, outputs and blocked ops. So in the candidate, tensors linked by
QuantizeLinear, DequantizeLinear, Cast, CastLike or Identity form one class, and a reference tensor
is compared with the *last* floating-point tensor of its class (the DequantizeLinear or Cast
output: the value that the candidate's next layer actually consumes).

Error and jump. For each matched tensor, ``error`` is the relative L2 error over all samples,
``||cand - ref|| / ||ref||`` (1 / signal-to-noise; 0.01 = 40 dB SQNR). A node's ``input_error``
is the largest error measured on any path into it: the maximum, over its float activation inputs,
of each input's own error and the input error of the node that made it. Inputs without a match
in the candidate (fused away, renamed) thus pass their upstream error through; weights,
constants and integer tensors (shapes, indices, masks) count as exact, so an error in a node's own
weights shows up at that node. A node **jumps** when ``error > min_error`` and
``error > jump_ratio * input_error`` (defaults 1e-4 and 2): it at least doubles the largest error
that reached it, and that error is above float noise. Taking the maximum along paths keeps a
tensor whose norm is dominated by huge constants (an additive attention mask) from hiding the
error that flows through it.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeai.errors import InputMismatchError
from edgeai.onnxfile import load_proto, save_onnx
from edgeai.runtimes import Model, load

#: Nodes that carry a value through unchanged but for precision: their output is matched with their input.
TRANSPARENT_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "Cast", "CastLike", "Identity"})
_FLOAT_TYPES = frozenset({1, 10, 11, 16})  # FLOAT, FLOAT16, DOUBLE, BFLOAT16
_CONSTANT_OPS = frozenset({"Constant", "ConstantOfShape"})
INPUT_OP = "input"  # op_type of the row for a graph input the candidate quantizes or casts


@dataclass(frozen=True)
class NodeError:
    """The error of one reference node's output, as the candidate computes it."""

    node: str
    op_type: str
    tensor: str  # the reference tensor
    candidate_tensor: str  # the candidate tensor it was matched with (differs through Q/DQ and Cast)
    error: float  # relative L2 error over all samples
    max_abs: float
    mean_abs: float
    cosine: float  # minimum over samples of the cosine similarity of the whole tensor
    input_error: float
    jump: bool
    params: tuple[str, ...] = ()  # the node's weights (initializers), e.g. '4.weight'
    via: tuple[str, ...] = ()  # unmatched reference nodes between this one and its matched inputs

    @property
    def growth(self) -> float:
        """How many times the node multiplied the error it was given (inf from an exact input)."""
        if self.input_error > 0:
            return self.error / self.input_error
        return math.inf if self.error > 0 else 1.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["params"], d["via"] = list(self.params), list(self.via)
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


@dataclass(frozen=True)
class Localization:
    """Per-node error in topological order and the nodes where it jumps."""

    rows: tuple[NodeError, ...]
    samples: int
    reference: dict[str, Any]  # RuntimeInfo of the instrumented reference run
    candidate: dict[str, Any]
    unmatched: tuple[str, ...] = ()  # reference nodes with a float output the candidate does not have
    min_error: float = 1e-4
    jump_ratio: float = 2.0
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def jumps(self) -> list[NodeError]:
        return [r for r in self.rows if r.jump]

    def first_jump(self) -> NodeError | None:
        """The first node, in topological order, where the error jumps."""
        return next((r for r in self.rows if r.jump), None)

    def largest_jump(self) -> NodeError | None:
        """The node that adds the most error (error minus input error)."""
        jumps = self.jumps
        return max(jumps, key=lambda r: r.error - r.input_error) if jumps else None

    def summary(self) -> str:
        first = self.first_jump()
        if first is None:
            worst = max(self.rows, key=lambda r: r.error, default=None)
            tail = f"; largest error {worst.error:.3g} at {worst.node}" if worst else ""
            return f"no node jumps above relative error {self.min_error:g}{tail}"
        text = f"first divergence: {_describe(first)}"
        largest = self.largest_jump()
        if largest is not None and largest is not first:
            text += f"; largest added error: {_describe(largest)}"
        return text

    def to_dict(self) -> dict[str, Any]:
        first, largest = self.first_jump(), self.largest_jump()
        return {"summary": self.summary(), "first_jump": first.node if first else None,
                "largest_jump": largest.node if largest else None, "samples": self.samples,
                "min_error": self.min_error, "jump_ratio": self.jump_ratio, "reference": self.reference,
                "candidate": self.candidate, "rows": [r.to_dict() for r in self.rows],
                "unmatched": list(self.unmatched), "notes": list(self.notes)}


def _describe(row: NodeError) -> str:
    if row.op_type == INPUT_OP:
        return f"input {row.node!r} as the candidate converts it ({row.candidate_tensor}): relative error {row.error:.3g}"
    weights = f", weights {', '.join(row.params)}" if row.params else ""
    via = f", with unmatched {', '.join(row.via)}" if row.via else ""
    return (f"{row.node} ({row.op_type}{weights}{via}): relative error {row.input_error:.3g} -> "
            f"{row.error:.3g}")


# --- graph analysis -------------------------------------------------------------------------------

def _elem_types(model: Any) -> dict[str, int]:
    """Element type of every tensor: ONNX shape inference, then op semantics where it gave none."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # custom ops or a >2 GB model: fall back to what the file declares
        inferred = model
    types: dict[str, int] = {}
    g = inferred.graph
    for vi in (*g.input, *g.value_info, *g.output):
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
            types[vi.name] = vi.type.tensor_type.elem_type
    for init in model.graph.initializer:
        types[init.name] = init.data_type
    for node in model.graph.node:
        if not node.output or node.output[0] in types:
            continue
        if node.op_type == "Cast":
            types[node.output[0]] = next(a.i for a in node.attribute if a.name == "to")
        elif node.op_type == "DequantizeLinear" and len(node.input) > 1:
            types[node.output[0]] = types.get(node.input[1], 1)
        elif node.op_type in ("Identity", "CastLike") and node.input[-1] in types:
            types[node.output[0]] = types[node.input[-1]]
    return types


class _CandidateGraph:
    """The candidate's tensors grouped into classes linked by Q/DQ, Cast and Identity nodes."""

    def __init__(self, model: Any):
        self.types = _elem_types(model)
        self.tensors = {i.name for i in model.graph.input} | {o for n in model.graph.node for o in n.output if o}
        self._parent: dict[str, str] = {}
        self.depth: dict[str, int] = {}
        for node in model.graph.node:
            if node.op_type in TRANSPARENT_OPS and node.input and node.output and node.input[0]:
                self._union(node.input[0], node.output[0])
                self.depth[node.output[0]] = self.depth.get(node.input[0], 0) + 1
        self.classes: dict[str, list[str]] = {}
        for t in sorted(self.tensors):
            self.classes.setdefault(self._find(t), []).append(t)

    def _find(self, t: str) -> str:
        while self._parent.get(t, t) != t:
            self._parent[t] = self._parent.get(self._parent[t], self._parent[t])
            t = self._parent[t]
        return t

    def _union(self, a: str, b: str) -> None:
        ra, rb = self._find(a), self._find(b)
        if ra != rb:
            self._parent[rb] = ra

    def match(self, name: str, ref_float: set[str]) -> str | None:
        """The candidate tensor that holds the reference tensor ``name``'s value, or None."""
        if name not in self.tensors:
            return None
        members = self.classes[self._find(name)]
        if sum(m in ref_float for m in members) > 1:
            # The reference has the same Q/DQ or Cast chain (one file on two devices): names match 1:1.
            return name if self.types.get(name) in _FLOAT_TYPES else None
        floats = [m for m in members if self.types.get(m) in _FLOAT_TYPES]
        if not floats:
            return None
        return max(floats, key=lambda m: (self.depth.get(m, 0), m == name))


def _instrument(model: Any, names: Iterable[str], types: Mapping[str, int], dst: Path) -> None:
    """Save a copy of ``model`` with ``names`` added as graph outputs (types only: shapes may vary)."""
    from onnx import helper

    present = {o.name for o in model.graph.output} | {i.name for i in model.graph.input}
    for name in names:
        if name not in present:
            model.graph.output.append(helper.make_tensor_value_info(name, types[name], None))
            present.add(name)
    save_onnx(model, dst)


# --- metrics ---------------------------------------------------------------------------------------

def tensor_error(refs: Sequence[np.ndarray], cands: Sequence[np.ndarray]) -> dict[str, float]:
    """Relative L2 error, max / mean absolute error and minimum cosine of one tensor over samples."""
    sq_diff = sq_ref = sum_abs = 0.0
    max_abs, count, cosine = 0.0, 0, 1.0
    for r, c in zip(refs, cands, strict=True):
        r64, c64 = np.asarray(r, np.float64).ravel(), np.asarray(c, np.float64).ravel()
        if r64.shape != c64.shape:
            return {"error": math.inf, "max_abs": math.inf, "mean_abs": math.inf, "cosine": -1.0}
        if not np.isfinite(c64[np.isfinite(r64)]).all():
            return {"error": math.inf, "max_abs": math.inf, "mean_abs": math.inf, "cosine": -1.0}
        r64, c64 = np.nan_to_num(r64), np.nan_to_num(c64)
        d = c64 - r64
        sq_diff += float(d @ d)
        sq_ref += float(r64 @ r64)
        sum_abs += float(np.abs(d).sum())
        max_abs = max(max_abs, float(np.abs(d).max(initial=0.0)))
        count += d.size
        nr, nc = float(np.linalg.norm(r64)), float(np.linalg.norm(c64))
        cosine = min(cosine, float(r64 @ c64) / (nr * nc) if nr > 0 and nc > 0 else (1.0 if nr == nc else 0.0))
    if sq_ref > 0:
        error = math.sqrt(sq_diff / sq_ref)
    else:
        error = 0.0 if sq_diff == 0 else math.inf
    return {"error": error, "max_abs": max_abs, "mean_abs": sum_abs / count if count else 0.0, "cosine": cosine}


# --- the whole run ---------------------------------------------------------------------------------

def onnx_source(obj: Any) -> tuple[Path, str | None, dict[str, Any]]:
    """(ONNX path, device, load options) of a path or a loaded Model."""
    if isinstance(obj, Model):
        info = obj.describe()
        if info.engine == "torch" or not obj.source or not str(obj.source).endswith(".onnx"):
            raise InputMismatchError(f"layerwise localization compares two ONNX graphs; got {obj!r}")
        options = {}
        if info.engine == "openvino" and info.options.get("precision_requested"):
            options["precision"] = info.options["precision_requested"]
        return Path(obj.source), info.device, options
    if isinstance(obj, (str, os.PathLike)) and str(obj).endswith(".onnx"):
        return Path(obj), None, {}
    raise InputMismatchError(
        f"layerwise localization compares two ONNX graphs (the reference file and its converted or "
        f"re-deployed copy); got {obj!r}. Pass the FP32 .onnx export as the reference")


def localize(reference: Any, candidate: Any, feeds: Sequence[Mapping[str, Any]], *, device: str | None = None,
             reference_device: str = "cpu", min_error: float = 1e-4, jump_ratio: float = 2.0,
             max_samples: int = 4) -> Localization:
    """Find the first nodes where an ONNX candidate's intermediate tensors diverge from the reference's.

    Args:
        reference: the reference ``.onnx`` file (or a Model loaded from one); it runs on
            ``reference_device`` (onnxruntime CPU, FP32 by default).
        candidate: an ``.onnx`` file of the same graph after conversion (INT8 QDQ, FP16) or the same
            file, or a Model loaded from one; it runs on ``device`` (default: the Model's, else cpu).
        feeds: input feed dicts; the first ``max_samples`` are used.
        min_error, jump_ratio: when a node counts as a jump (see the module docstring).

    Returns:
        A :class:`Localization`: per-node errors in topological order, jumps marked.

    Raises:
        InputMismatchError: a side is not ONNX, or the graphs share no intermediate tensors.
    """
    ref_path, ref_dev, ref_opts = onnx_source(reference)
    cand_path, cand_dev, cand_opts = onnx_source(candidate)
    device = device or cand_dev or "cpu"
    feeds = list(feeds)[:max_samples]
    if not feeds:
        raise InputMismatchError("layerwise localization needs at least one input sample")
    ref_proto = load_proto(ref_path, load_external_data=True)
    cand_proto = load_proto(cand_path, load_external_data=True)
    ref_types = _elem_types(ref_proto)
    cand = _CandidateGraph(cand_proto)
    graph = ref_proto.graph
    consts = {i.name for i in graph.initializer}
    graph_inputs = [i.name for i in graph.input if i.name not in consts]
    ref_float = {t for t in (*graph_inputs, *(o for n in graph.node for o in n.output))
                 if ref_types.get(t) in _FLOAT_TYPES}

    # Which reference tensors to compare, in topological order, and their candidate partners.
    matches: dict[str, str] = {}
    unmatched: list[str] = []
    for name in graph_inputs:
        partner = cand.match(name, ref_float) if name in ref_float else None
        if partner is not None and partner != name:
            matches[name] = partner  # the candidate quantizes or casts this input
    for node in graph.node:
        if node.op_type in _CONSTANT_OPS or all(not i or i in consts for i in node.input):
            consts.update(o for o in node.output if o)
            continue
        floats = [o for o in node.output if o in ref_float]
        found = {o: cand.match(o, ref_float) for o in floats}
        matches.update({o: p for o, p in found.items() if p is not None})
        if floats and not any(found.values()):
            unmatched.append(node.name or node.output[0])
    intermediates = [t for t in matches if t not in graph_inputs]
    if not intermediates:
        raise InputMismatchError(
            f"{cand_path.name} shares no intermediate tensor names with {ref_path.name}; layerwise localization "
            "needs the same graph on both sides (an FP32 export and its INT8/FP16 conversion, or one file on two "
            "devices)")

    with tempfile.TemporaryDirectory(prefix="edgeai-layerwise-") as work:
        ref_copy, cand_copy = Path(work) / "reference.onnx", Path(work) / "candidate.onnx"
        _instrument(ref_proto, intermediates, ref_types, ref_copy)
        _instrument(cand_proto, matches.values(), cand.types, cand_copy)
        del ref_proto, cand_proto
        ref_model = load(ref_copy, reference_device if ref_dev is None else ref_dev, **ref_opts)
        cand_model = load(cand_copy, device, **cand_opts)
        ref_vals: dict[str, list[np.ndarray]] = {}
        cand_vals: dict[str, list[np.ndarray]] = {}
        for feed in feeds:
            r = ref_model.run({s.name: feed[s.name] for s in ref_model.inputs})
            c = cand_model.run({s.name: feed[s.name] for s in cand_model.inputs})
            for name, partner in matches.items():
                ref_vals.setdefault(name, []).append(np.asarray(feed[name] if name in graph_inputs else r[name]))
                cand_vals.setdefault(name, []).append(np.asarray(c[partner]))
        ref_info = {"model": str(ref_path), **ref_model.describe().to_dict()}
        cand_info = {"model": str(cand_path), **cand_model.describe().to_dict()}
        del ref_model, cand_model

    weights = {i.name for i in graph.initializer if i.data_type in _FLOAT_TYPES}
    rows = _rows(graph, graph_inputs, consts, weights, ref_float, matches, ref_vals, cand_vals, min_error, jump_ratio)
    notes = ["intermediate tensors were added as graph outputs, which can keep an engine from fusing some "
             "nodes; the per-node numbers localize, the end-to-end parity numbers are authoritative"]
    if unmatched:
        notes.append(f"{len(unmatched)} reference node(s) have no counterpart in the candidate (fused or renamed); "
                     "their error is charged to the next matched node (see 'via')")
    return Localization(tuple(rows), len(feeds), ref_info, cand_info, tuple(unmatched), min_error, jump_ratio,
                        tuple(notes))


def _rows(graph: Any, graph_inputs: list[str], consts: set[str], weights: set[str], ref_float: set[str],
          matches: Mapping[str, str], ref_vals: Mapping[str, list[np.ndarray]],
          cand_vals: Mapping[str, list[np.ndarray]], min_error: float, jump_ratio: float) -> list[NodeError]:
    # The largest error measured on any path into each float tensor. Integer tensors (shapes,
    # indices, masks) carry none: a wrong one shows up as a jump of the float node consuming it.
    upstream: dict[str, float] = {}
    pending: dict[str, tuple[str, ...]] = {}  # unmatched float-producing nodes upstream of a tensor
    rows: list[NodeError] = []

    def row(node: str, op: str, tensor: str, in_err: float, params: tuple[str, ...], via: tuple[str, ...]) -> float:
        m = tensor_error(ref_vals[tensor], cand_vals[tensor])
        err = m["error"]
        jump = err > min_error and err > jump_ratio * in_err
        rows.append(NodeError(node, op, tensor, matches[tensor], err, m["max_abs"], m["mean_abs"], m["cosine"],
                              in_err, jump, params, via))
        return err

    for name in graph_inputs:
        upstream[name] = row(name, INPUT_OP, name, 0.0, (), ()) if name in matches else 0.0
    for node in graph.node:
        if all(o in consts for o in node.output if o):
            continue
        active = [i for i in node.input if i and i not in consts]
        in_err = max((upstream.get(i, 0.0) for i in active), default=0.0)
        via = tuple(dict.fromkeys(n for i in active for n in pending.get(i, ())))[-6:]
        params = tuple(i for i in node.input if i in weights)
        label = node.name or node.output[0]
        measured = {out: row(label, node.op_type, out, in_err, params, via) for out in node.output if out in matches}
        carried = max([in_err, *measured.values()])
        for out in node.output:
            if out and out in ref_float:
                upstream[out] = max(in_err, measured.get(out, carried))
                if not measured:
                    pending[out] = (via + (label,))[-6:]
    return rows
