"""``edgeai bench`` as a function: a models x devices x precisions x batches matrix, the files it
writes, and the comparison with an earlier run."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeai.atomic import write_text
from edgeai.bench import BenchConfig, MatrixResult, bench_matrix, physical_cores
from edgeai.benchcompare import Comparison, compare_runs, read_bench_json
from edgeai.errors import EdgeAIError
from edgeai.readset import check_output, in_scope
from edgeai.report import bench_csv, bench_markdown, latency_plot, progress


def configs_for(models: Sequence[str], devices: Sequence[str], precisions: Sequence[str | None],
                baseline: str | None, options: dict[str, Any], static: dict[str, list[int]] | None = None,
                streams: int = 1) -> list[BenchConfig]:
    """One BenchConfig per model x device x precision (plus the torch baseline first), uniquely named.

    Engine-specific options go only to the engine that takes them: static shapes and streams to
    OpenVINO devices.
    """
    configs = []
    if baseline:
        if not baseline.startswith("torch:") or len(baseline) <= 6:
            raise EdgeAIError(f"--baseline must be torch:SOURCE, e.g. torch:zoo:cnn; got {baseline!r}")
        configs.append(BenchConfig("torch", baseline[6:], "torch", {"threads": options.get("threads")}))
    short = [Path(m).name for m in models]
    for model, label in zip(models, short if len(set(short)) == len(short) else models, strict=True):
        for d in devices:
            for prec in precisions:
                opts = dict(options)
                if prec:
                    opts["precision"] = prec
                if d.lower().startswith("openvino"):
                    if static:
                        opts["static_shapes"] = static
                    if streams > 1:
                        opts["streams"] = streams  # as benchmark_app: one OpenVINO stream per issuing thread
                name = f"{label}@{d}" + (f"@{prec}" if prec else "")
                configs.append(BenchConfig(name, model, d, opts))
    return configs


@dataclass(frozen=True)
class BenchRun:
    """A bench matrix, what it was compared with, and the files written."""

    result: MatrixResult
    comparison: Comparison | None = None
    written: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[Any]:
        return [r for r in self.result.reports if r.status.startswith("failed")]

    @property
    def regressions(self) -> list[Any]:
        return list(self.comparison.regressions) if self.comparison is not None else []

    def to_dict(self) -> dict[str, Any]:
        data = self.result.to_dict()
        if self.comparison is not None:
            data["comparison"] = self.comparison.to_dict()
        return data


@in_scope
def run_bench(models: Sequence[str], *, devices: Sequence[str] = ("cpu",), batches: Sequence[int] = (1,),
              precisions: Sequence[str | None] = (None,), warmup: int = 10, iterations: int | None = None,
              duration: float | None = None, rounds: int = 5, streams: int = 1, baseline: str | None = None,
              threads: int | None = None, static_shapes: dict[str, list[int]] | None = None,
              dims: dict[str, int] | None = None, cache_dir: str | Path | None = None,
              plot: str | Path | None = None, csv: str | Path | None = None, markdown: str | Path | None = None,
              compare_to: str | Path | None = None, min_change: float = 0.05) -> BenchRun:
    """Benchmark ``models`` on every device x precision x batch, interleaved; write the files asked for.

    Raises:
        EdgeAIError: bad counts, an output path that names a model, or an unreadable ``compare_to``.
    """
    for option, value, least in (("--iterations", iterations, 1), ("--rounds", rounds, 1), ("--warmup", warmup, 0),
                                 ("--threads", threads, 1), ("--streams", streams, 1)):
        if value is not None and value < least:
            raise EdgeAIError(f"{option} must be at least {least}; got {value}")
    if min_change < 0:
        raise EdgeAIError(f"--min-change must be >= 0 (a fraction, e.g. 0.05 for 5%); got {min_change}")
    for option, written in (("--plot", plot), ("--csv", csv), ("--markdown", markdown)):
        if written is not None:
            out = Path(written).resolve()
            for m in models:
                if Path(m).resolve() == out:
                    raise EdgeAIError(f"{option} {written} is one of this command's inputs ({m}); inputs are never "
                                      "overwritten: choose another output path")
    options: dict[str, Any] = {"threads": threads or physical_cores()}  # explicit, so every row reports it
    if cache_dir and os.path.exists(cache_dir) and not os.path.isdir(cache_dir):
        raise EdgeAIError(f"--cache-dir {cache_dir} is a file; give a folder (it is created if missing)")
    if cache_dir:
        options["cache_dir"] = str(cache_dir)
    configs = configs_for(models, devices, precisions, baseline, options, static_shapes, streams)
    old = read_bench_json(compare_to) if compare_to else None  # fail on a bad file before the long run
    for option, written in (("--plot", plot), ("--csv", csv), ("--markdown", markdown)):
        if written is not None:  # every model (its data files, its bundle folder) is read by now
            check_output(written, option)
    with progress("bench", total=len(configs) + len(configs) * len(batches) * max(rounds, 1)) as advance:
        result = bench_matrix(configs, batches, warmup=warmup, iterations=iterations, duration=duration,
                              rounds=rounds, streams=streams, dims=dims or {}, on_step=advance)
    result.settings["threads"] = options["threads"]
    comparison = compare_runs(old, result, min_change=min_change, old_source=str(compare_to)) if old is not None else None
    written = []
    if csv:
        write_text(csv, bench_csv(result))
        written.append(str(csv))
    if markdown:
        write_text(markdown, bench_markdown(result))
        written.append(str(markdown))
    if plot:
        latency_plot(result, plot, title=f"edgeai bench ({result.machine['cpu']['model']}, "
                                                 f"{options['threads']} threads)")
        written.append(str(plot))
    return BenchRun(result, comparison, written)

