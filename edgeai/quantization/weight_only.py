"""Weight-only compression: INT4 / INT8 weights, activations kept in float (``int4``, ``int8-weights``).

What edge LLM deployments ship: the matrix multiplies' constant weights are stored block-wise in 4
or 8 bits (a scale, and for asymmetric a zero point, per ``block_size`` input channels) and
dequantized inside the kernel; activations stay FP32. Two engines do it, both writing ONNX:

- ``engine="onnxruntime"``: onnxruntime's ``MatMulNBitsQuantizer`` (RTN; GPTQ when calibration data
  is given, INT4 only) writes ``com.microsoft.MatMulNBits`` nodes with ``accuracy_level`` (4: the CPU
  kernel quantizes activations to INT8 on the fly, the fast path; 0/1: FP32 compute).
- ``engine="nncf"``: NNCF ``compress_weights`` on the ONNX model (its ONNX backend): INT4 as
  ``MatMulNBits``, INT8 as per-channel ``DequantizeLinear`` on the weight; with calibration data,
  AWQ + scale estimation (INT4) and a data-aware choice of the INT8 layers under ``ratio``.

Decision (documented in docs and the mode's metadata): there is no separate OpenVINO IR. OpenVINO's
ONNX front end reads ``MatMulNBits`` and ``DequantizeLinear`` weights into its own compressed-weight
pattern (u4/u8 constant -> convert -> subtract -> multiply -> MatMul), which the CPU plugin runs
as a compressed fully-connected layer, so one ``.onnx`` file serves both engines, keeps edgeai's
metadata, and goes through ``check``/``bench``/``deploy`` like any other. Tests load both engines'
outputs on both engines.

The output projection (the MatMul producing the logits) in ``int4`` mode: INT4 like the other
layers under onnxruntime (as onnxruntime-genai's INT4 CPU models; a tied head is given its own
quantized copy; the embedding's ``Gather`` stays float unless ``embedding="int4"``), INT8 under NNCF (its default
``all_layers=False``). Why: on a Qwen2-0.5B-shaped decoder the 896 x 151,936 head left in float
cost more per token than all 168 INT4 layers together (a 544 MB FP32 read per token), INT8 with
``accuracy_level`` 4 twice INT4's time; the trained small GPT's perplexity moved by -0.02% with an
INT4 head (docs/decoders.md). ``output_projection="int8"`` or ``"float"`` keeps it wider.
``ratio`` < 1 keeps the INT4 share of the other weights at ``ratio`` (by parameter count); the rest
go INT8, chosen by INT4 error (data-free) or by NNCF's sensitivity with calibration data.

``int4`` under onnxruntime then runs onnxruntime's own transformer optimizer (fusion passes only,
:func:`fuse_for_onnxruntime_cpu`): RMSNorm and residual adds become ``SimplifiedLayerNormalization``
/ ``SkipSimplifiedLayerNormalization`` (LayerNorm models: ``SkipLayerNormalization``), a few hundred
fewer kernels per decode step; OpenVINO reads those contrib ops too.

GPT-2's Conv1D layers export as ``Gemm`` and tied output heads as ``Transpose(weight) -> MatMul``;
neither quantizer reads those, so a copy is first rewritten into ``MatMul`` (+ ``Add``) on
constant weights (:func:`prepare_matmuls`).
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import numpy as np

from edgeai.errors import EdgeAIError, QuantizationError
from edgeai.onnxfile import read_metadata, save_onnx
from edgeai.quantization.calibration import collect_samples
from edgeai.quantization.openvino import _quiet_nncf

ENGINES = ("onnxruntime", "nncf")


def prepare_matmuls(model: Any, fold_shared: bool = True) -> tuple[Any, int]:
    """Rewrite ``Gemm`` on a constant weight into ``MatMul`` (+ ``Add``) and fold ``Transpose`` of a
    constant weight into a transposed constant, so weight-only quantizers see every linear layer.

    ``fold_shared=False`` leaves a Transpose alone when its weight is also read elsewhere (a tied
    output head reading the token embedding): folding it would store a second copy of the
    embedding, and a quantizer that keeps the embedding's Gather in float gains nothing from it.

    Rewrites ``model`` in place; returns it and how many nodes changed.
    """
    import onnx
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    changed = 0
    new_nodes = []
    producers = {o: n for n in graph.node for o in n.output}
    readers: dict[str, int] = {}
    for n in graph.node:
        for name in n.input:
            readers[name] = readers.get(name, 0) + 1
    folded: dict[str, str] = {}
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if (node.op_type == "Gemm" and len(node.input) >= 2 and node.input[1] in inits
                and attrs.get("transA", 0) == 0 and attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0):
            weight = node.input[1]
            if attrs.get("transB", 0):
                arr = numpy_helper.to_array(inits[weight]).T.copy()
                weight = f"{weight}_T"
                graph.initializer.append(numpy_helper.from_array(arr, weight))
            has_bias = len(node.input) > 2 and node.input[2]
            mm_out = f"{node.output[0]}_matmul" if has_bias else node.output[0]
            new_nodes.append(helper.make_node("MatMul", [node.input[0], weight], [mm_out], name=f"{node.name}_MatMul"))
            if has_bias:
                new_nodes.append(helper.make_node("Add", [mm_out, node.input[2]], [node.output[0]],
                                                  name=f"{node.name}_Add"))
            changed += 1
            continue
        if node.op_type == "MatMul" and node.input[1] not in inits:
            src = producers.get(node.input[1])
            if (src is not None and src.op_type == "Transpose" and src.input[0] in inits
                    and len(inits[src.input[0]].dims) == 2 and (fold_shared or readers[src.input[0]] == 1)):
                name = folded.get(src.output[0])
                if name is None:
                    name = folded[src.output[0]] = f"{src.input[0]}_T"
                    arr = numpy_helper.to_array(inits[src.input[0]]).T.copy()
                    graph.initializer.append(numpy_helper.from_array(arr, name))
                node = copy.deepcopy(node)
                node.input[1] = name
                changed += 1
        new_nodes.append(node)
    graph.ClearField("node")
    graph.node.extend(new_nodes)
    if changed:
        # Drop what nothing reads any more (the Transposes, untransposed Gemm weights).
        _prune(model)
        # The checker serializes the model: impossible past protobuf's 2 GB (ByteSize() raises too).
        if sum(len(t.raw_data) for t in graph.initializer) < 2**31 - 2**26:
            onnx.checker.check_model(model)  # a cheap structural check of the rewrite
    return model, changed


def _prune(model: Any) -> None:
    graph = model.graph
    needed = {o.name for o in graph.output}
    keep = []
    for node in reversed(list(graph.node)):
        if any(o in needed for o in node.output) or not node.output:
            keep.append(node)
            needed.update(node.input)
    graph.ClearField("node")
    graph.node.extend(reversed(keep))
    alive = [t for t in graph.initializer if t.name in needed]
    graph.ClearField("initializer")
    graph.initializer.extend(alive)


def tied_heads(model: Any) -> list[str]:
    """MatMuls whose weight is ``Transpose(constant)`` (a tied output head left unfolded)."""
    inits = {t.name for t in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in producers
            and producers[n.input[1]].op_type == "Transpose" and producers[n.input[1]].input[0] in inits]


def weight_matmuls(model: Any) -> list[tuple[str, tuple[int, ...]]]:
    """(node name, weight shape) of every MatMul whose second input is a 2-D constant, in graph order."""
    shapes = {t.name: tuple(t.dims) for t in model.graph.initializer}
    return [(n.name, shapes[n.input[1]]) for n in model.graph.node
            if n.op_type == "MatMul" and len(shapes.get(n.input[1], ())) == 2]


def find_output_projection(model: Any) -> str | None:
    """The MatMul that produces the logits (the last weight MatMul before a ``logits`` output)."""
    outputs = {o.name for o in model.graph.output}
    consumers: dict[str, list[Any]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    weighted = {name for name, _ in weight_matmuls(model)}
    for node in reversed(list(model.graph.node)):
        if node.name not in weighted:
            continue
        # Follow at most a few shape ops (Reshape/Squeeze) down to a graph output.
        frontier, hops = list(node.output), 0
        while frontier and hops < 4:
            if any(f in outputs for f in frontier):
                return node.name
            frontier = [o for f in frontier for c in consumers.get(f, [])
                        if c.op_type in ("Reshape", "Squeeze", "Cast", "Identity", "Add") for o in c.output]
            hops += 1
        return None  # the last weight MatMul does not feed an output: no projection to protect
    return None


def fuse_for_onnxruntime_cpu(model: Any, notes: list[str]) -> tuple[Any, dict[str, int]]:
    """onnxruntime's transformer optimizer, fusion passes only (no session), on a decoder in memory.

    What it fuses on edgeai's dynamo exports: RMSNorm (+ the residual add) into
    ``SimplifiedLayerNormalization`` / ``SkipSimplifiedLayerNormalization``, LayerNorm (+ add) into
    ``SkipLayerNormalization``, GELU into ``Gelu``/``FastGelu``; the attention and rotary patterns
    of these exports are not recognized (no ``GroupQueryAttention``). A model too large for one
    protobuf (2 GB) is left unfused, with a note. Returns the model and the fused operator counts.
    """
    if sum(len(t.raw_data) for t in model.graph.initializer) > 2**31 - 2**26:
        notes.append("onnxruntime fusions skipped: the model is too large for one protobuf (2 GB)")
        return model, {}
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_by_fusion

    # Its modules log per pattern and per count under their own bare names ("onnx_model_bert", ...):
    # not the user's business. Everything below WARNING is muted for the call.
    muted = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        options = FusionOptions("gpt2")
        options.enable_attention = False  # not matched on these exports; skip the search
        optimized = optimize_by_fusion(model, model_type="gpt2", optimization_options=options)
    finally:
        logging.disable(muted)
    stats = {k: int(v) for k, v in optimized.get_fused_operator_statistics().items() if v}
    if stats:
        notes.append(f"onnxruntime fusions: {stats}")
    return optimized.model, stats


def _int4_error(weight: np.ndarray, block: int) -> float:
    """Relative RMS error of symmetric block-wise INT4 rounding along the input axis (data-free sensitivity)."""
    k, n = weight.shape
    pad = (-k) % block
    w = np.pad(weight.astype(np.float32), ((0, pad), (0, 0))).reshape(-1, block, n)
    scale = np.abs(w).max(axis=1, keepdims=True) / 7.0
    scale[scale == 0] = 1.0
    q = np.clip(np.round(w / scale), -8, 7) * scale
    return float(np.sqrt(((q - w) ** 2).sum() / max((w ** 2).sum(), 1e-30)))


def _block_for(shapes: list[tuple[int, ...]], block_size: int) -> int:
    """The largest block size <= ``block_size`` (halving, >= 16) that divides every input dimension."""
    size = block_size
    while size > 16 and any(s[0] % size for s in shapes):
        size //= 2
    return size


def _ort_pass(model: Any, bits: int, block: int, symmetric: bool, accuracy_level: int | None,
              exclude: list[str], calibration: list[dict] | None, op_types: tuple[str, ...] = ("MatMul",)) -> Any:
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig,
        GPTQWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )

    if calibration:
        config = GPTQWeightOnlyQuantConfig(calibration_data_reader=_Reader(calibration), block_size=128)
        quantizer = MatMulNBitsQuantizer(model, bits=4, block_size=block, is_symmetric=symmetric,
                                         accuracy_level=accuracy_level, nodes_to_exclude=exclude, algo_config=config)
    else:
        config = DefaultWeightOnlyQuantConfig(block_size=block, is_symmetric=symmetric, accuracy_level=accuracy_level,
                                              bits=bits, op_types_to_quantize=op_types)
        quantizer = MatMulNBitsQuantizer(model, nodes_to_exclude=exclude, algo_config=config)
    # The quantizer logs every node it skips at INFO on its own logger; keep that off users' terminals.
    logger = logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer")
    level = logger.level
    # WARNING too for Gathers: it warns that it moves the model to opset 21 (what int4 data needs).
    logger.setLevel(logging.ERROR if "Gather" in op_types else logging.WARNING)
    try:
        quantizer.process()
    finally:
        logger.setLevel(level)
    return quantizer.model.model


class _Reader:
    """onnxruntime's CalibrationDataReader over a list of feeds (deep-copied by GPTQ, so restartable)."""

    def __init__(self, feeds: list[dict]):
        self.feeds, self.i = feeds, 0

    def get_next(self) -> dict | None:
        if self.i >= len(self.feeds):
            return None
        self.i += 1
        return self.feeds[self.i - 1]

    def __iter__(self) -> Any:
        return iter(self.feeds)

    def rewind(self) -> None:
        self.i = 0


