"""The actions screens share: cancel a run (with a confirmation while it runs), resume it,
delete it, edit its tags and its note, and ask a yes/no question before doing something.

The tag and note editors add to what is there (the cursor at the end, nothing selected); an
edit that would remove a tag or drop part of a note says what would be lost and asks first,
keeping it unless the answer is yes.

Screens import this module; it imports no screen but the two dialogs (the confirmation and
the one-line prompt), so screens stay independent of each other. Every blocking call goes
through the screen's ``call_service`` (a thread worker; its result comes back on the UI
thread), and every question is a modal pushed on the screen's app.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
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
           "lost_text", "resume_run", "run_label"]

MAX_COMPARE = 6
"""The most runs compared side by side (the runs screen's marks, an arm's runs)."""


def run_label(r: RunRecord) -> str:
    """``run 7 (name)``'s tail: `` (name)`` when the run has a name, cut for a title."""
    return f" ({cut(r.name, NAME_TITLE)})" if r.name else ""


def ask(screen: BaseScreen[Any, Any], question: str, then: Callable[[], object], *,
        yes: str = "Yes", no: str = "No",
        otherwise: Callable[[], object] | None = None) -> None:
    """Ask ``question`` (a modal yes/no over the screen, no by default); on yes, call
    ``then``, on no (or escape) ``otherwise`` if given."""

    def answered(answer: bool | None) -> None:
        if answer:
            then()
        elif otherwise is not None:
            otherwise()

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


def _names(tags: Sequence[str]) -> str:
    return ", ".join(cut(t, 30) for t in tags)


def edit_tags(screen: BaseScreen[Any, Any], r: RunRecord,
              done: Callable[[tuple[int, tuple[str, ...]]], object]) -> None:
    """Ask for the run's tags (space-separated, the cursor after the current ones) and set
    them: added and removed as typed, a removal only after a yes (no: those tags are kept,
    the new ones added all the same). ``done`` gets (run id, its tags now)."""
    before = tuple(r.tags)
    as_shown = {shown(t): t for t in before}  # a tag is edited as shown (escapes visible)

    def answered(text: str | None) -> None:
        if text is None:
            return
        after = [as_shown.get(w, w) for w in dict.fromkeys(text.replace(",", " ").split())]
        add = [t for t in after if t not in before]
        remove = [t for t in before if t not in after]

        def save(drop: list[str]) -> None:
            if not add and not drop:
                screen.notify(f"run {r.id}: tags kept", timeout=3)
                return

            def call() -> tuple[int, tuple[str, ...]]:
                return r.id, screen.services.set_tags(r.id, add=add, remove=drop)

            screen.call_service(call, done)

        if not remove:
            if add:
                save([])
            return
        one = len(remove) == 1
        question = (f"Remove tag{'' if one else 's'} {_names(remove)} from run {r.id}"
                    f"{run_label(r)}?")
        if add:
            question += f" ({_names(add)} {'is' if len(add) == 1 else 'are'} added either way.)"
        ask(screen, question, partial(save, remove), otherwise=partial(save, []),
            yes="Remove", no=f"Keep {'it' if one else 'them'}")

    screen.app.push_screen(PromptScreen(
        f"Tags of run {r.id}{run_label(r)}", " ".join(shown(t) for t in before),
        "words separated by spaces; the runs filter finds them with tag:WORD"), answered)


def lost_text(before: str, after: str) -> list[str]:
    """The pieces of ``before`` that an edit into ``after`` drops ([] when it only adds)."""
    matcher = difflib.SequenceMatcher(None, before, after, autojunk=False)
    return [before[i1:i2] for op, i1, i2, _, _ in matcher.get_opcodes()
            if op in ("delete", "replace")]


def _loss(before: str, after: str, width: int = 60) -> str:
    """One line on what the note loses: the characters and which (or what it was)."""
    pieces = lost_text(before, after)
    n = sum(len(p) for p in pieces)
    chars = f"{n} character{'' if n == 1 else 's'}"
    if not after:
        return f"clearing it loses all {chars}: “{cut(before, width)}”"
    if len(pieces) > 2 or 2 * n > len(before):  # mostly gone, or scattered: the old note
        # reads better than its fragments
        return f"the note loses {chars}; it was “{cut(before, width)}”"
    return f"the note loses {chars}: “{cut(' … '.join(pieces), width)}”"


def edit_note(screen: BaseScreen[Any, Any], r: RunRecord,
              done: Callable[[tuple[int, str]], object]) -> None:
    """Ask for the run's free-text note (the cursor after the current one) and save it;
    an edit that drops some of it (shortens, replaces or clears it) is saved only after a
    yes that names what goes. ``done`` gets (run id, the note)."""
    old = shown(r.note or "")  # as the prompt shows it

    def answered(text: str | None) -> None:
        if text is None or text.strip() == old.strip():
            return
        note = text.strip()

        def call() -> tuple[int, str]:
            screen.services.set_note(r.id, note)
            return r.id, note

        def save() -> None:
            screen.call_service(call, done)

        if not lost_text(old.strip(), note):
            save()
            return
        ask(screen, f"Note on run {r.id}{run_label(r)}: {_loss(old.strip(), note)}. Save it "
                    "anyway?", save, yes="Save", no="Keep the note")

    screen.app.push_screen(PromptScreen(
        f"Note on run {r.id}{run_label(r)}", old,
        "one line, shown on the run's screen and by mfm show", max_length=10_000), answered)
