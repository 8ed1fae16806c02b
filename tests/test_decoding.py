"""Stateful OpenVINO decoders, beam search, repetition penalty and streaming, against transformers.

Reuses test_generate's tiny GPT-2 / Llama / T5 exports (session fixtures). Contracts: a stateful
OpenVINO decoder generates what the stateless one does, token for token; beam search and the
repetition penalty decode exactly what transformers' ``generate`` does, on every device.
"""

# ruff: noqa: F811  (tests take test_generate's session fixture `exported` by name)
import numpy as np
import pytest
import torch
from test_generate import FAMILIES, PROMPT, exported  # noqa: F401

import edgeai
from edgeai.errors import InputMismatchError

from conftest import DEVICES, device_params

NEW = 20
openvino = pytest.mark.skipif("openvino:CPU" not in DEVICES, reason="OpenVINO CPU is not available here")


def hf_generate(model, ids: np.ndarray, **kwargs) -> np.ndarray:
    with torch.no_grad():
        out = model.generate(torch.from_numpy(ids), attention_mask=torch.ones_like(torch.from_numpy(ids)),
                             max_new_tokens=NEW, do_sample=False, **kwargs).numpy()
    return out[:, 1:] if model.config.is_encoder_decoder else out[:, ids.shape[1]:]


@openvino
@pytest.mark.parametrize("family", FAMILIES)
def test_stateful_openvino_equals_stateless_token_for_token(family, exported):
    path = exported(family)[1].path
    stateless = edgeai.generate(path, PROMPT, 32, device="openvino:CPU", stateful=False, stop_on_eos=False)
    stateful = edgeai.generate(path, PROMPT, 32, device="openvino:CPU", stop_on_eos=False)  # the default there
    assert stateful.runtime["options"]["stateful"] and "stateful" not in stateless.runtime["options"]
    assert np.array_equal(stateful.tokens, stateless.tokens)
    # A second sequence on the same loaded model starts from an empty cache again.
    from edgeai.generation import load_generative

    gm = load_generative(path, "openvino:CPU")
    first = edgeai.generate(gm, PROMPT, 8, stop_on_eos=False).tokens
    assert np.array_equal(edgeai.generate(gm, PROMPT, 8, stop_on_eos=False).tokens, first)
    # And it reports a clear error when fed like a stateless model.
    with pytest.raises(InputMismatchError, match="stateful decoder"):
        gm.decoder.runtime.run({})


@pytest.mark.parametrize("device", device_params(["cpu", "openvino:CPU"]))
@pytest.mark.parametrize("family", FAMILIES)
def test_beam_search_equals_transformers(family, device, exported):
    model, result = exported(family)
    expected = hf_generate(model, PROMPT, num_beams=4)
    got = edgeai.generate(result.path, PROMPT, NEW, device=device, num_beams=4)
    assert got.tokens.tolist() == expected.tolist()
    assert got.sampling["num_beams"] == 4


@pytest.mark.parametrize("device", device_params(["cpu", "openvino:CPU"]))
def test_beam_search_with_penalties_and_a_batch(device, exported):
    model, result = exported("llama")
    prompts = np.array([[17, 501, 42, 9], [5, 6, 7, 8]], dtype=np.int64)
    kwargs = {"num_beams": 3, "repetition_penalty": 1.3, "length_penalty": 0.5}
    expected = hf_generate(model, prompts, **kwargs)
    got = edgeai.generate(result.path, prompts, NEW, device=device, **kwargs)
    assert got.tokens.tolist() == expected.tolist()


@pytest.mark.parametrize("device", device_params(["cpu", "openvino:CPU"]))
@pytest.mark.parametrize("family", FAMILIES)
def test_repetition_penalty_equals_transformers(family, device, exported):
    model, result = exported(family)
    expected = hf_generate(model, PROMPT, repetition_penalty=1.5)
    plain = edgeai.generate(result.path, PROMPT, NEW, device=device)
    got = edgeai.generate(result.path, PROMPT, NEW, device=device, repetition_penalty=1.5)
    assert got.tokens.tolist() == expected.tolist()
    assert got.sampling["repetition_penalty"] == 1.5 and "repetition_penalty" not in plain.sampling


