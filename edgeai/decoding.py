"""Token choice for generation, in numpy: greedy/sampling, repetition penalty, and beam search.

Everything here follows ``transformers``' ``generate`` so that an exported model decodes exactly
what the PyTorch model does (the tests compare token for token):

- repetition penalty (``RepetitionPenaltyLogitsProcessor``): each token already in the sequence
  has its score divided by ``penalty`` when positive and multiplied when negative; applied to the
  raw logits before temperature / top-k / top-p, and to the log-probabilities in beam search;
- sampling order: temperature, then top-k, then top-p (keeping at least one token);
- beam search (transformers 5's vectorized ``_beam_search``): keep ``2 * num_beams`` (more with
  several EOS ids) top continuations over all beams, move those ending in EOS or at the length
  limit to the finished set with score ``sum log p / new_len ** length_penalty``, continue the best
  ``num_beams`` unfinished ones, stop when no running beam can beat the worst finished one
  (``early_stopping=False`` heuristic) or at the length limit.

No engine is called here: :class:`BeamSearch` says which cache rows to keep (``beam_idx``) and
which token each row feeds next; the generation loop reorders the cache and runs the model.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edgeai.errors import InputMismatchError

_NEG = np.float32(-1.0e9)


def repetition_penalty(scores: np.ndarray, sequences: np.ndarray, penalty: float) -> np.ndarray:
    """``scores [rows, vocab]`` with every token of ``sequences [rows, len]`` penalized (transformers' rule)."""
    if penalty == 1.0:
        return scores
    out = np.array(scores, dtype=np.float32, copy=True)
    seen = np.take_along_axis(out, sequences, axis=1)
    np.put_along_axis(out, sequences, np.where(seen < 0, seen * penalty, seen / penalty), axis=1)
    return out


def log_softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float32)
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def chooser(do_sample: bool, temperature: float, top_k: int, top_p: float, seed: int | None
            ) -> Callable[[np.ndarray], np.ndarray]:
    """Greedy argmax, or seeded sampling with temperature, then top-k, then top-p."""
    if not 0 < temperature < float("inf") or top_k < 0 or not 0 < top_p <= 1:  # NaN fails every comparison
        raise InputMismatchError(f"sampling needs a finite temperature > 0, top_k >= 0 and 0 < top_p <= 1; got "
                                 f"temperature={temperature}, top_k={top_k}, top_p={top_p}")
    if not do_sample:
        return lambda logits: logits.argmax(axis=-1)
    rng = np.random.default_rng(seed)

    def sample(logits: np.ndarray) -> np.ndarray:
        x = logits.astype(np.float64) / temperature
        if 0 < top_k < x.shape[-1]:
            kth = np.partition(x, -top_k, axis=-1)[:, -top_k][:, None]
            x = np.where(x < kth, -np.inf, x)
        if top_p < 1.0:
            order = np.argsort(-x, axis=-1)
            sorted_x = np.take_along_axis(x, order, axis=-1)
            probs = np.exp(sorted_x - sorted_x[:, :1])
            probs /= probs.sum(axis=-1, keepdims=True)
            drop_sorted = np.cumsum(probs, axis=-1) - probs >= top_p
            drop = np.zeros_like(drop_sorted)
            np.put_along_axis(drop, order, drop_sorted, axis=-1)
            x = np.where(drop, -np.inf, x)
        p = np.exp(x - x.max(axis=-1, keepdims=True))
        p /= p.sum(axis=-1, keepdims=True)
        return np.array([rng.choice(p.shape[-1], p=row) for row in p], dtype=np.int64)

    return sample


