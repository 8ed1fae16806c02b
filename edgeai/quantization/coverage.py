"""INT8 coverage of a written ONNX file: how much of it really runs in INT8.

Two shares, read from the file alone (onnx only, no runtime):

- **weights**: weight parameters stored as int8/uint8/int4/uint4 (QDQ weights feeding a
  DequantizeLinear, and the weights of QLinear*/ConvInteger/MatMulInteger/DynamicQuantizeLSTM/
  MatMulNBits/QGemm/QAttention ops) over all weight parameters; the int32 biases of QDQ ops count
  as quantized. Quantization parameters (scales, zero points) and integer shape constants are not
  weights.
- **MAC-heavy ops** (MatMul, Gemm, Conv, ConvTranspose, LSTM, GRU, RNN, Attention and their integer
  forms), by count and by estimated multiply-accumulates. An op counts as INT8 when it is an
  integer op, or, in QDQ form, when its weight input is a DequantizeLinear of an integer
  initializer (for an op without weights, such as attention's activation x activation MatMul: when
  every data input comes from a DequantizeLinear).

Why this exists: a "quantized" file can leave its heaviest layers in float. The dynamo exporter
computes LSTM weights through Slice/Concat, so quantize_dynamic finds no constant weight to
quantize and the recurrent layers (most of a speaker encoder's MACs) stay float, while the result
still reads "INT8". MACs are estimated from weight sizes and the shapes ONNX shape inference can
find; unknown (symbolic) dims count as 1, and the result says how many ops had unknown shapes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeai.errors import ModelLoadError

# Integer op -> the float op family it replaces.
INTEGER_OPS = {"QLinearMatMul": "MatMul", "MatMulInteger": "MatMul", "DynamicQuantizeMatMul": "MatMul",
               "MatMulIntegerToFloat": "MatMul", "MatMulNBits": "MatMul", "QLinearConv": "Conv",
               "ConvInteger": "Conv", "QGemm": "Gemm", "DynamicQuantizeLSTM": "LSTM", "QAttention": "Attention",
               "QLinearConvTranspose": "ConvTranspose"}
FLOAT_OPS = {"MatMul", "Gemm", "Conv", "ConvTranspose", "LSTM", "GRU", "RNN", "Attention"}
# Inputs holding scales and zero points (not weights), by op type.
QUANT_PARAM_INPUTS = {"DequantizeLinear": (1, 2), "QuantizeLinear": (1, 2), "QLinearMatMul": (1, 2, 4, 5, 6, 7),
                      "QLinearConv": (1, 2, 4, 5, 6, 7), "MatMulInteger": (2, 3), "ConvInteger": (2, 3),
                      "DynamicQuantizeMatMul": (2, 3), "MatMulIntegerToFloat": (2, 3, 4, 5),
                      "DynamicQuantizeLSTM": (8, 9, 10, 11), "MatMulNBits": (2, 3, 4), "QGemm": (1, 2, 4, 5, 7, 8),
                      "QAttention": (3, 4, 6, 7), "QLinearAdd": (1, 2, 4, 5, 6, 7), "QLinearMul": (1, 2, 4, 5, 6, 7)}
# Weight inputs of the MAC-heavy ops (float and integer forms).
WEIGHT_INPUTS = {"Conv": (1,), "ConvTranspose": (1,), "Gemm": (1,), "LSTM": (1, 2), "GRU": (1, 2), "RNN": (1, 2),
                 "Attention": (1,), "QLinearConv": (3,), "ConvInteger": (1,), "QGemm": (3,), "MatMulInteger": (1,),
                 "DynamicQuantizeMatMul": (1,), "MatMulIntegerToFloat": (1,), "MatMulNBits": (1,),
                 "DynamicQuantizeLSTM": (1, 2), "QAttention": (1,), "QLinearMatMul": (3,),
                 "QLinearConvTranspose": (3,)}
_GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
# Ops a QDQ weight may pass through between its DequantizeLinear and the op using it.
_PASS_THROUGH = {"Transpose", "Reshape", "Identity", "Unsqueeze", "Squeeze", "Flatten"}
_QUANT_DTYPES = {"INT8", "UINT8", "INT4", "UINT4"}
_FLOAT_DTYPES = {"FLOAT", "FLOAT16", "BFLOAT16", "DOUBLE"}


@dataclass(frozen=True)
class OpCoverage:
    """One op family (MatMul, Conv, LSTM, ...): how many ops, MACs and weight parameters run in INT8."""

    op_type: str
    ops: int
    int8_ops: int
    macs: int
    int8_macs: int
    weight_params: int
    int8_weight_params: int

    def to_dict(self) -> dict[str, Any]:
        return {"op_type": self.op_type, "ops": self.ops, "int8_ops": self.int8_ops, "macs": self.macs,
                "int8_macs": self.int8_macs, "mac_share": _share(self.int8_macs, self.macs),
                "weight_params": self.weight_params, "int8_weight_params": self.int8_weight_params,
                "weight_share": _share(self.int8_weight_params, self.weight_params)}


@dataclass(frozen=True)
class Int8Coverage:
    """The INT8 share of a file's weights and of its MAC-heavy ops (see the module doc)."""

    path: str
    weight_params: int
    int8_weight_params: int
    weights_by_dtype: dict[str, int]
    ops: int
    int8_ops: int
    macs: int
    int8_macs: int
    by_op: tuple[OpCoverage, ...]
    unknown_shapes: int = 0  # MAC-heavy ops whose MACs used 1 for unknown dims
    notes: tuple[str, ...] = ()

    @property
    def weight_share(self) -> float | None:
        return _share(self.int8_weight_params, self.weight_params)

    @property
    def op_share(self) -> float | None:
        return _share(self.int8_ops, self.ops)

    @property
    def mac_share(self) -> float | None:
        return _share(self.int8_macs, self.macs)

    def is_int8(self, min_share: float = 0.5) -> bool:
        """True when at least ``min_share`` of the estimated MACs (of the ops, where no MACs are
        known) run in INT8: a file below that is not an INT8 model whatever its weights say."""
        share = self.mac_share if self.macs else self.op_share
        return share is not None and share >= min_share

    def summary(self) -> str:
        def pct(v: float | None) -> str:
            return "n/a" if v is None else f"{v:.0%}"

        return (f"INT8 coverage: {pct(self.mac_share)} of MACs, {self.int8_ops}/{self.ops} MAC-heavy ops, "
                f"{pct(self.weight_share)} of weight parameters")

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "weight_params": self.weight_params, "int8_weight_params": self.int8_weight_params,
                "weight_share": self.weight_share, "weights_by_dtype": dict(self.weights_by_dtype), "ops": self.ops,
                "int8_ops": self.int8_ops, "op_share": self.op_share, "macs": self.macs, "int8_macs": self.int8_macs,
                "mac_share": self.mac_share, "unknown_shapes": self.unknown_shapes,
                "by_op": [o.to_dict() for o in self.by_op], "notes": list(self.notes)}


