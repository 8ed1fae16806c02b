"""PyTorch reference runtime (``device="torch"``): runs the original module for parity and baselines."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from edgeai.errors import EdgeAIError
from edgeai.runtimes.base import RuntimeInfo
from edgeai.sources import resolve
from edgeai.specs import TensorSpec, make_inputs


def flatten_outputs(out: Any) -> list[Any]:
    """Tensors of a forward's result in order: a tensor, nested tuples/lists, or dicts/ModelOutputs."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict) or hasattr(out, "to_tuple"):
        out = list(out.values())
    if isinstance(out, (tuple, list)):
        return [t for item in out for t in flatten_outputs(item)]
    if out is None:
        return []
    raise EdgeAIError(f"model returned a {type(out).__name__}; edgeai handles tensors, tuples, lists and dicts")


class TorchRuntime:
    """Runs an ``nn.Module`` in eval mode under ``inference_mode`` in FP32 on CPU."""

    concurrent = False  # modules may keep state between calls (RNN caches, hooks): serialize

    def __init__(self, source: Any, device: str = "torch", *, threads: int | None = None,
                 precision: str = "f32", fallback: bool = False, **unknown: Any):
        if unknown:
            raise EdgeAIError(f"unknown option(s) for the torch runtime: {sorted(unknown)}; known: threads")
        if precision not in ("f32", "auto"):
            raise EdgeAIError(f"the torch reference runtime runs f32 only; got precision={precision!r}")
        t0 = time.perf_counter()
        self.source = resolve(source)
        self.module = self.source.module.eval()
        self.inputs: list[TensorSpec] = list(self.source.inputs)
        self.device = device
        if threads:
            torch.set_num_threads(threads)
        self._threads = torch.get_num_threads()
        names = self.source.output_names
        if not names:
            # Run once on sample inputs to learn how many outputs there are.
            n = len(self._forward(make_inputs(self.inputs)))
            names = ["output"] if n == 1 else [f"output_{i}" for i in range(n)]
        self.outputs = [TensorSpec(n, (), "float32") for n in names]
        self.load_time_s = time.perf_counter() - t0

    def _forward(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        args = [torch.from_numpy(np.ascontiguousarray(feeds[s.name])) for s in self.inputs]
        with torch.inference_mode():
            out = self.module(*args)
        return [t.detach().cpu().numpy() for t in flatten_outputs(out)]

    def run(self, feeds: dict[str, Any]) -> list[np.ndarray]:
        return self._forward(feeds)

    def info(self) -> RuntimeInfo:
        return RuntimeInfo(engine="torch", engine_version=torch.__version__, device=self.device,
                           devices_in_effect=("cpu",), precision="f32", threads=self._threads, streams=1,
                           load_time_s=self.load_time_s)
