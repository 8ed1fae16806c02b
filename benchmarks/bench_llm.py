"""LLM decoders on edge CPUs: edgeai FP32 / INT8 weights / INT4 weights next to the peers users pick.

Models (nothing downloaded):
- ``textgpt``: the small GPT edgeai trains on the stdlib's docstrings (edgeai.corpus.textgpt; cached),
  so perplexity and token agreement mean something;
- ``qwen2-0.5b``: a Qwen2 config with Qwen2-0.5B's real sizes (24 layers, d=896, 14/2 heads,
  vocab 151,936) and random weights: speed and memory only.

Rows, each in its own subprocess (so peak RSS is that row's): edgeai on ``cpu`` (onnxruntime) and
``openvino:CPU`` (stateful) at FP32, INT8 weights and INT4 weights (onnxruntime's
MatMulNBitsQuantizer for cpu, NNCF for openvino:CPU, as ``edgeai quantize`` defaults); plain
transformers ``generate`` (FP32); openvino-genai ``LLMPipeline`` on the same stateful IR (FP32, and
NNCF INT4); onnxruntime-genai and optimum-intel where they run here, else a row saying why.

Per row: file size, peak RSS, time to first token for a ``--prompt``-token prompt, decode tokens/s
at batch 1 (greedy, EOS ignored), token agreement with the FP32 file on onnxruntime over the greedy
tokens (position by position, free-running), and (textgpt) held-out perplexity. Run from the repo root:

    python benchmarks/bench_llm.py --out bench-llm                       # both models
    python benchmarks/bench_llm.py --models textgpt --new-tokens 128      # the small GPT only

Writes ``OUT/llm.json`` and ``OUT/llm.md``. The machine is shared: the load average is recorded
before and after; numbers on a loaded machine are indicative only.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import edgeai  # noqa: E402
from edgeai.atomic import write_text  # noqa: E402
from edgeai.bench import machine_info  # noqa: E402
from edgeai.report import markdown_table  # noqa: E402

QWEN2_05B = dict(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                 num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
                 tie_word_embeddings=True, bos_token_id=151643, eos_token_id=151643)
PEERS_NOT_HERE = {
    "optimum-intel OVModelForCausalLM int4": "not installable here: optimum-intel 2.2.0 requires transformers<5.6 "
                                             "(this environment has 5.24; its import fails on qwen2_vl); "
                                             "installing it would pull another transformers",
}


# ---------------------------------------------------------------- preparing the files (parent process)

def hf_folder(name: str, work: Path) -> Path:
    if name == "textgpt":
        from edgeai.corpus.textgpt import textgpt

        return textgpt()
    folder = work / name / "hf"
    if not (folder / "config.json").is_file():
        import torch
        import transformers as tf

        torch.manual_seed(0)
        model = tf.Qwen2ForCausalLM(tf.Qwen2Config(**QWEN2_05B)).eval()
        model.save_pretrained(str(folder))
    return folder


def prepare(name: str, work: Path) -> dict[str, Any]:
    """FP32 export and the weight-only files, cached in ``work/name``."""
    from edgeai.generate_parity import quantize_generation

    hf = hf_folder(name, work)
    root = work / name
    root.mkdir(parents=True, exist_ok=True)
    fp32 = root / "fp32.onnx"
    files: dict[str, Any] = {"hf": str(hf), "fp32": str(fp32), "notes": []}
    if not fp32.is_file():
        t0 = time.perf_counter()
        edgeai.export(str(hf), path=fp32, task="text-generation-with-past")
        files["notes"].append(f"export {time.perf_counter() - t0:.0f}s")
    # "int4e": INT4 with the embedding tables INT4 too (edgeai's opt-in embedding="int4"; size and RSS).
    for mode, engine in (("int8-weights", "onnxruntime"), ("int4", "onnxruntime"), ("int4e", "onnxruntime"),
                         ("int8-weights", "nncf"), ("int4", "nncf")):
        dst = root / f"{mode}.{engine}.onnx"
        extra = {"embedding": "int4"} if mode == "int4e" else {}
        failed = dst.with_suffix(".failed")
        if not dst.is_file() and not failed.is_file():
            t0 = time.perf_counter()
            try:
                r = quantize_generation(fp32, dst, mode="int4" if mode == "int4e" else mode, engine=engine, force=True, max_new_tokens=8,
                                        prompts=[np.arange(2, 10)[None] + i for i in range(2)], **extra)
                files["notes"].append(f"{mode}/{engine}: {time.perf_counter() - t0:.0f}s, generation parity "
                                      f"{r.parity.token_agreement:.2f}")
            except Exception as e:  # recorded, and not retried on the next run
                failed.write_text(f"{type(e).__name__}: {str(e)[:400]}")
        if failed.is_file():
            files["notes"].append(f"{mode}/{engine} failed: {failed.read_text()}")
            # Both quantizers' files load on both engines: fall back to the other one's file.
            other = "onnxruntime" if engine == "nncf" else "nncf"
            files[f"{mode}.{engine}"] = files.get(f"{mode}.{other}") or str(root / f"{mode}.{other}.onnx")
            files[f"{mode}.{engine}.fallback"] = other
        else:
            files[f"{mode}.{engine}"] = str(dst)
    return files


def genai_ir(onnx_path: str, hf: str, out: Path) -> Path:
    """The stateful OpenVINO IR openvino-genai's LLMPipeline reads (same transformation as edgeai's)."""
    import openvino as ov

    from edgeai.runtimes.openvino_stateful import make_stateful

    if not (out / "openvino_model.xml").is_file():
        out.mkdir(parents=True, exist_ok=True)
        model = ov.Core().read_model(onnx_path)
        make_stateful(model)
        ov.save_model(model, str(out / "openvino_model.xml"))
        shutil.copyfile(Path(hf) / "config.json", out / "config.json")
        cfg = json.loads((Path(hf) / "config.json").read_text())
        eos = cfg.get("eos_token_id")
        (out / "generation_config.json").write_text(json.dumps({"eos_token_id": eos, "bos_token_id": eos,
                                                                "pad_token_id": eos}))
    return out


def ortgenai_model(hf: str, out: Path, timeout: float) -> tuple[Path | None, str | None]:
    """onnxruntime-genai's model builder, INT4 for CPU, from the transformers folder: (folder, why not).

    The builder insists on a tokenizer; these models have none (random weights, ids in and out), so a
    placeholder word-level tokenizer is saved next to the weights first (it is never used for ids).
    """
    if (out / "genai_config.json").is_file():
        return out, None
    cfg = json.loads((Path(hf) / "config.json").read_text())
    if cfg.get("architectures", [""])[0] != "Qwen2ForCausalLM":
        return None, f"not run: its model builder has no {cfg.get('architectures')} (GPT-2) support"
    if not (Path(hf) / "tokenizer.json").is_file():
        from tokenizers import Tokenizer, models
        from transformers import PreTrainedTokenizerFast

        tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"<unk>": 0}, unk_token="<unk>")),
                                      unk_token="<unk>", eos_token="<unk>", bos_token="<unk>")
        tok.save_pretrained(hf)
    p = subprocess.run([sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", hf, "-o", str(out),
                        "-p", "int4", "-e", "cpu"], capture_output=True, text=True, timeout=timeout)
    if p.returncode or not (out / "genai_config.json").is_file():
        return None, f"model builder failed: {(p.stderr.strip().splitlines() or ['?'])[-1][:300]}"
    return out, None


# ---------------------------------------------------------------- one row (child process)

def _peak_rss_mb() -> float:
    """This process's RSS high-water mark (VmHWM: reset at exec, unlike getrusage's ru_maxrss on Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def prompt_ids(name: str, length: int) -> np.ndarray:
    if name == "textgpt":
        from edgeai.corpus.textgpt import heldout_ids

        return heldout_ids()[1000:1000 + length][None].astype(np.int64)
    return np.random.default_rng(0).integers(100, 150000, (1, length), dtype=np.int64)


