"""Silero VAD 6.2.3 (16 kHz) as a plain ``torch.nn`` module with the released weights.

The wheel's ``silero_vad.jit`` is TorchScript: loading it runs its code, so it is never loaded.
The weights come from the initializers of the wheel's ``silero_vad_16k_op15.onnx`` (read as data
with ``onnx.numpy_helper``), and :func:`check_weights_match_jit` proves they are the ``.jit``'s own
parameters byte for byte by comparing them with the raw tensor storages in its zip (``data/N``),
without reading ``data.pkl``.

One call takes 576 samples (64 of context from the previous window + a 512-sample window) and the
LSTM state ``[2, batch, 128]`` (h, c), and returns the speech probability ``[batch, 1]`` and the
next state. Architecture: STFT as a 1-D conv (n_fft 256, hop 128, reflect-padded by 64), magnitude,
four conv+ReLU blocks, an LSTM cell, ReLU, 1x1 conv, sigmoid, mean over time.
"""

from __future__ import annotations

import io
import zipfile
from typing import Any

import numpy as np

from edgeai.corpus.fetch import CorpusError, read_member
from edgeai.corpus.inputs import add_noise, speak

PACKAGE = "silero-vad"
ONNX_MEMBER = "silero_vad/data/silero_vad_16k_op15.onnx"
JIT_MEMBER = "silero_vad/data/silero_vad.jit"
WINDOW, CONTEXT, STATE = 512, 64, 128


def onnx_weights() -> dict[str, np.ndarray]:
    """The 16 kHz model's initializers from the wheel's ONNX file, by name (``model.`` prefix removed)."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load_model_from_string(read_member(PACKAGE, ONNX_MEMBER))
    return {t.name.removeprefix("model."): numpy_helper.to_array(t).copy() for t in proto.graph.initializer}


def check_weights_match_jit(weights: dict[str, np.ndarray] | None = None) -> dict[str, str]:
    """Which ``.jit`` storage each ONNX weight equals byte for byte; raises if any has no match.

    Raises:
        CorpusError: a weight of the ONNX file is not among the TorchScript file's tensor storages.
    """
    weights = weights if weights is not None else onnx_weights()
    with zipfile.ZipFile(io.BytesIO(read_member(PACKAGE, JIT_MEMBER))) as zf:
        # Only raw storages are read (``<archive>/data/<n>``): no pickle, no code.
        storages = {n: zf.read(n) for n in zf.namelist() if n.rsplit("/", 2)[-2:-1] == ["data"]}
    found: dict[str, str] = {}
    for name, arr in weights.items():
        blob = np.ascontiguousarray(arr, dtype="<f4").tobytes()
        match = next((key for key, data in storages.items() if data == blob), None)
        if match is None:
            raise CorpusError(f"silero weight {name} {list(arr.shape)} from {ONNX_MEMBER} matches no tensor storage "
                              f"of {JIT_MEMBER}; the wheel's files disagree")
        found[name] = match.rsplit("/", 1)[-1]
    return found


def _vad_class() -> Any:
    import torch
    from torch import nn

    class SileroVAD16k(nn.Module):
        """Silero VAD v6, 16 kHz branch: (576 samples, state) -> (speech probability, state)."""

        input_names = ("audio", "state")
        output_names = ("speech_probability", "next_state")

        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("stft_basis", torch.zeros(258, 1, 256))
            self.encoder = nn.ModuleList([nn.Conv1d(129, 128, 3, padding=1), nn.Conv1d(128, 64, 3, stride=2, padding=1),
                                          nn.Conv1d(64, 64, 3, stride=2, padding=1), nn.Conv1d(64, 128, 3, padding=1)])
            self.rnn = nn.LSTMCell(128, 128)
            self.head = nn.Conv1d(128, 1, 1)

        def forward(self, audio: Any, state: Any) -> Any:
            x = nn.functional.pad(audio.unsqueeze(1), (0, CONTEXT), mode="reflect")
            x = nn.functional.conv1d(x, self.stft_basis, stride=128)
            x = torch.sqrt(x[:, :129] ** 2 + x[:, 129:] ** 2)  # magnitude of 129 frequency bins
            for conv in self.encoder:
                x = torch.relu(conv(x))
            h, c = self.rnn(x.squeeze(-1), (state[0], state[1]))
            prob = torch.sigmoid(self.head(torch.relu(h.unsqueeze(-1)))).mean(dim=2)
            return prob, torch.stack([h, c])

    return SileroVAD16k


def silero_vad() -> Any:
    """The re-implementation with the released weights, in eval mode."""
    import torch

    w = onnx_weights()
    module = _vad_class()()
    state = {"stft_basis": w["stft.forward_basis_buffer"], "rnn.weight_ih": w["decoder.rnn.weight_ih"],
             "rnn.weight_hh": w["decoder.rnn.weight_hh"], "rnn.bias_ih": w["decoder.rnn.bias_ih"],
             "rnn.bias_hh": w["decoder.rnn.bias_hh"], "head.weight": w["decoder.decoder.2.weight"],
             "head.bias": w["decoder.decoder.2.bias"]}
    for i in range(4):
        state[f"encoder.{i}.weight"] = w[f"encoder.{i}.reparam_conv.weight"]
        state[f"encoder.{i}.bias"] = w[f"encoder.{i}.reparam_conv.bias"]
    module.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    return module.eval()


def windows(wav: np.ndarray) -> np.ndarray:
    """A 16 kHz waveform as the model's inputs ``[n, 576]``: each 512-sample window after 64 of context."""
    wav = np.asarray(wav, dtype=np.float32)
    pad = (-len(wav)) % WINDOW
    padded = np.concatenate([np.zeros(CONTEXT, np.float32), wav, np.zeros(pad, np.float32)])
    n = (len(padded) - CONTEXT) // WINDOW
    return np.stack([padded[i * WINDOW:i * WINDOW + WINDOW + CONTEXT] for i in range(n)])


