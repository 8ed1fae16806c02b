"""``auto`` on the real Whisper tiny.en, judged by its transcripts as well as by single graphs.

Real weights (edgeai.corpus, marker ``real``): the FP32 export from test_real_whisper's fixture and
the espeak-ng sentences' log-mel features. Every candidate must keep the greedy transcripts
(:func:`edgeai.taskcheck.check_task`, word error rate <= 0.01 vs FP32); a candidate that changes
one is reported failed and never written. Per-file candidates quantize the decoder or the encoder
and copy the other file unchanged. The error messages are checked without a model (fast).
"""

# ruff: noqa: F811  (tests take test_real_whisper's session fixture `whisper` by name)
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from test_real_whisper import whisper  # noqa: F401

from edgeai.errors import EdgeAIError, QuantizationError
from edgeai.generate_parity import FOLDER_CANDIDATES, candidate_plan, quantize_generation


@pytest.fixture(scope="module")
def speech_npz(whisper, tmp_path_factory) -> Path:
    """The four sentences' log-mel features, ``input_features [4, 80, 3000]``, as ``check --task`` reads them."""
    from edgeai.corpus.inputs import whisper_features

    path = tmp_path_factory.mktemp("whisper-auto") / "speech.npz"
    np.savez(path, input_features=whisper_features([w for _, w in whisper["speech"]]))
    return path


@pytest.fixture(scope="module")
def auto_result(whisper, speech_npz, tmp_path_factory):
    """auto with the transcribe task over two per-file candidates: INT8 weights in the decoder (the
    transcripts are known to stay) and dynamic INT8 in the encoder (known to change one). min_speedup 0:
    the fastest passing candidate is written whatever the timing says, so the test does not hang on speed."""
    out = tmp_path_factory.mktemp("whisper-auto-out") / "int8"
    result = quantize_generation(whisper["export"].path, out, mode="auto", task="transcribe", task_data=str(speech_npz),
                                 candidates=["encoder:dynamic", "decoder:int8-weights"], min_speedup=0.0)
    return result


@pytest.mark.real
def test_auto_with_the_transcribe_task_writes_unchanged_transcripts(whisper, speech_npz, auto_result):
    from edgeai.taskcheck import check_task

    result = auto_result
    rows = {r["name"]: r for r in result.parts["decoder"].candidates}
    print("candidates:", rows, "notes:", result.parts["decoder"].notes)
    assert result.task is not None and result.task.passed and result.task.samples == 4
    assert result.parity is None  # random token prompts cannot drive an encoder of log-mel features
    for row in rows.values():
        if row["error"] is None:
            task = row["task"]
            assert task["metric"] == "word_error_rate" and task["samples"] == 4 and task["threshold"] == 0.01
            assert task["passed"] == (task["value"] <= 0.01) == row["passed"]
            assert task["passed"] == (not task["changed"])
    # The winner passed its task check; the file(s) written are checked again, independently.
    chosen = result.parts["decoder"].mode.removeprefix("auto:")
    assert chosen == "fp32" or rows[chosen]["passed"]
    report = check_task(result.dst, whisper["export"].path, str(speech_npz), task="transcribe")
    assert report.passed and report.candidate_answers == report.reference_answers, report.verdict()
    assert report.candidate_answers == tuple(t.strip() for t in whisper["reference"].texts)
    notes = " ".join(result.parts["decoder"].notes)
    if chosen != "fp32":
        assert "encoder + every decoder step" in notes  # the whole pipeline was timed, not decode steps alone


@pytest.mark.real
def test_per_file_candidates_keep_the_other_file_fp32(whisper, auto_result):
    rows = {r["name"]: r for r in auto_result.parts["decoder"].candidates}
    assert rows["decoder:int8-weights"]["modes"] == {"decoder": "int8-weights", "encoder": "fp32"}
    assert rows["encoder:dynamic"]["modes"] == {"decoder": "fp32", "encoder": "dynamic"}
    if auto_result.parts["decoder"].mode == "auto:decoder:int8-weights":
        src = whisper["export"].path
        assert (auto_result.dst / "encoder.onnx").read_bytes() == (src / "encoder.onnx").read_bytes()
        assert (auto_result.dst / "decoder.onnx").stat().st_size < (src / "decoder.onnx").stat().st_size


@pytest.mark.real
def test_a_candidate_that_changes_a_transcript_fails_the_task_check(auto_result):
    """Dynamic INT8 in the Whisper encoder changes a transcript (its hidden-state cosine alone looks fine)."""
    row = {r["name"]: r for r in auto_result.parts["decoder"].candidates}["encoder:dynamic"]
    assert row["error"] is None, row
    assert not row["passed"] and not row["task"]["passed"], row
    assert row["task"]["value"] > 0.01 and row["task"]["changed"], row
    assert "speedup" not in row  # a failed candidate is never timed, never written


def test_task_options_are_refused_with_a_reason(tmp_path):
    """Fast: no model needed; each message says what was expected and what to do."""
    with pytest.raises(QuantizationError, match="single file.*folder holding encoder.onnx"):
        quantize_generation(tmp_path / "decoder.onnx", tmp_path / "out.onnx", task="transcribe", task_data="x.npz")
    folder = tmp_path / "pair"
    folder.mkdir()
    with pytest.raises(QuantizationError, match="needs the task's real inputs.*--data"):
        quantize_generation(folder, tmp_path / "out", task="transcribe")
    with pytest.raises(QuantizationError, match="unknown task 'translate'"):
        quantize_generation(folder, tmp_path / "out", task="translate", task_data="x.npz")
    with pytest.raises(QuantizationError, match="ROLE one of decoder"):
        candidate_plan("encoder:dynamic", ["decoder"])
    assert candidate_plan("decoder:dynamic", ["decoder", "encoder"]) == {"decoder": "dynamic", "encoder": None}
    assert candidate_plan("int4", ["decoder", "encoder"]) == {"decoder": "int4", "encoder": "int4"}
    assert {"dynamic", "decoder:dynamic", "encoder:int8-weights"} <= set(FOLDER_CANDIDATES)
    assert issubclass(QuantizationError, EdgeAIError)


def test_cli_refuses_task_for_a_plain_model(cli, tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    path = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])), path)
    out = cli("quantize", str(path), "-o", str(tmp_path / "q.onnx"), "--task", "transcribe", "--data", "x.npz")
    assert out.returncode != 0
    assert "--task, --max-error and --samples apply to an encoder-decoder folder" in out.stderr + out.stdout
    out = cli("quantize", str(path), "-o", str(tmp_path / "q.onnx"), "--samples", "2")
    assert out.returncode != 0 and "--max-error and --samples go with --task" in out.stderr + out.stdout
