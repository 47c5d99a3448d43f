"""Claims per second: how fast supervisors take queued runs (``queue.claim_next``), with 1 and
3 claimers (processes standing in for the supervisors of three hosts), on SQLite and on
PostgreSQL. Each claimer claims until the queue is empty and moves every run it took on to
``completed`` (as its run process would); the benchmark then checks that no run was claimed
twice.

    python bench/claims.py                         # SQLite only (a temporary file)
    python bench/claims.py --pg postgresql+psycopg://postgres@/mfm?host=/tmp/x
    python bench/claims.py --pg "$MFM_TEST_PG_URL" --runs 600 --write docs/BENCHMARKS.md

``--pg`` takes a server database the URL's role may create databases from; a fresh database
is made for each case and dropped afterwards.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from longtail import write_section  # noqa: E402

from mfm.store import Database, queue  # noqa: E402

CFG = {"method": {"name": "ce"}}


def claimer(url: str, host: str, start, out) -> None:
    taken: list[int] = []
    with Database(url) as db:
        start.wait()
        t0 = time.perf_counter()
        while (rec := queue.claim_next(db, host=host, slot="cpu0")) is not None:
            taken.append(rec.id)
            queue.transition(db, rec.id, "completed", allowed_from=("starting",))
        out.put((host, taken, time.perf_counter() - t0))


def one_case(url: str, runs: int, claimers: int) -> dict:
    with Database(url) as db:
        for _ in range(runs):
            queue.enqueue_run(db, config=CFG, epochs_total=1)
    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=claimer, args=(url, f"host{i}", start, out))
             for i in range(claimers)]
    for p in procs:
        p.start()
    time.sleep(2.0)  # every claimer has connected and waits at the start line
    t0 = time.perf_counter()
    start.set()
    results = [out.get(timeout=600) for _ in procs]
    wall = time.perf_counter() - t0
    for p in procs:
        p.join()
    ids = [i for _, taken, _ in results for i in taken]
    twice = [i for i, n in Counter(ids).items() if n > 1]
    assert not twice and len(ids) == runs, (len(ids), twice[:5])
    return {"claims": len(ids), "seconds": wall, "per_s": len(ids) / wall,
            "split": sorted(len(t) for _, t, _ in results)}


def pg_database(server_url: str, name: str):
    from sqlalchemy import create_engine, make_url, text

    admin = create_engine(make_url(server_url).set(database="postgres"),
                          isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        c.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return make_url(server_url).set(database=name).render_as_string(hide_password=False), drop


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=300, help="queued runs per case")
    ap.add_argument("--pg", default=None, metavar="URL", help="a PostgreSQL server database")
    ap.add_argument("--write", type=Path, default=None, help="write the block into this file")
    args = ap.parse_args()
    rows = []
    for backend in ("sqlite", "postgresql"):
        if backend == "postgresql" and not args.pg:
            continue
        for n in (1, 3):
            if backend == "sqlite":
                tmp = tempfile.mkdtemp()
                url, drop = os.path.join(tmp, "claims.db"), (lambda: None)
            else:
                url, drop = pg_database(args.pg, f"mfm_bench_claims_{n}")
            try:
                r = one_case(url, args.runs, n)
            finally:
                drop()
            rows.append((backend, n, r))
            print(f"{backend:10s} {n} claimer(s): {r['claims']} claims in {r['seconds']:.2f} s "
                  f"= {r['per_s']:.0f}/s (split {r['split']})", flush=True)
    cmd = f"python bench/claims.py --runs {args.runs}{' --pg URL' if args.pg else ''}"
    lines = [
        "## Claims per second (bench/claims.py)",
        "",
        f"`{cmd}` — {time.strftime('%Y-%m-%d')}, {platform.node() or '?'}: "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}; PostgreSQL 15 on a Unix "
        "socket (fsync off, the test server of .ci/pg-start.sh). Each claim is "
        "`queue.claim_next` (one write transaction; SELECT ... FOR UPDATE SKIP LOCKED on "
        "PostgreSQL) followed by the run's move to completed; claimers are processes standing "
        "in for the supervisors of 1 or 3 hosts. No run was claimed twice in any case.",
        "",
        "| backend | claimers | claims | seconds | claims/s | claims per claimer |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for backend, n, r in rows:
        lines.append(f"| {backend} | {n} | {r['claims']} | {r['seconds']:.2f} | "
                     f"{r['per_s']:.0f} | {', '.join(map(str, r['split']))} |")
    lines += ["", "A supervisor claims at most once per free slot per poll (1 s), so even the "
              "slowest case here is far beyond what a lab's GPUs ask of the queue."]
    text = "\n".join(lines)
    print(text)
    if args.write:
        write_section(args.write, "claims", text)


if __name__ == "__main__":
    main()
