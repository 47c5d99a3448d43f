"""mfm-tui: the Textual workbench. Composition, global bindings and ``main()``.

Only what the first frame needs is imported here; the records (SQLAlchemy) are opened in a
thread worker after the first frame, and the other screens are imported when first shown.
Imports go one way: the app imports screens (and opens them for each other, as
``mfm_tui.host.Host``), no screen imports the app.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterable
from functools import partial
from typing import TYPE_CHECKING, Any

from textual import events, work
from textual.app import App, ScreenStackError, SystemCommand
from textual.binding import Binding
from textual.dom import DOMNode
from textual.message import Message
from textual.screen import Screen

from mfm.text import MESSAGE_MAX, visible
from mfm_tui.screens.base import BaseScreen, one_line
from mfm_tui.screens.message import MIN_HEIGHT, MIN_WIDTH, MessageScreen, TooSmallScreen
from mfm_tui.services import ServiceError, Services, check_target

if TYPE_CHECKING:
    from textual.notifications import SeverityLevel

    from mfm.store.records import RunRecord
    from mfm_tui.host import Host
    from mfm_tui.services import StatusInfo

__all__ = ["MfmApp", "main"]

STATUS_INTERVAL = 2.0


def _runs_screen() -> Screen[Any]:
    from mfm_tui.screens.runs import RunsScreen

    return RunsScreen()


def _datasets_screen() -> Screen[Any]:
    from mfm_tui.screens.datasets import DatasetsScreen

    return DatasetsScreen()


def _configs_screen() -> Screen[Any]:
    from mfm_tui.screens.configs import ConfigsScreen

    return ConfigsScreen()


def _sweeps_screen() -> Screen[Any]:
    from mfm_tui.screens.sweeps import SweepsScreen

    return SweepsScreen()


class DbOpened(Message):
    def __init__(self, error: str | None):
        super().__init__()
        self.error = error


class StatusPolled(Message):
    def __init__(self, info: StatusInfo | None):
        super().__init__()
        self.info = info


class MfmApp(App[None]):
    """The workbench. ``services`` is its only way to the records and the runner."""

    CSS_PATH = "app.tcss"
    TITLE = "mfm-tui"
    MODES = {"runs": _runs_screen, "datasets": _datasets_screen, "configs": _configs_screen,
             "sweeps": _sweeps_screen}
    BINDINGS = [
        Binding("f1", "switch_mode('runs')", "Runs"),
        Binding("f2", "switch_mode('datasets')", "Datasets"),
        Binding("f3", "switch_mode('configs')", "Configs"),
        Binding("f4", "switch_mode('sweeps')", "Sweeps"),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit_app", "Quit"),
        Binding("ctrl+q", "quit_app", "Quit", priority=True),
    ]

    def __init__(self, services: Services, *, poll_status: bool = True):
        super().__init__()
        self.services = services
        self.db_ready = False
        self.db_error: str | None = None
        self.status_info: StatusInfo | None = None
        self.poll_status = poll_status
        self._too_small: TooSmallScreen | None = None

    # -- start --------------------------------------------------------------------------------

    async def on_mount(self) -> None:
        await self.switch_mode("runs")
        self._check_size(self.size.width, self.size.height)
        self.call_after_refresh(self._open_db)

    @work(thread=True, group="open")
    def _open_db(self) -> None:
        try:
            self.services.open()
            error = None
        except Exception as e:  # noqa: BLE001 — shown on a message screen
            error = visible(one_line(e), limit=MESSAGE_MAX)
        self.post_message(DbOpened(error))

    def on_db_opened(self, message: DbOpened) -> None:
        if message.error is not None:
            self.db_error = message.error
            self.push_screen(MessageScreen(
                "Cannot open the records", message.error,
                "Check --db / MFM_DB (a SQLite file or a SQLAlchemy URL). Press q to quit."))
            return
        self.db_ready = True
        for screen in self.screen_stack:
            if isinstance(screen, BaseScreen) and screen.is_current:
                screen.start_polling()
        if self.poll_status:
            self._poll_status()

    # -- status bar ---------------------------------------------------------------------------

    @work(thread=True, group="status")
    def _poll_status(self) -> None:
        info: StatusInfo | None
        try:
            info = self.services.status()
        except Exception:  # noqa: BLE001 — the status bar keeps its last value
            info = self.status_info
        self.post_message(StatusPolled(info))

    def on_status_polled(self, message: StatusPolled) -> None:
        from mfm_tui.widgets.status_bar import StatusBar

        self.status_info = message.info
        try:
            screen = self.screen
        except ScreenStackError:  # the app is closing: its screens are gone, no next poll
            return
        for bar in screen.query(StatusBar):
            bar.show(message.info)
        self.set_timer(STATUS_INTERVAL, self._poll_status)

    # -- size ---------------------------------------------------------------------------------

    def on_resize(self, event: events.Resize) -> None:
        self._check_size(event.size.width, event.size.height)

    def _check_size(self, width: int, height: int) -> None:
        if self.current_mode != "runs" and self.current_mode not in self.MODES:
            return  # before the first mode is up (resize events come before mount)
        if self._too_small is not None and self._too_small not in self.screen_stack:
            self._too_small = None
        small = width < MIN_WIDTH or height < MIN_HEIGHT
        if small and self._too_small is None:
            self._too_small = TooSmallScreen()
            self.push_screen(self._too_small)
        elif small and self._too_small is not None:
            self._too_small.show(width, height)
        elif not small and self._too_small is not None:
            screen, self._too_small = self._too_small, None
            if screen.is_current:
                self.pop_screen()

    # -- opening screens for other screens (mfm_tui.host.Host) --------------------------------

    def open_run(self, run_id: int) -> None:
        from mfm_tui.screens.run import RunScreen

        self.push_screen(RunScreen(run_id))

    def open_compare(self, run_ids: list[int]) -> None:
        from mfm_tui.screens.compare import CompareScreen

        self.push_screen(CompareScreen(run_ids))

    def open_new_run(self, queued: Callable[[tuple[int, ...] | None], object],
                     clone_of: RunRecord | None = None) -> None:
        from mfm_tui.screens.new_run import NewRunScreen

        # the form dismisses with the ids it queued (its Screen[None] type says nothing)
        self.push_screen(NewRunScreen(clone_of=clone_of), queued)  # type: ignore[arg-type]

    def open_arm_runs(self, sweep_id: int, sweep_name: str, arm: str) -> None:
        from mfm_tui.screens.arm_runs import ArmRunsScreen

        self.push_screen(ArmRunsScreen(sweep_id, sweep_name, arm))

    def open_new_sweep(self, queued: Callable[[int], object]) -> None:
        from mfm_tui.screens.new_sweep import NewSweepScreen

        self.push_screen(NewSweepScreen(on_queued=queued))

    # -- help and quit ------------------------------------------------------------------------

    def action_help(self) -> None:
        from mfm_tui.screens.help import HelpScreen, screen_keys

        screen = self.screen
        if type(screen).__name__ == "HelpScreen":
            return
        title = getattr(screen, "HELP_TITLE", type(screen).__name__.removesuffix("Screen"))
        self.push_screen(HelpScreen(title, screen_keys(screen)))

    def unsaved_forms(self) -> list[str]:
        """The forms (on any screen, in any mode) holding changes not saved or queued."""
        found = []
        stacks = [*getattr(self, "_screen_stacks", {}).values(), self.screen_stack]
        seen: set[int] = set()
        for stack in stacks:
            for screen in stack:
                if id(screen) in seen:
                    continue
                seen.add(id(screen))
                unsaved = getattr(screen, "unsaved", None)
                if callable(unsaved) and unsaved():
                    found.append(getattr(screen, "HELP_TITLE", type(screen).__name__))
        return found

    def action_quit_app(self) -> None:
        """Quit at once, unless a form holds unsaved changes: then ask."""
        from mfm_tui.screens.confirm import ConfirmScreen

        if type(self.screen).__name__ == "ConfirmScreen":
            return
        forms = self.unsaved_forms()
        if not forms:
            self.exit()
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.exit()

        self.push_screen(ConfirmScreen(
            f"Quit? Unsaved changes in: {', '.join(forms)}.", yes="Quit"), answered)

    # -- command palette: every binding of the screen, by its description ---------------------

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        seen = set()
        for key, active in screen.active_bindings.items():
            binding = active.binding
            own = active.node is screen or active.node is self
            if (not binding.description or not active.enabled or binding.action in seen
                    or not (binding.show or own)):
                continue
            seen.add(binding.action)
            yield SystemCommand(binding.description, f"key: {binding.key_display or key}",
                                partial(self._run_binding, active.node, binding.action))
        yield from super().get_system_commands(screen)

    # -- notifications: always literal text ----------------------------------------------------

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = True) -> None:
        """Every notification is literal text: messages carry run, spec and config names and
        error texts, which must never be read as markup (``markup`` is accepted and ignored),
        with control characters visible and each line bounded."""
        text = "\n".join(visible(line.expandtabs(), limit=MESSAGE_MAX)
                         for line in str(message).splitlines())
        super().notify(text, title=visible(title, limit=80), severity=severity,
                       timeout=timeout, markup=False)

    def _run_binding(self, node: DOMNode, action: str) -> None:
        self.call_later(self.run_action, action, node)


if TYPE_CHECKING:
    def _is_host(app: MfmApp) -> Host:  # mypy: MfmApp is what screens take it for
        return app


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mfm-tui",
        description="The mfm workbench: define long-tailed datasets and method configs, queue "
                    "runs, watch live loss and per-class accuracy. ? lists the keys of each "
                    "screen; ctrl+p searches every action.")
    p.add_argument("--db", metavar="PATH|URL", default=None,
                   help="records: a SQLite path or SQLAlchemy URL [env MFM_DB; default "
                        "./experiments.db]")
    return p


def _main(argv: list[str] | None) -> None:
    args = build_parser().parse_args(argv)
    from mfm.store.errors import StoreError
    from mfm.store.paths import resolve_db_target

    try:
        target = resolve_db_target(args.db, os.environ)
        check_target(target)  # a bad file: one line before the terminal is taken over
    except (ServiceError, StoreError) as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        raise SystemExit(1) from None
    app = MfmApp(Services(target))
    try:
        app.run()
    finally:
        app.services.close()
    if app.db_error is not None:  # shown on the message screen; said again once it is gone
        print(f"error: {app.db_error}", file=sys.stderr)
        raise SystemExit(1)
    if app.return_code:
        sys.exit(app.return_code)


def main(argv: list[str] | None = None) -> None:
    """The ``mfm-tui`` entry point: never ends with a bare traceback (mfm.crashlog.guard)."""
    from mfm.crashlog import guard

    guard("mfm-tui", lambda: _main(argv))


if __name__ == "__main__":
    main()
