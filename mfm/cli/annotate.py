"""``mfm tag`` and ``mfm note``: a run's tags and its free-text note."""

from __future__ import annotations

import sys

import click

from mfm.cli.context import App, pass_app
from mfm.cli.errors import UserError, cli_message
from mfm.store import StoreError, repo
from mfm.text import visible

__all__ = ["tag", "note"]


@click.command()
@click.argument("run_ids", metavar="ID...", type=int, nargs=-1, required=True)
@click.option("--add", "-a", "adds", multiple=True, metavar="TAG",
              help="Add this tag (repeatable).")
@click.option("--remove", "-r", "removes", multiple=True, metavar="TAG",
              help="Remove this tag (repeatable).")
@pass_app
def tag(app: App, run_ids: tuple[int, ...], adds: tuple[str, ...],
        removes: tuple[str, ...]) -> None:
    """Tag runs (filter on them: mfm runs --tag TAG, the TUI's filter). Tags are 1-64
    characters without spaces or commas. Without --add/--remove, print each run's tags.

    \b
    Examples:
      mfm tag 3 4 5 --add baseline --add if100
      mfm tag 4 --remove baseline
      mfm tag 3
    """
    for t in adds:
        if (why := repo.check_tag(t)) is not None:
            raise UserError(f"--add: {why.partition(': ')[2]}")
    db = app.open_db()
    for run_id in run_ids:  # every id first: an unknown one changes nothing
        if repo.get_run(db, run_id) is None:
            raise UserError(f"ID: no run {run_id} in {app.shown} (see mfm runs)")
    for run_id in run_ids:
        try:
            tags = repo.set_tags(db, run_id, add=adds, remove=removes)
        except (ValueError, StoreError) as e:
            raise UserError(cli_message(e)) from None
        click.echo(f"run {run_id}: {' '.join(visible(t) for t in tags) or '(no tags)'}")


@click.command()
@click.argument("run_id", metavar="ID", type=int)
@click.argument("text", metavar="TEXT", required=False)
@click.option("--clear", is_flag=True, help="Remove the note.")
@pass_app
def note(app: App, run_id: int, text: str | None, clear: bool) -> None:
    """Set a run's note (TEXT, or - to read it from stdin); without TEXT, print it.

    \b
    Examples:
      mfm note 7 "lr too high? rerun with 0.05"
      git log -1 --format=%B | mfm note 7 -
      mfm note 7
    """
    db = app.open_db()
    rec = repo.get_run(db, run_id)
    if rec is None:
        raise UserError(f"ID: no run {run_id} in {app.shown} (see mfm runs)")
    if text is None and not clear:
        click.echo(rec.note or "(no note)")
        return
    if clear:
        text = None
    elif text == "-":
        text = sys.stdin.read().rstrip("\n")
    try:
        repo.set_note(db, run_id, text)
    except (ValueError, StoreError) as e:
        raise UserError(cli_message(e)) from None
    click.echo(f"run {run_id}: note {'cleared' if not text else 'saved'}")
