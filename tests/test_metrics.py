"""Task metrics that can fail (issue 16): each kind catches the change that its output's users see,
and metrics that cannot fail are refused or replaced with the reason said."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from edgeai.errors import EdgeAIError
from edgeai.metrics import (
    MetricNotApplicable,
    box_iou,
    infer_kind,
    judge,
    parse_kinds,
    require_metric,
    samples_needed,
    wilson_interval,
)
from edgeai.transcripts import edit_distance, transcript_metric, word_error_rate

RNG = np.random.default_rng(0)


def _by_metric(j):
    return {r.metric: r for r in j.results}


# --- declarations and inference ---------------------------------------------------------------------

def test_parse_kind_declarations():
    assert parse_kinds("logits=classification") == {"logits": "classification"}
    assert parse_kinds(["prob=probability, boxes=boxes", "emb=embeddings"]) == {
        "prob": "probability", "boxes": "boxes", "emb": "embedding"}
    assert parse_kinds({"x": "logits"}) == {"x": "classification"}
    assert parse_kinds(None) == {}
    for bad in ("logits", "=classification", "logits=", "logits=colour"):
        with pytest.raises(MetricNotApplicable, match="kind"):
            parse_kinds(bad)
    assert issubclass(MetricNotApplicable, EdgeAIError) and MetricNotApplicable.exit_code == 2


@pytest.mark.parametrize(("name", "shape", "dtype", "task", "kind"), [
    ("logits", ["batch", 10], "float32", None, "classification"),
    ("prob", ["batch", 2], "float32", None, "classification"),  # MTCNN face/non-face softmax
    ("bbox_reg", ["batch", 4], "float32", None, "regression"),  # MTCNN box offsets: never top-1
    ("landmarks", ["batch", 10], "float32", None, "regression"),
    ("boxes", ["batch", 20, 4], "float32", None, "boxes"),
    ("output", ["batch", 1], "float32", None, "scalar"),  # Silero VAD: one value per sample
    ("speech_prob", ["batch", 1], "float32", None, "probability"),
    ("vad_prob", ["batch", 3], "float32", None, "probability"),
    ("embedding", ["batch", 256], "float32", None, "embedding"),
    ("last_hidden_state", ["batch", "seq", 384], "float32", None, "hidden"),
    ("sequences", ["batch", "len"], "int64", None, "sequence"),
    ("output", ["batch", 10], "float32", "image-classification", "classification"),
    ("output", ["batch", 384], "float32", "feature-extraction", "embedding"),
    ("output", ["batch", 4], "float32", None, "hidden"),  # unnamed [B, 4]: no guess at top-1
    ("logits", ["batch", 1], "float32", None, "scalar"),  # one "class": top-1 cannot fail
])
def test_infer_kind(name, shape, dtype, task, kind):
    got, why = infer_kind(name, shape, dtype, task)
    assert got == kind, why
    assert why


def test_require_metric_refuses_metrics_that_cannot_fail():
    with pytest.raises(MetricNotApplicable, match="top-1 means nothing for a regression"):
        require_metric("regression", "top1_agreement", (4,))
    with pytest.raises(MetricNotApplicable, match="fewer than 2 classes"):
        require_metric("classification", "top1_agreement", (1,))
    with pytest.raises(MetricNotApplicable, match="one-element vector"):
        require_metric("embedding", "min_cosine", (1,))
    require_metric("classification", "top1_agreement", (10,))
    require_metric("hidden", "min_cosine", (4, 8))


# --- statistics -------------------------------------------------------------------------------------

def test_wilson_and_samples_needed():
    low, high = wilson_interval(16, 16)
    z2 = 1.959963984540054 ** 2
    assert low == pytest.approx(16 / (16 + z2)) and high == 1.0  # 16 of 16 only shows >= 81%
    assert samples_needed(1.0, 0.99) == 381  # n / (n + z^2) >= 0.99
    assert wilson_interval(381, 381)[0] >= 0.99 > wilson_interval(380, 380)[0]
    assert samples_needed(0.98, 0.99) is None and samples_needed(0.99, 0.99) is None
    assert samples_needed(1.0, 0.9) < samples_needed(1.0, 0.99) < samples_needed(1.0, 0.99, confidence=0.99)
    assert wilson_interval(0, 0) == (0.0, 1.0)


# --- classification -------------------------------------------------------------------------------------

def test_top1_agreement_with_interval_and_sample_count():
    ref = [RNG.standard_normal((2, 10)).astype(np.float32) for _ in range(8)]
    cand = [r.copy() for r in ref]
    cand[0][0] = -cand[0][0]  # one of 16 rows changes its answer
    j = judge("logits", ref, cand)
    r = _by_metric(j)["top1_agreement"]
    assert j.kind == "classification" and j.kind_source.startswith("inferred")
    assert r.samples == 16 and r.value == pytest.approx(15 / 16) and not r.passed
    assert r.interval[0] < 15 / 16 < r.interval[1] and r.details["samples_needed"] == 381
    same = _by_metric(judge("logits", ref, ref))["top1_agreement"]
    assert same.passed and same.value == 1.0 and same.details["topk_agreement"] == 1.0


def test_declared_classification_over_one_class_is_refused():
    x = [np.ones((4, 1), np.float32)]
    with pytest.raises(MetricNotApplicable, match="declared classification.*cannot fail"):
        judge("out", x, x, "classification")


# --- probability / scalar ----------------------------------------------------------------------------

def test_a_probability_moved_by_0_2_fails():
    # Issue 16: Silero's speech probability is one value per sample; its cosine is always 1.
    ref = np.array([[0.10], [0.45], [0.55], [0.90]], np.float32)
    cand = ref + np.array([[0.0], [0.2], [0.0], [0.0]], np.float32)
    j = judge("speech_prob", [ref], [cand])
    m = _by_metric(j)
    assert j.kind == "probability" and not j.passed
    assert not m["max_abs_diff"].passed and m["max_abs_diff"].value == pytest.approx(0.2, abs=1e-6)
    assert m["decision_agreement"].value == 0.75 and m["decision_agreement"].samples == 4  # 0.45 -> 0.65
    assert judge("speech_prob", [ref], [ref + 0.01]).passed
    hidden = judge("output", [ref], [cand], "hidden")  # the generic kind leaves the cosine out, and says so
    assert "min_cosine" not in _by_metric(hidden) and "cosine left out" in hidden.notes[0]
    assert not hidden.passed  # its relative max error still catches the move


def test_decision_threshold_option():
    ref, cand = [np.array([0.2, 0.4], np.float32)], [np.array([0.2, 0.3], np.float32)]
    assert _by_metric(judge("s", ref, cand, "scalar"))["decision_agreement"].value == 1.0
    r = _by_metric(judge("s", ref, cand, "scalar", options={"decision_threshold": 0.35}))["decision_agreement"]
    assert r.value == 0.5 and r.details["decision_threshold"] == 0.35


# --- regression ----------------------------------------------------------------------------------------

def test_regression_is_judged_on_its_scale_never_top1():
    ref = [RNG.normal(0, 0.1, (16, 4)).astype(np.float32)]  # MTCNN-like box offsets
    j = judge("bbox_reg", ref, [ref[0] + 0.001])
    assert j.kind == "regression" and set(_by_metric(j)) == {"relative_rms_error", "relative_max_error"} and j.passed
    moved = ref[0].copy()
    moved[3, 2] += 0.1  # a std on one coordinate: a fifth of the range
    r = _by_metric(judge("bbox_reg", ref, [moved]))["relative_max_error"]
    span = float(ref[0].max() - ref[0].min())
    assert not r.passed and r.details["scale_basis"] == "range" and r.value == pytest.approx(0.1 / span, rel=1e-3)
    shifted = _by_metric(judge("bbox_reg", ref, [ref[0] + 0.02]))  # every box off by a fifth of a std
    assert not shifted["relative_rms_error"].passed and shifted["relative_max_error"].passed
    const = [np.full((4, 2), 3.0, np.float32)]
    assert _by_metric(judge("r", const, const, "regression"))["relative_max_error"].value == 0.0


# --- embedding -----------------------------------------------------------------------------------------

def _speakers(n_per: int = 4, dim: int = 64) -> np.ndarray:
    centers = RNG.standard_normal((3, dim))
    return np.concatenate([c + 0.3 * RNG.standard_normal((n_per, dim)) for c in centers]).astype(np.float32)


def test_embedding_cosine_neighbours_and_verification():
    emb = _speakers()
    ok = judge("embedding", [emb], [emb + 0.001 * RNG.standard_normal(emb.shape).astype(np.float32)])
    m = _by_metric(ok)
    assert ok.passed and set(m) == {"min_cosine", "nn_agreement", "verification_agreement"}
    assert m["nn_agreement"].samples == 12 and m["verification_agreement"].samples == 66  # 12 choose 2 pairs
    swapped = emb.copy()
    swapped[0] = emb[11]  # one utterance now sounds like another speaker
    bad = _by_metric(judge("embedding", [emb], [swapped]))
    assert not bad["min_cosine"].passed and not bad["verification_agreement"].passed


def test_embedding_of_one_element_is_refused_or_replaced():
    x = [np.array([[0.3], [0.7]], np.float32)]
    with pytest.raises(MetricNotApplicable, match="one-element vector"):
        judge("emb", x, x, "embedding")
    few = judge("embedding", [_speakers()[:2]], [_speakers()[:2]])
    assert "need >= 3 samples" in few.notes[0]


# --- sequences and transcripts ------------------------------------------------------------------------

def test_token_agreement():
    ref = [np.array([[50257, 1, 2, 3, 50256]], np.int64)]
    cand = [np.array([[50257, 1, 9, 3, 50256]], np.int64)]
    r = _by_metric(judge("sequences", ref, cand))["token_agreement"]
    assert r.value == 0.8 and r.samples == 5 and not r.passed and r.details["identical_arrays"] == 0
    logits = [RNG.standard_normal((1, 6, 30)).astype(np.float32)]
    assert _by_metric(judge("x", logits, logits, "sequence"))["token_agreement"].value == 1.0


def test_word_error_rate():
    assert edit_distance("kitten", "sitting") == 3
    ref = "The quick brown fox jumps over the lazy dog."
    assert word_error_rate(ref, "the quick brown fox jumps over the lazy dog") == 0.0
    assert word_error_rate(ref, "the quick brown fox stump, silver-veille dog") == pytest.approx(4 / 9)
    assert word_error_rate(["a b", "c d e"], ["a b", "c x e"]) == pytest.approx(1 / 5)
    assert word_error_rate("", "") == 0.0
    bad = transcript_metric([ref, "hello world"], ["the quick brown fox stump silver veille dog", "hello world"])
    assert not bad.passed and bad.details["identical_transcripts"] == 1 and bad.samples == 2
    assert transcript_metric([ref], [ref.upper()]).passed


# --- boxes ----------------------------------------------------------------------------------------------

def test_box_iou():
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [5, 5, 5, 5]], np.float32)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [5, 5, 5, 5]], np.float32)
    assert box_iou(a, b).tolist() == pytest.approx([1.0, 50 / 150, 1.0])
    j = judge("boxes", [a[None]], [b[None]])
    r = _by_metric(j)["min_iou"]
    assert j.kind == "boxes" and r.samples == 3 and not r.passed and r.details["iou_below_0.5"] == 1
    with pytest.raises(MetricNotApplicable, match="last axis"):
        judge("b", [np.zeros((2, 3))], [np.zeros((2, 3))], "boxes")


# --- hidden ---------------------------------------------------------------------------------------------

def test_hidden_states_with_high_cosine_but_a_large_error_fail():
    # Issue 16's Whisper encoder: cosine 0.9965 passed while max abs was 11.9.
    ref = RNG.standard_normal((2, 1500, 384)).astype(np.float32) * 2.0
    cand = ref.copy()
    cand[0, :3, :4] += 12.0
    m = _by_metric(judge("last_hidden_state", [ref], [cand]))
    assert m["min_cosine"].value > 0.99 and not m["relative_max_error"].passed


# --- results and usage ----------------------------------------------------------------------------------

def test_results_say_what_they_rest_on():
    ref = [RNG.standard_normal((4, 10)).astype(np.float32)]
    out = json.loads(json.dumps(judge("logits", ref, ref).to_dict()))
    r = out["results"][0]
    assert {"kind", "metric", "value", "threshold", "passed", "samples", "interval", "confidence"} <= set(r)
    assert r["kind"] == "classification" and r["samples"] == 4 and len(r["interval"]) == 2
    assert out["kind_source"].startswith("inferred")
    inf = judge("r", [np.zeros((2, 2))], [np.ones((2, 2))], "regression").results[0]
    assert math.isinf(inf.value) and inf.to_dict()["value"] is None and not inf.passed


def test_thresholds_and_options_are_checked():
    ref = [RNG.standard_normal((4, 10)).astype(np.float32)]
    loose = judge("logits", ref, ref, thresholds={"top1_agreement": 0.5, "min_cosine": 0.9})
    assert loose.results[0].threshold == 0.5
    with pytest.raises(MetricNotApplicable, match="unknown metric"):
        judge("logits", ref, ref, thresholds={"top_one": 0.5})
    with pytest.raises(MetricNotApplicable, match="unknown metric option"):
        judge("logits", ref, ref, options={"k": 3})
    with pytest.raises(MetricNotApplicable, match="shape"):
        judge("logits", ref, [np.zeros((4, 9), np.float32)])


def test_a_kind_qualified_limit_applies_to_that_kind_only():
    ref = RNG.standard_normal((2, 50, 8)).astype(np.float32)
    cand = ref.copy()
    cand[0, 0, 0] += 0.15 * float(np.abs(ref).max())  # 15% of the peak: over 10%, under 25%
    limits = {"relative_max_error": 0.05, "hidden.relative_max_error": 0.25}
    hidden = _by_metric(judge("last_hidden_state", [ref], [cand], "hidden", thresholds=limits))
    assert hidden["relative_max_error"].threshold == 0.25 and hidden["relative_max_error"].passed
    reg = _by_metric(judge("offsets", [ref], [cand], "regression", thresholds=limits))
    assert reg["relative_max_error"].threshold == 0.05 and not reg["relative_max_error"].passed
    with pytest.raises(MetricNotApplicable, match="KIND.METRIC"):
        judge("x", [ref], [cand], "hidden", thresholds={"hiddn.relative_max_error": 0.2})


def test_half_precision_hidden_state_limits():
    from edgeai.tolerance import Tolerance

    # bf16 through a whole encoder: high cosine, a max error just over INT8's 10% (Whisper's 0.1002).
    ref = RNG.standard_normal((2, 1500, 64)).astype(np.float32)
    cand = ref + RNG.standard_normal(ref.shape).astype(np.float32) * 0.002
    cand[0, 0, 0] += 0.12 * float(np.abs(ref).max())
    bf16, int8 = Tolerance.for_precision("bf16"), Tolerance.for_precision("int8")
    assert judge("h", [ref], [cand], "hidden", thresholds=bf16.kind_thresholds()).passed
    assert not judge("h", [ref], [cand], "hidden", thresholds=int8.kind_thresholds()).passed
    # The user's plain limit replaces the default's kind-qualified one.
    strict = bf16.with_overrides(thresholds={"relative_max_error": 0.1})
    assert "hidden.relative_max_error" not in strict.thresholds
    assert not judge("h", [ref], [cand], "hidden", thresholds=strict.kind_thresholds()).passed
    # Half precision's cosine floor (0.999) is above INT8's (0.995).
    far = ref + RNG.standard_normal(ref.shape).astype(np.float32) * 0.06
    assert not judge("h", [ref], [far], "hidden", thresholds=bf16.kind_thresholds()).passed
