"""What every screen shares: blocking work in thread workers that post messages back, and a
poll loop that schedules the next poll only after the previous one has been applied.

Screens see their app as a ``mfm_tui.host.Host`` (services, whether the records are open, and
how to open another screen): this module, like every screen, never imports ``mfm_tui.app``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from textual import work
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer

from mfm_tui.literal import literal_cells

if TYPE_CHECKING:
    from textual.widgets import DataTable

    from mfm_tui.host import Host
    from mfm_tui.services import Services

__all__ = ["BaseScreen", "PollResult", "ServiceDone", "one_line", "refill_list"]

A = TypeVar("A")  # what a screen's poll needs (read on the UI thread)
V = TypeVar("V")  # what a poll brings back (read in a worker thread)
T = TypeVar("T")


def one_line(err: BaseException) -> str:
    """A one-line message for an error: its text, else its type."""
    text = " ".join(str(err).split())
    return text or type(err).__name__


def refill_list(table: DataTable[Any], rows: list[tuple[str, tuple[str, ...]]],
                follow: str | None = None) -> None:
    """Replace a list table's rows (key, cells). Cells are shown as literal text, never as
    markup (the caller cuts long names). The cursor goes to the row keyed ``follow``, else
    stays on the key it was on, so a refresh never leaves it on another record."""
    current = None
    if table.row_count and 0 <= table.cursor_row < table.row_count:
        current = table.ordered_rows[table.cursor_row].key.value
    table.clear()
    for key, cells in rows:
        table.add_row(*literal_cells(cells), key=key)
    keys = [key for key, _ in rows]
    want = follow if follow in keys else current
    if want in keys:
        table.move_cursor(row=keys.index(want))


class PollResult(Message, Generic[V]):
    """A poll's fetch has ended (posted from its worker thread): its value or its error."""

    def __init__(self, value: V | None = None, error: str | None = None):
        super().__init__()
        self.value = value
        self.error = error


class ServiceDone(Message, Generic[T]):
    """A blocking call made with ``call_service`` has ended (posted from its worker thread):
    its value for ``done``, or its one-line error for ``failed``."""

    def __init__(self, value: T | None, error: str | None, done: Callable[[T], object],
                 failed: Callable[[str], object] | None):
        super().__init__()
        self.value = value
        self.error = error
        self.done = done
        self.failed = failed


