"""Generation with a KV cache: exported decoders generate exactly what transformers' generate does.

Tiny random-weight GPT-2, Llama and T5 models are exported once per session; every test reuses
those files. Token-for-token agreement with ``transformers`` (greedy) is the contract on every
device here; speed lives in benchmarks/bench_generate.py.
"""

import json

import numpy as np
import pytest
import torch

import edgeai
from edgeai.errors import ExportError, InputMismatchError, ModelLoadError
from edgeai.onnxfile import load_proto, read_metadata

from conftest import DEVICES, device_params

NEW_TOKENS = 32
PROMPT = np.array([[17, 501, 42, 9, 333, 760, 88]], dtype=np.int64)
FAMILIES = ["gpt2", "llama", "t5"]


def tiny_hf(family: str):
    from edgeai.hf_tasks import build_hf_model, tiny_config

    task = "text2text-generation" if family == "t5" else "text-generation"
    model = build_hf_model(tiny_config(family), task)
    if family in ("gpt2", "t5"):
        # Their default inits are so narrow that a random model greedily repeats one or two tokens
        # (T5: the pad token forever); wider weights give varied tokens, so the comparison is strict.
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "ln_" not in name and "norm" not in name:
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return model


def hf_greedy(model, ids: np.ndarray, mask: np.ndarray | None = None, **kwargs) -> np.ndarray:
    """transformers' own greedy generation: the new tokens only."""
    mask = np.ones_like(ids) if mask is None else mask
    with torch.no_grad():
        out = model.generate(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                             max_new_tokens=NEW_TOKENS, do_sample=False, **kwargs).numpy()
    return out[:, 1:] if model.config.is_encoder_decoder else out[:, ids.shape[1]:]


@pytest.fixture(scope="session")
def exported(artifacts):
    """family -> (transformers model, export result); exported on first use through edgeai.export."""
    cache = {}

    def get(family: str):
        if family not in cache:
            model = tiny_hf(family)
            if family == "t5":
                result = edgeai.export(model, path=artifacts / "t5-gen", task="text2text-generation-with-past")
            else:
                result = edgeai.export(model, path=artifacts / f"{family}-gen.onnx", task="text-generation-with-past")
            cache[family] = (model, result)
        return cache[family]

    return get


@pytest.fixture(scope="session")
def reference_tokens(exported):
    cache = {}

    def get(family: str) -> np.ndarray:
        if family not in cache:
            cache[family] = hf_greedy(exported(family)[0], PROMPT)
        return cache[family]

    return get


@pytest.mark.parametrize("device", device_params(["cpu", "openvino:CPU"]))
@pytest.mark.parametrize("family", FAMILIES)
def test_greedy_matches_transformers_token_for_token(family, device, exported, reference_tokens):
    _, result = exported(family)
    expected = reference_tokens(family)
    assert expected.shape == (1, NEW_TOKENS)  # no early EOS: all 32 steps are compared
    assert len(set(expected[0].tolist())) > 2, "the random model should not repeat a single token"
    got = edgeai.generate(result.path, PROMPT, NEW_TOKENS, device=device)
    np.testing.assert_array_equal(got.tokens, expected)
    assert got.runtime["device"] == device and got.runtime["precision"].endswith("f32")
    assert len(got.step_ms) == NEW_TOKENS and got.time_to_first_token_ms > 0 and got.tokens_per_s > 0
    assert (got.encoder_runtime is not None) == (family == "t5")


def test_decoder_export_layout(exported):
    _, result = exported("llama")
    names = [s.name for s in result.inputs]
    assert names[:3] == ["input_ids", "attention_mask", "position_ids"]
    assert names[3:] == ["past_key_values.0.key", "past_key_values.0.value", "past_key_values.1.key",
                         "past_key_values.1.value"]
    assert [s.name for s in result.outputs] == ["logits", "present.0.key", "present.0.value", "present.1.key",
                                                "present.1.value"]
    past = result.inputs[3]
    assert past.shape == ("batch", 2, "past_seq", 16)  # llama tiny config: 2 KV heads (GQA), head size 16
    # Validated at a past length the export did not see, and at past length 0 (the first step).
    assert result.validation.passed and result.validation_dims["past_seq"] == 9
    assert result.validation_dims["first_step"]["past_seq"] == 0
    gen = read_metadata(load_proto(result.path))["generation"]
    assert gen["kind"] == "decoder" and gen["layers"] == 2 and gen["eos_token_id"] == [1]
    assert gen["max_positions"] == 256


