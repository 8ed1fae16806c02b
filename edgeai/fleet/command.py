"""The fleet's CLI commands as plain functions, for the typer CLI to wrap (``edgeai/cli/``).

Each takes the values the CLI options carry (strings and lists as typer gives them), calls one API
function, prints its result (a table, or ``--json``), and returns the exit code:

- 0: every row ran (``unsupported`` cells on a box that lacks a device are reported, not failures);
- 1: a parity verdict failed, or a row failed (a box died, timed out, or refused a corrupted file);
- bad usage raises :class:`edgeai.errors.EdgeAIError` (the CLI prints it and exits 2).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from edgeai.atomic import write_text
from edgeai.fleet.checks import check as fleet_check
from edgeai.fleet.inventory import targets as list_targets
from edgeai.fleet.matrix import bench as fleet_bench
from edgeai.fleet.render import fleet_markdown, fleet_plot, fleet_text, targets_table
from edgeai.report import render_text, to_json


def _address(fleet: str | None) -> str | None:
    """``--fleet`` value: ``local`` (or empty) starts a local instance; anything else is HOST:PORT."""
    return None if fleet in (None, "", "local") else fleet


@contextlib.contextmanager
def _ray_chatter_to_stderr() -> Iterator[None]:
    """Ray prints cluster events (a raylet died, a node was marked dead) to sys.stdout from a thread
    of its own; while a fleet call runs they go to stderr, so stdout carries only the table or JSON."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def _print(report: Any, json_out: bool, text: str) -> None:
    # The table is already rendered at its full width; a console would wrap it again to the terminal.
    print(to_json(report) if json_out else text)


def targets(fleet: str | None = "local", *, names: str | None = None, json_out: bool = False) -> int:
    """``edgeai fleet targets [--fleet HOST:PORT] [--targets a,b] [--json]``."""
    with _ray_chatter_to_stderr():
        infos = list_targets(_address(fleet), names=names)
    if json_out:
        print(to_json({"kind": "edgeai.fleet.targets", "targets": [t.to_dict() for t in infos]}))
    else:
        print(render_text(targets_table(infos), 200).rstrip())
    return 0 if all(t.ok for t in infos) else 1


def _write(report: Any, plot: Path | None, markdown: Path | None) -> None:
    if plot is not None:
        fleet_plot(report, plot)
    if markdown is not None:
        write_text(markdown, fleet_markdown(report))


def bench(models: Sequence[str], *, fleet: str | None = "local", targets: str | None = None,
          device: Sequence[str] | None = None, precision: Sequence[str] | None = None,
          batches: Sequence[int] = (1,),
          warmup: int = 10, iterations: int | None = None, duration: float | None = None, rounds: int = 5,
          streams: int = 1, threads: int | None = None, dims: dict[str, int] | None = None,
          timeout: float | None = None, plot: Path | None = None, markdown: Path | None = None,
          json_out: bool = False) -> int:
    """``edgeai bench MODELS --fleet HOST:PORT|local [--targets a,b] ...``: the bench matrix on every box."""
    with _ray_chatter_to_stderr():
        report = fleet_bench(list(models), address=_address(fleet), targets=targets, devices=device or ["cpu"],
                             precisions=list(precision or [None]), batches=list(batches), warmup=warmup,
                             iterations=iterations, duration=duration, rounds=rounds, streams=streams,
                             threads=threads, dims=dims or {}, timeout=timeout)
    _write(report, plot, markdown)
    _print(report, json_out, "" if json_out else fleet_text(report))
    return 0 if report.passed else 1


def check(models: Sequence[str], *, reference: str, fleet: str | None = "local", targets: str | None = None,
          device: Sequence[str] | None = None, samples: int | None = None, data: str | None = None,
          atol: float | None = None, rtol: float | None = None, min_cosine: float | None = None,
          min_top1: float | None = None, split: bool = False, timeout: float | None = None,
          plot: Path | None = None, markdown: Path | None = None, json_out: bool = False) -> int:
    """``edgeai check MODELS --reference REF --fleet HOST:PORT|local [--targets a,b] [--split] ...``."""
    with _ray_chatter_to_stderr():
        report = fleet_check(reference, list(models), data, address=_address(fleet), targets=targets,
                             devices=device or ["cpu"], samples=samples, atol=atol, rtol=rtol,
                             min_cosine=min_cosine, min_top1=min_top1, split=split, timeout=timeout)
    _write(report, plot, markdown)
    if json_out:
        _print(report, True, "")
    else:
        verdicts = [f"{r.target}: {r.metrics['verdict']}" for r in report.rows if r.ok]
        ok = sum(1 for r in report.rows if r.ok and r.passed)
        _print(report, False, "\n".join([*verdicts, fleet_text(report),
                                         f"{ok} of {len(report.rows)} checks ran and passed"]))
    return 0 if report.passed else 1
