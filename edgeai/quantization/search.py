"""``auto``'s search: run one candidate config, and find what to keep in float when none passes.

A candidate is quantized, its INT8 coverage read from the written file, loaded on the target and
judged against the FP32 reference. *Any* failure on the way (a quantizer that cannot handle a
graph, a session that does not compile, a coverage reader that trips on a subgraph) marks that
candidate with the reason and the search goes on: a real graph never ends the search with a
traceback.

When no config passes, two kinds of exclusion are tried on the best one (see
:func:`Search.exclude`): whole blocks (first / last layer, attention output projections, FFN
down-projections) and the nodes onnxruntime's ``qdq_loss_debug`` ranks most sensitive.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeai.progress import progress
from edgeai.quantization.coverage import int8_coverage
from edgeai.quantization.measure import load_on, parity_on, quiet_ort_quantization
from edgeai.quantization.modes import run_mode
from edgeai.quantization.sensitivity import (
    DYNAMIC_OPS,
    RANKING_MEMORY_GB,
    candidate_blocks,
    compute_nodes,
    rank_sensitive_nodes,
    restrict_to_ops,
    samples_within_memory,
)

# Below this share of MACs in INT8, a config is not an INT8 model (whatever its weights say) and is
# never chosen as one: e.g. an LSTM network whose recurrent weights stayed float.
MIN_INT8_MAC_SHARE = 0.2


@dataclass
class Candidate:
    """One config tried by ``auto``: what ran, its parity, coverage, speed, or why it was skipped."""

    name: str
    mode: str
    options: dict[str, Any]
    path: Path | None = None
    model: Any = None
    parity: Any = None
    config: dict[str, Any] = field(default_factory=dict)
    excluded: tuple[str, ...] = ()
    error: str | None = None
    coverage: Any = None  # Int8Coverage of the written file
    estimate: Any = None  # SpeedupEstimate vs FP32, where timed
    block: str | None = None  # the block kept in float, for block exclusions

    @property
    def cosine(self) -> float:
        return self.parity.worst.cosine if self.parity is not None else -2.0

    @property
    def int8_share(self) -> float | None:
        if self.coverage is None:
            return None
        return self.coverage.mac_share if self.coverage.macs else self.coverage.op_share

    @property
    def is_int8(self) -> bool:
        return self.coverage is None or self.coverage.is_int8(MIN_INT8_MAC_SHARE)

    @property
    def passed(self) -> bool:
        """Meets the tolerance and is an INT8 model (coverage above :data:`MIN_INT8_MAC_SHARE`)."""
        return self.parity is not None and self.parity.passed and self.is_int8 and self.error is None

    def row(self) -> dict[str, Any]:
        w = self.parity.worst if self.parity is not None else None
        est = self.estimate
        return {"name": self.name, "mode": self.mode, "options": {k: v for k, v in self.options.items()
                                                                  if k != "calibration_data"},
                "excluded_nodes": len(self.excluded), "block": self.block, "passed": self.passed,
                "parity_passed": bool(self.parity is not None and self.parity.passed),
                "cosine": None if w is None else round(w.cosine, 6),
                "top1": None if w is None or w.top1 is None else round(w.top1, 4),
                "int8_macs": None if self.coverage is None else self.coverage.mac_share,
                "int8_weights": None if self.coverage is None else self.coverage.weight_share,
                "p50_ms": None if est is None or est.candidate_ms is None else round(est.candidate_ms, 5),
                "speedup": None if est is None else round(est.speedup, 4),
                "interval": None if est is None or est.rounds < 2 else [round(est.low, 4), round(est.high, 4)],
                "error": self.error}


class Search:
    """Quantize a candidate, read its coverage, load it on the device, measure parity; and the
    exclusion searches over blocks and sensitive nodes."""

    def __init__(self, pre: Path, work: Path, specs: list[Any], calib: list[dict], reference: Any, device: str,
                 evals: Any, tol: Any, scope_model: Path | None = None) -> None:
        self.pre, self.work, self.specs, self.calib = pre, work, specs, calib
        self.reference, self.device, self.evals, self.tol = reference, device, evals, tol
        self.scope_model = scope_model  # the export with module name scopes (pre-processing drops them)
        self.trials = 0
        self.log: list[str] = []

    def run(self, cand: Candidate, excluded: tuple[str, ...] = ()) -> Candidate:
        """Quantize, measure coverage and parity; every failure becomes ``cand.error``, never raised."""
        self.trials += 1
        cand.path = self.work / f"{self.trials:03d}-{cand.name.replace('+', '_').replace(':', '_')}.onnx"
        cand.excluded = excluded
        options = dict(cand.options, nodes_to_exclude=list(excluded))
        if cand.mode in ("static", "openvino-int8"):
            options["calibration_data"] = self.calib
        if cand.mode == "static":  # self.pre is pre-processed once for all candidates
            options["preprocess_model"] = False
        step = "quantizing"
        try:
            with quiet_ort_quantization():
                cand.config = run_mode(cand.mode, self.pre, cand.path, self.specs, None, options)
            cand.config.pop("notes", None)
            step = "reading its INT8 coverage"
            cand.coverage = int8_coverage(cand.path)
            step = f"loading it on {self.device}"
            cand.model = load_on(cand.path, self.device, cand.name)
            step = "measuring parity"
            cand.parity = parity_on(self.reference, cand.model, self.evals, self.tol, cand.name)
        except Exception as e:  # a real graph one tool cannot take: skip this candidate, say why
            cand.error = f"{step} failed: {type(e).__name__}: {_first_line(e)}"
            cand.model = None
        if cand.error is None and not cand.is_int8:
            cand.error = (f"not INT8: {cand.int8_share:.0%} of MACs run in INT8 (< {MIN_INT8_MAC_SHARE:.0%}); "
                          f"{cand.coverage.summary()}")
        return cand

    def exclude(self, base: Candidate, max_fraction: float, n_samples: int) -> list[Candidate]:
        """Keep parts of ``base`` in float until it passes: blocks first (few trials), then the
        sensitive-node search capped below the smallest passing block. Returns every candidate
        tried; the caller picks among those that pass (fewest nodes in float first)."""
        compute = compute_nodes(self.pre)
        limit = int(max_fraction * len(compute))
        tried = self.exclude_blocks(base, limit)
        passing = [c for c in tried if c.passed]
        fewest = min((len(compute & set(c.excluded)) for c in passing), default=None)
        if fewest is not None and fewest <= 2:
            self.log.append(f"skipped the node search: block {passing[0].block} passes with {fewest} node(s) in float")
            return tried
        cap = limit if fewest is None else min(limit, fewest - 1)
        return tried + [self.exclude_sensitive(base, cap, n_samples, compute)]

    def exclude_blocks(self, base: Candidate, limit: int) -> list[Candidate]:
        """``base`` with each block of :func:`candidate_blocks` in float, fewest nodes first, up to the
        first block that passes."""
        try:
            blocks = candidate_blocks(self.pre, self.scope_model)
        except Exception as e:
            self.log.append(f"blocks not found: {type(e).__name__}: {_first_line(e)}")
            return []
        tried = []
        with progress("auto: keeping blocks in float", total=len(blocks)) as advance:
            for b in blocks:
                advance()
                if len(b.nodes) > max(limit, 1):
                    self.log.append(f"block {b.name}: {len(b.nodes)} nodes, over the limit of {limit}")
                    continue
                nodes = b.nodes
                if base.mode == "dynamic":
                    nodes = tuple(n for n in nodes if n in self._kinds(DYNAMIC_OPS))
                cand = self.run(Candidate(f"{base.name}+{b.name}", base.mode, base.options, block=b.name), nodes)
                self.log.append(f"block {b.name} ({b.why}) in float: " + _outcome(cand))
                tried.append(cand)
                if cand.passed:
                    break
        return tried

    def _kinds(self, op_types: set[str]) -> set[str]:
        import onnx

        graph = onnx.load(str(self.pre), load_external_data=False).graph
        return {n.name for n in graph.node if n.op_type in op_types}

    def exclude_sensitive(self, base: Candidate, limit: int, n_samples: int, compute: set[str]) -> Candidate:
        """Keep the fewest top-ranked sensitive tensors of ``base`` in float until parity passes
        (at most ``limit`` compute nodes)."""
        name = f"{base.name}+excluded"
        ranking_model = base.path
        if base.mode != "static":  # the QDQ debug tooling reads onnxruntime's QDQ naming
            # A static probe with the base's weight granularity and range, so the weight errors ranked
            # are the ones the base config makes.
            keep = ("per_channel", "reduce_range", "exclude_op_types")
            probe = self.run(Candidate("sensitivity-probe", "static",
                                       {"per_channel": True, **{k: v for k, v in base.options.items() if k in keep}}))
            ranking_model = probe.path if probe.config else None
            probe.model = None
        if ranking_model is None or not ranking_model.exists():
            return Candidate(name, base.mode, base.options, error="could not build a QDQ model to rank nodes")
        n, per_sample_gb = samples_within_memory(self.pre, n_samples)
        if n < 1:  # the ranking would hold more than the machine should give it: say so, go on
            return Candidate(name, base.mode, base.options, error=f"sensitivity ranking skipped: it would hold "
                             f"~{per_sample_gb:.1f} GB of activations per sample (limit {RANKING_MEMORY_GB} GB)")
        try:
            ranking = rank_sensitive_nodes(self.pre, ranking_model, self.evals[:n], self.work)
            if base.mode == "dynamic":
                ranking = restrict_to_ops(ranking, self.pre, DYNAMIC_OPS)
        except Exception as e:  # a real graph onnxruntime's debug tooling cannot pair: say so, go on
            return Candidate(name, base.mode, base.options,
                             error=f"sensitivity ranking failed: {type(e).__name__}: {_first_line(e)}")
        prefixes: list[tuple[str, ...]] = []
        seen: dict[str, None] = {}
        for s in ranking:
            before = len(seen)
            seen.update(dict.fromkeys(s.nodes))
            if len(seen) == before:
                continue
            if len(compute & set(seen)) > limit:
                break
            prefixes.append(tuple(seen))
        if not prefixes:
            return Candidate(name, base.mode, base.options, error=f"no sensitive nodes to exclude within the limit "
                             f"of {limit} of {len(compute)} conv/matmul nodes")
        tried: dict[int, Candidate] = {}

        def passes(k: int) -> bool:
            cand = tried[k] = self.run(Candidate(name, base.mode, base.options), prefixes[k - 1])
            self.log.append(f"{len(prefixes[k - 1])} sensitive node(s) in float: " + _outcome(cand))
            return cand.passed

        # Doubling finds a passing prefix in log2(n) trials; bisecting then finds the shortest one
        # (the ranking makes "more excluded" close to monotone in accuracy).
        n, lo, hi, k = len(prefixes), 0, None, 1
        with progress("auto: excluding sensitive nodes", total=None) as advance:
            while k <= n:
                advance()
                if passes(k):
                    hi = k
                    break
                lo = k
                k = n + 1 if k == n else min(2 * k, n)
            while hi is not None and hi - lo > 1:
                mid = (lo + hi) // 2
                advance()
                if passes(mid):
                    hi = mid
                else:
                    lo = mid
        chosen = tried[hi] if hi is not None else max(tried.values(), key=lambda c: c.cosine)
        for cand in tried.values():
            if cand is not chosen:
                cand.model = None  # release the sessions of the prefixes not chosen
        return chosen


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [""])[0][:240]


def _outcome(cand: Candidate) -> str:
    if cand.parity is None:
        return f"error {cand.error}"
    return f"cosine {cand.cosine:.5f} {'pass' if cand.passed else 'fail'}"
