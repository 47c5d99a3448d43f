"""The status line: who serves the queue, slots busy/free, GPUs (NVML), runs by status."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.widgets import Static

from mfm_tui.literal import NAME_TITLE, cut

if TYPE_CHECKING:
    from mfm_tui.services import StatusInfo

__all__ = ["StatusBar", "status_text"]


def status_text(info: StatusInfo | None, db_name: str) -> str:
    if info is None:
        return f" {db_name} · reading the records…"
    parts = []
    if info.supervisor is None:
        parts.append("supervisor: none")
    else:
        pid = info.supervisor.get("pid")
        parts.append(f"supervisor: pid {pid}" if pid else "supervisor: alive")
    if info.slots_total:
        parts.append(f"slots {info.slots_busy} busy/{info.slots_total - info.slots_busy} free")
    for g in info.gpus:
        parts.append(f"GPU{int(g['index'])} {g['util']:.0f}% "
                     f"{g['mem_used'] / 1024:.1f}/{g['mem_total'] / 1024:.0f}G")
    counts = info.counts or {}
    active = [(k, counts.get(k, 0)) for k in ("running", "queued", "failed", "lost")
              if counts.get(k)]
    if active:
        parts.append(" ".join(f"{n} {k}" for k, n in active))
    parts.append(db_name)
    return " " + " · ".join(parts)


class StatusBar(Static):
    DEFAULT_CSS = """
    StatusBar { height: 1; background: $panel; color: $text-muted; }
    """

    def __init__(self) -> None:
        super().__init__("", markup=False)

    def on_mount(self) -> None:
        self.show(getattr(self.app, "status_info", None))

    def show(self, info: StatusInfo | None) -> None:
        services = getattr(self.app, "services", None)
        name = services.display if services is not None else ""
        self.update(status_text(info, cut(name, NAME_TITLE)))
