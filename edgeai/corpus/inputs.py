"""Real inputs for the corpus, built offline: photos, synthetic speech with known text, features.

- Images: scikit-learn's sample photos (``china.jpg``, ``flower.jpg``) and matplotlib's
  ``grace_hopper.jpg`` (a face; its box is fixed below), scaled as MTCNN expects.
- Speech: Debian's ``espeak-ng`` speaks :data:`SENTENCES` in a few voices; the 22.05 kHz WAV is
  resampled to 16 kHz with a windowed-sinc resampler (numpy only), and noisy variants add white
  noise at a given SNR (seeded).
- Features: Whisper's 80-mel log spectrogram (transformers' ``WhisperFeatureExtractor``, built
  in code) and Resemblyzer's 40-mel power spectrogram (librosa's defaults, re-done in numpy with
  transformers' ``audio_utils``), graphemes for g2p.
"""

from __future__ import annotations

import functools
import io
import shutil
import subprocess
import wave
from typing import Any

import numpy as np

from edgeai.corpus.fetch import CorpusError

SAMPLE_RATE = 16000

#: Sentences with a known transcript (Whisper's reference text).
SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "The weather today is sunny with a light breeze from the west.",
    "She sells sea shells by the sea shore.",
)

#: espeak-ng voices: different speakers for the speaker-embedding model.
VOICES = ("en-us", "en", "en+f3", "en-us+m3")

# grace_hopper.jpg (512x600): the face, found by eye, as (left, top, right, bottom).
_FACE_BOX = (165, 135, 355, 335)


# ---------------------------------------------------------------------------------------- images

def _rgb(name: str) -> np.ndarray:
    if name == "grace_hopper":
        import matplotlib.cbook as cbook
        from PIL import Image

        with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as im:
            return np.asarray(im.convert("RGB"))
    from sklearn.datasets import load_sample_images

    data = load_sample_images()
    index = [f.rsplit("/", 1)[-1].split(".")[0] for f in data.filenames].index(name)
    return np.asarray(data.images[index])


def _to_mtcnn(images: np.ndarray) -> np.ndarray:
    """HWC uint8 (or NHWC) -> NCHW float32 scaled like MTCNN: (x - 127.5) / 128."""
    x = images.astype(np.float32)
    x = x[None] if x.ndim == 3 else x
    return np.ascontiguousarray(((x - 127.5) * 0.0078125).transpose(0, 3, 1, 2))


