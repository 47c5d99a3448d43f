"""What a screen may ask of the app it runs in, as a Protocol: screens (and the shared actions)
are typed against this, never against ``mfm_tui.app``, so the app imports screens and no screen
imports the app (nor, to open another screen, that screen: the app opens it).

``MfmApp`` implements it (``mfm_tui.app`` has mypy check that it does). Textual's own app API
(``push_screen``, ``notify``, ``size``…) stays on ``Screen.app``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from mfm.store.records import RunRecord
    from mfm_tui.services import Services, StatusInfo

__all__ = ["Host"]


class Host(Protocol):
    """The workbench app, as screens see it."""

    services: Services
    """The only way to the records and the runner (blocking: call it from thread workers)."""
    db_ready: bool
    """The records are open (screens start polling once it is True)."""
    status_info: StatusInfo | None
    """The status bar's last reading."""

    # -- opening other screens (the app imports them, when first shown) -----------------------

    def open_run(self, run_id: int) -> None:
        """Push one run's live screen."""

    def open_compare(self, run_ids: list[int]) -> None:
        """Push the comparison of these runs (2 to ``actions.MAX_COMPARE``)."""

    def open_new_run(self, queued: Callable[[tuple[int, ...] | None], object],
                     clone_of: RunRecord | None = None) -> None:
        """Push the new-run form (a clone of ``clone_of`` if given); ``queued`` gets the ids
        of the runs it queued (None: closed without queueing)."""

    def open_arm_runs(self, sweep_id: int, sweep_name: str, arm: str) -> None:
        """Push the runs of one arm of a sweep."""

    def open_new_sweep(self, queued: Callable[[int], object]) -> None:
        """Push the new-sweep form; ``queued`` gets the id of the sweep it recorded."""
