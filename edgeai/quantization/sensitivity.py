"""Which nodes of a quantized graph hurt accuracy most: per-tensor quantization error, ranked.

onnxruntime's ``qdq_loss_debug`` does the work: it adds every intermediate tensor of the FP32 model
and of its QDQ model to their outputs, runs both on the same inputs, and pairs each activation's
values before and after its QuantizeLinear/DequantizeLinear (and in the FP32 model). We score each
pair with a *bulk* signal-to-quantization-noise ratio: SQNR over the elements whose magnitude is
within the 90th percentile. The library's default (SQNR over the whole tensor) misses the classic
failure: one outlier channel 1000x larger than the rest stretches the INT8 range so that every other
value rounds to zero, yet the outlier dominates the norm and the whole-tensor SQNR still looks fine.

Each tensor maps to the nodes that produce and consume it (a QDQ pair exists because of them), and
excluding those nodes keeps the tensor in float. Weights are scored the same way.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgeai.quantization.measure import quiet_ort_quantization

# Nodes whose INT8 kernels carry the speedup; excluding more than a share of them defeats INT8.
COMPUTE_OPS = {"Conv", "ConvTranspose", "MatMul", "Gemm", "Attention", "MultiHeadAttention", "LSTM", "GRU"}


@dataclass(frozen=True)
class Sensitivity:
    """One tensor's quantization error and the nodes to exclude to keep it in float."""

    tensor: str
    drop_db: float  # how much worse than its upstream activations (higher is worse)
    sqnr_db: float  # bulk SQNR of the QDQ model's value against the FP32 model's
    nodes: tuple[str, ...]
    kind: str = "activation"  # or "weight"

    def to_dict(self) -> dict[str, Any]:
        return {"tensor": self.tensor, "kind": self.kind, "nodes": list(self.nodes),
                "drop_db": _round(self.drop_db), "sqnr_db": _round(self.sqnr_db)}


def _round(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else round(v, 2)


def bulk_sqnr(reference: Sequence[np.ndarray] | np.ndarray, noisy: Sequence[np.ndarray] | np.ndarray,
              quantile: float = 0.9) -> float:
    """SQNR in dB over the reference's elements with ``|x| <= quantile(|x|)`` (inf when exact).

    Outliers are left out of the signal, so noise that wipes out the ordinary values shows up.
    """
    ref = np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in _as_list(reference)])
    out = np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in _as_list(noisy)])
    if ref.shape != out.shape or ref.size == 0:
        return float("nan")
    mag = np.abs(ref)
    bulk = mag <= np.quantile(mag, quantile)
    signal = float(np.linalg.norm(ref[bulk]))
    noise = float(np.linalg.norm((ref - out)[bulk]))
    if noise == 0.0:
        return float("inf")
    return 20 * math.log10(max(signal, 1e-30) / noise)


def _as_list(x: Any) -> list:
    """Per-sample arrays as a list. onnxruntime hands over a list of arrays for activations, one
    array for a weight, and a numpy *scalar* for a 0-d weight (a ``Mul`` by a scalar constant):
    ``(w - zp) * scale`` on 0-d arrays returns ``np.float32``, which is not iterable."""
    if isinstance(x, (list, tuple)):
        return list(x)
    return [np.asarray(x)]


def rank_sensitive_nodes(float_model: Path, qdq_model: Path, feeds: Sequence[dict], work: Path) -> list[Sensitivity]:
    """Tensors of ``qdq_model`` (an onnxruntime QDQ quantization of ``float_model``) ranked by how
    much error appears at them, worst first, each with the nodes that keep it in float.

    The score is the *drop* in bulk SQNR against the FP32 model from a tensor's upstream activations
    to the tensor itself: error inherited from earlier layers does not count against a layer, so the
    layer where accuracy is lost ranks first, not the output that merely shows it. Node names are
    those of ``float_model``: pass them as ``nodes_to_exclude`` when re-quantizing it.
    """
    import onnx
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        compute_activation_error,
        compute_weight_error,
        create_activation_matching,
        create_weight_matching,
        modify_model_output_intermediate_tensors,
    )

    with quiet_ort_quantization():
        float_aug, qdq_aug = work / "sensitivity.float.onnx", work / "sensitivity.qdq.onnx"
        modify_model_output_intermediate_tensors(str(float_model), str(float_aug))
        modify_model_output_intermediate_tensors(str(qdq_model), str(qdq_aug))
        float_acts = collect_activations(str(float_aug), list(feeds))
        qdq_acts = collect_activations(str(qdq_aug), list(feeds))
        matching = {k: v for k, v in create_activation_matching(qdq_acts, float_acts).items() if "float" in v}
        # Against the FP32 model's value, not the QDQ pair's own input: onnxruntime folds a ReLU
        # into the pair, so "before QDQ" there is the pre-ReLU tensor.
        act_err = {k: v["xmodel_err"] for k, v in compute_activation_error(matching, err_func=bulk_sqnr).items()}
        weight_err = compute_weight_error(create_weight_matching(str(float_model), str(qdq_model)),
                                          err_func=bulk_sqnr)

    graph = onnx.load(str(float_model), load_external_data=False).graph
    producer = {out: n for n in graph.node for out in n.output}
    consumers: dict[str, list[str]] = {}
    for n in graph.node:
        for name in n.input:
            consumers.setdefault(name, []).append(n.name)
    ranked = []
    for tensor, err in act_err.items():
        upstream = _upstream_sqnr(tensor, producer, act_err)
        nodes = _group(tensor, producer, consumers)
        if nodes:
            ranked.append(Sensitivity(tensor, min(upstream, CAP_DB) - min(err, CAP_DB), err, nodes))
    for weight, err in weight_err.items():
        nodes = tuple(n for n in consumers.get(weight, []) if n)
        if nodes and err < WEIGHT_SUSPECT_DB:
            ranked.append(Sensitivity(weight, CAP_DB - err, err, nodes, "weight"))
    ranked.sort(key=lambda s: -s.drop_db if math.isfinite(s.drop_db) else math.inf)
    return ranked


