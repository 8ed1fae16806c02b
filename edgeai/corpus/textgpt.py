"""A small GPT trained here, on text every Python install has, so that perplexity means something.

Random-weight decoders are fine for speed and memory, but their logits are near-flat: a quantized
copy's perplexity or token agreement says little about what users would see. This model is trained
by edgeai itself, offline, in about two minutes on a shared two-core machine:

- corpus: the docstrings of the Python standard library's top-level modules (``ast``-parsed, in
  file order; ~0.8 MB of English technical prose, code snippets included). The last 5% of the
  characters are held out for perplexity.
- tokens: bytes (vocabulary 256 + one end-of-text id), so no tokenizer file is needed;
  :func:`encode` / :func:`decode` convert.
- model: transformers ``GPT2LMHeadModel``, 4 layers, d=128, 4 heads, 256 positions (~0.85 M
  parameters), AdamW with a one-cycle schedule, 600 steps of 4 x 128 bytes, one torch thread,
  fixed seed; a time budget stops it early on a much slower machine (recorded in ``meta.json``).

The trained model is cached as a transformers folder under ``$EDGEAI_CACHE/textgpt/<key>`` (else
``~/.cache/edgeai/textgpt/<key>``), the key covering the corpus hash and the training recipe;
``meta.json`` records steps, final loss, held-out perplexity (PyTorch) and training time.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import sysconfig
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeai.atomic import atomic_path

EOT = 256  # end of text: the one id above the bytes
VOCAB = 257


@dataclass(frozen=True)
class Recipe:
    layers: int = 4
    d_model: int = 128
    heads: int = 4
    positions: int = 256
    context: int = 128
    batch: int = 4
    steps: int = 600
    lr: float = 3e-3
    threads: int = 1  # on a shared 2-core machine two torch threads ran 5x slower than one
    seed: int = 0
    time_budget_s: float = 150.0  # stop early (recorded) on a much slower machine


def corpus_text() -> str:
    """The standard library's module, class and function docstrings longer than 80 characters."""
    root = Path(sysconfig.get_paths()["stdlib"])
    docs = []
    for path in sorted(root.glob("*.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc) > 80:
                    docs.append(doc)
    return "\n\n".join(docs)


def encode(text: str) -> np.ndarray:
    """Text -> byte ids ``[n]`` (int64)."""
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64)


def decode(ids: Any) -> str:
    """Byte ids -> text (the end-of-text id and broken bytes are dropped/replaced)."""
    return bytes(int(i) for i in np.asarray(ids).ravel() if 0 <= int(i) < 256).decode("utf-8", errors="replace")


def split(ids: np.ndarray, heldout: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) token ids: the last ``heldout`` share is never trained on."""
    cut = int(len(ids) * (1 - heldout))
    return ids[:cut], ids[cut:]


def cache_root() -> Path:
    root = os.environ.get("EDGEAI_CACHE")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "edgeai") / "textgpt"


def _key(text: str, recipe: Recipe) -> str:
    digest = hashlib.sha256(text.encode("utf-8"))
    digest.update(json.dumps(asdict(recipe), sort_keys=True).encode())
    return digest.hexdigest()[:16]


def build(recipe: Recipe) -> Any:
    import torch
    import transformers as tf

    torch.manual_seed(recipe.seed)
    config = tf.GPT2Config(vocab_size=VOCAB, n_embd=recipe.d_model, n_layer=recipe.layers, n_head=recipe.heads,
                           n_positions=recipe.positions, bos_token_id=EOT, eos_token_id=EOT, pad_token_id=EOT)
    return tf.GPT2LMHeadModel(config)


def torch_perplexity(model: Any, ids: np.ndarray, context: int) -> float:
    """exp(mean next-token NLL) over non-overlapping windows of ``context`` tokens."""
    import torch

    windows = [ids[i:i + context] for i in range(0, len(ids) - 1, context) if len(ids[i:i + context]) > 1]
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for w in windows:
            x = torch.from_numpy(np.ascontiguousarray(w))[None]
            logits = model(x).logits[0, :-1].float()
            nll = torch.nn.functional.cross_entropy(logits, x[0, 1:], reduction="sum")
            total, count = total + float(nll), count + len(w) - 1
    return float(np.exp(total / count))


def train(recipe: Recipe, text: str) -> tuple[Any, dict[str, Any]]:
    """Train the model on the corpus; returns it (eval mode) and what happened."""
    import torch

    ids = encode(text)
    train_ids, held = split(ids)
    threads = torch.get_num_threads()
    torch.set_num_threads(recipe.threads)
    try:
        return _train(recipe, ids, train_ids, held)
    finally:
        torch.set_num_threads(threads)


def _train(recipe: Recipe, ids: np.ndarray, train_ids: np.ndarray, held: np.ndarray) -> tuple[Any, dict[str, Any]]:
    import torch

    model = build(recipe)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, total_steps=recipe.steps, pct_start=0.1)
    rng = np.random.default_rng(recipe.seed)
    data = torch.from_numpy(train_ids)
    model.train()
    t0, loss, done = time.perf_counter(), float("nan"), 0
    for step in range(recipe.steps):
        starts = rng.integers(0, len(train_ids) - recipe.context - 1, recipe.batch)
        x = torch.stack([data[s:s + recipe.context] for s in starts])
        out = model(x, labels=x)
        opt.zero_grad()
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        loss, done = float(out.loss), step + 1
        if time.perf_counter() - t0 > recipe.time_budget_s:
            break
    seconds = time.perf_counter() - t0
    model.eval()
    meta = {"recipe": asdict(recipe), "steps_done": done, "final_train_loss": round(loss, 4),
            "train_seconds": round(seconds, 1), "torch_threads": recipe.threads,
            "corpus": "Python stdlib docstrings", "corpus_bytes": int(len(ids)), "heldout_bytes": int(len(held)),
            "heldout_perplexity_torch": round(torch_perplexity(model, held[:32 * recipe.context], recipe.context), 4),
            "stopped_early": done < recipe.steps}
    return model, meta


def textgpt(recipe: Recipe | None = None, *, retrain: bool = False) -> Path:
    """The trained model's transformers folder (trained on first use, then cached).

    Returns the folder (``config.json``, ``model.safetensors``, ``meta.json``).
    """
    recipe = recipe or Recipe()
    text = corpus_text()
    folder = cache_root() / _key(text, recipe)
    if (folder / "meta.json").is_file() and not retrain:
        return folder
    model, meta = train(recipe, text)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder))
    with atomic_path(folder / "meta.json") as tmp:  # written last: its presence means the folder is complete
        Path(tmp).write_text(json.dumps(meta, indent=2))
    return folder


def heldout_ids() -> np.ndarray:
    """The held-out byte ids (for perplexity of exported / quantized copies)."""
    return split(encode(corpus_text()))[1]


def meta(folder: Path) -> dict[str, Any]:
    return json.loads((Path(folder) / "meta.json").read_text())