def run_stream(step: Any, wav: np.ndarray) -> np.ndarray:
    """Speech probability per 32 ms window of ``wav``, carrying the state: ``step(audio, state) -> (p, state)``."""
    state = np.zeros((2, 1, STATE), np.float32)
    probs = []
    for chunk in windows(wav):
        p, state = step(chunk[None], state)
        probs.append(float(np.asarray(p).reshape(-1)[0]))
    return np.asarray(probs, dtype=np.float32)


def reference_session() -> Any:
    """The wheel's own ``silero_vad_16k_op15.onnx`` in onnxruntime (CPU)."""
    import onnxruntime as ort

    return ort.InferenceSession(read_member(PACKAGE, ONNX_MEMBER), providers=["CPUExecutionProvider"])


def reference_step(session: Any) -> Any:
    """``step(audio, state)`` over the wheel's ONNX file (it takes the sample rate as a third input)."""
    sr = np.array(16000, dtype=np.int64)

    def step(audio: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out, next_state = session.run(["output", "stateN"], {"input": audio, "state": state, "sr": sr})
        return out, next_state

    return step


def torch_step(module: Any) -> Any:
    """``step(audio, state)`` over the PyTorch re-implementation."""
    import torch

    def step(audio: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            p, s = module(torch.from_numpy(np.ascontiguousarray(audio)), torch.from_numpy(state))
        return p.numpy(), s.numpy()

    return step


def vad_example() -> tuple[Any, dict[str, np.ndarray]]:
    """The VAD and 8 real windows (speech, silence, noise) with the state carried to each one."""
    module = silero_vad()
    wav = np.concatenate([np.zeros(4000, np.float32), speak("The quick brown fox jumps over the lazy dog.")])
    wav = add_noise(wav, 30.0, seed=3)
    chunks = windows(wav)
    pick = np.linspace(0, len(chunks) - 1, 8).astype(int)
    states = np.zeros((len(chunks), 2, STATE), np.float32)
    state = np.zeros((2, 1, STATE), np.float32)
    step = torch_step(module)
    for i, chunk in enumerate(chunks):  # the state each window really sees in a stream
        states[i] = state[:, 0]
        _, state = step(chunk[None], state)
    return module, {"audio": chunks[pick], "state": np.ascontiguousarray(states[pick].transpose(1, 0, 2))}