# SQNR above this counts as exact (float32 rounding); per-channel INT8 weights sit near 40-50 dB,
# so only weights under WEIGHT_SUSPECT_DB are worth keeping in float.
CAP_DB = 60.0
WEIGHT_SUSPECT_DB = 30.0
# Activations onnxruntime folds into the preceding node's QDQ pair: walk through them to the producer.
_FOLDED = {"Relu", "Clip"}


def _group(tensor: str, producer: dict[str, Any], consumers: dict[str, list[str]]) -> tuple[str, ...]:
    """The nodes to exclude so that ``tensor`` stays float: its consumers, its producer, and the
    producer's producer where the producer is a ReLU/Clip that onnxruntime folds into a QDQ pair."""
    names = list(consumers.get(tensor, []))
    node = producer.get(tensor)
    while node is not None:
        names.append(node.name)
        if node.op_type not in _FOLDED or not node.input:
            break
        node = producer.get(node.input[0])
    return tuple(n for n in dict.fromkeys(names) if n)


def _upstream_sqnr(tensor: str, producer: dict[str, Any], err: dict[str, float]) -> float:
    """Worst bulk SQNR among the measured activations feeding ``tensor`` (graph inputs: exact)."""
    worst, seen = math.inf, set()
    stack = list(producer[tensor].input) if tensor in producer else []
    while stack:
        name = stack.pop()
        if name in seen or not name:
            continue
        seen.add(name)
        if name in err:
            worst = min(worst, err[name])
        elif name in producer:
            stack.extend(producer[name].input)
    return worst


# The ops onnxruntime's quantize_dynamic turns into integer ops (its IntegerOpsRegistry; Gemm
# becomes a MatMul first): keeping any other node in float changes nothing in a dynamic model.
DYNAMIC_OPS = {"Conv", "MatMul", "Gemm", "Attention", "LSTM", "Gather", "Transpose", "EmbedLayerNormalization"}


def restrict_to_ops(ranking: Sequence[Sensitivity], model_path: Path, op_types: set[str]) -> list[Sensitivity]:
    """The ranking with each entry's nodes cut to those of ``op_types`` (entries left empty dropped).

    Used for a dynamic config, ranked through a static QDQ probe: the probe's QDQ pairs sit on every
    op, but only the ops dynamic quantization rewrites can be kept in float by excluding them.
    """
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    kind = {n.name: n.op_type for n in graph.node}
    out = []
    for s in ranking:
        nodes = tuple(n for n in s.nodes if kind.get(n) in op_types)
        if nodes:
            out.append(replace(s, nodes=nodes))
    return out


def compute_nodes(model_path: Path) -> set[str]:
    """Names of the nodes that do the heavy math (convolutions, matrix multiplies)."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    return {n.name for n in graph.node if n.op_type in COMPUTE_OPS and n.name}


# --- whole blocks to keep in float -------------------------------------------------------------------

@dataclass(frozen=True)
class Block:
    """A group of compute nodes kept in float together: ``first``, ``last``, ``attention-output``, ..."""

    name: str
    nodes: tuple[str, ...]
    why: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "nodes": len(self.nodes), "why": self.why}


# Module paths (from the exporter's name scopes, node names or weight names) of the layers that
# quantization hurts most in transformers: the attention output projection (its input is the
# attention's softmax-weighted mix, with outliers) and the FFN down-projection (its input is the
# wide GELU/ReLU activation, with the "massive activations" of LLM.int8()).
ATTENTION_OUTPUT = re.compile(r"(?:^|[./_])(?:o_proj|out_proj|attn[./_]c_proj|attention[./_]output[./_]dense"
                              r"|attn_out|self_attn[./_]o|wo)(?:$|[./_])", re.IGNORECASE)
FFN_DOWN = re.compile(r"(?:^|[./_])(?:fc2|down_proj|mlp[./_]c_proj|ffn[./_](?:w2|lin2|layer_2|down)|w2"
                      r"|(?<!attention[./_])output[./_]dense|dense_4h_to_h)(?:$|[./_])", re.IGNORECASE)


def _scopes(model_path: Path | None) -> dict[str, str]:
    """Node name -> its module path, from the dynamo exporter's ``pkg.torch.onnx.name_scopes``."""
    import ast

    import onnx

    if model_path is None:
        return {}
    out = {}
    for n in onnx.load(str(model_path), load_external_data=False).graph.node:
        for p in n.metadata_props:
            if p.key == "pkg.torch.onnx.name_scopes":
                try:
                    out[n.name] = ".".join(s for s in ast.literal_eval(p.value) if s)
                except (ValueError, SyntaxError):
                    out[n.name] = p.value
    return out


