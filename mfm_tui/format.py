"""Turning run records into the short texts the tables show (pure functions).

Which statuses count as active, live or resumable is the store's rule
(``mfm.store.records``); the predicates below import it where they run, never at the top:
importing ``mfm.store`` loads SQLAlchemy, which must wait until after the first frame, and
they are only ever asked about records, which exist once the store is open.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from mfm.text import pct
from mfm_tui.literal import NAME_CELL, cut, shown

if TYPE_CHECKING:
    from mfm.store.records import RunLink, RunRecord

__all__ = ["pct", "duration", "when", "progress", "data_text", "groups_text", "epoch_text",
           "RUN_COLUMNS", "run_cells", "sort_key", "SORTS", "COLUMN_SORTS",
           "is_active", "is_live",
           "is_resumable", "flatten", "lineage_text"]


def is_active(r: RunRecord) -> bool:
    """Starting or running: a process holds the run (cancel it before deleting it)."""
    from mfm.store.records import ACTIVE

    return r.status in ACTIVE


def is_live(r: RunRecord) -> bool:
    """Not finished (waiting or active): the run still changes, and can be cancelled."""
    from mfm.store.records import LIVE

    return r.status in LIVE


def is_resumable(r: RunRecord) -> bool:
    """Ended without completing: it can be queued again to resume."""
    from mfm.store.records import RESUMABLE

    return r.status in RESUMABLE


def flatten(config: dict[str, Any]) -> dict[str, Any]:
    """A resolved config's sections as dotted keys: ``{"train": {"epochs": 2}}`` ->
    ``{"train.epochs": 2}`` (top-level values stay as they are)."""
    out: dict[str, Any] = {}
    for k, v in config.items():
        if isinstance(v, dict):
            out.update({f"{k}.{kk}": vv for kk, vv in v.items()})
        else:
            out[k] = v
    return out


def duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "—"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def when(ts: float | None, localtime: Callable[[float], time.struct_time] = time.localtime,
         now: float | None = None) -> str:
    """A start time: HH:MM today, else MM-DD HH:MM."""
    if ts is None:
        return "—"
    t = localtime(ts)
    if now is not None and localtime(now)[:3] == t[:3]:
        return time.strftime("%H:%M", t)
    return time.strftime("%m-%d %H:%M", t)


def progress(done: int, total: int, width: int = 8) -> str:
    """A text bar that reads without colour: ▰▰▰▱▱▱."""
    if total <= 0:
        return ""
    filled = max(0, min(width, round(width * done / total)))
    return "▰" * filled + "▱" * (width - filled)


def epochs_done(r: RunRecord) -> int:
    return 0 if r.epoch is None else r.epoch + 1


def epoch_text(r: RunRecord) -> str:
    return f"{epochs_done(r)}/{r.epochs_total}"


def data_text(config: dict[str, Any]) -> str:
    """``name/IF<factor>[/profile]``, as literal text (the config comes from the records)."""
    data = config.get("data", {}) if isinstance(config, dict) else {}
    factor = data.get("imbalance_factor", 0)
    factor_text = f"{factor:g}" if isinstance(factor, (int, float)) else cut(factor, 12)
    text = f"{cut(data.get('name', '?'), 24)}/IF{factor_text}"
    if data.get("profile", "exp") != "exp":
        text += f"/{cut(data.get('profile'), 12)}"
    return text


def _final(r: RunRecord) -> dict[str, Any]:
    summary = r.summary or {}
    return summary.get("final") or {}


def last_metric(r: RunRecord, key: str) -> Any:
    if key in r.latest:
        return r.latest[key]
    return _final(r).get(key)


def groups_text(r: RunRecord) -> str:
    vals = [last_metric(r, k) for k in ("many", "medium", "few")]
    if all(v is None for v in vals):
        return "—"
    return "/".join("—" if v is None or (isinstance(v, float) and math.isnan(v))
                    else f"{100 * float(v):.0f}" for v in vals)


def status_text(r: RunRecord, positions: dict[int, int] | None, now: float) -> str:
    if r.status == "queued":
        return f"queued #{positions[r.id]}" if positions and r.id in positions else "queued"
    if is_active(r):
        text = f"{r.status} {progress(epochs_done(r), r.epochs_total)}"
        if r.cancel_requested_at is not None:
            text += " ✗"
        return text
    return r.status


def where_text(r: RunRecord, now: float) -> str:
    if r.job_id:  # a Slurm job's: its slot, the job and Slurm's last word on it
        from mfm.store.records import job_note

        return f"{cut(r.slot or '', 16)} {cut(job_note(r), 64)}".strip()
    if r.status == "queued" and getattr(r, "want_slot", None):
        return f"wants {cut(r.want_slot, 16)}"
    where = cut(r.slot or r.device or "—", 16)
    if r.device and r.slot and r.device not in r.slot:
        where = f"{cut(r.slot, 16)}:{cut(r.device, 16)}"
    if is_active(r) and r.heartbeat_at is not None:
        where += f" ♥{max(0, now - r.heartbeat_at):.0f}s"
    return where


def run_duration(r: RunRecord, now: float) -> float | None:
    if r.started_at is None:
        return None
    end = r.finished_at if r.finished_at is not None else (
        now if is_active(r) else None)
    return None if end is None else end - r.started_at


def best_acc(r: RunRecord) -> Any:
    best = (r.summary or {}).get("best") or {}
    return best.get("acc")


RUN_COLUMNS = (("mark", " "), ("id", "id"), ("name", "name"), ("data", "data"),
               ("method", "method"), ("status", "status"), ("epoch", "ep"), ("acc", "acc%"),
               ("best", "best%"), ("groups", "many/med/few"), ("where", "slot"),
               ("started", "started"), ("duration", "time"))


def run_cells(r: RunRecord, *, marked: bool, positions: dict[int, int], now: float,
              localtime: Callable[[float], time.struct_time] = time.localtime) -> tuple[str, ...]:
    """One table row, in RUN_COLUMNS order: plain strings, user-supplied ones made visible
    and long names cut (the screen shows them as literal Text, never as markup)."""
    return ("●" if marked else " ", str(r.id), cut(r.name or "", NAME_CELL),
            data_text(r.config), shown(r.method),
            status_text(r, positions, now), epoch_text(r), pct(last_metric(r, "acc")),
            pct(best_acc(r)), groups_text(r), where_text(r, now),
            when(r.started_at, localtime, now), duration(run_duration(r, now)))


def _num(v: Any) -> float:
    return -1.0 if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


SORTS: dict[str, Callable[[RunRecord], Any]] = {
    "newest": lambda r: (-r.created_at, -r.id),
    "id": lambda r: r.id,
    "status": lambda r: (r.status, -r.id),
    "acc": lambda r: (-_num(last_metric(r, "acc")), -r.id),
    "best": lambda r: (-_num(best_acc(r)), -r.id),
    "few": lambda r: (-_num(last_metric(r, "few")), -r.id),
    "method": lambda r: (r.method, -r.id),
    "name": lambda r: ((r.name or "").lower(), -r.id),
    "data": lambda r: (data_text(r.config).lower(), -r.id),
    "epoch": lambda r: (-epochs_done(r), -r.id),
    "slot": lambda r: ((r.slot or r.device or ""), -r.id),
    "started": lambda r: (-(r.started_at or 0.0), -r.id),
    "time": lambda r: (-(r.finished_at or r.started_at or 0.0) + (r.started_at or 0.0), -r.id),
}
"""Every sort of the runs table, in the order ``s`` cycles through them."""

COLUMN_SORTS = {"id": "id", "name": "name", "data": "data", "method": "method",
                "status": "status", "epoch": "epoch", "acc": "acc", "best": "best",
                "groups": "few", "where": "slot", "started": "started", "duration": "time"}
"""The sort a click on a column's header (or ``s``) picks."""


