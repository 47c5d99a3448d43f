"""The status bar: the supervisor, its slots, GPUs and run counts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mfm_tui.services.backend import Backend
from mfm_tui.services.results import StatusInfo

if TYPE_CHECKING:
    pass


class StatusServices(Backend):
    # -- status -------------------------------------------------------------------------------

    def status(self) -> StatusInfo:
        """Supervisor, slots, GPUs and run counts for the status bar."""
        import socket

        from mfm.runner.launch import serving

        holder = serving(self.db_target, self.runs_root())
        busy = total = 0
        if holder is not None:
            host = holder.get("host") or socket.gethostname()
            for w in self._act(self.control.workers):
                if w.host == host and w.stopped_at is None:
                    total = len(w.slots)
                    busy = sum(1 for s in w.slots if s.get("run") is not None)
            if not total:
                total = len(holder.get("slots") or [])
        counts = self._act(self.control.run_counts)
        return StatusInfo(holder, busy, total, self.gpus(), counts)

    def gpus(self) -> list[dict[str, float]]:
        if self._gpu_probe is not None:
            return self._gpu_probe()
        from mfm.runner.gpus import gpu_utilisation

        try:
            return gpu_utilisation()
        except Exception:  # noqa: BLE001 — NVML errors must not break the status bar
            return []
