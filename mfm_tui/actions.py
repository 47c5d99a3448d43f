"""The actions screens share: cancel a run (with a confirmation while it runs), resume it,
delete it, edit its tags and its note, and ask a yes/no question before doing something.

Screens import this module; it imports no screen but the two dialogs (the confirmation and
the one-line prompt), so screens stay independent of each other. Every blocking call goes
through the screen's ``call_service`` (a thread worker; its result comes back on the UI
thread), and every question is a modal pushed on the screen's app.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from mfm_tui.format import is_active
from mfm_tui.literal import NAME_TITLE, cut, shown
from mfm_tui.screens.confirm import ConfirmScreen
from mfm_tui.screens.prompt import PromptScreen

if TYPE_CHECKING:
    from mfm.store.records import RunRecord
    from mfm_tui.screens.base import BaseScreen

__all__ = ["MAX_COMPARE", "ask", "cancel_run", "delete_run", "edit_note", "edit_tags",
           "resume_run", "run_label"]

MAX_COMPARE = 6
"""The most runs compared side by side (the runs screen's marks, an arm's runs)."""


def run_label(r: RunRecord) -> str:
    """``run 7 (name)``'s tail: `` (name)`` when the run has a name, cut for a title."""
    return f" ({cut(r.name, NAME_TITLE)})" if r.name else ""


def ask(screen: BaseScreen[Any, Any], question: str, then: Callable[[], object], *,
        yes: str = "Yes", no: str = "No") -> None:
    """Ask ``question`` (a modal yes/no over the screen); on yes, call ``then``."""

    def answered(answer: bool | None) -> None:
        if answer:
            then()

    screen.app.push_screen(ConfirmScreen(question, yes=yes, no=no), answered)


def cancel_run(screen: BaseScreen[Any, Any], r: RunRecord,
               done: Callable[[str], object]) -> None:
    """Cancel a run: a queued one at once, a starting or running one after a yes (its
    process is stopped and the epochs in flight are lost). ``done`` gets the outcome's
    message."""

    def go() -> None:
        screen.call_service(partial(screen.services.cancel_run, r.id), done)

    if not is_active(r):
        go()
        return
    ask(screen, f"Cancel run {r.id}{run_label(r)}, {r.status}? It stops after its current "
                "step; r resumes it later from its last checkpoint.", go,
        yes="Cancel run", no="Keep running")


def resume_run(screen: BaseScreen[Any, Any], run_id: int,
               done: Callable[[str], object]) -> None:
    """Queue a run that ended without completing again, from its last checkpoint."""
    screen.call_service(partial(screen.services.resume_run, run_id), done)


def delete_run(screen: BaseScreen[Any, Any], r: RunRecord,
               done: Callable[[str], object]) -> None:
    """Delete a run and its metrics after a yes; refused (a warning) while it is active."""
    if is_active(r):
        screen.notify(f"run {r.id} is {r.status}: cancel it before deleting it",
                      severity="warning")
        return
    ask(screen, f"Delete run {r.id}{run_label(r)}, {r.status}, with all its metrics? "
                "Checkpoints on disk are left alone.",
        lambda: screen.call_service(partial(screen.services.delete_run, r.id), done),
        yes="Delete")


def edit_tags(screen: BaseScreen[Any, Any], r: RunRecord,
              done: Callable[[tuple[int, tuple[str, ...]]], object]) -> None:
    """Ask for the run's tags (space-separated) and set them: added and removed as typed.
    ``done`` gets (run id, its tags now)."""
    before = tuple(r.tags)

    def answered(text: str | None) -> None:
        if text is None:
            return
        after = list(dict.fromkeys(text.replace(",", " ").split()))
        add = [t for t in after if t not in before]
        remove = [t for t in before if t not in after]

        def call() -> tuple[int, tuple[str, ...]]:
            return r.id, screen.services.set_tags(r.id, add=add, remove=remove)

        screen.call_service(call, done)

    screen.app.push_screen(PromptScreen(
        f"Tags of run {r.id}{run_label(r)}", " ".join(shown(t) for t in before),
        "words separated by spaces; the runs filter finds them with tag:WORD"), answered)


def edit_note(screen: BaseScreen[Any, Any], r: RunRecord,
              done: Callable[[tuple[int, str]], object]) -> None:
    """Ask for the run's free-text note and save it ("" clears it). ``done`` gets (run id,
    the note)."""

    def answered(text: str | None) -> None:
        if text is None:
            return

        def call() -> tuple[int, str]:
            screen.services.set_note(r.id, text.strip())
            return r.id, text.strip()

        screen.call_service(call, done)

    screen.app.push_screen(PromptScreen(
        f"Note on run {r.id}{run_label(r)}", shown(r.note or ""),
        "one line, shown on the run's screen and by mfm show", max_length=10_000), answered)