def weighted_compute_nodes(model_path: Path) -> list[tuple[Any, str]]:
    """The conv / matmul nodes with a constant weight, in graph (topological) order, each with the
    name of its weight (through Transpose/Reshape), which names its layer where node names do not."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    consts = {t.name for t in graph.initializer} | {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    producer = {o: n for n in graph.node for o in n.output}

    def weight(name: str) -> str | None:
        for _ in range(4):
            if name in consts:
                return name
            node = producer.get(name)
            if node is None or node.op_type not in ("Transpose", "Reshape", "Identity", "Cast") or not node.input:
                return None
            name = node.input[0]
        return None

    out = []
    for n in graph.node:
        if n.op_type in COMPUTE_OPS and n.name:
            w = next((w for w in (weight(x) for x in n.input[:3] if x) if w), None)
            if w is not None:
                out.append((n, w))
    return out


def candidate_blocks(float_model: Path, scope_model: Path | None = None) -> list[Block]:
    """Blocks worth keeping in float, fewest nodes first: the first and the last compute layer (the
    input stem and the output head see the widest ranges), both, every attention output projection,
    every FFN down-projection, and both of those. Layers are found by their module path (the
    exporter's name scopes in ``scope_model``, matched by node name), node name or weight name."""
    nodes = weighted_compute_nodes(float_model)
    if not nodes:
        return []
    scopes = _scopes(scope_model)
    paths = {n.name: " ".join((scopes.get(n.name, ""), n.name, w)) for n, w in nodes}
    attention = tuple(n.name for n, _ in nodes if ATTENTION_OUTPUT.search(paths[n.name]))
    ffn = tuple(n.name for n, _ in nodes if FFN_DOWN.search(paths[n.name]) and n.name not in attention)
    first, last = nodes[0][0].name, nodes[-1][0].name
    blocks = [Block("first", (first,), "the first compute layer (the input stem)"),
              Block("last", (last,), "the last compute layer (the output head)")]
    if first != last:
        blocks.append(Block("first+last", (first, last), "the first and the last compute layers"))
    if attention:
        blocks.append(Block("attention-output", attention, f"{len(attention)} attention output projection(s)"))
    if ffn:
        blocks.append(Block("ffn-down", ffn, f"{len(ffn)} FFN down-projection(s)"))
    if attention and ffn:
        blocks.append(Block("attention-output+ffn-down", attention + ffn, "attention output and FFN down-projections"))
    unique: dict[tuple[str, ...], Block] = {}
    for b in blocks:
        unique.setdefault(tuple(sorted(b.nodes)), b)
    return sorted(unique.values(), key=lambda b: len(b.nodes))


def activation_bytes(path: Path) -> int:
    """Bytes of all intermediate float tensors of one batch-1 sample, from ONNX shape inference
    (unknown dims count as 1: a lower bound, good enough to refuse what cannot fit)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception:  # shapes stay as the graph has them
        pass
    total = 0
    for vi in model.graph.value_info:
        t = vi.type.tensor_type
        if t.elem_type in (1, 10, 16):  # float, float16, bfloat16
            n = 1
            for d in t.shape.dim:
                n *= d.dim_value if d.dim_value > 0 else 1
            total += 4 * n
    return total


#: What the ranking may hold by default: qdq_loss_debug keeps every intermediate tensor of both
#: graphs for every sample (about 5x one sample's activations; 4.5 GB a sample on Whisper's encoder).
RANKING_MEMORY_GB = 2.0


def samples_within_memory(float_model: Path, n_samples: int, memory_gb: float = RANKING_MEMORY_GB) -> tuple[int, float]:
    """How many of ``n_samples`` the ranking can use within ``memory_gb``, and the GB one sample holds."""
    per_sample = 5 * activation_bytes(float_model)
    return min(n_samples, int(memory_gb * 2**30 // max(per_sample, 1))), per_sample / 2**30
