"""``mmssl serve``, and what serving adds to ``mmssl recommend`` and ``mmssl evaluate``.

- ``mmssl serve --run RUN``: the HTTP server (:mod:`mmssl.serving.app`, extra ``serve``).
- ``mmssl recommend``: ``--all`` users with ``--out FILE`` (parquet or CSV), ``--show title``
  (items-table columns), ``--new-item FEATURES`` (items added through the cold-start path).
- ``mmssl evaluate --cold-items``: the held-out items of a cold-item split, scored through the
  cold-start path, next to the k-NN fallback, itemknn-cbf and a random ranking.

The two existing commands keep their own handlers (:mod:`mmssl.cli.train`); the options added
here hand over to the ones below only when they are given.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from mmssl.errors import ConfigError, DataError

TITLE_COLUMNS = ("title", "movie_title", "name")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``serve`` and extend ``recommend`` and ``evaluate`` (registered before)."""
    p = sub.add_parser(
        "serve", help="serve a run over HTTP: recommendations, similar items, new items and users",
        description="Serve RUN over HTTP (FastAPI on uvicorn; pip install 'mmssl[serve]'): "
                    "recommendations, similar items, new items and users, a page at / and the "
                    "OpenAPI docs at /docs. Reads RUN/recommender.npz, coldstart.npz and "
                    "items.tsv: no dataset, no torch for known users and items.")
    p.add_argument("--run", required=True, help="run directory")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    p.add_argument("--index", default="auto",
                   choices=["auto", "exact", "faiss", "faiss-ivf", "faiss-hnsw"],
                   help="top-k search: exact, FAISS (IVF; or HNSW), or auto: exact below "
                        "--faiss-above items (default: auto)")
    p.add_argument("--faiss-above", type=int, default=200_000,
                   help="catalogue size from which --index auto uses FAISS (default: 200000)")
    p.add_argument("--nprobe", type=int, default=32,
                   help="IVF lists searched per query (default: 32)")
    p.set_defaults(func=_serve)

    rec = sub.choices["recommend"]
    for action in rec._actions:
        if action.dest == "user":
            action.required = False
            action.help = "original user id (repeatable; or --all)"
    rec.add_argument("--all", action="store_true", help="every user (default: only --user)")
    rec.add_argument("--out", help="write the top-k to FILE instead: .parquet or .csv, one row "
                                   "per user and rank (default: print)")
    rec.add_argument("--show", help="items-table columns to print next to each item, "
                                    "comma-separated; title finds the title column (default: none)")
    rec.add_argument("--new-item", action="append", metavar="FEATURES",
                     help="add new items before ranking: NAME=FILE.npy per modality, or an .npz "
                          "of arrays named by modality, one row per item, ids new-1, new-2, ... "
                          "(repeatable; default: none)")
    _hand_over(rec, lambda a: a.all or a.out or a.show or a.new_item or not a.user, _recommend)

    ev = sub.choices["evaluate"]
    ev.add_argument("--cold-items", action="store_true",
                    help="rank the held-out items of the run's cold-item split (DATA/cold/) "
                         "through the cold-start path, among themselves and among all items, "
                         "next to the k-NN fallback, itemknn-cbf and random (default: off)")
    _hand_over(ev, lambda a: a.cold_items, _evaluate_cold)


def _hand_over(parser: argparse.ArgumentParser, wanted, handler) -> None:
    """Run ``handler`` where ``wanted(args)``, the parser's own handler otherwise."""
    original = parser.get_default("func")
    parser.set_defaults(func=lambda args: handler(args) if wanted(args) else original(args))


# --------------------------------------------------------------------- serve
def _serve(args: argparse.Namespace) -> int:
    try:
        from mmssl.serving.app import serve
    except ModuleNotFoundError as e:
        raise ConfigError(f"mmssl serve needs {e.name}: pip install 'mmssl[serve]'") from None
    from mmssl.serving.service import Service

    if not 0 < args.port < 65536:
        raise ConfigError(f"--port {args.port}: expected 1 to 65535")
    service = Service.from_run(args.run, index=args.index, faiss_above=args.faiss_above,
                               nprobe=args.nprobe)
    facts = service.facts()
    print(f"mmssl serve: {args.run}: {facts['users']} users, {facts['items']} items, "
          f"model {facts['model'] or '?'}", flush=True)
    print(f"  {service.index_note}", flush=True)
    cold = facts["cold_start"]
    print("  new items: " + ({"content": "the model's content path", "knn": "k-NN fallback (mean "
                             "of the nearest warm items in feature space)"}.get(cold) or
                             "not possible (no coldstart.npz)"), flush=True)
    print(f"  listening on http://{args.host}:{args.port}/ (API docs at /docs); Ctrl-C stops",
          flush=True)
    serve(service, host=args.host, port=args.port)
    return 0


