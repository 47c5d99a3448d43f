"""Fixtures of the TUI tests: a real SQLite file with fixed runs, a Services with a fixed
clock (UTC) and no GPU probe, an app that records its notifications, and a helper that waits
on a condition with a deadline (never a fixed sleep before an assertion).

Tests use Textual's public API only: notifications are read from ``app.notices`` (recorded by
the test app's ``notify``), what is drawn from the widgets' own ``render_lines``."""

from __future__ import annotations

import asyncio
import inspect
import math
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from textual.app import App
from textual.notifications import Notification, SeverityLevel
from tui.pilot_wait import wait_for

from mfm_tui.services import Services


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: Any) -> bool | None:
    """Run ``async def`` tests (Textual's Pilot) on a fresh event loop; no plugin needed."""
    if inspect.iscoroutinefunction(pyfuncitem.obj):
        names = inspect.signature(pyfuncitem.obj).parameters
        asyncio.run(pyfuncitem.obj(**{n: pyfuncitem.funcargs[n] for n in names}))
        return True
    return None


T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC: every timestamp of the fixed data
NOW = T0 + 3600.0
TRAIN = [300, 180, 108, 65, 39, 23, 14, 8, 5, 3]  # digits-LT-like counts, head to tail
TINY_CONFIG = {"model": {"name": "resnet_tiny"}, "train": {"epochs": 1}, "device": "cpu"}


def fixed_services(db_path: Path, runs_root: Path, **kw: Any) -> Services:
    return Services(str(db_path), runs_root=runs_root, clock=lambda: NOW,
                    localtime=time.gmtime, gpu_probe=lambda: [], **kw)


def _config(method: str, imbalance: float = 10.0) -> dict[str, Any]:
    from mfm.config import config_from_dict, config_to_dict

    return config_to_dict(config_from_dict({
        "data": {"imbalance_factor": imbalance}, "method": {"name": method},
        "model": {"name": "resnet_tiny"}, "train": {"epochs": 5}, "device": "cpu"}))


def populate(db_path: Path, runs_root: Path) -> dict[str, int]:
    """Five runs in fixed states with fixed times and metrics:
    1 ce completed, 2 mfm running (epoch 3/5, modulation stats), 3 ce failed, 4 queued,
    5 balanced_softmax completed. A dataset spec and a config (used by run 5)."""
    from mfm.store import Database, queue, repo

    ids: dict[str, int] = {}
    with Database(str(db_path)) as db:
        spec_id = repo.save_dataset_spec(db, "digits-if10", {"data": {"imbalance_factor": 10.0}})
        cfg = repo.save_config(db, "tiny-ce", {"method": {"name": "ce"}, **TINY_CONFIG})
        plan = [("ce-base", "ce", "completed", 5), ("mfm-live", "mfm", "running", 3),
                ("ce-broken", "ce", "failed", 1), ("waiting", "ce", "queued", 0),
                ("bs", "balanced_softmax", "completed", 5)]
        for i, (name, method, status, epochs) in enumerate(plan):
            rid = queue.enqueue_run(db, config=_config(method), epochs_total=5, name=name,
                                    code_version="0.1.0",
                                    dataset_spec_id=spec_id if i == 4 else None,
                                    config_id=cfg.id if i == 4 else None)
            ids[name] = rid
            log = runs_root / str(rid) / "run.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text("".join(f"epoch {e + 1}: acc {0.5 + 0.08 * e:.3f}\n"
                                   for e in range(epochs)))
            fields: dict[str, Any] = {
                "queued_at": T0 + 10 * i, "checkpoint_dir": str(runs_root / str(rid)),
                "log_path": str(log)}
            if status != "queued":
                fields.update(status=status, started_at=T0 + 10 * i + 5, slot="cpu0",
                              device="cpu", host="testhost", heartbeat_at=NOW - 2,
                              class_counts={"classes": [str(c) for c in range(10)],
                                            "train": TRAIN, "meta": [10] * 10,
                                            "test": [50] * 10})
            step = 0
            for e in range(epochs):
                points = []
                for _ in range(10):
                    step += 1
                    points.append(("loss", step, e, 2.0 * math.exp(-step / 20) + 0.1))
                    if method == "mfm":
                        points.append(("meta_loss", step, e, 1.5 * math.exp(-step / 25) + 0.2))
                        for site in ("penultimate",):
                            points.append((f"mod/{site}/gamma_mean", step, e, 1 + 0.01 * step))
                            points.append((f"mod/{site}/gamma_std", step, e, 0.1))
                repo.log_step_metrics(db, rid, points)
                bonus = 0.05 if method != "ce" else 0.0
                class_acc = [min(1.0, 0.95 - 0.07 * c + bonus * c / 3 + 0.03 * e)
                             for c in range(10)]
                acc = sum(class_acc) / 10
                repo.log_epoch(db, rid, e, {
                    "acc": acc, "many": sum(class_acc[:2]) / 2,
                    "medium": sum(class_acc[2:6]) / 4, "few": sum(class_acc[6:]) / 4,
                    "train_loss": 1.0 / (e + 1), "test_loss": 1.2 / (e + 1), "lr": 0.1},
                    class_acc)
            if status in ("completed", "failed"):
                fields["finished_at"] = T0 + 10 * i + 65
            if status == "completed":
                final = {"acc": acc, "many": sum(class_acc[:2]) / 2,
                         "medium": sum(class_acc[2:6]) / 4, "few": sum(class_acc[6:]) / 4,
                         "epoch": epochs - 1}
                fields["summary"] = {"final": final, "best": final}
            if status == "failed":
                fields["error"] = ("Traceback (most recent call last):\n  File \"fit.py\", "
                                   "line 1\nRuntimeError: loss is NaN at step 7")
            repo.update_run(db, rid, **fields)
    return ids


