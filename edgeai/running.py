"""``edgeai run`` as a function: load a model, run it once on given or random feeds, summarize."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from edgeai.atomic import write_bytes
from edgeai.feeds import read_named_arrays
from edgeai.readset import check_output, in_scope
from edgeai.runtimes import load
from edgeai.runtimes.base import value_problems
from edgeai.specs import make_inputs


@in_scope
def run_once(model: str, device: str | None = None, inputs: list[str] | dict[str, Any] | None = None, *,
             output: str | Path | None = None, **load_options: Any) -> dict[str, Any]:
    """Run ``model`` once on ``device`` and summarize each output (shape, dtype, checksum, NaN/Inf).

    Args:
        model: an .onnx file or bundle folder.
        inputs: feeds, or ``NAME=file.npy`` items; random feeds at batch 1 when None.
        output: write the outputs to this .npz (atomically).
        load_options: passed to :func:`edgeai.load` (precision, fallback, check_values, static_shapes).

    Returns:
        A JSON-ready dict: what ran, per-output summaries, problems found in the inputs, the file written.
    """
    m = load(model, device, **load_options)
    feeds = inputs if isinstance(inputs, dict) else (read_named_arrays(inputs) if inputs else None)
    if output:
        check_output(output)  # the model, its data files, its bundle and the --input files are read by now
    if feeds is None:
        feeds = make_inputs(m.inputs, {"batch": 1})  # static shapes are already in m.inputs
    outs = m.run(feeds)
    nonfinite = {k: int((~np.isfinite(v)).sum()) for k, v in outs.items() if v.dtype.kind == "f"}
    if output:
        buf = io.BytesIO()
        np.savez(buf, **outs)
        write_bytes(output, buf.getvalue())
    info = m.describe()
    return {"model": model, "runtime": info.to_dict(), "ran_on": info.summary(),
            "outputs": {k: {"shape": list(v.shape), "dtype": str(v.dtype),
                            "checksum": float(np.asarray(v, dtype=np.float64).sum()),
                            "nonfinite": nonfinite.get(k, 0)} for k, v in outs.items()},
            "input_problems": value_problems(feeds, m.inputs), "written": str(output) if output else None}
