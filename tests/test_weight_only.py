"""Weight-only INT4 / INT8 (``int4``, ``int8-weights``): both quantizers' files load and generate on both engines.

Tiny random GPT-2 (Conv1D layers exported as Gemm, a tied output head) and Llama decoders are
exported once; each test compresses them with onnxruntime's MatMulNBitsQuantizer and NNCF's
compress_weights and judges the result by generation, as ``edgeai quantize`` does for decoders.
"""

import json

import numpy as np
import onnx
import pytest

import edgeai
from edgeai.errors import QuantizationError
from edgeai.generate_parity import quantize_generation
from edgeai.generation import load_generative
from edgeai.quantization.weight_only import embedding_gathers, tied_heads

from conftest import DEVICES

PROMPT = np.array([[17, 501, 42, 9, 333, 760, 88]], dtype=np.int64)
ENGINES = ["onnxruntime", "nncf"]


@pytest.fixture(scope="module")
def decoders(tmp_path_factory):
    """family -> FP32 KV-cache decoder .onnx, transformers' own init (closer to trained weights' scale
    than test_generate's widened GPT-2, whose 0.3-std weights no 4-bit grid holds)."""
    from edgeai.hf_tasks import build_hf_model, tiny_config

    root = tmp_path_factory.mktemp("weight-only")
    out = {}
    for family in ("gpt2", "llama"):
        model = build_hf_model(tiny_config(family), "text-generation")
        out[family] = edgeai.export(model, path=root / f"{family}.onnx", task="text-generation-with-past").path
    return out


def ops(path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path)).graph.node}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_int4_files_load_and_generate_on_both_engines(decoders, tmp_path, family, engine):
    dst = tmp_path / f"{family}.int4.onnx"
    result = quantize_generation(decoders[family], dst, mode="int4", engine=engine, block_size=32, max_new_tokens=8,
                                 force=True)
    config = result.parts["decoder"].config
    assert "MatMulNBits" in ops(dst) and config["bits"] == 4 and config["block_size"] == 32
    assert result.size_after < 0.75 * result.size_before
    # The step logits still point the same way (random weights: near-ties may flip a token).
    assert result.parity.worst_cosine > 0.97, result.parity.verdict()
    tokens = {}
    for device in DEVICES:
        r = edgeai.generate(dst, PROMPT, 8, device=device, stop_on_eos=False)
        assert r.runtime["precision"].startswith("int4") and r.new_tokens == 8
        tokens[device] = r.tokens
    # Same INT4 file, two engines: the same greedy tokens.
    assert all(np.array_equal(t, tokens["cpu"]) for t in tokens.values())


def nbits(path) -> dict[str, int]:
    return {n.name: {a.name: a.i for a in n.attribute}["bits"] for n in onnx.load(str(path)).graph.node
            if n.op_type == "MatMulNBits"}


def test_int4_head_is_int4_tied_head_gets_its_own_copy(decoders, tmp_path):
    """onnxruntime INT4: the logits MatMul is INT4 too (a float head cost more per token than every INT4
    layer together on a 0.5B decoder); GPT-2's tied head gets its own copy; the embedding tables stay
    float unless embedding="int4" (GatherBlockQuantized)."""
    gpt2 = quantize_generation(decoders["gpt2"], tmp_path / "gpt2.int4.onnx", mode="int4", block_size=32,
                               max_new_tokens=8, force=True)
    assert "Gemm" in ops(decoders["gpt2"]) and "Gemm" not in ops(tmp_path / "gpt2.int4.onnx")
    assert any("rewritten as MatMul" in n for n in gpt2.parts["decoder"].notes)
    config = gpt2.parts["decoder"].config
    head = config["output_projection"]["node"]
    assert head and config["output_projection"]["kept"] == "same" and config["int8_layers"] == []
    model = onnx.load(str(tmp_path / "gpt2.int4.onnx"))
    assert not tied_heads(model)  # the head reads its own quantized copy, not Transpose(embedding)
    assert config["embedding"] == "float" and len(embedding_gathers(model)[0]) == 2  # token and position tables
    small = quantize_generation(decoders["gpt2"], tmp_path / "gpt2.int4e.onnx", mode="int4", block_size=32,
                                max_new_tokens=8, force=True, embedding="int4")
    model = onnx.load(str(tmp_path / "gpt2.int4e.onnx"))
    assert not embedding_gathers(model)[0] and sum(n.op_type == "GatherBlockQuantized" for n in model.graph.node) == 2
    assert small.size_after < gpt2.size_after
    tokens = [edgeai.generate(tmp_path / "gpt2.int4e.onnx", PROMPT, 8, device=d, stop_on_eos=False).tokens
              for d in DEVICES]
    assert all(np.array_equal(t, tokens[0]) for t in tokens)  # both engines read GatherBlockQuantized alike
    assert set(nbits(tmp_path / "gpt2.int4.onnx").values()) == {4}

    llama = quantize_generation(decoders["llama"], tmp_path / "llama.int4.onnx", mode="int4", block_size=32,
                                max_new_tokens=8, force=True)
    config = llama.parts["decoder"].config
    assert config["output_projection"]["kept"] == "same" and set(nbits(tmp_path / "llama.int4.onnx").values()) == {4}
    # output_projection="int8" keeps the head wider, as NNCF does by default.
    wide = quantize_generation(decoders["llama"], tmp_path / "llama.int4h8.onnx", mode="int4", block_size=32,
                               max_new_tokens=8, force=True, output_projection="int8")
    config = wide.parts["decoder"].config
    head = config["output_projection"]["node"]
    assert head and config["output_projection"]["kept"] == "int8" and config["int8_layers"] == [head]
    bits = nbits(tmp_path / "llama.int4h8.onnx")
    assert sorted(set(bits.values())) == [4, 8] and list(bits.values()).count(8) == 1


