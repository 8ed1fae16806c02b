"""How one decoding step runs on each engine: numpy feeds through ``Model.run`` (every engine),
onnxruntime IO binding (the cache stays in onnxruntime's buffers), or OpenVINO's stateful infer
request (the cache lives inside it). :func:`edgeai.generation.generate` drives them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeai.errors import EdgeAIError, ModelLoadError

PAST = "past_key_values."  # the cache inputs' prefix, as edgeai.generation names them


class HostStepper:
    """One step through ``Model.run``: feeds and cache are numpy arrays (every engine, every device)."""

    def __init__(self, gm: Any):
        self.model, self.pairs = gm.decoder, gm.cache_names()

    def empty(self, batch: int) -> dict[str, Any]:
        out = {}
        for s in self.model.inputs:
            if s.name.startswith(PAST):
                if not (isinstance(s.shape[1], int) and isinstance(s.shape[3], int)):
                    raise ModelLoadError(f"cache input {s} needs fixed head and head-size dims to start empty")
                out[s.name] = np.zeros((batch, s.shape[1], 0, s.shape[3]), dtype=s.dtype)
        return out

    def step(self, feeds: dict[str, Any], past: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
        out = self.model.run({**feeds, **past})
        return out["logits"], {inp: out[name] for name, inp in self.pairs}

    def reorder(self, past: dict[str, Any], beam_idx: np.ndarray) -> dict[str, Any]:
        """Beam search: row i of the next step's cache is row ``beam_idx[i]`` of this one."""
        return {name: value[beam_idx] for name, value in past.items()}


class StatefulStepper(HostStepper):
    """OpenVINO stateful: the cache lives in the infer request; ``past`` is always empty here.

    ``empty`` starts a sequence (resets the state); a beam reorder is fed as ``beam_idx`` with the
    next step, where the model gathers its own cache rows.
    """

    def __init__(self, gm: Any):
        super().__init__(gm)
        self.runtime = gm.decoder.runtime
        self.beam_idx: np.ndarray | None = None

    def empty(self, batch: int) -> dict[str, Any]:
        self.runtime.reset()
        self.beam_idx = None
        return {}

    def step(self, feeds: dict[str, Any], past: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
        logits = self.runtime.step(feeds, self.beam_idx)
        self.beam_idx = None
        return logits, {}

    def reorder(self, past: dict[str, Any], beam_idx: np.ndarray) -> dict[str, Any]:
        self.beam_idx = np.asarray(beam_idx, dtype=np.int32)
        return past


class IOBindingStepper(HostStepper):
    """onnxruntime with IO binding: the cache stays in onnxruntime's own buffers (OrtValues) between
    steps, on the GPU for CUDA, in onnxruntime's CPU arena otherwise; only logits become numpy.

    CUDA: UNTESTED (no GPU where this was written). CPU: tested for equal tokens; whether it pays
    is measured in benchmarks/bench_llm.py (it saves one copy of the cache per step).
    """

    def __init__(self, gm: Any, where: str):
        super().__init__(gm)
        self.session = self.model.runtime.session
        self.where = where
        self.device_id = int(self.model.device.partition(":")[2] or 0) if where == "cuda" else 0

    def step(self, feeds: dict[str, Any], past: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
        binding = self.session.io_binding()
        for name, arr in {**feeds, **past}.items():
            if isinstance(arr, np.ndarray):
                binding.bind_cpu_input(name, np.ascontiguousarray(arr))
            else:
                binding.bind_ortvalue_input(name, arr)
        bound = ["logits", *(name for name, _ in self.pairs)]
        binding.bind_output("logits", "cpu")
        for name in bound[1:]:
            binding.bind_output(name, self.where, self.device_id)
        self.session.run_with_iobinding(binding)
        values = dict(zip(bound, binding.get_outputs(), strict=True))  # outputs come back in bind order
        return values["logits"].numpy(), {inp: values[name] for name, inp in self.pairs}


def stepper_for(gm: Any, io_binding: bool | None, beams: bool = False) -> HostStepper:
    if gm.stateful:
        if io_binding:
            raise EdgeAIError("io_binding is for onnxruntime; a stateful OpenVINO decoder keeps its cache inside")
        return StatefulStepper(gm)
    info = gm.describe()
    if beams:
        if io_binding:
            raise EdgeAIError("beam search reorders the cache as numpy arrays: use io_binding=False with num_beams")
        io_binding = False
    on_cuda = info.engine == "onnxruntime" and info.devices_in_effect[0] == "CUDAExecutionProvider"
    if io_binding and info.engine != "onnxruntime":
        raise EdgeAIError(f"io_binding=True needs onnxruntime; this decoder runs on {info.summary()}")
    if io_binding or (on_cuda and io_binding is not False):
        return IOBindingStepper(gm, "cuda" if on_cuda else "cpu")
    return HostStepper(gm)