def sort_key(name: str) -> Callable[[RunRecord], Any]:
    return SORTS[name]


# -- the runs screen: status words and their colours, progress, a filter on whole values -------

__all__ += ["STATUS_STYLES", "status_word", "progress_text", "WHOLE_FILTER_FIELDS",
            "run_matches", "filter_problems"]

STATUS_STYLES = {"running": "bold green", "starting": "green", "queued": "yellow",
                 "created": "yellow", "completed": "blue", "failed": "bold red",
                 "lost": "red underline", "cancelled": "dim"}
"""The colour of each status in the runs table (Rich styles; the word itself still reads
without colour): active green, waiting yellow, completed blue, broken red (lost underlined:
many palettes draw magenta as red), cancelled dim."""


def status_word(r: RunRecord, positions: dict[int, int] | None) -> str:
    """The status alone (the progress bar has its own column): ``queued #2``, ``running``,
    ``running ✗`` while a cancel is requested."""
    if r.status == "queued":
        return f"queued #{positions[r.id]}" if positions and r.id in positions else "queued"
    if is_active(r) and r.cancel_requested_at is not None:
        return f"{r.status} ✗"
    return r.status


def progress_text(r: RunRecord, width: int = 8) -> str:
    """Epochs done as a bar and a count, whatever the status: ``▰▰▰▱▱▱▱▱ 3/5`` (so the
    column is as wide for a queued run as for a running one)."""
    return f"{progress(epochs_done(r), max(1, r.epochs_total), width)} {epoch_text(r)}"


