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