# ----------------------------------------------------------------- recommend
def _recommend(args: argparse.Namespace) -> int:
    from mmssl.serving.service import MAX_BATCH, Service, check_k

    if args.data or args.device:
        raise ConfigError("--all, --out, --show and --new-item read RUN/recommender.npz: "
                          "drop --data and --device")
    if bool(args.all) == bool(args.user):
        raise ConfigError("recommend needs --user ID (repeatable) or --all, not both")
    check_k(args.k, "--k")
    run = Path(args.run)
    if not run.is_dir():
        raise ConfigError(f"{args.run}: no such run folder")
    service = Service.from_run(run, index="exact")
    if args.new_item:
        added = service.add_items(_new_items(args.new_item, service))
        print(f"added {len(added)} new items ({added[0]['method']} path): "
              + ", ".join(a["id"] for a in added[:10]) + (" ..." if len(added) > 10 else ""))
    users = service.rec.user_ids.tolist() if args.all else list(args.user)
    columns = _columns(args.show, service)
    rows = []
    for start in range(0, len(users), MAX_BATCH):
        for result in service.recommend(users[start:start + MAX_BATCH], args.k, not args.keep_seen):
            for rank, item in enumerate(result["items"], start=1):
                rows.append({"user_id": result["user"], "rank": rank, "item_id": item["id"],
                             "score": item["score"], **{c: item.get(c, "") for c in columns}})
    if args.out:
        _write_table(rows, Path(args.out))
        print(f"wrote {len(rows)} rows ({len(users)} users x top {args.k}) to {args.out}")
    elif args.json:
        print(json.dumps(rows, indent=2))
    else:
        last = None
        for r in rows:
            if r["user_id"] != last:
                print(f"user {r['user_id']}:")
                last = r["user_id"]
            shown = "  ".join(r[c] for c in columns if r[c])
            print(f"  {r['rank']:>3}. item {r['item_id']}  score {r['score']:.4f}"
                  + (f"  {shown}" if shown else ""))
    return 0


def _columns(show: str | None, service) -> list[str]:
    have = set().union(*service.metadata.values()) if service.metadata else set()
    out = []
    for name in [c.strip() for c in (show or "").split(",") if c.strip()]:
        if name == "title" and name not in have:
            name = next((c for c in TITLE_COLUMNS if c in have), name)
        if name not in have:
            raise ConfigError(f"--show {name}: not a column of the run's items table (columns: "
                              f"{', '.join(sorted(have)) or 'none: the dataset has no items table'})")
        out.append(name)
    return out


def _new_items(specs: list[str], service) -> list[dict]:
    arrays: dict[str, np.ndarray] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        try:
            if sep:
                arrays[name.strip()] = np.load(path.strip(), allow_pickle=False)
            elif spec.endswith(".npz"):
                with np.load(spec, allow_pickle=False) as f:
                    arrays.update({k: f[k] for k in f.files})
            elif service.cold is not None and len(service.cold.modalities) == 1:
                arrays[next(iter(service.cold.modalities))] = np.load(spec, allow_pickle=False)
            else:
                raise ConfigError(f"--new-item {spec}: give NAME=FILE.npy per modality or an .npz")
        except (OSError, ValueError) as e:
            raise DataError(f"--new-item {spec}: cannot read ({str(e).splitlines()[0]})") from None
    rows = {len(a) if a.ndim == 2 else 1 for a in arrays.values()}
    if len(rows) != 1:
        raise DataError("--new-item: every modality must have the same number of rows")
    n = rows.pop()
    return [{"id": f"new-{j + 1}",
             "features": {m: (a[j] if a.ndim == 2 else a) for m, a in arrays.items()}}
            for j in range(n)]


def _write_table(rows: list[dict], path: Path) -> None:
    import pandas as pd

    from mmssl import io

    frame = pd.DataFrame(rows)
    if path.suffix == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ConfigError("--out .parquet needs pyarrow: pip install 'mmssl[parquet]'") from None
        io.ensure_parent(path)
        io.atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))
    elif path.suffix in (".csv", ".tsv"):
        io.ensure_parent(path)
        io.atomic_write(path, lambda tmp: frame.to_csv(
            tmp, index=False, sep="\t" if path.suffix == ".tsv" else ","))
    else:
        raise ConfigError(f"--out {path}: expected a .parquet, .csv or .tsv file")


# ------------------------------------------------------------------ evaluate
def _evaluate_cold(args: argparse.Namespace) -> int:
    from mmssl.cli.coldeval import evaluate_cold_items, format_cold_table

    result = evaluate_cold_items(args.run, data=args.data)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_cold_table(result))
    return 0