def test_seq2seq_export_is_encoder_plus_decoder_with_past(exported):
    _, result = exported("t5")
    assert sorted(p.name for p in result.path.iterdir()) == ["decoder.onnx", "encoder.onnx"]
    assert [s.name for s in result.encoder.inputs] == ["input_ids", "attention_mask"]
    assert [s.name for s in result.decoder.inputs][:3] == ["decoder_input_ids", "encoder_attention_mask",
                                                          "encoder_hidden_states"]
    assert result.encoder.validation.passed and result.decoder.validation.passed
    gen = read_metadata(load_proto(result.path / "decoder.onnx"))["generation"]
    assert gen["decoder_start_token_id"] == 0 and gen["cross_attention_cache"] == "recomputed every step"


def test_cache_and_no_cache_generate_the_same_tokens(exported):
    path = exported("gpt2")[1].path
    cached = edgeai.generate(path, PROMPT, 12)
    full = edgeai.generate(path, PROMPT, 12, use_cache=False)
    np.testing.assert_array_equal(cached.tokens, full.tokens)
    assert not full.use_cache


def test_left_padded_batch_matches_transformers(exported):
    model, result = exported("gpt2")
    ids = np.array([[1, 1, 1, 45, 46, 47, 48], [10, 20, 30, 40, 50, 60, 70]], dtype=np.int64)
    mask = np.array([[0, 0, 0, 1, 1, 1, 1], [1] * 7], dtype=np.int64)
    expected = hf_greedy(model, ids, mask, pad_token_id=1)
    got = edgeai.generate(result.path, ids, NEW_TOKENS, attention_mask=mask, pad_token_id=1)
    np.testing.assert_array_equal(got.tokens, expected)


def test_seq2seq_batch_with_padding_matches_transformers(exported):
    model, result = exported("t5")
    ids = np.array([[17, 501, 42, 9, 1, 0, 0], [5, 6, 7, 8, 9, 10, 1]], dtype=np.int64)
    mask = (np.arange(7) < np.array([[5], [7]])).astype(np.int64)
    expected = hf_greedy(model, ids, mask)
    got = edgeai.generate(result.path, ids, NEW_TOKENS, attention_mask=mask)
    np.testing.assert_array_equal(got.tokens, expected)


def test_generation_stops_on_eos(exported):
    path = exported("llama")[1].path
    free = edgeai.generate(path, PROMPT, 10)
    stop_at = 4
    eos = int(free.tokens[0, stop_at])
    first = int(np.flatnonzero(free.tokens[0] == eos)[0])
    stopped = edgeai.generate(path, PROMPT, 10, eos_token_id=eos)
    assert stopped.stop_reason == "eos" and stopped.new_tokens == first + 1
    np.testing.assert_array_equal(stopped.tokens[0], free.tokens[0, :first + 1])
    assert free.stop_reason == "max_new_tokens"


def test_sampling_is_seeded_and_filters_like_transformers(exported):
    path = exported("llama")[1].path
    greedy = edgeai.generate(path, PROMPT, 8)
    a = edgeai.generate(path, PROMPT, 8, do_sample=True, temperature=1.5, top_p=0.9, seed=3)
    b = edgeai.generate(path, PROMPT, 8, do_sample=True, temperature=1.5, top_p=0.9, seed=3)
    c = edgeai.generate(path, PROMPT, 8, do_sample=True, temperature=1.5, top_p=0.9, seed=4)
    np.testing.assert_array_equal(a.tokens, b.tokens)
    assert not np.array_equal(a.tokens, c.tokens)
    # top_k=1 and a tiny top_p leave one candidate per step: sampling then equals greedy.
    for kwargs in ({"top_k": 1}, {"top_p": 1e-6}):
        np.testing.assert_array_equal(edgeai.generate(path, PROMPT, 8, do_sample=True, seed=0, **kwargs).tokens,
                                      greedy.tokens)
    assert a.sampling == {"do_sample": True, "temperature": 1.5, "top_k": 0, "top_p": 0.9, "seed": 3}