def embedding_gathers(model: Any) -> tuple[list[str], list[str]]:
    """(Gathers reading a 2-D float constant: token/position embeddings, every other Gather)."""
    floats = {t.name for t in model.graph.initializer if t.data_type == 1 and len(t.dims) == 2}
    gathers = [n for n in model.graph.node if n.op_type == "Gather"]
    return [n.name for n in gathers if n.input[0] in floats], [n.name for n in gathers if n.input[0] not in floats]


def _split_by_ratio(model: Any, names: list[str], ratio: float, block: int) -> list[str]:
    """Names kept at INT8 so that INT4 covers ``ratio`` of the parameters: the largest INT4 error first."""
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    by_name = {n.name: n for n in model.graph.node}
    errors, sizes = {}, {}
    for name in names:
        weight = numpy_helper.to_array(inits[by_name[name].input[1]])
        errors[name], sizes[name] = _int4_error(weight, block), weight.size
    budget = (1.0 - ratio) * sum(sizes.values())
    kept: list[str] = []
    for name in sorted(names, key=lambda n: -errors[n]):
        if budget <= 0:
            break
        kept.append(name)
        budget -= sizes[name]
    return kept


def _onnxruntime(model: Any, bits: int, block: int, symmetric: bool, ratio: float, accuracy_level: int | None,
                 protect: str | None, calibration: list[dict] | None, excluded: list[str],
                 notes: list[str], embedding: str = "float") -> tuple[Any, dict]:
    names = [n for n, _ in weight_matmuls(model) if n not in excluded]
    int8: list[str] = []
    if bits == 4:
        int8 = [protect] if protect else []
        rest = [n for n in names if n not in int8]
        int8 += _split_by_ratio(model, rest, ratio, block) if ratio < 1.0 else []
    if int8:
        # Pass 1: the INT8 share (everything else excluded); pass 2 then finds only the INT4 MatMuls left.
        model = _ort_pass(model, 8, block, symmetric, accuracy_level,
                          [n for n in names if n not in int8] + excluded, None)
    if bits == 4 and calibration:
        notes.append(f"data-aware: GPTQ (onnxruntime) on {len(calibration)} calibration samples")
    elif bits == 8 and calibration:
        notes.append("INT8 weights are data-free (round to nearest); the calibration data was not needed")
    model = _ort_pass(model, bits, block, symmetric, accuracy_level, int8 + excluded,
                      calibration if bits == 4 else None)
    if embedding == "int4":
        # Last, on its own: only Gathers are left to find (RTN; GatherBlockQuantized, opset 21).
        tables, others = embedding_gathers(model)
        model = _ort_pass(model, 4, block, symmetric, accuracy_level, others, None, op_types=("Gather",))
        notes.append(f"embedding table(s) {tables} INT4 (GatherBlockQuantized; the model moves to opset 21)")
    return model, {"int8_layers": int8, "algorithm": "GPTQ" if (bits == 4 and calibration) else "RTN"}