def test_int8_weights_leave_a_tied_head_tied_in_float(decoders, tmp_path):
    """INT8 weights compute in FP32 (accuracy_level 0): onnxruntime would dequantize a whole quantized head
    every call (slower than float), so a tied head stays a Transpose of the float embedding."""
    r = quantize_generation(decoders["gpt2"], tmp_path / "gpt2.int8w.onnx", mode="int8-weights", max_new_tokens=4,
                            force=True)
    assert r.parts["decoder"].config["output_projection"]["node"] is None
    assert tied_heads(onnx.load(str(tmp_path / "gpt2.int8w.onnx")))
    assert set(nbits(tmp_path / "gpt2.int8w.onnx").values()) == {8}


@pytest.mark.parametrize("family, fused", [("llama", {"SimplifiedLayerNormalization", "SkipSimplifiedLayerNormalization"}),
                                           ("gpt2", {"SkipLayerNormalization"})])
def test_int4_runs_onnxruntime_fusions_and_both_engines_read_them(decoders, tmp_path, family, fused):
    """int4 under onnxruntime applies onnxruntime's own fusion passes (RMSNorm/LayerNorm + residual add);
    fuse=False leaves the exported ops. Both files give the same tokens on onnxruntime and OpenVINO."""
    on = quantize_generation(decoders[family], tmp_path / "on.onnx", mode="int4", block_size=32, max_new_tokens=8,
                             force=True)
    off = quantize_generation(decoders[family], tmp_path / "off.onnx", mode="int4", block_size=32, max_new_tokens=8,
                              force=True, fuse=False)
    stats = on.parts["decoder"].config["fused_operators"]
    assert fused <= set(stats) and fused <= ops(tmp_path / "on.onnx"), stats
    assert "fused_operators" not in off.parts["decoder"].config and not fused & ops(tmp_path / "off.onnx")
    assert len(onnx.load(str(tmp_path / "on.onnx")).graph.node) < len(onnx.load(str(tmp_path / "off.onnx")).graph.node)
    # The generation metadata survives the optimizer (generate reads eos/vocab from it).
    assert load_generative(tmp_path / "on.onnx").config.get("vocab_size")
    ref = edgeai.generate(tmp_path / "off.onnx", PROMPT, 8, stop_on_eos=False, keep_logits=True)
    for device in DEVICES:
        r = edgeai.generate(tmp_path / "on.onnx", PROMPT, 8, device=device, stop_on_eos=False, keep_logits=True,
                            forced_tokens=ref.tokens)
        cos = min(float(a.ravel() @ b.ravel() / np.linalg.norm(a) / np.linalg.norm(b)) for a, b in
                  zip(r.logits, ref.logits, strict=True))
        assert cos > 0.999, (device, cos)


