"""Recurrent weights made constant before quantizing, so LSTM/GRU layers really run in INT8.

The dynamo exporter writes ``nn.LSTM``'s weights as initializers in PyTorch's gate order and
reorders them to ONNX's inside the graph (Slice / Concat / Reshape). onnxruntime's quantizers only
quantize a weight that *is* an initializer, so every LSTM of such a file stayed float while the
file was called INT8 (a speaker encoder's MACs are nearly all in its LSTMs). Folding those
constant sub-graphs (onnxscript's optimizer, which evaluates nodes whose inputs are all constants)
turns the weights back into initializers; ``quantize_dynamic`` then writes ``DynamicQuantizeLSTM``.

Only recurrent ops are the reason to fold: a graph without computed recurrent weights is left as
it is (the optimizer also renames and rewrites, which the sensitivity search does not need).
"""

from __future__ import annotations

from pathlib import Path

from edgeai.onnxfile import load_proto, save_onnx

RECURRENT_OPS = {"LSTM", "GRU", "RNN"}
# Folding evaluates constant sub-graphs in Python: allow weights up to this many elements (the
# optimizer's defaults, 8192 in / 262144 out, are far below one LSTM layer's 1M weights).
FOLD_SIZE_LIMIT = 1 << 28


def computed_recurrent_weights(model: object) -> list[str]:
    """Names of LSTM/GRU/RNN nodes whose W or R input is computed in the graph, not an initializer."""
    graph = model.graph  # type: ignore[attr-defined]
    consts = {t.name for t in graph.initializer}
    consts |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    return [n.name or n.output[0] for n in graph.node if n.op_type in RECURRENT_OPS
            and any(i < len(n.input) and n.input[i] and n.input[i] not in consts for i in (1, 2))]


def fold_recurrent_weights(src: Path, dst: Path) -> tuple[Path, str | None]:
    """Fold the constant sub-graphs feeding recurrent weights; returns the model to use and a note.

    Returns ``(src, None)`` when there is nothing to fold, ``(dst, note)`` after folding, and
    ``(src, note)`` when folding failed or left weights computed (the note says which layers stay
    float). Never raises for a graph it cannot fold: quantization goes on without it.
    """
    try:
        model = load_proto(src, load_external_data=True)
    except Exception as e:  # unreadable here means unreadable for the quantizer too; it says so itself
        return src, f"recurrent weights not folded: cannot read {src.name} ({type(e).__name__})"
    before = computed_recurrent_weights(model)
    if not before:
        return src, None
    try:
        import onnxscript.optimizer as optimizer

        folded = optimizer.optimize(model, input_size_limit=FOLD_SIZE_LIMIT, output_size_limit=FOLD_SIZE_LIMIT)
    except Exception as e:
        return src, (f"{len(before)} recurrent layer(s) compute their weights in the graph and folding them failed "
                     f"({type(e).__name__}: {str(e)[:120]}): they stay float")
    after = computed_recurrent_weights(folded)
    if len(after) == len(before):
        return src, f"recurrent weights of {after} could not be folded to constants: those layers stay float"
    save_onnx(folded, dst)
    note = f"folded the computed weights of {len(before) - len(after)} recurrent layer(s) to constants, so they quantize"
    if after:
        note += f"; {after} still compute theirs and stay float"
    return dst, note
