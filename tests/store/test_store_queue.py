"""The run queue in the records, on SQLite and PostgreSQL (``db_url`` runs each test on
both): claims never hand one run to two supervisors, transitions are guarded by the state
they start from, cancel and resume follow their rules, and the workers table."""

from __future__ import annotations

import multiprocessing as mp

import pytest
from sqlalchemy import event

from mfm.store import Database, queue, repo


@pytest.fixture
def db(db_url):
    with Database(db_url) as database:
        yield database


def test_claims_take_the_oldest_queued_run_for_the_slot(db):
    anyone = queue.enqueue_run(db, config={"i": 0}, epochs_total=1)
    gpu1 = queue.enqueue_run(db, config={"i": 1}, epochs_total=1, want_slot="gpu1")
    later = queue.enqueue_run(db, config={"i": 2}, epochs_total=1)
    assert queue.queue_positions(db) == {anyone: 1, gpu1: 2, later: 3}
    rec = queue.claim_next(db, host="h", slot="gpu0.0")
    assert (rec.id, rec.status, rec.host, rec.slot) == (anyone, "starting", "h", "gpu0.0")
    assert queue.claim_next(db, host="h", slot="gpu0.0").id == later  # gpu1's is not ours
    assert queue.claim_next(db, host="h", slot="gpu0.0") is None
    assert queue.claim_next(db, host="h", slot="gpu1.1").id == gpu1
    assert queue.count_by_status(db) == {"starting": 3}
    assert [r.id for r in queue.active_runs(db, host="h")] == [anyone, gpu1, later]
    assert queue.active_runs(db, host="other") == []


def test_transitions_are_guarded_and_resume_rules(db):
    rid = queue.enqueue_run(db, config={}, epochs_total=1, code_version="0.1")
    assert queue.request_cancel(db, rid) == "cancelled"
    assert not queue.transition(db, rid, "running", allowed_from=("starting",))
    rec = queue.request_resume(db, rid)
    assert rec.status == "queued" and rec.attempt == 1 and rec.resume_requested
    with pytest.raises(queue.QueueError, match="already queued"):
        queue.request_resume(db, rid)
    assert queue.claim_next(db, host="h", slot="cpu0").id == rid
    queue.set_process(db, rid, pid=1234, proc_start="boot:1", log_path="/tmp/x.log")
    assert queue.transition(db, rid, "running", allowed_from=("starting",))
    assert queue.request_cancel(db, rid) == "requested"
    assert [r.id for r in queue.cancel_requested(db, host="h")] == [rid]
    assert queue.transition(db, rid, "completed")
    assert not queue.transition(db, rid, "lost")  # someone else already decided
    rec = repo.get_run(db, rid)
    assert (rec.status, rec.pid, rec.proc_start) == ("completed", 1234, "boot:1")
    with pytest.raises(queue.QueueError, match="nothing to resume"):
        queue.request_resume(db, rid)
    with pytest.raises(queue.QueueError, match="no run 99"):
        queue.request_cancel(db, 99)
    with pytest.raises(queue.QueueError, match="nothing to cancel"):
        queue.request_cancel(db, rid)


def test_workers_table(db):
    slots = [{"name": "cpu0", "run": None}]
    queue.upsert_worker(db, host="a", pid=10, proc_start="boot:1", slots=slots)
    queue.upsert_worker(db, host="b", pid=20, proc_start=None, slots=[])
    queue.worker_heartbeat(db, host="a", slots=[{"name": "cpu0", "run": 3}])
    queue.stop_worker(db, host="b", pid=20)
    a, b = queue.list_workers(db)
    assert (a.host, a.pid, a.slots, a.stopped_at) == ("a", 10, [{"name": "cpu0", "run": 3}],
                                                      None)
    assert b.host == "b" and b.stopped_at is not None
    queue.upsert_worker(db, host="b", pid=21, proc_start=None, slots=[])  # restarted
    assert [(w.pid, w.stopped_at) for w in queue.list_workers(db)] == [(10, None), (21, None)]


def test_a_claim_locks_the_row_it_takes(db):
    """PostgreSQL: concurrent claimers skip a row another one holds (FOR UPDATE SKIP
    LOCKED) instead of waiting for it or taking it too; SQLite's BEGIN IMMEDIATE already
    serialises claims, and it has no FOR UPDATE."""
    queue.enqueue_run(db, config={}, epochs_total=1)
    sent: list[str] = []

    def record(conn, cursor, statement, *args):
        sent.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        queue.claim_next(db, host="h", slot="cpu0")
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    claims = [s for s in sent if s.lstrip().upper().startswith("SELECT")]
    if db.is_sqlite:
        assert not any("FOR UPDATE" in s for s in claims)
    else:
        assert "FOR UPDATE SKIP LOCKED" in claims[0]


def _claim_all(url: str, host: str, barrier, out) -> None:
    try:
        with Database(url) as db:
            barrier.wait(timeout=60)
            got = []
            while (rec := queue.claim_next(db, host=host, slot="cpu0")) is not None:
                got.append(rec.id)
            out.put(("ok", host, got))
    except BaseException as e:  # noqa: BLE001 — reported to the test
        out.put(("error", host, f"{type(e).__name__}: {e}"))


@pytest.mark.slow  # a real subprocess
def test_supervisors_on_four_hosts_never_claim_the_same_run(db_url):
    with Database(db_url) as db:
        ids = [queue.enqueue_run(db, config={"i": i}, epochs_total=1) for i in range(80)]
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_claim_all, args=(db_url, f"host{k}", barrier, out))
             for k in range(4)]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    assert all(kind == "ok" for kind, _, _ in results), results
    claimed = [rid for _, _, got in results for rid in got]
    assert sorted(claimed) == ids  # each run once, none left
    with Database(db_url) as db:
        by_host = {host: set(got) for _, host, got in results}
        for run in repo.list_runs(db):
            assert run.status == "starting" and run.id in by_host[run.host]
