"""Audio features from WAV files: log-mel statistics, or a local TorchScript model.

Log-mel statistics (default): the signal is mixed to mono, resampled to ``sample_rate``
(16 kHz), cut into Hann-windowed frames (``n_fft`` 512 samples = 32 ms, hop 160 = 10 ms),
turned into a power spectrum, pooled by ``n_mels`` triangular mel filters (HTK mel scale,
0 Hz to Nyquist) and logged (``log(mel + 1e-6)``). The feature is the mean and the standard
deviation over frames of each band: ``2 * n_mels`` values (mean first).

A TorchScript model instead receives the resampled mono waveform, float32 ``(1, n_samples)``,
and its output is averaged over every dimension but the last.

WAV files are read with ``scipy.io.wavfile`` (PCM 8/16/24/32-bit and float). Items whose file
is missing, unreadable or empty get a zero row and are counted.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from mmssl.errors import DataError
from mmssl.features.io import FeatureMatrix, content_paths, package_versions

AUDIO_SUFFIXES = (".wav", ".wave")
DEFAULT_SAMPLE_RATE = 16000
DEFAULT_N_MELS = 64
DEFAULT_N_FFT = 512
DEFAULT_HOP = 160
LOG_EPS = 1e-6


def read_wav(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Samples as float32 mono in [-1, 1] and the sample rate.

    Raises ValueError (or OSError) for a file that is not a readable WAV.
    """
    from scipy.io import wavfile

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", wavfile.WavFileWarning)  # odd chunks are skipped
        rate, data = wavfile.read(path)
    data = np.asarray(data)
    if data.dtype.kind == "u":  # 8-bit PCM is unsigned, centred on 128
        x = (data.astype(np.float32) - 128.0) / 128.0
    elif data.dtype.kind == "i":
        x = data.astype(np.float32) / float(2 ** (8 * data.dtype.itemsize - 1))
    elif data.dtype.kind == "f":
        x = data.astype(np.float32)
    else:
        raise ValueError(f"unsupported sample type {data.dtype}")
    if x.ndim == 2:
        x = x.mean(axis=1)
    return x, int(rate)