def _nncf(model: Any, bits: int, block: int, symmetric: bool, ratio: float, calibration: list[dict] | None,
          excluded: list[str], notes: list[str]) -> tuple[Any, dict]:
    import nncf

    name = f"INT{bits}_{'SYM' if symmetric else 'ASYM'}"
    mode = getattr(nncf.CompressWeightsMode, name)
    kwargs: dict[str, Any] = {}
    if excluded:
        kwargs["ignored_scope"] = nncf.IgnoredScope(names=excluded, validate=False)
    if bits == 4:
        kwargs.update(group_size=block, ratio=ratio)
    if calibration:
        kwargs.update(dataset=nncf.Dataset(calibration), subset_size=len(calibration))
        if bits == 4:
            kwargs.update(awq=True, scale_estimation=True)
            notes.append(f"data-aware: NNCF AWQ + scale estimation on {len(calibration)} calibration samples")
        else:
            notes.append("INT8 weights are data-free (per-channel); the calibration data was not needed")
            kwargs.pop("dataset"), kwargs.pop("subset_size")
    with _quiet_nncf():
        out = nncf.compress_weights(model, mode=mode, **kwargs)
    return out, {"algorithm": ("AWQ+scale-estimation" if (bits == 4 and calibration) else "data-free"),
                 "nncf_mode": name.lower()}


