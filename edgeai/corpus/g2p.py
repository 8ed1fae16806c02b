"""g2p-en 2.1.0's grapheme-to-phoneme GRU encoder-decoder, from ``checkpoint20.npz``.

g2p-en runs this network (in numpy) for words missing from CMUdict. Here it is an ``nn.Module``
with teacher forcing: graphemes ``[batch, letters + 1]`` (ending in ``</s>``) and decoder inputs
``[batch, steps]`` (``<s>`` then the phonemes so far) -> phoneme logits ``[batch, steps, 74]``.
:func:`greedy_phonemes` decodes like ``G2p.predict``. The arrays load with ``allow_pickle=False``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeai.corpus.fetch import CorpusError, open_member
from edgeai.corpus.inputs import graphemes

PACKAGE = "g2p-en"
MEMBER = "g2p_en/checkpoint20.npz"
PHONEMES = ("<pad>", "<unk>", "<s>", "</s>", "AA0", "AA1", "AA2", "AE0", "AE1", "AE2", "AH0", "AH1", "AH2", "AO0",
            "AO1", "AO2", "AW0", "AW1", "AW2", "AY0", "AY1", "AY2", "B", "CH", "D", "DH", "EH0", "EH1", "EH2", "ER0",
            "ER1", "ER2", "EY0", "EY1", "EY2", "F", "G", "HH", "IH0", "IH1", "IH2", "IY0", "IY1", "IY2", "JH", "K",
            "L", "M", "N", "NG", "OW0", "OW1", "OW2", "OY0", "OY1", "OY2", "P", "R", "S", "SH", "T", "TH", "UH0",
            "UH1", "UH2", "UW", "UW0", "UW1", "UW2", "V", "W", "Y", "Z", "ZH")
START, END = 2, 3
HIDDEN = 256  # embedding and GRU width of checkpoint20.npz


def checkpoint() -> dict[str, np.ndarray]:
    """The released arrays by name (``enc_emb``, ``enc_w_ih`` ... ``fc_b``)."""
    try:
        with np.load(open_member(PACKAGE, MEMBER), allow_pickle=False) as npz:
            return {k: npz[k].astype(np.float32) for k in npz.files}
    except ValueError as e:
        raise CorpusError(f"{MEMBER} holds pickled objects; refusing to load it ({e})") from e


def _g2p_class() -> Any:
    from torch import nn

    class G2P(nn.Module):
        """GRU encoder (256-d letter embeddings, 256 hidden) -> GRU decoder -> 74 phoneme logits."""

        input_names = ("graphemes", "decoder_input_ids")
        output_names = ("logits",)

        def __init__(self) -> None:
            super().__init__()
            self.enc_emb = nn.Embedding(29, HIDDEN)
            self.encoder = nn.GRU(HIDDEN, HIDDEN, batch_first=True)
            self.dec_emb = nn.Embedding(74, HIDDEN)
            self.decoder = nn.GRU(HIDDEN, HIDDEN, batch_first=True)
            self.fc = nn.Linear(HIDDEN, 74)

        def forward(self, graphemes: Any, decoder_input_ids: Any) -> Any:
            _, h = self.encoder(self.enc_emb(graphemes))
            out, _ = self.decoder(self.dec_emb(decoder_input_ids), h)
            return self.fc(out)

    return G2P


def g2p_model() -> Any:
    """The network with the released weights, in eval mode (PyTorch's GRU gate order is g2p-en's: r, z, n)."""
    import torch

    w = checkpoint()
    state = {"enc_emb.weight": w["enc_emb"], "dec_emb.weight": w["dec_emb"], "fc.weight": w["fc_w"],
             "fc.bias": w["fc_b"]}
    for side, gru in (("enc", "encoder"), ("dec", "decoder")):
        for part in ("w_ih", "w_hh", "b_ih", "b_hh"):
            kind, which = part.split("_")
            state[f"{gru}.{'weight' if kind == 'w' else 'bias'}_{which}_l0"] = w[f"{side}_{part}"]
    module = _g2p_class()()
    module.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    return module.eval()


def greedy_phonemes(model: Any, graphemes: np.ndarray, max_steps: int = 20) -> list[list[str]]:
    """Greedy decoding as ``G2p.predict`` does, for a batch of same-length words (torch model)."""
    import torch

    ids = np.full((len(graphemes), 1), START, dtype=np.int64)
    done = np.zeros(len(graphemes), dtype=bool)
    with torch.inference_mode():
        for _ in range(max_steps):
            logits = model(torch.from_numpy(graphemes), torch.from_numpy(ids))[:, -1].numpy()
            nxt = np.where(done, END, logits.argmax(-1))
            ids = np.concatenate([ids, nxt[:, None]], axis=1)
            done |= nxt == END
            if done.all():
                break
    return [[PHONEMES[i] for i in row[1:] if i != END] for row in ids.tolist()]  # after END comes only END


def numpy_reference(word: str, w: dict[str, np.ndarray] | None = None, max_steps: int = 20) -> list[str]:
    """g2p-en's own numpy ``G2p.predict`` (the GRU cell written out), for checking the module."""
    w = w or checkpoint()

    def cell(x: np.ndarray, h: np.ndarray, side: str) -> np.ndarray:
        gi = x @ w[f"{side}_w_ih"].T + w[f"{side}_b_ih"]
        gh = h @ w[f"{side}_w_hh"].T + w[f"{side}_b_hh"]
        r, z = np.split(1 / (1 + np.exp(-(gi[:, :2 * HIDDEN] + gh[:, :2 * HIDDEN]))), 2, -1)
        n = np.tanh(gi[:, 2 * HIDDEN:] + r * gh[:, 2 * HIDDEN:])
        return (1 - z) * n + z * h

    h = np.zeros((1, HIDDEN), np.float32)
    for idx in graphemes((word,))[0]:
        h = cell(w["enc_emb"][[idx]], h, "enc")
    dec, preds = w["dec_emb"][[START]], []
    for _ in range(max_steps):
        h = cell(dec, h, "dec")
        pred = int((h @ w["fc_w"].T + w["fc_b"]).argmax())
        if pred == END:
            break
        preds.append(pred)
        dec = w["dec_emb"][[pred]]
    return [PHONEMES[i] for i in preds]


def g2p_example() -> tuple[Any, dict[str, np.ndarray]]:
    """The network, 6 real 8-letter words, and teacher-forced decoder inputs from its own greedy output."""
    model = g2p_model()
    letters = graphemes()
    phones = greedy_phonemes(model, letters)
    steps = min(len(p) for p in phones)  # one length for the batch: <s> + the first phonemes of each word
    index = {p: i for i, p in enumerate(PHONEMES)}
    dec = np.asarray([[START] + [index[p] for p in row[:steps]] for row in phones], dtype=np.int64)
    return model, {"graphemes": letters, "decoder_input_ids": dec}