def row_edgeai(spec: dict[str, Any]) -> dict[str, Any]:
    from edgeai.generate_parity import perplexity
    from edgeai.generation import generate, load_generative

    t0 = time.perf_counter()
    options = {"precision": spec["ov_precision"]} if spec.get("ov_precision") else {}
    options.update(spec.get("options") or {})
    gm = load_generative(spec["file"], spec["device"], **options)
    load_s = time.perf_counter() - t0
    ids = prompt_ids(spec["model"], spec["prompt"])
    runs = [generate(gm, ids, spec["new_tokens"], stop_on_eos=False) for _ in range(spec["rounds"])][1:]
    out = {"load_s": round(load_s, 2), "ttft_ms": float(np.median([r.time_to_first_token_ms for r in runs])),
           "tokens_per_s": float(np.median([r.tokens_per_s for r in runs])), "tokens": runs[0].tokens[0].tolist(),
           "precision": runs[0].runtime["precision"], "engine": runs[0].runtime["engine"]}
    if spec["model"] == "textgpt":
        from edgeai.corpus.textgpt import heldout_ids

        out["perplexity"] = perplexity(gm, heldout_ids(), max_windows=16).value
    return out


def row_transformers(spec: dict[str, Any]) -> dict[str, Any]:
    import torch
    import transformers as tf

    torch.set_num_threads(spec["threads"] or torch.get_num_threads())
    t0 = time.perf_counter()
    model = tf.AutoModelForCausalLM.from_pretrained(spec["hf"]).eval()
    load_s = time.perf_counter() - t0
    ids = torch.from_numpy(prompt_ids(spec["model"], spec["prompt"]))
    ttfts, rates, tokens = [], [], None
    with torch.inference_mode():
        model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=2, do_sample=False)  # warm-up
        for _ in range(spec["rounds"] - 1):
            t0 = time.perf_counter()
            model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=1, do_sample=False)
            ttft = (time.perf_counter() - t0) * 1e3
            t0 = time.perf_counter()
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=spec["new_tokens"],
                                 min_new_tokens=spec["new_tokens"], do_sample=False)
            total = time.perf_counter() - t0
            ttfts.append(ttft)
            rates.append((spec["new_tokens"] - 1) / max(total - ttft / 1e3, 1e-9))
            tokens = out[0, ids.shape[1]:].tolist()
    return {"load_s": round(load_s, 2), "ttft_ms": float(np.median(ttfts)), "tokens_per_s": float(np.median(rates)),
            "tokens": tokens, "precision": "f32", "engine": f"transformers {tf.__version__} (torch {torch.__version__})"}