def test_generate_api_errors_are_clear(exported, zoo_onnx):
    path = exported("gpt2")[1].path
    with pytest.raises(InputMismatchError, match="max_new_tokens"):
        edgeai.generate(path, PROMPT, 0)
    with pytest.raises(InputMismatchError, match="within the vocabulary"):
        edgeai.generate(path, [[5, 1000]], 2)
    with pytest.raises(InputMismatchError, match="top_p"):
        edgeai.generate(path, PROMPT, 2, do_sample=True, top_p=0)
    with pytest.raises(InputMismatchError, match="shape of input_ids"):
        edgeai.generate(path, PROMPT, 2, attention_mask=[[1, 1]])
    with pytest.raises(InputMismatchError, match="256 positions"):
        edgeai.generate(path, [[5] * 250], 7)
    with pytest.raises(ModelLoadError, match="past_key_values"):
        edgeai.generate(zoo_onnx("cnn"), PROMPT, 2)
    with pytest.raises(ModelLoadError, match="encoder.onnx"):
        edgeai.generate(path.parent, PROMPT, 2)


def test_export_with_past_refuses_mismatched_task(tmp_path, exported):
    model = exported("gpt2")[0]
    with pytest.raises(ModelLoadError, match="text-generation-with-past"):
        edgeai.export(model, path=tmp_path / "out", task="text2text-generation-with-past")
    with pytest.raises(ExportError, match="output folder"):
        edgeai.export(exported("t5")[0], path=tmp_path / "t5.onnx", task="text2text-generation-with-past")
    assert not list(tmp_path.iterdir())