def compress_weights(src: Path, dst: Path, specs: list[Any], calibration: Any = None, *, bits: int = 4,
                     block_size: int = 128, symmetric: bool | None = None, ratio: float = 1.0,
                     accuracy_level: int | None = None, engine: str = "onnxruntime", samples: int = 32,
                     output_projection: str | None = None, nodes_to_exclude: list[str] | None = None,
                     fuse: bool | None = None, embedding: str | None = None) -> dict:
    """Weight-only INT4/INT8 of ``src`` into ``dst`` (one ``.onnx`` for onnxruntime and OpenVINO).

    Args:
        bits: 4 (``int4``) or 8 (``int8-weights``).
        block_size: input channels per scale (INT4; INT8 is per-channel under NNCF, block-wise under
            onnxruntime); halved until it divides every layer's input size.
        symmetric: symmetric (no zero point) or asymmetric weights; default symmetric for INT4,
            asymmetric for INT8 (NNCF's defaults).
        ratio: INT4 share of the weights' parameters (the rest INT8), INT4 only.
        accuracy_level: onnxruntime's MatMulNBits compute type: 4 quantizes activations to INT8 on
            the fly (fastest on CPU; the INT4 default, as onnxruntime-genai's CPU INT4 models), 0
            computes in FP32 (true weight-only; the INT8 default: with 4, Whisper tiny.en changed a
            word in 1 of 4 transcripts, with 0 none). NNCF writes its own.
        engine: ``onnxruntime`` (MatMulNBitsQuantizer) or ``nncf`` (compress_weights).
        samples: calibration samples used when ``calibration`` is given (data-aware INT4).
        output_projection: the logits MatMul: ``same`` (like the other layers; the default, except
            INT4 under NNCF), ``int8`` (the default for INT4 under NNCF, NNCF's own default), or
            ``float`` (kept FP32: greedy near-ties flip least). Under onnxruntime a tied head (a
            Transpose of the embedding) is given its own quantized copy in INT4 mode and left tied,
            in float, with INT8 weights (their FP32 compute dequantizes the whole head per call).
        nodes_to_exclude: MatMul names kept in float.
        fuse: run onnxruntime's fusion passes on the result (:func:`fuse_for_onnxruntime_cpu`);
            default on for INT4 under onnxruntime, off otherwise (NNCF's output is for OpenVINO).
        embedding: ``float`` (default) or ``int4`` (INT4 weights under onnxruntime only, as
            onnxruntime-genai does): the embedding tables (Gathers on float constants) stored
            block-wise in 4 bits (``GatherBlockQuantized``, which moves the model to opset 21; both
            engines read it). Qwen2-0.5B-shaped: 809 -> 337 MB, peak RSS 2.4 -> 1.1 GB, same decode
            speed (a Gather reads one row per token). Not the default: on the trained small GPT
            (byte vocabulary, d=128) perplexity rose 1.1% on test_textgpt's 8 windows (+0.06% over
            all 319), above the 1% bar; Whisper tiny.en mean WER 0.078 -> 0.095.
    """
    import onnx

    if bits not in (4, 8):
        raise QuantizationError(f"weight-only compression takes bits 4 or 8; got {bits}")
    if engine not in ENGINES:
        raise QuantizationError(f"engine must be one of {list(ENGINES)}; got {engine!r}")
    if not 0.0 <= ratio <= 1.0 or (bits == 8 and ratio != 1.0):
        raise QuantizationError(f"ratio is the INT4 share of the weights, 0 to 1, for int4 only; got {ratio} "
                                f"with {bits}-bit weights")
    if block_size < 16 or block_size & (block_size - 1):
        raise QuantizationError(f"block_size must be a power of two >= 16; got {block_size}")
    embedding = embedding or "float"
    if embedding not in ("float", "int4") or (embedding == "int4" and (bits, engine) != (4, "onnxruntime")):
        raise QuantizationError(f"embedding is float or int4, and int4 only with INT4 weights under onnxruntime; "
                                f"got {embedding!r} with {bits}-bit weights under {engine}")
    symmetric = (bits == 4) if symmetric is None else symmetric
    accuracy_level = (4 if bits == 4 else 0) if accuracy_level is None else accuracy_level
    head_mode = output_projection or ("int8" if bits == 4 and engine == "nncf" else "same")
    if head_mode not in ("int8", "float", "same"):
        raise QuantizationError(f"output_projection must be int8, float or same; got {output_projection!r}")
    notes: list[str] = []
    model = onnx.load(str(src))
    if engine == "onnxruntime":
        # onnxruntime keeps the embedding's Gather in float (its Gather quantization forces opset 21),
        # so a tied head gets its own quantized copy in int4 mode (where the head is the slowest layer
        # left in float); INT8 weights compute in FP32 (accuracy_level 0), which onnxruntime runs by
        # dequantizing the whole head every call: slower than float, so there it stays tied, in float.
        fold = bits == 4 and head_mode != "float"
    else:
        # NNCF's ONNX backend holds the model in one protobuf (2 GB at most): a second copy of a large
        # tied embedding would not fit, so then the head is left to read the embedding, in float.
        fold = sum(len(t.raw_data) for t in model.graph.initializer) < 2**30
    model, changed = prepare_matmuls(model, fold_shared=fold)
    if changed:
        notes.append(f"{changed} Gemm/Transpose weight node(s) rewritten as MatMul on constant weights first")
    tied = tied_heads(model)
    if tied and engine == "nncf":
        notes.append(f"tied output head {tied} kept in float (model too large to store a folded copy for NNCF)")
    layers = weight_matmuls(model)
    if not layers:
        raise QuantizationError(f"{src} has no MatMul with a constant 2-D weight: nothing to compress "
                                "(weight-only modes are for transformer/LLM linear layers)")
    block = _block_for([s for _, s in layers], block_size)
    if block != block_size:
        notes.append(f"block_size {block_size} does not divide every layer's input size; used {block}")
    excluded = list(nodes_to_exclude or []) + (tied if engine == "nncf" else [])
    head = find_output_projection(model)
    protect = head if (bits == 4 and head_mode == "int8") else None
    if head and head_mode == "float":
        excluded.append(head)
    data = collect_samples(calibration, specs, samples) if calibration is not None else None
    try:
        if engine == "onnxruntime":
            model, extra = _onnxruntime(model, bits, block, symmetric, ratio, accuracy_level, protect, data,
                                        excluded, notes, embedding)
            if fuse or (fuse is None and bits == 4):
                model, extra["fused_operators"] = fuse_for_onnxruntime_cpu(model, notes)
        else:
            model, extra = _nncf(model, bits, block, symmetric, ratio, data, excluded, notes)
    except EdgeAIError:
        raise
    except Exception as e:
        raise QuantizationError(f"{engine} weight-only compression failed on {src}: {type(e).__name__}: "
                                f"{str(e)[:300]}") from e
    save_onnx(model, dst)
    meta = read_metadata(model)
    return {"engine": engine, "bits": bits, "block_size": block, "symmetric": symmetric, "ratio": ratio,
            "accuracy_level": accuracy_level if engine == "onnxruntime" else None,
            "weight_layers": len(layers), "output_projection": {"node": head, "kept": head_mode},
            "data_aware": bool(data), "embedding": embedding,
            "calibration_samples": len(data) if data else 0, "family": meta.get("family"), **extra,
            "activations": "float (weight-only)", "notes": notes}