def _topk(x: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest along the last axis, largest first (stable on ties, like a sort)."""
    return np.argsort(-x, axis=-1, kind="stable")[..., :k]


class BeamSearch:
    """Beam bookkeeping for ``batch`` prompts of ``num_beams`` beams each (rows ``b * num_beams + j``).

    Call :meth:`step` with each step's (processed) log-probabilities ``[batch * num_beams, vocab]``;
    it returns the token each row feeds next and ``beam_idx``, the previous row each new row
    continues (reorder the cache with it). :attr:`done` turns True when search is over;
    :meth:`best` gives each prompt's best finished sequence of new tokens.
    """

    def __init__(self, batch: int, num_beams: int, max_new_tokens: int, eos: set[int], pad: int,
                 length_penalty: float = 1.0):
        if num_beams < 2:
            raise InputMismatchError(f"beam search needs num_beams >= 2; got {num_beams}")
        self.batch, self.beams, self.max_new, self.eos = batch, num_beams, max_new_tokens, sorted(eos)
        self.length_penalty, self.pad = length_penalty, pad
        self.keep = max(2, 1 + len(eos)) * num_beams
        self.running = np.full((batch, num_beams, max_new_tokens), pad, dtype=np.int64)
        self.running_scores = np.zeros((batch, num_beams), dtype=np.float32)
        self.running_scores[:, 1:] = _NEG  # all beams start as copies: only the first may expand at step 0
        self.finished = np.full((batch, num_beams, max_new_tokens), pad, dtype=np.int64)
        self.finished_scores = np.full((batch, num_beams), _NEG, dtype=np.float32)
        self.finished_len = np.zeros((batch, num_beams), dtype=np.int64)
        self.is_finished = np.zeros((batch, num_beams), dtype=bool)
        self.improvable = np.ones((batch, 1), dtype=bool)
        self.step_count = 0
        self.done = False

    def step(self, log_probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        b, k, t = self.batch, self.beams, self.step_count
        vocab = log_probs.shape[-1]
        scores = (log_probs.astype(np.float32).reshape(b, k, vocab) + self.running_scores[:, :, None]).reshape(b, -1)
        top = _topk(scores, self.keep)  # [b, keep] over beams * vocab
        top_scores = np.take_along_axis(scores, top, axis=1)
        src_beam, token = top // vocab, top % vocab
        cand = np.take_along_axis(self.running, src_beam[:, :, None], axis=1).copy()
        cand[:, :, t] = token
        last = t + 1 >= self.max_new
        hits = np.isin(token, self.eos) | last  # EOS, or the length limit: these candidates finish here

        # Finished set: the top num_beams candidates that just finished, length-normalized, merged with
        # the ones before; no more once improvement is impossible.
        norm = top_scores / np.float32((t + 1) ** self.length_penalty)
        in_top = np.zeros(self.keep, dtype=bool)
        in_top[:k] = True
        just = hits & in_top[None, :]
        norm = norm + (~self.improvable).astype(np.float32) * _NEG + (~just).astype(np.float32) * _NEG
        merged_scores = np.concatenate([self.finished_scores, norm], axis=1)
        pick = _topk(merged_scores, k)
        merged_seq = np.concatenate([self.finished, cand], axis=1)
        merged_len = np.concatenate([self.finished_len, np.full(cand.shape[:2], t + 1)], axis=1)
        merged_fin = np.concatenate([self.is_finished, just], axis=1)
        self.finished = np.take_along_axis(merged_seq, pick[:, :, None], axis=1)
        self.finished_scores = np.take_along_axis(merged_scores, pick, axis=1)
        self.finished_len = np.take_along_axis(merged_len, pick, axis=1)
        self.is_finished = np.take_along_axis(merged_fin, pick, axis=1)

        # Running beams: the best num_beams candidates that did not finish.
        running_scores = top_scores + hits.astype(np.float32) * _NEG
        nxt = _topk(running_scores, k)
        self.running = np.take_along_axis(cand, nxt[:, :, None], axis=1)
        self.running_scores = np.take_along_axis(running_scores, nxt, axis=1)
        beam_idx = (np.take_along_axis(src_beam, nxt, axis=1) + np.arange(b)[:, None] * k).reshape(-1)
        tokens = self.running[:, :, t].reshape(-1)

        self.step_count = t + 1
        # Can a running beam still beat the worst finished one? (transformers' early_stopping=False heuristic)
        best_running = self.running_scores[:, :1] / np.float32(self.step_count ** self.length_penalty)
        worst_done = np.where(self.is_finished, self.finished_scores.min(axis=1, keepdims=True), _NEG)
        self.improvable &= (best_running > worst_done).any(axis=-1, keepdims=True)
        # Over at the length limit, when no beam can improve, or when every candidate just finished.
        self.done = bool(last or not self.improvable.any() or hits.all())
        return tokens, beam_idx

    def best(self) -> tuple[np.ndarray, np.ndarray]:
        """Each prompt's best finished sequence ``[batch, steps]`` (pad after its end) and its score."""
        length = int(self.finished_len[:, 0].max()) if self.finished_len.size else 0
        return self.finished[:, 0, :max(length, 1)], self.finished_scores[:, 0]