def resample(signal: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Polyphase resampling from ``rate`` to ``target`` Hz (float32)."""
    if rate == target:
        return signal.astype(np.float32, copy=False)
    from scipy.signal import resample_poly

    g = math.gcd(rate, target)
    return resample_poly(signal, target // g, rate // g).astype(np.float32)


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + f / 700.0)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """Triangular filters on the HTK mel scale, 0 Hz to Nyquist: float32 (n_mels, n_fft//2+1)."""
    freqs = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(0.0, _hz_to_mel(np.array(sample_rate / 2.0)), n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs[None, :] - lower) / np.maximum(centre - lower, 1e-9)
    falling = (upper - freqs[None, :]) / np.maximum(upper - centre, 1e-9)
    return np.clip(np.minimum(rising, falling), 0.0, None).astype(np.float32)


def log_mel_spectrogram(
    signal: np.ndarray,
    sample_rate: int,
    *,
    n_mels: int = DEFAULT_N_MELS,
    n_fft: int = DEFAULT_N_FFT,
    hop: int = DEFAULT_HOP,
) -> np.ndarray:
    """Log-mel spectrogram, float32 (n_frames, n_mels); a short signal is zero-padded to one frame."""
    x = np.asarray(signal, dtype=np.float32)
    if len(x) < n_fft:
        x = np.pad(x, (0, n_fft - len(x)))
    n_frames = 1 + (len(x) - n_fft) // hop
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop][:n_frames]
    window = np.hanning(n_fft + 1)[:-1].astype(np.float32)  # periodic Hann
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
    mel = power.astype(np.float32) @ mel_filterbank(sample_rate, n_fft, n_mels).T
    return np.log(mel + LOG_EPS).astype(np.float32)


def log_mel_statistics(
    signal: np.ndarray,
    sample_rate: int,
    n_mels: int = DEFAULT_N_MELS,
    n_fft: int = DEFAULT_N_FFT,
    hop: int = DEFAULT_HOP,
) -> np.ndarray:
    """Mean and std over frames of each mel band: float32 (2 * n_mels,)."""
    spec = log_mel_spectrogram(signal, sample_rate, n_mels=n_mels, n_fft=n_fft, hop=hop)
    return np.concatenate([spec.mean(axis=0), spec.std(axis=0)]).astype(np.float32)


def audio_features(
    item_ids: np.ndarray,
    *,
    audio_dir: str | os.PathLike | None = None,
    items: str | os.PathLike | None = None,
    path_col: str | None = None,
    id_col: str = "item_id",
    audio_root: str | os.PathLike | None = None,
    model: str | os.PathLike | None = None,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    n_mels: int = DEFAULT_N_MELS,
    max_seconds: float | None = None,
    device: str = "cpu",
    progress: bool = False,
) -> FeatureMatrix:
    """Audio features of each item's WAV file, float32 (n_items, dim), in ``item_ids`` order.

    Files come from ``audio_dir`` (``ID.wav``) or ``path_col`` of the ``items`` table. Without
    ``model`` the features are log-mel statistics (dim ``2 * n_mels``); with a TorchScript
    ``model`` they are its averaged output. ``max_seconds`` keeps only the start of long files.
    """
    from tqdm.auto import tqdm

    item_ids = np.asarray(item_ids, dtype=str)
    if sample_rate <= 0 or n_mels <= 0:
        raise DataError("--sample-rate and --n-mels must be positive")
    paths = content_paths(
        item_ids,
        folder=audio_dir,
        items=items,
        path_col=path_col,
        id_col=id_col,
        suffixes=AUDIO_SUFFIXES,
        root=audio_root,
    )
    net = _load_audio_model(model, device) if model is not None else None
    rows: dict[int, np.ndarray] = {}
    absent: list[int] = []
    unreadable: list[int] = []
    for k, path in enumerate(tqdm(paths, desc="audio", unit="file", disable=not progress)):
        if path is None or not path.is_file():
            absent.append(k)
            continue
        try:
            signal, rate = read_wav(path)
        except (ValueError, OSError, EOFError):
            unreadable.append(k)
            continue
        if max_seconds is not None:
            signal = signal[: int(max_seconds * rate)]
        if len(signal) == 0 or not np.isfinite(signal).all():
            unreadable.append(k)
            continue
        signal = resample(signal, rate, sample_rate)
        if net is None:
            rows[k] = log_mel_statistics(signal, sample_rate, n_mels=n_mels)
        else:
            rows[k] = _embed(net, signal, model, device)
    if net is None:
        dim = 2 * n_mels
    elif rows:
        dim = len(next(iter(rows.values())))
    else:  # no file at all: ask the model for its width on one second of silence
        dim = len(_embed(net, np.zeros(sample_rate, dtype=np.float32), model, device))
    values = np.zeros((len(item_ids), dim), dtype=np.float32)
    for k, row in rows.items():
        if len(row) != dim:
            raise DataError(f"--model {model}: output width {len(row)} != {dim} for {paths[k]}")
        values[k] = row
    missing_rows = sorted(absent + unreadable)
    encoder = f"torchscript:{Path(model).name}" if model is not None else f"log-mel-stats:{n_mels}"
    info = {
        "modality": "audio",
        "sample_rate": sample_rate,
        "missing_files": len(absent),
        "unreadable_files": len(unreadable),
        "versions": package_versions("numpy", "scipy", "torch"),
    }
    if model is None:
        info.update(
            n_mels=n_mels, n_fft=DEFAULT_N_FFT, hop=DEFAULT_HOP, layout="mean, std per band"
        )
    else:
        info["model_path"] = str(model)
    if max_seconds is not None:
        info["max_seconds"] = max_seconds
    return FeatureMatrix(values, item_ids, [str(item_ids[k]) for k in missing_rows], encoder, info)


def _load_audio_model(path: str | os.PathLike, device: str) -> torch.jit.ScriptModule:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"--model {path}: no such file (models are local files, never downloaded)")
    try:
        with warnings.catch_warnings():  # torch >= 2.10 deprecates TorchScript; still loads
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(str(path), map_location=device).eval()
    except (RuntimeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"--model {path}: not a TorchScript file: {first}") from None


def _embed(net, signal: np.ndarray, model, device: str) -> np.ndarray:
    x = torch.from_numpy(np.ascontiguousarray(signal, dtype=np.float32))[None].to(device)
    try:
        with torch.inference_mode():
            out = net(x)
    except RuntimeError as e:
        raise DataError(
            f"--model {model}: fails on a waveform of shape {tuple(x.shape)}: "
            f"{str(e).strip().splitlines()[0]}"
        ) from None
    if isinstance(out, (tuple, list)):
        out = out[0]
    out = out.float().reshape(-1, out.shape[-1]).mean(dim=0) if out.ndim > 1 else out.float()
    row = out.cpu().numpy().astype(np.float32)
    if not np.isfinite(row).all():
        raise DataError(f"--model {model}: NaN or infinite output")
    return row
