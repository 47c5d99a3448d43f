"""Two processes, each with its own Database, writing small transactions at once (SQLite
and PostgreSQL)."""

from __future__ import annotations

import multiprocessing
import runpy

import pytest
from sqlalchemy import text

from mfm.store import Database, repo

# real subprocesses / processes racing on one database: the CI run, not the inner loop
pytestmark = pytest.mark.slow

POINTS = 300
PER_TRANSACTION = 3


def _write(db_target: str, run_id: int, worker: int, barrier) -> None:
    with Database(db_target) as db:
        barrier.wait(timeout=60)  # start together so the writers really contend
        key = f"w{worker}"
        for start in range(0, POINTS, PER_TRANSACTION):
            repo.log_step_metrics(db, run_id, [(key, s, 0, float(s)) for s in
                                               range(start, start + PER_TRANSACTION)])
            repo.update_run(db, run_id, heartbeat_at=float(start))


def test_two_processes_write_concurrently(db_url):
    with Database(db_url) as db:
        run_id = repo.create_run(db, config={}, epochs_total=1)
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    # The child re-runs this file under a name that triggers the guard at the bottom, so the
    # test does not depend on how pytest names (or whether it can re-import) test modules.
    procs = [ctx.Process(target=runpy.run_path, kwargs={
        "path_name": __file__, "run_name": "__store_writer__",
        "init_globals": {"WRITER_ARGS": (db_url, run_id, worker, barrier)}})
        for worker in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    with Database(db_url) as db:
        for worker in range(2):
            series = repo.get_step_series(db, run_id, f"w{worker}")
            assert [p.step for p in series] == list(range(POINTS))
        assert repo.latest_metrics(db, run_id) == {"w0": POINTS - 1.0, "w1": POINTS - 1.0}
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM step_metrics")).scalar() == 2 * POINTS


if __name__ == "__store_writer__":
    _write(*globals()["WRITER_ARGS"])