class BaseScreen(Screen[None], Generic[A, V]):
    """A screen with ``fetch`` (run in a thread) / ``apply`` (on the UI thread) polling.

    Subclasses set ``POLL_INTERVAL`` (None: no polling) and implement ``poll_args`` (UI
    thread: what the fetch needs, an ``A``), ``fetch`` (worker thread: services calls only,
    returns a ``V``) and ``apply`` (UI thread, gets the ``V``). ``call_service(fn, done,
    failed)`` runs one blocking call in a thread worker and hands its value to ``done`` on
    the UI thread (its error to ``failed``, else to a notification).
    """

    POLL_INTERVAL: float | None = 1.0

    def __init__(self) -> None:
        super().__init__()
        self._poll_timer: Timer | None = None
        self._poll_busy = False
        self._poll_started = False
        self.polls = 0  # polls applied (tests wait on it)

    @property
    def host(self) -> Host:
        """The app, as screens may use it (``mfm_tui.host.Host``)."""
        return cast("Host", self.app)

    @property
    def services(self) -> Services:
        return self.host.services

    # -- polling ------------------------------------------------------------------------------

    def on_mount(self) -> None:
        if self.host.db_ready:
            self.start_polling()

    def on_screen_resume(self) -> None:
        if self.host.db_ready:
            if not self._poll_started:
                self.start_polling()
            elif self.POLL_INTERVAL is not None:
                self.poll_now()

    def start_polling(self) -> None:
        """Called once the records are open (and the screen mounted)."""
        if self._poll_started:
            return
        self._poll_started = True
        self.when_ready()
        if self.POLL_INTERVAL is not None:
            self.poll_now()

    def when_ready(self) -> None:
        """Hook: the records are open (load what the screen needs once)."""

    def poll_now(self) -> None:
        """Poll at once (unless a poll is in flight: its result reschedules)."""
        if self._poll_busy or self.POLL_INTERVAL is None:
            return
        if self._poll_timer is not None:
            self._poll_timer.stop()
            self._poll_timer = None
        self._poll_busy = True
        self._poll_worker(self.poll_args())

    @work(thread=True, group="poll")
    def _poll_worker(self, args: A) -> None:
        value: V | None = None
        error: str | None = None
        try:
            value = self.fetch(args)
        except Exception as e:  # noqa: BLE001 — shown, and the loop goes on
            error = one_line(e)
        self.post_message(PollResult(value, error))

    def on_poll_result(self, message: PollResult[V]) -> None:
        message.stop()
        self._poll_busy = False
        if message.error is not None:
            self.poll_failed(message.error)
        else:
            self.apply(cast(V, message.value))
            self.polls += 1
        if self.POLL_INTERVAL is not None and self.is_attached:
            self._poll_timer = self.set_timer(self.POLL_INTERVAL, self._tick)

    def _tick(self) -> None:
        self._poll_timer = None
        if self.is_current:
            self.poll_now()
        # else: on_screen_resume polls when the screen comes back

    def poll_args(self) -> A:
        raise NotImplementedError  # only screens with a POLL_INTERVAL poll

    def fetch(self, args: A) -> V:  # worker thread
        raise NotImplementedError

    def apply(self, value: V) -> None:
        raise NotImplementedError

    def poll_failed(self, error: str) -> None:
        self.notify(error, title="refresh failed", severity="error", timeout=4)

    # -- forms: unsaved changes (q asks before quitting) ---------------------------------------

    FORM = False  # a form: its inputs hold something to save or queue
    _clean_state: tuple[Any, ...] | None = None

    def form_state(self) -> tuple[Any, ...]:
        """The values of every input, select and checkbox of the screen."""
        from textual.widgets import Checkbox, Input, Select

        return tuple((w.id, w.value) for w in self.query("Input, Select, Checkbox")
                     if isinstance(w, (Input, Select, Checkbox)))

    def mark_clean(self) -> None:
        """What the form holds now is saved (or is what it was opened with)."""
        if self.FORM and self.is_mounted:
            self._clean_state = self.form_state()

    def unsaved(self) -> bool:
        """Whether the form holds changes since it was opened or last saved."""
        if not self.FORM or not self.is_mounted or self._clean_state is None:
            return False
        return self.form_state() != self._clean_state

    # -- one-off blocking calls ---------------------------------------------------------------

    _validate_pending = False

    def validate_soon(self) -> None:
        """Call ``self.validate()`` once after this burst of changes (a form fill posts
        dozens of change events)."""
        if not self._validate_pending:
            self._validate_pending = True
            self.call_after_refresh(self._validate_now)

    def _validate_now(self) -> None:
        self._validate_pending = False
        self.validate()  # type: ignore[attr-defined]

    def call_service(self, fn: Callable[[], T], done: Callable[[T], object],
                     failed: Callable[[str], object] | None = None) -> None:
        """Run ``fn`` (blocking: services calls) in a thread worker; on the UI thread, hand
        its value to ``done``, or its one-line error to ``failed`` (default: a notification).
        Arguments are bound on the UI thread: ``partial(self.services.cancel_run, run_id)``."""
        self._service_worker(fn, done, failed)

    @work(thread=True, group="service")
    def _service_worker(self, fn: Callable[[], T], done: Callable[[T], object],
                        failed: Callable[[str], object] | None) -> None:
        value: T | None = None
        error: str | None = None
        try:
            value = fn()
        except Exception as e:  # noqa: BLE001 — a one-line message for the user
            error = one_line(e)
        self.post_message(ServiceDone(value, error, done, failed))

    def on_service_done(self, message: ServiceDone[Any]) -> None:
        message.stop()
        if message.error is None:
            message.done(message.value)
        elif message.failed is not None:
            message.failed(message.error)
        else:
            self.notify(message.error, severity="error", timeout=6)