def test_on_token_streams_the_tokens_in_order(exported):
    path = exported("gpt2")[1].path
    seen = []
    result = edgeai.generate(path, PROMPT, 12, stop_on_eos=False, on_token=lambda t: seen.append(int(t[0])))
    assert seen == result.tokens[0].tolist()
    with pytest.raises(InputMismatchError, match="beam search"):
        edgeai.generate(path, PROMPT, 4, num_beams=2, on_token=print)
    with pytest.raises(InputMismatchError, match="repetition_penalty"):
        edgeai.generate(path, PROMPT, 4, repetition_penalty=0)


def test_stateful_needs_openvino(exported):
    with pytest.raises(edgeai.EdgeAIError, match="stateful=True"):
        edgeai.generate(exported("gpt2")[1].path, PROMPT, 2, device="cpu", stateful=True)


def test_cli_generate_stream_and_beams(cli, exported):
    path = exported("gpt2")[1].path
    ids = ",".join(map(str, PROMPT[0]))
    expected = edgeai.generate(path, PROMPT, 8).tokens[0].tolist()
    out = cli("generate", path, "--prompt-ids", ids, "--max-new-tokens", "8", "--stream")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == ",".join(map(str, expected))
    beams = cli("generate", path, "--prompt-ids", ids, "--max-new-tokens", "8", "--num-beams", "4", "--json")
    assert beams.returncode == 0, beams.stderr
    bad = cli("generate", path, "--prompt-ids", ids, "--num-beams", "4", "--stream")
    assert bad.returncode != 0 and "--stream" in bad.stderr


def test_cpu_io_binding_generates_the_same_tokens(exported):
    path = exported("llama")[1].path
    plain = edgeai.generate(path, PROMPT, NEW, stop_on_eos=False)
    bound = edgeai.generate(path, PROMPT, NEW, stop_on_eos=False, io_binding=True)
    assert np.array_equal(plain.tokens, bound.tokens)
    with pytest.raises(edgeai.EdgeAIError, match="num_beams"):
        edgeai.generate(path, PROMPT, 4, num_beams=2, io_binding=True)


def test_onnxruntime_fusion_keeps_tokens_and_metadata(exported, tmp_path):
    from edgeai.exporters.generation import fuse_for_onnxruntime
    from edgeai.onnxfile import load_proto, read_metadata

    src = exported("gpt2")[1].path
    dst = tmp_path / "gpt2.fused.onnx"
    fused = fuse_for_onnxruntime(src, dst)
    assert fused["fused_operators"].get("SkipLayerNormalization") and "attention_fused" in fused
    meta = read_metadata(load_proto(dst))
    assert meta["generation"] == read_metadata(load_proto(src))["generation"] and meta["onnxruntime_fusion"] == fused
    for device in DEVICES:
        assert np.array_equal(edgeai.generate(dst, PROMPT, NEW, device=device, stop_on_eos=False).tokens,
                              edgeai.generate(src, PROMPT, NEW, device=device, stop_on_eos=False).tokens)


def test_cpu_decoders_say_whether_threads_spin(exported):
    """onnxruntime CPU decoders: onnxruntime's spinning threads by default (faster on an idle box),
    spinning=False for shared cores; said in what ran, and the tokens are the same either way (a
    scheduling option, not a numeric one)."""
    path = exported("llama")[1].path
    default = edgeai.generate(path, PROMPT, NEW, stop_on_eos=False)
    sleeping = edgeai.generate(path, PROMPT, NEW, stop_on_eos=False, spinning=False)
    assert default.runtime["options"]["spinning"] is True and sleeping.runtime["options"]["spinning"] is False
    assert np.array_equal(default.tokens, sleeping.tokens)
    assert "spinning" not in edgeai.load(path, "cpu").describe().options  # plain load: onnxruntime's default
    if "openvino:CPU" in DEVICES:  # not an OpenVINO option: never passed there
        assert "spinning" not in edgeai.generate(path, PROMPT, 2, device="openvino:CPU").runtime["options"]