def quantize_int4(src: Path, dst: Path, specs: list[Any], calibration: Any = None, *, block_size: int = 128,
                  symmetric: bool | None = None, ratio: float = 1.0, accuracy_level: int | None = 4,
                  engine: str = "onnxruntime", samples: int = 32, output_projection: str | None = None,
                  nodes_to_exclude: list[str] | None = None, fuse: bool | None = None,
                  embedding: str | None = None) -> dict:
    """``int4``: block-wise INT4 weights (see :func:`compress_weights`)."""
    return compress_weights(src, dst, specs, calibration, bits=4, block_size=block_size, symmetric=symmetric,
                            ratio=ratio, accuracy_level=accuracy_level, engine=engine, samples=samples,
                            output_projection=output_projection, nodes_to_exclude=nodes_to_exclude, fuse=fuse,
                            embedding=embedding)


def quantize_int8_weights(src: Path, dst: Path, specs: list[Any], calibration: Any = None, *,
                          block_size: int = 128, symmetric: bool | None = None, accuracy_level: int | None = 0,
                          engine: str = "onnxruntime", samples: int = 32, output_projection: str | None = None,
                          nodes_to_exclude: list[str] | None = None, fuse: bool | None = None) -> dict:
    """``int8-weights``: INT8 weights, FP32 activations (see :func:`compress_weights`)."""
    return compress_weights(src, dst, specs, calibration, bits=8, block_size=block_size, symmetric=symmetric,
                            accuracy_level=accuracy_level, engine=engine, samples=samples,
                            output_projection=output_projection, nodes_to_exclude=nodes_to_exclude, fuse=fuse)
