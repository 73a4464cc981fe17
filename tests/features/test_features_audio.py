"""Audio features: log-mel statistics of generated sine-wave WAVs, and a TorchScript model."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.io import wavfile
from torch import nn

from mmssl.errors import DataError
from mmssl.features.audio import (
    audio_features,
    log_mel_spectrogram,
    log_mel_statistics,
    mel_filterbank,
    read_wav,
)

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")


def _sine(freq: float, rate: int, seconds: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return 0.5 * np.sin(2 * np.pi * freq * t)


def _write_int16(path: Path, signal: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as w:  # the stdlib writer: 16-bit PCM mono
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((signal * 32767).astype("<i2").tobytes())


@pytest.fixture
def audio_dir(tmp_path) -> Path:
    folder = tmp_path / "audio"
    folder.mkdir()
    _write_int16(folder / "low.wav", _sine(440, 16000), 16000)
    _write_int16(folder / "high.wav", _sine(3000, 16000), 16000)
    stereo = np.stack([_sine(440, 22050), _sine(440, 22050)], axis=1).astype(np.float32)
    wavfile.write(folder / "low22k.wav", 22050, stereo)  # float32 stereo at another rate
    (folder / "broken.wav").write_bytes(b"RIFF....WAVEnothing useful")
    wavfile.write(folder / "empty.wav", 16000, np.zeros(0, dtype=np.int16))
    return folder


def _peak_band(row: np.ndarray, n_mels: int) -> int:
    return int(np.argmax(row[:n_mels]))


def test_read_wav_scales_pcm_to_unit_range_and_mixes_channels(audio_dir):
    x, rate = read_wav(audio_dir / "low.wav")
    assert rate == 16000 and x.dtype == np.float32 and 0.45 < np.abs(x).max() <= 0.5
    y, rate = read_wav(audio_dir / "low22k.wav")
    assert rate == 22050 and y.ndim == 1


def test_mel_filterbank_covers_the_spectrum_with_triangles():
    fb = mel_filterbank(16000, 512, 40)
    assert fb.shape == (40, 257) and (fb >= 0).all() and fb.max() <= 1.0 + 1e-6
    assert (fb.sum(axis=1) > 0).all()
    centres = fb.argmax(axis=1)
    assert (np.diff(centres) >= 0).all()


def test_log_mel_of_a_sine_peaks_in_the_band_of_its_frequency():
    rate = 16000
    low = log_mel_spectrogram(_sine(440, rate), rate, n_mels=40)
    high = log_mel_spectrogram(_sine(3000, rate), rate, n_mels=40)
    assert low.shape == (1 + (8000 - 512) // 160, 40)
    assert low.mean(axis=0).argmax() < high.mean(axis=0).argmax()
    stats = log_mel_statistics(_sine(440, rate), rate, n_mels=40)
    assert stats.shape == (80,) and stats[40:].max() < 1.0  # a steady tone barely varies


def test_short_signals_are_padded_to_one_frame():
    assert log_mel_spectrogram(np.ones(10, dtype=np.float32), 16000).shape == (1, 64)


def test_audio_features_from_a_folder_count_missing_and_unreadable_files(audio_dir):
    ids = np.array(["low", "high", "low22k", "broken", "empty", "absent"])
    fm = audio_features(ids, audio_dir=audio_dir, n_mels=32)
    assert fm.values.shape == (6, 64) and fm.values.dtype == np.float32
    assert np.isfinite(fm.values).all()
    assert fm.missing == ["broken", "empty", "absent"]
    assert fm.info["missing_files"] == 1 and fm.info["unreadable_files"] == 2
    assert not fm.values[3:].any() and fm.values[:3].any(axis=1).all()
    assert _peak_band(fm.values[0], 32) < _peak_band(fm.values[1], 32)
    # resampled 22.05 kHz float stereo of the same tone lands in the same band
    assert _peak_band(fm.values[2], 32) == _peak_band(fm.values[0], 32)
    assert fm.encoder == "log-mel-stats:32"


class _FrameEnergy(nn.Module):
    def forward(self, x):  # (1, samples) -> (1, frames, 3)
        frames = x[:, : (x.shape[1] // 100) * 100].reshape(1, -1, 100)
        e = (frames**2).mean(dim=2, keepdim=True)
        return torch.cat([e, 2 * e, torch.ones_like(e)], dim=2)


def test_a_torchscript_model_gets_the_waveform_and_its_output_is_averaged(tmp_path, audio_dir):
    path = tmp_path / "energy.pt"
    torch.jit.script(_FrameEnergy()).save(str(path))
    fm = audio_features(np.array(["low", "absent"]), audio_dir=audio_dir, model=path)
    assert fm.values.shape == (2, 3)
    np.testing.assert_allclose(fm.values[0], [0.125, 0.25, 1.0], rtol=0.02)  # sine power A^2/2
    assert fm.missing == ["absent"] and fm.encoder == "torchscript:energy.pt"


def test_files_listed_in_a_table_and_bad_arguments(tmp_path, audio_dir):
    table = tmp_path / "items.tsv"
    table.write_text("item_id\tsound\n7\taudio/high.wav\n")
    fm = audio_features(np.array(["7"]), items=table, path_col="sound", n_mels=16)
    assert fm.values.shape == (1, 32) and not fm.missing
    with pytest.raises(DataError, match="either a folder"):
        audio_features(np.array(["7"]), audio_dir=audio_dir, items=table, path_col="sound")
    with pytest.raises(DataError, match="not a TorchScript file"):
        audio_features(np.array(["7"]), audio_dir=audio_dir, model=table)
