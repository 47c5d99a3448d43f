"""Eight writer processes and a reader for 30 s: no "database is locked", no lost point; on a
SQLite file and on PostgreSQL (``db_url``)."""

from __future__ import annotations

import multiprocessing as mp
import os
import time

import pytest

from mfm.store import Database, repo

# real subprocesses / processes racing on one database: the CI run, not the inner loop
pytestmark = pytest.mark.slow

SECONDS = float(os.environ.get("MFM_CONCURRENCY_SECONDS", "30"))


def writer(path: str, seconds: float, out) -> None:
    errors, written = [], 0
    with Database(path) as db:
        run_id = repo.create_run(db, config={"w": os.getpid()}, epochs_total=1000)
        deadline = time.monotonic() + seconds
        step = 0
        while time.monotonic() < deadline:
            try:
                points = [("loss", step + i, step // 100, float(i)) for i in range(10)]
                repo.log_step_metrics(db, run_id, points)
                written += len(points)
                step += 10
                repo.update_run(db, run_id, heartbeat_at=time.time())
                if step % 100 == 0:
                    repo.log_epoch(db, run_id, step // 100, {"acc": 0.5}, [0.1] * 100)
            except Exception as e:  # noqa: BLE001 — counted, the test asserts none
                errors.append(f"{type(e).__name__}: {e}")
    out.put(("writer", run_id, written, errors))


def reader(path: str, seconds: float, out) -> None:
    errors, reads = [], 0
    with Database(path) as db:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                for r in repo.list_runs(db):
                    repo.get_step_series(db, r.id, "loss", after_step=max(0, 10_000))
                    repo.get_class_accuracy(db, r.id)
                reads += 1
            except Exception as e:  # noqa: BLE001
                errors.append(f"{type(e).__name__}: {e}")
    out.put(("reader", None, reads, errors))


def test_eight_writers_and_a_reader(db_url):
    path = db_url
    Database(path).close()
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=writer, args=(path, SECONDS, out)) for _ in range(8)]
    procs.append(ctx.Process(target=reader, args=(path, SECONDS, out)))
    for p in procs:
        p.start()
    results = [out.get(timeout=SECONDS + 120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    errors = [e for _, _, _, errs in results for e in errs]
    assert errors == [], errors[:3]
    with Database(path) as db:
        for kind, run_id, written, _ in results:
            if kind == "writer":
                assert written > 0
                assert len(repo.get_step_series(db, run_id, "loss")) == written
    assert next(n for kind, _, n, _ in results if kind == "reader") > 0
