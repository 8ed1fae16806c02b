"""The small GPT edgeai trains itself (edgeai.corpus.textgpt): perplexity on held-out text means something.

Training takes ~2.5 minutes on a shared 2-core machine the first time (cached under EDGEAI_CACHE),
hence ``slow``. The exported decoder's perplexity equals PyTorch's on both engines, and weight-only
INT8/INT4 stays within 1% of it.
"""

import numpy as np
import pytest

import edgeai

from conftest import DEVICES

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def textgpt(tmp_path_factory):
    from edgeai.corpus.textgpt import heldout_ids, meta, textgpt

    folder = textgpt()
    onnx = tmp_path_factory.mktemp("textgpt") / "textgpt.onnx"
    edgeai.export(str(folder), path=onnx, task="text-generation-with-past")
    return {"folder": folder, "onnx": onnx, "held": heldout_ids(), "meta": meta(folder)}


def test_training_learned_the_text(textgpt):
    from edgeai.corpus.textgpt import VOCAB, decode, encode

    # A uniform byte model has perplexity 257; the trained one is far below.
    assert textgpt["meta"]["heldout_perplexity_torch"] < 40 < VOCAB
    assert decode(encode("héllo, world")) == "héllo, world"


def test_exported_perplexity_equals_pytorch(textgpt):
    import transformers

    from edgeai.corpus.textgpt import torch_perplexity
    from edgeai.generate_parity import perplexity

    model = transformers.GPT2LMHeadModel.from_pretrained(str(textgpt["folder"]))
    held = textgpt["held"][:8 * 128]
    reference = torch_perplexity(model, held, 128)
    for device in DEVICES:
        got = perplexity(textgpt["onnx"], held, device=device, max_windows=None)
        assert got.windows == 8 and got.tokens == 8 * 127
        assert abs(got.value / reference - 1) < 1e-4, (device, got.value, reference)


@pytest.mark.parametrize("mode", ["int8-weights", "int4"])
def test_weight_only_perplexity_within_one_percent(textgpt, tmp_path, mode):
    from edgeai.generate_parity import perplexity, quantize_generation

    held = textgpt["held"]
    dst = tmp_path / f"{mode}.onnx"
    prompts = [held[i * 300:i * 300 + 32][None] for i in range(4)]
    result = quantize_generation(textgpt["onnx"], dst, mode=mode, prompts=prompts, max_new_tokens=32)
    assert result.parity.passed, result.parity.verdict()
    base = perplexity(textgpt["onnx"], held, max_windows=8).value
    for device in DEVICES:
        got = perplexity(dst, held, device=device, max_windows=8).value
        assert abs(got / base - 1) < 0.01, (mode, device, got, base)
    assert np.isfinite(base)


def test_auto_is_judged_by_perplexity_on_held_out_text(textgpt, tmp_path):
    """auto with held-out ids: every candidate's perplexity is measured against FP32's and recorded;
    a limit no candidate can meet keeps FP32, with each candidate's perplexity verdict saying why."""
    from edgeai.generate_parity import quantize_generation

    held = textgpt["held"][:4 * 128]
    prompts = [textgpt["held"][i * 300:i * 300 + 32][None] for i in range(2)]
    result = quantize_generation(textgpt["onnx"], tmp_path / "auto.onnx", mode="auto", prompts=prompts,
                                 max_new_tokens=16, candidates=["int8-weights"], perplexity_ids=held)
    row = result.parts["decoder"].candidates[0]
    ppl = row["perplexity"]
    assert ppl["tokens"] == 4 * 127 and ppl["max_increase"] == 0.01 and abs(ppl["increase"]) < 0.01, ppl
    assert result.perplexity is not None and result.perplexity.passed, result.perplexity.verdict()
    strict = quantize_generation(textgpt["onnx"], tmp_path / "strict.onnx", mode="auto", prompts=prompts,
                                 max_new_tokens=16, candidates=["int4"], perplexity_ids=held,
                                 max_perplexity_increase=0.0)
    row = strict.parts["decoder"].candidates[0]
    if row["perplexity"]["increase"] > 0:  # INT4 moved perplexity up: refused, FP32 written
        assert not row["passed"] and strict.parts["decoder"].mode == "auto:fp32"
        assert any("no candidate kept" in n for n in strict.parts["decoder"].notes)


def test_perplexity_judge_refuses_bad_usage(textgpt, tmp_path):
    from edgeai.errors import QuantizationError
    from edgeai.generate_parity import quantize_generation

    with pytest.raises(QuantizationError, match="at least 2 integer token ids"):
        quantize_generation(textgpt["onnx"], tmp_path / "x.onnx", mode="int4", perplexity_ids=np.array([0.5, 1.5]))
    with pytest.raises(QuantizationError, match="a fraction"):
        quantize_generation(textgpt["onnx"], tmp_path / "x.onnx", mode="int4", perplexity_ids=textgpt["held"][:64],
                            max_perplexity_increase=5)
    assert not (tmp_path / "x.onnx").exists()
