"""A KV-cache decoder compiled *stateful* on OpenVINO: the cache lives inside the infer request.

A stateless decoder hands the cache back and forth as ``past_key_values.*`` inputs and
``present.*`` outputs, so every step copies the whole cache in and out and, the past length growing
by one each step, every step is a new input shape for the plugin. OpenVINO's make-stateful
transformation (the one optimum-intel and openvino-genai apply) turns each past/present pair into
a ``ReadValue``/``Assign`` variable pair: the cache stays in the request, the model's inputs are
just ids, mask, positions (and encoder states), and one compiled model serves every step.

Around the transformation, as optimum-intel does:

- a ``beam_idx`` input and a ``Gather`` on every cache variable (batch axis), so beam search can
  reorder the cache inside the model (no way to reach the state from outside otherwise);
- the attention cache is stored at ``kv_cache_precision`` (default f32: stateful decodes exactly
  what stateless does; OpenVINO's own CPU default is u8, smaller and faster but not exact);
- each variable's initial value is zeros of ``[batch, kv_heads, 0, head_dim]``, the batch read
  from the ids input, so the first step after :meth:`reset` starts from an empty cache.

The file on disk is the same ONNX decoder every engine loads; the transformation runs at load.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

import numpy as np

from edgeai.errors import EdgeAIError, InputMismatchError, ModelLoadError
from edgeai.runtimes.base import RuntimeInfo
from edgeai.runtimes.openvino import OpenVINORuntime, _message

PAST, PRESENT = "past_key_values.", "present."
BEAM_IDX = "beam_idx"
#: KV cache storage on the CPU plugin: f32 (exact, the default here), f16/bf16, or u8 (OpenVINO's own default)
KV_CACHE_PRECISIONS = {"f32": "f32", "f16": "f16", "bf16": "bf16", "u8": "u8"}


def make_stateful(model: Any, fuse_attention: bool = True) -> list[str]:
    """Turn ``past_key_values.*`` / ``present.*`` pairs of an ``ov.Model`` into internal state, in place.

    Returns the cache input names that became state.

    Raises:
        ModelLoadError: the model has no matching cache pairs, or no ids input to read the batch from.
    """
    import openvino as ov
    from openvino import opset13 as ops
    from openvino._offline_transformations import apply_make_stateful_transformation

    inputs = {name: port for port in model.inputs for name in port.get_names()}
    outputs = {name for port in model.outputs for name in port.get_names()}
    pairs = {name: PRESENT + name[len(PAST):] for name in inputs if name.startswith(PAST)}
    pairs = {k: v for k, v in pairs.items() if v in outputs}
    ids = next((n for n in ("input_ids", "decoder_input_ids") if n in inputs), None)
    if not pairs or ids is None:
        raise ModelLoadError("a stateful OpenVINO decoder needs past_key_values.* inputs with matching present.* "
                             "outputs and an input_ids (or decoder_input_ids) input; export with task "
                             "text-generation-with-past")
    if fuse_attention:
        # OpenVINO's offline (MOC) pipeline fuses MatMul-Softmax-MatMul attention into
        # ScaledDotProductAttention where it recognizes the pattern; the CPU plugin then fuses
        # ReadValue -> Gather(beam_idx) -> Concat -> SDPA into attention with its own KV cache.
        from openvino._offline_transformations import apply_moc_transformations

        apply_moc_transformations(model, cf=True)
        inputs = {name: port for port in model.inputs for name in port.get_names()}
    batch = inputs[ids].get_partial_shape()[0]
    beam = ops.parameter(ov.PartialShape([batch]), ov.Type.i32, name=BEAM_IDX)
    beam.output(0).get_tensor().set_names({BEAM_IDX})
    model.add_parameters([beam])
    for name in pairs:
        port = inputs[name]
        consumers = port.get_target_inputs()  # taken before the Gather becomes a consumer too
        gather = ops.gather(port, beam, ops.constant(0))
        for consumer in consumers:
            consumer.replace_source_output(gather.output(0))
    model.validate_nodes_and_infer_types()
    apply_make_stateful_transformation(model, pairs)
    # Start every sequence from an empty cache: zeros [batch, heads, 0, head_dim], batch from the ids.
    batch_of = ops.gather(ops.shape_of(model.input(ids), output_type="i64"), ops.constant([0]), ops.constant(0))
    for op in model.get_ops():
        if op.get_type_name() != "ReadValue":
            continue
        shape = op.get_output_partial_shape(0)
        if not (shape[1].is_static and shape[3].is_static):
            raise ModelLoadError(f"cache state {op.get_friendly_name()} has dynamic head dims {shape}; a stateful "
                                 "decoder needs fixed heads and head size")
        dims = [batch_of, *(ops.constant(np.array([d], dtype=np.int64)) for d in
                            (shape[1].get_length(), 0, shape[3].get_length()))]
        zeros = ops.broadcast(ops.constant(0.0, dtype=op.get_output_element_type(0)), ops.concat(dims, axis=0))
        op.set_arguments([zeros])
    model.validate_nodes_and_infer_types()
    return sorted(pairs)


class StatefulOpenVINODecoder(OpenVINORuntime):
    """A decoder compiled stateful; :meth:`reset` starts a sequence, :meth:`step` runs one step.

    ``inputs`` / ``outputs`` keep the file's own specs (cache included), so code that reads the
    cache geometry from them works unchanged; the compiled model takes only the non-cache inputs
    and ``beam_idx``, and returns only the logits. Each thread has its own infer request, hence its
    own cache.
    """

    concurrent = True

    def _compile_config(self, base: str) -> dict[str, Any]:
        # The CPU plugin stores a stateful attention cache as u8 by default (2026.4), which changes
        # logits enough to flip near-tie greedy tokens; f32 keeps stateful equal to stateless.
        return {"KV_CACHE_PRECISION": KV_CACHE_PRECISIONS[self._kv_precision]} if base == "CPU" else {}

    def _prepare(self, model: Any) -> Any:
        self.state_names = make_stateful(model)
        return model

    def __init__(self, path: Any, device: str, target: str, index: int = 0, *, kv_cache_precision: str = "f32",
                 **options: Any):
        if options.get("static_shapes"):
            raise EdgeAIError("a stateful decoder compiles dynamic shapes (the cache grows inside it); drop "
                              "static_shapes or load it stateless (stateful=False)")
        if kv_cache_precision not in KV_CACHE_PRECISIONS:
            raise EdgeAIError(f"kv_cache_precision must be one of {list(KV_CACHE_PRECISIONS)}; got "
                              f"{kv_cache_precision!r}")
        self._kv_precision = kv_cache_precision
        super().__init__(path, device, target, index, **options)
        self._options.update(stateful=True, kv_cache_precision=kv_cache_precision)
        self._steps = threading.local()

    def reset(self) -> None:
        """Start a new sequence on this thread's request: the cache goes back to empty."""
        self._request().reset_state()
        self._steps.batch = None

    def step(self, feeds: dict[str, Any], beam_idx: np.ndarray | None = None) -> np.ndarray:
        """One decode step (cache inputs are not fed: the request holds them); returns the logits.

        ``beam_idx`` reorders the cache rows before the step (beam search); default: keep them.
        """
        batch = int(next(iter(feeds.values())).shape[0])
        if beam_idx is None:
            beam_idx = np.arange(batch, dtype=np.int32)
        request = self._request()
        try:
            result = request.infer({**feeds, BEAM_IDX: np.asarray(beam_idx, dtype=np.int32)}, share_inputs=True,
                                   share_outputs=False)
        except Exception as e:
            raise EdgeAIError(f"OpenVINO failed while running a stateful decoder step: {_message(e)}") from e
        return result.to_tuple()[0]

    def run(self, feeds: dict[str, Any]) -> list[np.ndarray]:
        raise InputMismatchError("a stateful decoder keeps its cache inside; run it through edgeai.generate "
                                 "(or load it with stateful=False to feed past_key_values yourself)")

    def info(self) -> RuntimeInfo:
        info = super().info()
        return replace(info, options={**info.options, "stateful": True, "state_variables": len(self.state_names)})
