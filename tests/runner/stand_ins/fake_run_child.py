"""A torch-free stand-in for ``python -m mfm.runner.child`` (``mfm worker --child-module``):
it takes the run through the real store like the run process does (running with its host,
pid and start time, a step point, completed), and appends ``RUN_ID HOST PID`` to the file
``$MFM_FAKE_LEDGER``, so a test can count how often each run was executed. Sleeps
``$MFM_FAKE_SECONDS`` (default 0.2) while "training"; SIGTERM ends it cancelled."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from mfm.runner.execute import start_running
from mfm.runner.procs import host_name
from mfm.store import Database, queue, repo


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint-dir", required=True)
    ap.add_argument("run_id", type=int)
    args = ap.parse_args()
    if "--db" in sys.argv or "MFM_DB" not in os.environ:
        return 3  # the database must come through the environment
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    db = Database(os.environ["MFM_DB"])
    if not start_running(db, args.run_id, device="cpu"):
        return 0
    with open(os.environ["MFM_FAKE_LEDGER"], "a") as f:
        f.write(f"{args.run_id} {host_name()} {os.getpid()}\n")
    stop.wait(float(os.environ.get("MFM_FAKE_SECONDS", "0.2")))
    repo.log_step_metrics(db, args.run_id, [("loss", 0, 0, 1.0)])
    queue.transition(db, args.run_id, "cancelled" if stop.is_set() else "completed",
                     allowed_from=("running",))
    return 0


if __name__ == "__main__":
    sys.exit(main())
