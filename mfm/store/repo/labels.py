"""What people add to a run: tags (``mfm tag``, filters on the runs screen) and a note."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import delete, func, select, update

from mfm.store.convert import fits
from mfm.store.db import Database
from mfm.store.errors import NoSuchRun
from mfm.store.models import Run, RunTag
from mfm.store.repo.common import require_run
from mfm.text import check_name, visible

__all__ = ["TAG_MAX", "NOTE_MAX", "check_tag", "set_tags", "set_note", "all_tags"]

TAG_MAX = 64
NOTE_MAX = 10_000


def check_tag(tag: str) -> str | None:
    """Why ``tag`` cannot be a tag (None if it can): 1..64 characters, no spaces or commas,
    no control characters."""
    if not tag or len(tag) > TAG_MAX:
        return f"tag: 1 to {TAG_MAX} characters (got {len(tag)})"
    if any(ch.isspace() or ch == "," for ch in tag):
        return f"tag: no spaces or commas (got {visible(repr(tag), 80)})"
    if (why := check_name("tag", tag)) is not None:
        return why
    return None


def set_tags(db: Database, run_id: int, *, add: Iterable[str] = (),
             remove: Iterable[str] = ()) -> tuple[str, ...]:
    """Add and remove tags of a run; returns its tags afterwards. ValueError for a bad tag,
    ``NoSuchRun`` (a StoreError) for an unknown run; nothing is written then."""
    add, remove = list(dict.fromkeys(add)), set(remove)
    for t in add:
        if (why := check_tag(t)) is not None:
            raise ValueError(why)
    if not fits(run_id):
        raise NoSuchRun(run_id)
    with db.session_scope() as session:
        require_run(session, run_id)
        have = set(session.scalars(select(RunTag.tag).where(RunTag.run_id == run_id)))
        for t in add:
            if t not in have:
                session.add(RunTag(run_id=run_id, tag=t))
                have.add(t)
        if remove & have:
            session.execute(delete(RunTag).where(RunTag.run_id == run_id,
                                                 RunTag.tag.in_(remove & have)))
            have -= remove
        return tuple(sorted(have))


def set_note(db: Database, run_id: int, note: str | None) -> None:
    """A run's free-text note (None or "" clears it); at most 10,000 characters."""
    if note is not None and len(note) > NOTE_MAX:
        raise ValueError(f"note: at most {NOTE_MAX} characters (got {len(note)})")
    if not fits(run_id):
        raise NoSuchRun(run_id)
    with db.session_scope() as session:
        require_run(session, run_id)
        session.execute(update(Run).where(Run.id == run_id).values(note=note or None))


def all_tags(db: Database) -> dict[str, int]:
    """Every tag in the records and how many runs carry it."""
    with db.session_scope(read_only=True) as session:
        rows = session.execute(select(RunTag.tag, func.count()).group_by(RunTag.tag)
                               .order_by(RunTag.tag))
        return {t: n for t, n in rows}