def test_edgeai_generate_stays_callable_after_importing_the_submodule(exported):
    # The module is `edgeai.generation`, so importing it first never rebinds `edgeai.generate`.
    import subprocess
    import sys

    from conftest import ROOT

    code = ("from edgeai.generation import GenerationResult; import edgeai; "
            f"r = edgeai.generate({str(exported('gpt2')[1].path)!r}, [[5, 6]], 2); print(r.new_tokens)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "2", out.stderr


def test_auto_quantization_of_a_decoder_is_judged_by_generation(exported, tmp_path):
    """`auto` on a KV-cache decoder: INT8 only if measured faster here, and generation must still match."""
    from edgeai.generate_parity import quantize_generation

    result = quantize_generation(exported("gpt2")[1].path, tmp_path / "gpt2.auto.onnx", mode="auto",
                                 max_new_tokens=8)
    assert result.parity.passed, result.parity.verdict()
    part = result.parts["decoder"]
    precision = edgeai.load(part.dst).describe().precision
    # Either a quantized candidate that was measured faster, or FP32 kept with the measured reason.
    if precision == "f32":
        assert any("FP32 kept" in n for n in part.notes), part.notes
    else:
        assert precision in ("int8", "int4") and any("auto chose" in n for n in part.notes), part.notes
    assert part.candidates, "auto must say what it tried"
    # Every timed candidate carries its decision on an interval over interleaved rounds, as auto on one graph.
    for row in (c for c in part.candidates if "speedup" in c):
        d = row["speed_decision"]
        assert d["outcome"] in ("faster", "not_faster", "undecided") and d["estimate"]["rounds"] >= 5, d
        assert d["reason"].split(":")[0] in ("faster", "not faster") or d["reason"].startswith("undecided")


def test_dynamic_int8_generation_parity(exported, tmp_path):
    from edgeai.generate_parity import compare_generation, quantize_generation

    src = exported("llama")[1].path  # transformers' own init scale: close to trained weights'
    dst = tmp_path / "llama.int8.onnx"
    # Random weights give near-flat logits, where INT8 noise flips near-ties now and then; a trained
    # model's margins are far wider. Hence 80% teacher-forced agreement here, with a strict cosine.
    result = quantize_generation(src, dst, mode="dynamic", max_new_tokens=16, min_token_agreement=0.8)
    parity = result.parity
    assert parity.passed, parity.verdict()
    assert parity.worst_cosine >= 0.99 and len(parity.step_cosine) == 16 and parity.prompts == 4
    assert 0 <= parity.free_running_agreement <= 1 and len(parity.first_divergence) == 4
    assert result.size_after < result.size_before and result.parts["decoder"].dst == dst
    assert edgeai.generate(dst, PROMPT, 4).runtime["precision"] == "int8"
    if "openvino:CPU" in DEVICES:
        ov = compare_generation(src, dst, [PROMPT], max_new_tokens=16, device="openvino:CPU", min_token_agreement=0.8)
        assert ov.worst_cosine >= 0.99, ov.verdict()
        assert ov.candidate["precision"].startswith("int8")
    # Same file on two engines at FP32: every greedy token agrees.
    same = compare_generation(src, src, [PROMPT], max_new_tokens=16, device=DEVICES[-1])
    assert same.token_agreement == 1.0 and same.free_running_agreement == 1.0 and same.worst_cosine > 0.99999


def test_int8_that_breaks_generation_is_refused(exported, tmp_path):
    from edgeai.generate_parity import quantize_generation
    from edgeai.quantization import ToleranceNotMet

    src = exported("t5")[1].path  # widened weights: activations INT8 cannot hold
    with pytest.raises(ToleranceNotMet, match="changes generation too much"):
        quantize_generation(src, tmp_path / "t5-int8", mode="dynamic", max_new_tokens=8)
    assert not (tmp_path / "t5-int8").exists() and not list(tmp_path.iterdir())
    forced = quantize_generation(src, tmp_path / "t5-int8", mode="dynamic", max_new_tokens=8, force=True)
    assert not forced.parity.passed and "FAIL" in forced.parity.verdict()
    assert sorted(p.name for p in (tmp_path / "t5-int8").iterdir()) == ["decoder.onnx", "encoder.onnx"]
    assert edgeai.generate(tmp_path / "t5-int8", PROMPT, 2).encoder_runtime["precision"] == "int8"


def test_cli_generate_ids_and_errors(cli, exported):
    path = exported("gpt2")[1].path
    expected = edgeai.generate(path, PROMPT, 8).tokens[0].tolist()
    out = cli("generate", path, "--prompt-ids", ",".join(map(str, PROMPT[0])), "--max-new-tokens", "8", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["tokens"] == [expected] and data["runtime"]["engine"] == "onnxruntime"
    assert data["time_to_first_token_ms"] > 0 and data["step_ms"]["p50"] > 0
    for args, message in [(("--prompt-ids", "1,x"), "bad --prompt-ids"), (("--prompt", "hi"), "--tokenizer"),
                          ((), "exactly one of")]:
        bad = cli("generate", path, *args)
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr
        assert bad.stderr.strip().count("\n") == 0


def _word_tokenizer(folder, vocab_size: int = 1000):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<pad>", "</s>", "<unk>"] + [f"w{i}" for i in range(3, vocab_size)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    fast.save_pretrained(str(folder))


def test_cli_generate_text_with_a_local_tokenizer(cli, exported, tmp_path):
    _word_tokenizer(tmp_path / "tok")
    path = exported("llama")[1].path
    out = cli("generate", path, "--prompt", "w17 w501 w42", "--tokenizer", tmp_path / "tok", "--max-new-tokens", "6",
              "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["prompt_ids"] == [17, 501, 42]
    expected = edgeai.generate(path, [[17, 501, 42]], 6).tokens[0]
    assert data["text"] == " ".join(f"w{t}" for t in expected if t > 2)


def test_cli_export_with_past_from_a_transformers_folder(cli, exported, tmp_path):
    model, result = exported("gpt2")
    model.save_pretrained(str(tmp_path / "hf"))
    out = cli("export", tmp_path / "hf", "--task", "text-generation-with-past", "-o", tmp_path / "g.onnx", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["validation"]["passed"] and data["validation_dims"]["first_step"]["past_seq"] == 0
    ids = ",".join(map(str, PROMPT[0]))
    gen = json.loads(cli("generate", tmp_path / "g.onnx", "--prompt-ids", ids, "--max-new-tokens", "8",
                         "--device", DEVICES[-1], "--json").stdout)
    assert gen["tokens"][0] == edgeai.generate(result.path, PROMPT, 8).tokens[0].tolist()
    bad = cli("export", tmp_path / "hf", "--task", "text2text-generation-with-past", "-o", tmp_path / "t5")
    assert bad.returncode == 2 and "export it with --task text-generation-with-past" in bad.stderr, bad.stderr


def test_cli_bench_generate(cli, exported):
    out = cli("bench", exported("gpt2")[1].path, "--generate", "4", "--rounds", "2", "--json")
    assert out.returncode == 0, out.stderr
    row = json.loads(out.stdout)["generation"][0]
    assert row["new_tokens"] == 4 and row["tokens_per_s"] > 0 and row["step_latency_ms"]["n"] == 6
    assert row["time_to_first_token_ms"]["n"] == 2 and row["runtime"]["engine"] == "onnxruntime"


@pytest.mark.cuda
@pytest.mark.skipif("cuda" not in DEVICES, reason=f"needs onnxruntime-gpu and an NVIDIA GPU (devices: {DEVICES})")
def test_cuda_io_binding_matches_cpu(exported):
    path = exported("gpt2")[1].path
    cpu = edgeai.generate(path, PROMPT, NEW_TOKENS)
    gpu = edgeai.generate(path, PROMPT, NEW_TOKENS, device="cuda", io_binding=True)
    np.testing.assert_array_equal(gpu.tokens, cpu.tokens)
