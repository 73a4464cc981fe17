"""A bounded load against ``mmssl serve`` on loopback: latency, throughput, errors.

Starts ``mmssl serve`` in a child process on 127.0.0.1 (a free port), sends ``--requests``
``GET /recommend`` requests for random users with ``--concurrency`` in flight (httpx), then
stops the server. It stops by itself after the requests, or after ``--time-limit`` seconds,
whichever comes first. Prints p50/p99 latency, requests per second, the 4xx and 5xx counts
and the dropped requests (connection errors, time-outs, or never sent in the time limit).

    # a trained run (ml100k-mm)
    python benchmarks/serve_load.py --run RUN --index exact
    # a generated catalogue of 1M items: FAISS recall@20 against exact, then the load with each
    python benchmarks/serve_load.py --generate 1000000 --index faiss --index exact

With ``--generate N`` a catalogue is written to a temporary run: N item vectors and 10,000 user
vectors of dimension 64 drawn around 1,024 random cluster centres (Gaussian, noise 0.5 of the
centres' scale), 20 seen items per user. Before each FAISS load, recall@20 of the FAISS index
against exact search (seen items excluded) is measured in-process on 1,000 users, with the
same index settings as the server's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def generate_run(n_items: int, folder: Path, n_users: int = 10_000, dim: int = 64,
                 seed: int = 2022) -> Path:
    """A run folder holding only a generated ``recommender.npz`` (module docstring)."""
    import scipy.sparse as sp

    from mmssl.serving.recommender import Recommender

    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((1024, dim)).astype(np.float32)
    items = np.empty((n_items, dim), dtype=np.float32)
    for start in range(0, n_items, 100_000):
        stop = min(n_items, start + 100_000)
        c = rng.integers(len(centres), size=stop - start)
        items[start:stop] = centres[c] + 0.5 * rng.standard_normal((stop - start, dim), dtype=np.float32)
    users = centres[rng.integers(len(centres), size=n_users)] + 0.5 * rng.standard_normal(
        (n_users, dim), dtype=np.float32)
    seen_items = rng.integers(n_items, size=(n_users, 20))
    rows = np.repeat(np.arange(n_users), 20)
    seen = sp.csr_matrix((np.ones(rows.size, np.float32), (rows, seen_items.ravel())),
                         shape=(n_users, n_items))
    seen.data[:] = 1.0
    run = folder / f"generated-{n_items}"
    run.mkdir(parents=True, exist_ok=True)
    Recommender([f"u{u}" for u in range(n_users)], [f"i{i}" for i in range(n_items)],
                users, items, seen).save(run)
    return run


def faiss_recall(run: Path, kind: str, k: int = 20, n_users: int = 1000, nprobe: int = 32,
                 seed: int = 0) -> dict:
    """Recall@k of the FAISS index the server would build against exact search."""
    from mmssl.serving.index import ExactIndex, build_index
    from mmssl.serving.recommender import Recommender

    rec = Recommender.load(run)
    t = time.perf_counter()
    approx, note = build_index(rec.item_factors, kind, nprobe=nprobe)
    built = time.perf_counter() - t
    exact = ExactIndex(rec.item_factors)
    rng = np.random.default_rng(seed)
    users = rng.choice(len(rec.user_ids), size=min(n_users, len(rec.user_ids)), replace=False)
    queries = rec.user_factors[users]
    exclude = [rec.seen.indices[rec.seen.indptr[u]:rec.seen.indptr[u + 1]].astype(np.int64)
               for u in users]
    t = time.perf_counter()
    truth = exact.search(queries, k, exclude)
    exact_s = (time.perf_counter() - t) / len(users)
    t = time.perf_counter()
    found = approx.search(queries, k, exclude)
    approx_s = (time.perf_counter() - t) / len(users)
    recall = np.mean([len(set(a[0]) & set(b[0])) / k for a, b in zip(found, truth)])
    leaked = sum(bool(set(a[0]) & set(e)) for a, e in zip(found, exclude))
    return {"note": note, "recall": float(recall), "build_s": built, "users": len(users),
            "exact_ms_per_query": 1000 * exact_s, "faiss_ms_per_query": 1000 * approx_s,
            "seen_items_returned": leaked}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(run: Path, index: str, nprobe: int, timeout: float = 900.0):
    """``(process, url, start-up seconds)`` once ``/health`` answers."""
    import httpx

    port = free_port()
    cmd = [sys.executable, "-m", "mmssl", "serve", "--run", str(run), "--port", str(port),
           "--index", index, "--nprobe", str(nprobe)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url, t0 = f"http://127.0.0.1:{port}", time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stdout.read()}")
        try:
            health = httpx.get(url + "/health", timeout=5)
            if health.status_code == 200:
                return proc, url, time.perf_counter() - t0, health.json()
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit("server did not start in time")


async def load(url: str, users: list[str], n_requests: int, concurrency: int, k: int,
               time_limit: float, seed: int = 0) -> dict:
    """Send the requests; every one is accounted for: ok, 4xx, 5xx or dropped."""
    import httpx

    rng = np.random.default_rng(seed)
    order = rng.integers(len(users), size=n_requests)
    latencies: list[float] = []
    status = {"ok": 0, "4xx": 0, "5xx": 0, "dropped": 0}
    next_request = 0
    deadline = time.perf_counter() + time_limit
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal next_request
        while next_request < n_requests and time.perf_counter() < deadline:
            j = next_request
            next_request += 1
            t = time.perf_counter()
            try:
                r = await client.get("/recommend", params={"user": users[order[j]], "k": k})
            except httpx.HTTPError:
                status["dropped"] += 1
                continue
            latencies.append(time.perf_counter() - t)
            code = r.status_code
            status["ok" if code < 400 else "4xx" if code < 500 else "5xx"] += 1

    t0 = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    status["dropped"] += n_requests - sum(status.values())  # not sent before the time limit
    lat = np.array(latencies) * 1000
    return {"requests": n_requests, "concurrency": concurrency, "seconds": wall,
            "rps": len(latencies) / wall if wall else 0.0,
            "p50_ms": float(np.percentile(lat, 50)) if len(lat) else float("nan"),
            "p99_ms": float(np.percentile(lat, 99)) if len(lat) else float("nan"), **status}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="a trained run directory")
    src.add_argument("--generate", type=int, metavar="N_ITEMS", help="a generated catalogue")
    p.add_argument("--index", action="append", help="index kinds to load, in turn (default: auto)")
    p.add_argument("--requests", type=int, default=20_000, help="requests per load (default 20000)")
    p.add_argument("--concurrency", type=int, default=32, help="requests in flight (default 32)")
    p.add_argument("--k", type=int, default=20, help="items per request (default 20)")
    p.add_argument("--nprobe", type=int, default=32, help="IVF lists searched (default 32)")
    p.add_argument("--time-limit", type=float, default=900.0,
                   help="seconds a load may take before it stops (default 900)")
    args = p.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="mmssl-serve-load-"))
    try:
        if args.generate:
            t = time.perf_counter()
            run = generate_run(args.generate, scratch)
            print(f"generated {args.generate} items x 64 in {time.perf_counter() - t:.0f} s", flush=True)
        else:
            run = Path(args.run)
        from mmssl.serving.recommender import Recommender

        users = Recommender.load(run).user_ids.tolist()
        for kind in args.index or ["auto"]:
            if kind.startswith("faiss"):
                r = faiss_recall(run, kind, args.k, nprobe=args.nprobe)
                print(f"[{kind}] {r['note']}; built in {r['build_s']:.1f} s; recall@{args.k} "
                      f"against exact on {r['users']} users: {r['recall']:.4f}; seen items "
                      f"returned: {r['seen_items_returned']}; in-process search "
                      f"{r['faiss_ms_per_query']:.3f} ms/query (exact "
                      f"{r['exact_ms_per_query']:.3f} ms/query)", flush=True)
            proc, url, started, health = start_server(run, kind, args.nprobe)
            try:
                print(f"[{kind}] server up in {started:.1f} s: {health['index_note']}", flush=True)
                result = asyncio.run(load(url, users, args.requests, args.concurrency, args.k,
                                          args.time_limit))
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
            print(f"[{kind}] {result['requests']} requests, {result['concurrency']} concurrent, "
                  f"{result['seconds']:.1f} s: {result['rps']:.0f} requests/s, p50 "
                  f"{result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms; ok {result['ok']}, "
                  f"4xx {result['4xx']}, 5xx {result['5xx']}, dropped {result['dropped']}",
                  flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