def _share(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(part / whole, 6)


def _walk(graph: Any) -> Iterator[Any]:
    """Every graph: the main one and the bodies of If/Loop/Scan, recursively."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == attr.GRAPH:
                yield from _walk(attr.g)
            elif attr.type == attr.GRAPHS:
                for g in attr.graphs:
                    yield from _walk(g)


def _numel(dims: Any) -> int:
    return int(math.prod(int(d) for d in dims)) if len(dims) else 1


def int8_coverage(path: str | Path) -> Int8Coverage:
    """INT8 coverage of the ONNX file at ``path`` (external data is not read: only dims and types).

    Raises:
        ModelLoadError: the file is missing or not ONNX.
    """
    import onnx
    from onnx import TensorProto


    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise ModelLoadError(f"cannot read {path} as ONNX ({type(e).__name__}: {str(e)[:200]}); give an .onnx "
                             "file written by edgeai export or quantize") from e
    notes: list[str] = []
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception as e:  # huge or exotic graphs: MACs then rest on weight sizes alone
        inferred = model
        notes.append(f"ONNX shape inference failed ({type(e).__name__}); unknown dims counted as 1")
    dtype_name = {v: k for k, v in TensorProto.DataType.items()}
    consts: dict[str, tuple[str, tuple[int, ...]]] = {}  # name -> (dtype, dims)
    shapes: dict[str, list[int | None]] = {}
    nodes: list[Any] = []
    for g in _walk(inferred.graph):
        for t in g.initializer:
            consts[t.name] = (dtype_name.get(t.data_type, "UNDEFINED"), tuple(t.dims))
        for vi in [*g.input, *g.value_info, *g.output]:
            if vi.type.HasField("tensor_type") and vi.type.tensor_type.HasField("shape"):
                shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else None
                                   for d in vi.type.tensor_type.shape.dim]
        for n in g.node:
            nodes.append(n)
            if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
                t = n.attribute[0].t
                consts[n.output[0]] = (dtype_name.get(t.data_type, "UNDEFINED"), tuple(t.dims))
    for name, (_, dims) in consts.items():
        shapes.setdefault(name, list(dims))
    producer = {o: n for n in nodes for o in n.output}
    quant_params = {n.input[i] for n in nodes for i in QUANT_PARAM_INPUTS.get(n.op_type, ()) if i < len(n.input)}
    # ORT's dynamic quantization multiplies by the weight scale in a Mul: "<w>_scale", next to
    # "<w>_quantized" / "<w>_zero_point", is a quantization parameter too (not a model's own "*_scale").
    quant_params |= {c for c in consts if c.endswith("_scale")
                     and ({c[:-6] + "_quantized", c[:-6] + "_zero_point"} & consts.keys())}
    dq_int_inputs = {n.input[0] for n in nodes if n.op_type == "DequantizeLinear" and n.input[0] in consts}

    def params(name: str, node: Any | None = None) -> int:
        if node is not None and node.op_type == "MatMulNBits":
            attrs = {a.name: a.i for a in node.attribute}
            return int(attrs.get("K", 0) * attrs.get("N", 0))
        return _numel(consts[name][1])

    by_dtype: dict[str, int] = {}
    nbits = {n.input[1]: n for n in nodes if n.op_type == "MatMulNBits" and len(n.input) > 1}
    for name, (dtype, _) in consts.items():
        if name in quant_params:
            continue
        quantized = dtype in _QUANT_DTYPES or (dtype == "INT32" and name in dq_int_inputs)  # int32: QDQ biases
        if quantized or dtype in _FLOAT_DTYPES:
            by_dtype[dtype] = by_dtype.get(dtype, 0) + params(name, nbits.get(name))
    int8_params = sum(v for k, v in by_dtype.items() if k in _QUANT_DTYPES or k == "INT32")
    total_params = sum(by_dtype.values())

    def trace(name: str) -> tuple[str | None, bool]:
        """The constant behind a weight input (through DQ and reshaping ops) and whether a
        DequantizeLinear of an integer constant was on the way."""
        seen_dq = False
        for _ in range(16):
            if name in consts:
                return name, seen_dq and consts[name][0] in _QUANT_DTYPES
            node = producer.get(name)
            if node is None or not node.input:
                return None, False
            if node.op_type == "DequantizeLinear":
                seen_dq = True
            elif node.op_type not in _PASS_THROUGH:
                return None, False
            name = node.input[0]
        return None, False

    def from_constants(name: str) -> bool:
        """True when ``name`` is computed from constants only (a weight folded at run time)."""
        stack, seen = [name], set()
        while stack:
            t = stack.pop()
            if t in seen or t in consts or not t:
                continue
            seen.add(t)
            node = producer.get(t)
            if node is None or len(seen) > 256:
                return False
            stack.extend(node.input)
        return True

    families: dict[str, list[int]] = {}  # family -> [ops, int8_ops, macs, int8_macs, params, int8_params]
    unknown = 0
    for n in nodes:
        family = INTEGER_OPS.get(n.op_type, n.op_type if n.op_type in FLOAT_OPS else None)
        if family is None:
            continue
        integer = n.op_type in INTEGER_OPS
        weight_idx = WEIGHT_INPUTS.get(n.op_type)
        if weight_idx is None:  # MatMul: the weight is whichever input is a constant
            weight_idx = tuple(i for i in (1, 0) if i < len(n.input) and trace(n.input[i])[0] is not None)[:1]
        w_params = w_int8 = 0
        qdq = bool(weight_idx)
        for i in weight_idx:
            if i >= len(n.input) or not n.input[i]:
                continue
            const, via_dq = trace(n.input[i])
            if const is None:
                qdq = False
                if from_constants(n.input[i]):  # computed weights (dynamo's LSTM Slice/Concat): float
                    w_params += _computed_params(n, i, shapes)
                continue
            p = params(const, n)
            w_params += p
            w_int8 += p if via_dq or (integer and consts[const][0] in _QUANT_DTYPES) else 0
            qdq = qdq and via_dq
        if not weight_idx:  # activation x activation: INT8 when every data input is dequantized
            data = [x for x in n.input[:2] if x]
            qdq = bool(data) and all(producer.get(x) is not None and producer[x].op_type == "DequantizeLinear"
                                     for x in data)
        is_int8 = integer or qdq
        macs, exact = _macs(n, family, shapes, w_params)
        unknown += 0 if exact else 1
        row = families.setdefault(family, [0, 0, 0, 0, 0, 0])
        for k, v in enumerate((1, int(is_int8), macs, macs if is_int8 else 0, w_params, w_int8)):
            row[k] += v
    by_op = tuple(OpCoverage(f, *v) for f, v in sorted(families.items()))
    if unknown:
        notes.append(f"{unknown} MAC-heavy op(s) with symbolic or unknown dims: MACs count those dims as 1")
    return Int8Coverage(str(path), total_params, int8_params, dict(sorted(by_dtype.items())),
                        sum(o.ops for o in by_op), sum(o.int8_ops for o in by_op), sum(o.macs for o in by_op),
                        sum(o.int8_macs for o in by_op), by_op, unknown, tuple(notes))


def _computed_params(node: Any, index: int, shapes: dict[str, list[int | None]]) -> int:
    """Parameters of a weight computed at run time: from its inferred shape, or for a recurrent op
    from its attributes (W: directions x gates x hidden x input, R: ... x hidden)."""
    dims = shapes.get(node.input[index])
    if dims and all(dims):
        return _numel(dims)
    family = INTEGER_OPS.get(node.op_type, node.op_type)
    attrs = {a.name: a for a in node.attribute}
    if family in _GATES and "hidden_size" in attrs:
        hidden = attrs["hidden_size"].i
        directions = 2 if "direction" in attrs and attrs["direction"].s == b"bidirectional" else 1
        width = hidden if index == 2 else ((shapes.get(node.input[0]) or [0])[-1] or 0)
        return directions * _GATES[family] * hidden * width
    return 0


def _dims(shapes: dict[str, list[int | None]], name: str) -> tuple[list[int], bool]:
    dims = shapes.get(name)
    if dims is None:
        return [], False
    return [d if d else 1 for d in dims], all(d for d in dims)


def _macs(node: Any, family: str, shapes: dict[str, list[int | None]], w_params: int) -> tuple[int, bool]:
    """Estimated multiply-accumulates of one op (unknown dims count as 1), and whether all dims were known."""
    x = node.input[0] if node.input else ""
    if family in ("LSTM", "GRU", "RNN"):
        attrs = {a.name: a for a in node.attribute}
        hidden = attrs["hidden_size"].i if "hidden_size" in attrs else 0
        directions = 2 if "direction" in attrs and attrs["direction"].s == b"bidirectional" else 1
        xd, exact = _dims(shapes, x)
        steps = xd[0] * xd[1] if len(xd) == 3 else 1  # seq x batch, in either layout
        # Per step and direction, every weight of W and R is used once: w_params covers both
        # (exact even where X's feature dim is unknown, e.g. after a Reshape).
        return steps * w_params if w_params else steps * directions * _GATES[family] * hidden * hidden, exact
    if family in ("Conv", "ConvTranspose"):
        yd, exact = _dims(shapes, node.output[0])
        xd, x_exact = _dims(shapes, x)
        spatial = yd if family == "Conv" else xd  # ConvTranspose: every input pixel meets the kernel
        if len(spatial) >= 3:
            return spatial[0] * math.prod(spatial[2:]) * w_params, exact and x_exact
        return w_params, False
    if family == "Gemm":
        xd, exact = _dims(shapes, x)
        trans_a = any(a.name == "transA" and a.i for a in node.attribute)
        rows = (xd[1] if trans_a else xd[0]) if len(xd) == 2 else 1
        return rows * w_params, exact and len(xd) == 2
    if w_params:  # MatMul / Attention with a weight: one weight pass per activation row
        xd, exact = _dims(shapes, x)
        return (math.prod(xd[:-1]) if len(xd) >= 2 else 1) * w_params, exact and len(xd) >= 1
    ad, a_exact = _dims(shapes, x)  # activation x activation: [..., M, K] x [..., K, N]
    yd, y_exact = _dims(shapes, node.output[0])
    if len(ad) >= 2 and len(yd) >= 2:
        return math.prod(yd) * ad[-1], a_exact and y_exact
    return 0, False