WHOLE_FILTER_FIELDS = ("id", "status", "method", "data", "tag")
"""Filter keys whose words match a whole value (``method:ce`` is not balanced_softmax);
``name:`` and ``sweep:`` match part of the text, as free words do."""


def _filter_values(r: RunRecord) -> dict[str, set[str]]:
    data = data_text(r.config).lower()
    return {"id": {str(r.id)}, "status": {r.status.lower()}, "method": {r.method.lower()},
            "data": {data, *data.split("/")},
            "tag": {t.lower() for t in (getattr(r, "tags", ()) or ())}}


def run_matches(r: RunRecord, text: str, sweeps: Sequence[str] = ()) -> bool:
    """Whether a run passes the runs filter ``text`` (case-insensitive; every word must
    hold). ``status:``, ``method:``, ``data:``, ``tag:`` and ``id:`` match a whole value
    (``data:`` the whole ``name/IF<factor>`` or one of its parts; ``a,b`` any of them);
    ``name:`` and ``sweep:`` match part of the run's name or of a sweep's; any other word
    occurs somewhere in the id, name, status, method, data, tags or sweeps."""
    whole = _filter_values(r)
    part = {"name": (r.name or "").lower(), "sweep": " ".join(sweeps).lower()}
    hay = " ".join([*part.values(), *(" ".join(sorted(v)) for v in whole.values())])
    for word in text.lower().split():
        key, sep, val = word.partition(":")
        if sep and key in whole:
            wanted = {v for v in val.split(",") if v}
            if wanted and not wanted & whole[key]:
                return False
        elif sep and key in part:
            if val not in part[key]:
                return False
        elif word not in hay:
            return False
    return True


def filter_problems(text: str, runs: Iterable[RunRecord], limit: int = 12) -> list[str]:
    """What a filter asks for that cannot be there, one line each: ``zzz is no method
    (methods: ce, mfm, …)``. Methods and statuses are checked against the known names and
    those in ``runs``, data and tags against those in ``runs``."""
    from mfm.config import METHOD_NAMES
    from mfm.store.records import STATUSES

    runs = list(runs)
    known = {"status": set(STATUSES) | {r.status for r in runs},
             "method": set(METHOD_NAMES) | {r.method for r in runs},
             "data": {v for r in runs for v in _filter_values(r)["data"]},
             "tag": {t for r in runs for t in _filter_values(r)["tag"]}}
    what = {"status": ("status", "statuses"), "method": ("method", "methods"),
            "data": ("data set of any run", "data"), "tag": ("tag of any run", "tags")}
    out: list[str] = []
    for word in text.split():
        key, sep, val = word.partition(":")
        key = key.lower()
        if not sep or key not in known:
            continue
        values = {v.lower() for v in known[key]}
        for v in (v for v in val.split(",") if v):
            if v.lower() in values:
                continue
            one, many = what[key]
            names = sorted(known[key], key=str.lower)
            listed = ", ".join(cut(n, 24) for n in names[:limit])
            listed += ", …" if len(names) > limit else ""
            out.append(f"{cut(v, 24)} is no {one} ({many}: {listed or 'none yet'})")
    return out


def lineage_text(r: RunRecord, parent: RunLink | None, children: Sequence[RunLink]) -> str:
    """``after run 5 stage1 (completed, its last.pt) · followed by 7 (queued), 8 (running)``:
    the run ``r`` starts from (train.init_from) and the runs that start from it; '' when
    neither."""
    bits = []
    if r.parent_id is not None:
        train = r.config.get("train")
        which = train.get("init_checkpoint", "last") if isinstance(train, dict) else "last"
        if parent is None:
            bits.append(f"after run {r.parent_id} (no longer in the records, its "
                        f"{shown(str(which))}.pt)")
        else:
            name = f" {cut(parent.name, NAME_CELL)}" if parent.name else ""
            bits.append(f"after run {parent.id}{name} ({parent.status}, its "
                        f"{shown(str(which))}.pt)")
    if children:
        more = f" and {len(children) - 12} more" if len(children) > 12 else ""
        bits.append("followed by " + ", ".join(f"{c.id} ({c.status})" for c in children[:12])
                    + more)
    return " · ".join(bits)