@pytest.mark.parametrize("engine", ENGINES)
def test_int8_weights_keep_generation(decoders, tmp_path, engine):
    dst = tmp_path / "llama.int8w.onnx"
    result = quantize_generation(decoders["llama"], dst, mode="int8-weights", engine=engine, max_new_tokens=16,
                                 min_token_agreement=0.8)
    assert result.parity.passed and result.parity.worst_cosine > 0.999, result.parity.verdict()
    assert result.size_after < 0.7 * result.size_before
    assert edgeai.load(dst).describe().precision == "int8"
    for device in DEVICES:
        assert edgeai.generate(dst, PROMPT, 4, device=device).new_tokens == 4


def test_ratio_mixes_int4_and_int8_by_error(decoders, tmp_path):
    full = quantize_generation(decoders["llama"], tmp_path / "a.onnx", mode="int4", block_size=32,
                               max_new_tokens=4, force=True)
    half = quantize_generation(decoders["llama"], tmp_path / "b.onnx", mode="int4", block_size=32, ratio=0.5,
                               max_new_tokens=4, force=True)
    assert len(half.parts["decoder"].config["int8_layers"]) > len(full.parts["decoder"].config["int8_layers"])
    assert full.size_after < half.size_after < full.size_before


@pytest.mark.parametrize("engine,algorithm", [("onnxruntime", "GPTQ"), ("nncf", "AWQ+scale-estimation")])
def test_calibration_makes_int4_data_aware(decoders, tmp_path, engine, algorithm):
    steps = []
    edgeai.generate(decoders["llama"], PROMPT, 6, stop_on_eos=False, on_step=lambda f: steps.append(dict(f)))
    result = quantize_generation(decoders["llama"], tmp_path / "c.onnx", mode="int4", engine=engine, block_size=32,
                                 calibration=steps, max_new_tokens=4, force=True)
    config = result.parts["decoder"].config
    assert config["data_aware"] and config["algorithm"] == algorithm and config["calibration_samples"] == 6


def test_weight_only_option_errors(decoders, tmp_path):
    with pytest.raises(QuantizationError, match="ratio"):
        quantize_generation(decoders["llama"], tmp_path / "x.onnx", mode="int8-weights", ratio=0.5, max_new_tokens=2)
    with pytest.raises(QuantizationError, match="block_size"):
        quantize_generation(decoders["llama"], tmp_path / "x.onnx", mode="int4", block_size=48, max_new_tokens=2)
    with pytest.raises(QuantizationError, match="engine"):
        quantize_generation(decoders["llama"], tmp_path / "x.onnx", mode="int4", engine="tensorrt", max_new_tokens=2)
    with pytest.raises(QuantizationError, match="embedding"):
        quantize_generation(decoders["llama"], tmp_path / "x.onnx", mode="int4", engine="nncf", embedding="int4",
                            max_new_tokens=2)
    assert not list(tmp_path.iterdir())


def test_auto_for_decoders_considers_weight_only_modes(decoders, tmp_path):
    result = quantize_generation(decoders["llama"], tmp_path / "auto.onnx", mode="auto", max_new_tokens=8,
                                 min_token_agreement=0.8)
    part = result.parts["decoder"]
    tried = {r["name"]: r for r in part.candidates}
    assert {"dynamic", "int8-weights", "int4"} <= set(tried)
    assert all("token_agreement" in r or r["error"] for r in tried.values())
    # Either a candidate measured faster than FP32 here, or FP32 kept with the measured reason.
    assert part.mode.startswith("auto:") and any("auto chose" in n or "FP32 kept" in n for n in part.notes)
    assert result.parity.passed


def test_cli_quantize_int4_decoder_is_judged_by_generation(cli, decoders, tmp_path):
    dst = tmp_path / "cli.int4.onnx"
    out = cli("quantize", decoders["gpt2"], "-o", dst, "--mode", "int4", "--block-size", "32", "--asymmetric",
              "--max-new-tokens", "8", "--force", "--json", "--embedding", "int4", "--no-fuse")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    config = data["parts"]["decoder"]["config"]
    assert config["symmetric"] is False and config["engine"] == "onnxruntime" and "token_agreement" in data["parity"]
    assert config["embedding"] == "int4" and "fused_operators" not in config
    bad = cli("quantize", decoders["gpt2"], "-o", tmp_path / "y.onnx", "--mode", "dynamic", "--ratio", "0.5")
    assert bad.returncode != 0 and "--mode int4" in bad.stderr