def _resize(chw: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import torch

    t = torch.from_numpy(np.ascontiguousarray(chw, dtype=np.float32))[None]
    return torch.nn.functional.interpolate(t, size=size, mode="bilinear", antialias=True,
                                           align_corners=False)[0].numpy()


def sample_photos(size: tuple[int, int] | None = None) -> np.ndarray:
    """scikit-learn's two sample photos as an MTCNN batch ``[2, 3, H, W]`` (427x640, or ``size``)."""
    batch = _to_mtcnn(np.stack([_rgb("china"), _rgb("flower")]))
    if size is not None:
        batch = np.stack([_resize(im, size) for im in batch])
    return batch.astype(np.float32)


def face_crops(side: int = 48) -> np.ndarray:
    """O-Net candidates ``[8, 3, side, side]``: 5 jittered boxes around a real face, 3 non-faces."""
    face = _to_mtcnn(_rgb("grace_hopper"))[0]
    left, top, right, bottom = _FACE_BOX
    w = right - left
    crops = []
    # Shifts and scales make the box regression and landmark outputs move, as in a real cascade.
    for dx, dy, scale in ((0, 0, 1.0), (0.1, 0.05, 1.0), (-0.1, -0.05, 0.9), (0.0, 0.1, 1.2), (0.05, -0.1, 0.8)):
        cx, cy, half = left + w / 2 + dx * w, top + w / 2 + dy * w, scale * w / 2
        y0, y1 = int(max(cy - half, 0)), int(min(cy + half, face.shape[1]))
        x0, x1 = int(max(cx - half, 0)), int(min(cx + half, face.shape[2]))
        crops.append(_resize(face[:, y0:y1, x0:x1], (side, side)))
    china, flower = sample_photos()
    crops += [_resize(china[:, 50:250, 100:300], (side, side)), _resize(flower[:, 100:300, 200:400], (side, side)),
              _resize(face[:, 420:560, 20:160], (side, side))]  # the uniform's collar: not a face
    return np.stack(crops).astype(np.float32)


# ---------------------------------------------------------------------------------------- speech

def resample(x: np.ndarray, sr_in: int, sr_out: int, half_width: int = 24) -> np.ndarray:
    """Band-limited resampling (Hann-windowed sinc, ``half_width`` taps per side), numpy only."""
    x = np.asarray(x, dtype=np.float64)
    if sr_in == sr_out:
        return x.astype(np.float32)
    ratio = sr_out / sr_in
    cutoff = min(1.0, ratio) * 0.97  # a little below the new Nyquist: keeps aliasing out
    n_out = int(round(len(x) * ratio))
    out = np.empty(n_out, dtype=np.float64)
    taps = np.arange(-half_width + 1, half_width + 1)
    for start in range(0, n_out, 8192):  # in blocks: [block, taps] index arrays stay small
        t = np.arange(start, min(start + 8192, n_out)) / ratio
        idx = np.floor(t).astype(np.int64)[:, None] + taps[None, :]
        d = t[:, None] - idx
        h = cutoff * np.sinc(cutoff * d) * (0.5 + 0.5 * np.cos(np.pi * np.clip(d / half_width, -1, 1)))
        valid = (idx >= 0) & (idx < len(x))
        out[start:start + len(t)] = (np.where(valid, x[np.clip(idx, 0, len(x) - 1)], 0.0) * h).sum(axis=1)
    return out.astype(np.float32)


def _espeak() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise CorpusError("espeak-ng is not installed; install it (Debian/Ubuntu: apt-get install -y espeak-ng, "
                          "or `make models`) to build the speech inputs")
    return exe


@functools.lru_cache(maxsize=64)
def _speak_cached(text: str, voice: str, speed: int) -> bytes:
    done = subprocess.run([_espeak(), "-v", voice, "-s", str(speed), "--stdout", text], capture_output=True,
                          timeout=60)
    if done.returncode != 0 or not done.stdout:
        raise CorpusError(f"espeak-ng failed for voice {voice!r}: {done.stderr.decode(errors='replace')[:200]}")
    return done.stdout


def speak(text: str, voice: str = "en-us", speed: int = 120) -> np.ndarray:
    """``text`` spoken by espeak-ng, as float32 mono at 16 kHz in [-1, 1]."""
    with wave.open(io.BytesIO(_speak_cached(text, voice, speed))) as w:
        rate, width, frames = w.getframerate(), w.getsampwidth(), w.readframes(w.getnframes())
    if width != 2:
        raise CorpusError(f"espeak-ng wrote {8 * width}-bit audio; expected 16-bit PCM")
    pcm = np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0
    return resample(pcm, rate, SAMPLE_RATE)


def add_noise(wav: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    """``wav`` plus white noise at ``snr_db`` (signal power over noise power), seeded."""
    power = float(np.mean(wav.astype(np.float64) ** 2))
    noise = np.random.default_rng(seed).standard_normal(len(wav)) * np.sqrt(power / 10 ** (snr_db / 10))
    return (wav + noise).astype(np.float32)


def speech_set(noise_snrs: tuple[float, ...] = ()) -> list[tuple[str, np.ndarray]]:
    """``(reference text, 16 kHz waveform)`` for every sentence (voice ``en-us``), then noisy copies."""
    clean = [(text, speak(text)) for text in SENTENCES]
    noisy = [(text, add_noise(wav, snr, seed=i)) for snr in noise_snrs for i, (text, wav) in enumerate(clean)]
    return clean + noisy


# ---------------------------------------------------------------------------------------- features

@functools.lru_cache(maxsize=1)
def _whisper_extractor() -> Any:
    from transformers import WhisperFeatureExtractor

    # Whisper's front end: 80 mels, 25 ms Hann window (n_fft 400), 10 ms hop, 30 s chunks.
    return WhisperFeatureExtractor(feature_size=80, sampling_rate=SAMPLE_RATE, hop_length=160, chunk_length=30,
                                   n_fft=400, padding_value=0.0)


def whisper_features(wavs: list[np.ndarray]) -> np.ndarray:
    """Whisper's log-mel input ``[batch, 80, 3000]`` (each clip padded to 30 s)."""
    out = _whisper_extractor()(list(wavs), sampling_rate=SAMPLE_RATE, return_tensors="np")
    return np.ascontiguousarray(out["input_features"], dtype=np.float32)


@functools.lru_cache(maxsize=1)
def _resemblyzer_filters() -> np.ndarray:
    from transformers.audio_utils import mel_filter_bank

    # librosa.filters.mel(sr=16000, n_fft=400, n_mels=40) defaults: Slaney scale and area norm.
    return mel_filter_bank(num_frequency_bins=201, num_mel_filters=40, min_frequency=0.0, max_frequency=8000.0,
                           sampling_rate=SAMPLE_RATE, norm="slaney", mel_scale="slaney")


def normalize_volume(wav: np.ndarray, target_dbfs: float = -30.0) -> np.ndarray:
    """Resemblyzer's volume normalisation (increase only) to ``target_dbfs``."""
    rms = np.sqrt(np.mean((wav.astype(np.float64) * 32767) ** 2))
    change = target_dbfs - 20 * np.log10(max(rms, 1e-9) / 32767)
    return wav if change < 0 else (wav * 10 ** (change / 20)).astype(np.float32)


def resemblyzer_mels(wav: np.ndarray) -> np.ndarray:
    """Resemblyzer's input frames ``[frames, 40]``: a 40-mel *power* spectrogram (not log).

    Same parameters as ``resemblyzer.audio.wav_to_mel_spectrogram`` (librosa's melspectrogram,
    16 kHz, 25 ms window, 10 ms hop, centred frames, zero padding). Resemblyzer's webrtcvad silence
    trimming is not applied (espeak-ng leaves almost no silence).
    """
    from transformers.audio_utils import spectrogram, window_function

    spec = spectrogram(normalize_volume(wav).astype(np.float64), window_function(400, "hann"), frame_length=400,
                       hop_length=160, power=2.0, center=True, pad_mode="constant",
                       mel_filters=_resemblyzer_filters(), log_mel=None)
    return np.ascontiguousarray(spec.T, dtype=np.float32)


def speaker_partials(frames: int = 160) -> tuple[np.ndarray, list[str]]:
    """``[voices * 2, frames, 40]`` partial utterances (two sentences per espeak-ng voice), and labels."""
    batch, labels = [], []
    for voice in VOICES:
        for text in SENTENCES[:2]:
            mels = resemblyzer_mels(speak(text, voice))
            if len(mels) < frames:
                mels = np.pad(mels, ((0, frames - len(mels)), (0, 0)))
            start = (len(mels) - frames) // 2
            batch.append(mels[start:start + frames])
            labels.append(voice)
    return np.stack(batch).astype(np.float32), labels


#: Words for g2p (mostly out of CMUdict, which is where g2p-en runs its network), all 8 letters.
G2P_WORDS = ("zyphorix", "brintled", "quorbane", "flemmish", "glorpish", "snackery")


def graphemes(words: tuple[str, ...] = G2P_WORDS) -> np.ndarray:
    """Grapheme ids ``[batch, letters + 1]`` as g2p-en encodes them (a-z -> 3..28, then ``</s>`` = 2)."""
    if len({len(w) for w in words}) != 1:
        raise CorpusError(f"g2p batches need words of one length (the encoder reads no padding); got {words}")
    index = {c: 3 + i for i, c in enumerate("abcdefghijklmnopqrstuvwxyz")}
    rows = [[index.get(c, 1) for c in w.lower()] + [2] for w in words]  # 1: <unk>
    return np.asarray(rows, dtype=np.int64)