def row_genai(spec: dict[str, Any]) -> dict[str, Any]:
    import openvino as ov
    import openvino_genai as g

    t0 = time.perf_counter()
    pipe = g.LLMPipeline(spec["ir"], "CPU")  # its defaults: what a user of LLMPipeline gets
    load_s = time.perf_counter() - t0
    cfg = g.GenerationConfig()
    cfg.max_new_tokens, cfg.do_sample, cfg.ignore_eos = spec["new_tokens"], False, True
    ids = prompt_ids(spec["model"], spec["prompt"])
    ttfts, rates, tokens = [], [], None
    for i in range(spec["rounds"]):
        r = pipe.generate(ov.Tensor(ids), cfg)
        if i == 0:
            continue  # warm-up
        m = r.perf_metrics
        ttfts.append(m.get_ttft().mean)
        rates.append(m.get_throughput().mean)
        tokens = list(r.tokens[0])
    return {"load_s": round(load_s, 2), "ttft_ms": float(np.median(ttfts)), "tokens_per_s": float(np.median(rates)),
            "tokens": tokens, "precision": spec["precision"], "engine": f"openvino-genai {g.__version__.split('-')[0]}"}


def row_ortgenai(spec: dict[str, Any]) -> dict[str, Any]:
    import onnxruntime_genai as og

    t0 = time.perf_counter()
    model = og.Model(spec["dir"])
    load_s = time.perf_counter() - t0
    ids = prompt_ids(spec["model"], spec["prompt"])
    ttfts, rates, tokens = [], [], None
    for i in range(spec["rounds"]):
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=ids.shape[1] + spec["new_tokens"], do_sample=False,
                                  min_length=ids.shape[1] + spec["new_tokens"])
        gen = og.Generator(model, params)
        t0 = time.perf_counter()
        gen.append_tokens(ids)
        gen.generate_next_token()
        t1 = time.perf_counter()
        while not gen.is_done():
            gen.generate_next_token()
        t2 = time.perf_counter()
        if i == 0:
            continue  # warm-up
        out = gen.get_sequence(0)
        tokens = [int(t) for t in out[ids.shape[1]:]]
        ttfts.append((t1 - t0) * 1e3)
        rates.append((len(tokens) - 1) / max(t2 - t1, 1e-9))
    return {"load_s": round(load_s, 2), "ttft_ms": float(np.median(ttfts)), "tokens_per_s": float(np.median(rates)),
            "tokens": tokens, "precision": "int4", "engine": f"onnxruntime-genai {og.__version__}"}