@pytest.fixture
def tui_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.delenv("MFM_DB", raising=False)
    monkeypatch.setenv("MFM_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("MFM_STATE_DIR", str(tmp_path / "state"))  # filter/sort remembered here
    return {"db": tmp_path / "experiments.db", "runs": tmp_path / "runs", "tmp": tmp_path}


@pytest.fixture
def fixed_db(tui_env: dict[str, Any]) -> dict[str, Any]:
    ids = populate(tui_env["db"], tui_env["runs"])
    return {**tui_env, "ids": ids}


@pytest.fixture
def make_services(tui_env: dict[str, Any]) -> Any:
    """Services on the test's database and runs folder, fixed clock (NOW), UTC, no GPU."""

    def make(**kw: Any) -> Services:
        kw.setdefault("start_supervisor", False)
        return fixed_services(tui_env["db"], tui_env["runs"], **kw)

    return make


class _RecordNotifications(App[None]):
    """Below ``MfmApp`` in the test app's MRO: records each notification exactly as the
    workbench hands it to Textual (after its own ``notify`` made it literal)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.notices: list[Notification] = []

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = True) -> None:
        self.notices.append(Notification(
            message, title, severity,
            self.NOTIFICATION_TIMEOUT if timeout is None else timeout, markup))
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)


def recording_app_class() -> type[Any]:
    """``MfmApp`` whose notifications are kept in ``app.notices`` (for assertions)."""
    from mfm_tui import app as app_module

    class RecordingApp(app_module.MfmApp, _RecordNotifications):
        # a relative CSS_PATH is read next to the class's file: keep the app's stylesheet
        CSS_PATH = str(Path(app_module.__file__).with_name("app.tcss"))

    return RecordingApp


@pytest.fixture
def make_app(make_services: Any) -> Any:
    """A workbench app on the test's records; ``app.notices`` lists its notifications."""
    cls = recording_app_class()

    def make(**kw: Any) -> Any:
        return cls(make_services(**kw))

    return make


@pytest.fixture
def until() -> Any:
    """``await until(pilot, predicate, timeout, what)``: wait on a condition with a deadline
    (``tui.pilot_wait.wait_for``)."""
    return wait_for


def kill_started(db_path: Path, runs_root: Path, pids: list[int]) -> None:
    """Kill supervisors this test started (and the lock holder) and any run process group."""
    from mfm.runner.launch import serving
    from mfm.store import Database, queue

    holder = serving(str(db_path), runs_root)
    for pid in [*pids, *([holder["pid"]] if holder and holder.get("pid") else [])]:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    if db_path.exists():
        with Database(str(db_path)) as db:
            for rec in queue.active_runs(db):
                if rec.pid:
                    try:
                        os.killpg(rec.pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass


@pytest.fixture
def kill_supervisors(tui_env: dict[str, Any]) -> Any:
    """Append the Services a test queues through; at teardown every supervisor they started
    (and the lock holder, and any run process group) is killed."""
    services: list[Services] = []
    yield services
    pids = [pid for s in services for pid in s.started_supervisors]
    kill_started(tui_env["db"], tui_env["runs"], pids)