def child(spec: dict[str, Any]) -> None:
    if spec.get("threads"):
        os.environ.setdefault("OMP_NUM_THREADS", str(spec["threads"]))
    kind = spec["kind"]
    out = {"edgeai": row_edgeai, "transformers": row_transformers, "genai": row_genai,
           "ortgenai": row_ortgenai}[kind](spec)
    out["peak_rss_mb"] = round(_peak_rss_mb(), 1)
    print("ROW " + json.dumps(out))


def run_row(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        p = subprocess.run([sys.executable, __file__, "--row", json.dumps(spec)], capture_output=True, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f}s"}
    line = next((ln for ln in p.stdout.splitlines() if ln.startswith("ROW ")), None)
    if p.returncode or line is None:
        tail = (p.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": f"exit {p.returncode}: {tail[:300]}"}
    out = json.loads(line[4:])
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    return out


# ---------------------------------------------------------------- the table

def _size(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.iterdir() if f.suffix in (".onnx", ".data", ".bin"))
    return path.stat().st_size


def agreement(a: list[int] | None, b: list[int] | None) -> float | None:
    if not a or not b:
        return None
    n = min(len(a), len(b))
    return float(np.mean(np.asarray(a[:n]) == np.asarray(b[:n])))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--row", help=argparse.SUPPRESS)
    ap.add_argument("--models", default="textgpt,qwen2-0.5b")
    ap.add_argument("--devices", default="cpu,openvino:CPU")
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=128, help="textgpt; the 0.5B model runs --big-new-tokens")
    ap.add_argument("--big-new-tokens", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads for transformers (0: its default)")
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--work", type=Path, default=Path("/tmp/edgeai-bench-llm"))
    ap.add_argument("--out", type=Path, default=Path("bench-llm"))
    args = ap.parse_args()
    if args.row:
        return child(json.loads(args.row))

    started = time.time()
    load_before = os.getloadavg()
    results: list[dict[str, Any]] = []
    for name in args.models.split(","):
        files = prepare(name, args.work)
        big = name != "textgpt"
        base = {"model": name, "prompt": args.prompt, "new_tokens": args.big_new_tokens if big else args.new_tokens,
                "rounds": 2, "threads": args.threads, "hf": files["hf"]}  # 2: a warm-up and a measured run
        rows: list[tuple[str, dict[str, Any], Path | None]] = []
        skipped: list[dict[str, Any]] = []
        for device in args.devices.split(","):
            engine = "nncf" if device.startswith("openvino") else "onnxruntime"
            labels = [("FP32", "fp32"), ("INT8 weights", f"int8-weights.{engine}"), ("INT4 weights", f"int4.{engine}")]
            if engine == "onnxruntime":
                labels.append(("INT4 weights + INT4 embedding", "int4e.onnxruntime"))
            for label, key in labels:
                if files.get(f"{key}.fallback"):
                    label += f" ({files[f'{key}.fallback']} file)"
                rows.append((f"edgeai {device} {label}", {**base, "kind": "edgeai", "device": device,
                                                          "file": files[key]}, Path(files[key])))
                if device == "cpu" and key == "int4.onnxruntime":
                    # edgeai decodes on onnxruntime CPU with its spinning threads (fastest idle); the row
                    # with spinning=False (idle threads sleep) shows what sharing the cores would favour.
                    rows.append((f"edgeai {device} {label} no spinning", {**base, "kind": "edgeai", "device": device,
                                                                          "file": files[key],
                                                                          "options": {"spinning": False}},
                                 Path(files[key])))
                if device.startswith("openvino") and not key.startswith("int8"):
                    # OpenVINO's own CPU default on AMX/AVX512-BF16 machines: bf16 compute.
                    rows.append((f"edgeai {device} {label} bf16", {**base, "kind": "edgeai", "device": device,
                                                                   "file": files[key], "ov_precision": "bf16"},
                                 Path(files[key])))
        rows.append(("transformers generate FP32", {**base, "kind": "transformers"}, None))
        for label, key in (("FP32 weights (its default compute)", "fp32"), ("INT4 (NNCF)", "int4.nncf")):
            ir = genai_ir(files[key], files["hf"], args.work / name / f"genai-{key}")
            rows.append((f"openvino-genai LLMPipeline {label}", {**base, "kind": "genai", "ir": str(ir),
                                                                 "precision": label}, ir / "openvino_model.bin"))
        genai_dir, why = ortgenai_model(files["hf"], args.work / name / "ortgenai-int4", args.timeout)
        if genai_dir is not None:
            rows.append(("onnxruntime-genai INT4 (model builder)", {**base, "kind": "ortgenai", "dir": str(genai_dir)},
                         genai_dir))
        else:
            skipped.append({"model": name, "config": "onnxruntime-genai INT4 (model builder)", "error": why})
        # Passes interleave the rows (each pass runs every row once, in a fresh process), so load on the
        # shared machine hits every row alike; each row reports its median over passes.
        passes: dict[str, list[dict[str, Any]]] = {label: [] for label, _, _ in rows}
        for p in range(1 if big else args.rounds):
            for label, spec, _ in rows:
                print(f"[{name}] pass {p + 1}: {label} ...", file=sys.stderr, flush=True)
                passes[label].append(run_row(spec, args.timeout))
        measured: dict[str, dict[str, Any]] = {}
        for label, _, path in rows:
            ok = [r for r in passes[label] if "error" not in r]
            r = dict(ok[0]) if ok else dict(passes[label][0])
            if ok:
                for k in ("ttft_ms", "tokens_per_s"):
                    r[k] = float(np.median([x[k] for x in ok]))
                r["peak_rss_mb"] = max(x["peak_rss_mb"] for x in ok)
                r["passes"] = len(ok)
            r.update(model=name, config=label, size_mb=round(_size(path) / 2**20, 1) if path else None)
            measured[label] = r
        ref = measured.get("edgeai cpu FP32", {})  # the FP32 reference of every row (transformers decodes the same)
        for r in measured.values():
            r["token_agreement_vs_fp32"] = agreement(r.get("tokens"), ref.get("tokens"))
            if "perplexity" in r and "perplexity" in ref:
                r["perplexity_delta_pct"] = round(100 * (r["perplexity"] / ref["perplexity"] - 1), 3)
            results.append(r)
        results += skipped
        for peer, why in PEERS_NOT_HERE.items():
            results.append({"model": name, "config": peer, "error": why})
        results.append({"model": name, "config": "files", "notes": files["notes"]})
    out = {"machine": machine_info(), "load_average_before": load_before, "load_average_after": os.getloadavg(),
           "prompt_tokens": args.prompt, "new_tokens": {"textgpt": args.new_tokens, "big": args.big_new_tokens},
           "rounds": args.rounds, "wall_s": round(time.time() - started), "rows": results}
    args.out.mkdir(parents=True, exist_ok=True)
    write_text(args.out / "llm.json", json.dumps(out, indent=2, default=str))
    cols = ["model", "config", "size_mb", "peak_rss_mb", "ttft_ms", "tokens_per_s", "token_agreement_vs_fp32",
            "perplexity", "perplexity_delta_pct", "error"]
    table = [[(round(r[c], 2) if isinstance(r.get(c), float) else r.get(c, "")) for c in cols]
             for r in results if r.get("config") != "files"]
    text = (f"# LLM decoders: {args.prompt}-token prompt, batch 1, greedy\n\nload average before "
            f"{[round(x, 1) for x in load_before]}, after {[round(x, 1) for x in os.getloadavg()]}\n\n"
            + markdown_table(cols, table) + "\n")
    write_text(args.out / "llm.md", text)
    print(text)


if __name__ == "__main__":
    main()
