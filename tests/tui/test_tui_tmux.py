"""End to end, as a person would: mfm-tui inside tmux, driven by send-keys and read with
capture-pane. Define a dataset spec and a config, queue a tiny run, watch it complete, open
its charts. Skipped (saying so) only where tmux is not installed."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("tmux") is None,
                                 reason="tmux is not installed: the end-to-end TUI test needs it")]


class Tmux:
    def __init__(self, tmp: Path):
        self.socket = f"mfm-e2e-{uuid.uuid4().hex[:8]}"
        self.tmp = tmp

    def run(self, *args: str) -> str:
        res = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True,
                             text=True, timeout=20)
        assert res.returncode == 0, res.stderr
        return res.stdout

    def start(self, command: str) -> None:
        self.run("new-session", "-d", "-x", "120", "-y", "40", "-s", "e2e", command)

    # Keys go in at a person's pace (GAP between keys, TYPED after a word): the pace of the
    # input, not a wait for something to assert; what a step must show is waited for
    # (wait_for, wait_steady), with a deadline.
    GAP, TYPED = 0.08, 0.2

    def keys(self, *keys: str) -> None:
        for key in keys:
            self.run("send-keys", "-t", "e2e", key)
            time.sleep(self.GAP)

    def type(self, text: str) -> None:
        self.run("send-keys", "-t", "e2e", "-l", text)
        time.sleep(self.TYPED)

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "e2e")

    def wait_for(self, text: str | tuple[str, ...], timeout: float, what: str) -> str:
        wanted = (text,) if isinstance(text, str) else text
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            try:
                screen = self.screen()
            except AssertionError:  # the session ended
                break
            if all(t in screen for t in wanted):
                return screen
            time.sleep(0.2)
        raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; the screen:\n"
                             f"{screen}")

    def wait_steady(self, timeout: float, what: str, every: float = 0.2) -> str:
        """Wait until the screen stops changing (two captures ``every`` s apart agree)."""
        deadline = time.monotonic() + timeout
        last = self.screen()
        while time.monotonic() < deadline:
            time.sleep(every)
            now = self.screen()
            if now == last:
                return now
            last = now
        raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; the screen:\n"
                             f"{last}")

    def alive(self) -> bool:
        return subprocess.run(["tmux", "-L", self.socket, "has-session", "-t", "e2e"],
                              capture_output=True).returncode == 0

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)


def mfm_tui_command() -> list[str]:
    exe = Path(sys.executable).with_name("mfm-tui")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "mfm_tui"]


def test_define_queue_watch_and_open_a_run_in_tmux(tui_env, kill_supervisors):
    from mfm_tui.services import Services

    kill_supervisors.append(Services(str(tui_env["db"]), runs_root=tui_env["runs"]))
    t = Tmux(tui_env["tmp"])
    env = f"MFM_RUNS_DIR={tui_env['runs']} TERM=xterm-256color"
    cmd = " ".join(mfm_tui_command())
    t.start(f"cd {tui_env['tmp']} && env {env} {cmd} --db {tui_env['db']}")
    try:
        t.wait_for("Runs (0)", 20, "the empty runs table")

        # 1. a dataset spec: name, imbalance factor 20, preview, save
        t.keys("F2")
        t.wait_for(("Dataset specs", "classes · train"), 20, "the datasets screen and preview")
        t.type("e2e-digits")
        t.keys("Tab", "Tab", "Tab", "Tab", "C-a", "C-k")
        t.type("20")
        t.wait_for("(max 114, min 5)", 10, "the preview of imbalance factor 20")
        t.keys("C-s")
        t.wait_for("e2e-digits  digits  20", 10, "the saved spec in the list")

        # 2. a config: resnet_tiny, method ce (not the default, mfm), 1 epoch, loss logged
        # every step
        t.keys("F3")
        t.wait_for("Method configs", 20, "the configs screen")
        t.type("e2e-tiny")
        t.keys("Tab", "Enter")
        t.wait_for("resnet56", 5, "the model list open")  # type only into an open list
        t.type("resnet_t")
        t.keys("Enter")
        t.wait_for("resnet_tiny", 5, "the model choice")
        t.keys("Tab", "Tab", "Enter")
        t.wait_for("balanced_softmax", 5, "the method list open")
        t.type("ce")
        t.keys("Enter")
        t.wait_for("method.name               ce ", 5, "the method choice")
        # the form re-validates (and hides mfm's section) after the change: tab order follows
        t.wait_steady(5, "the form to re-validate")
        # method.name, then method.reweight (a dropdown, left at none), then train.epochs
        t.keys("Tab", "Tab", "C-a", "C-k")
        t.type("1")
        t.keys(*["Tab"] * 6, "C-a", "C-k")
        t.type("1")
        t.keys("C-s")
        t.wait_for("e2e-tiny  1  ce", 10, "the saved config in the list")

        # 3. queue it from the new-run form
        t.keys("F1")
        t.wait_for("Runs (0)", 10, "the runs screen")
        t.keys("n")
        t.wait_for("New run", 10, "the form")
        t.type("e2e")
        t.keys("Tab", "Enter")
        t.wait_for("e2e-digits", 5, "the dataset spec list open")
        t.type("e2e-d")
        t.keys("Enter")
        t.wait_for("e2e-digits (digits, IF 20", 5, "the dataset spec choice")
        t.keys("Tab", "Enter")
        t.wait_for("e2e-tiny v1", 5, "the config list open")
        t.type("e2e-t")
        t.keys("Enter")
        t.wait_for(("resnet_tiny", "IF 20", "1 epoch ·"), 10, "the plan of the run")
        t.keys("C-s")
        t.wait_for("Runs (1)", 15, "the queued run in the table")

        # 4. watch it complete
        screen = t.wait_for(("completed", "1/1"), 120, "the run to complete")
        row = next(line for line in screen.splitlines() if " e2e " in f" {line} ")
        assert "digits/IF20" in row and "completed" in row

        # 5. open its charts
        t.keys("Enter")
        t.wait_for(("Run 1 e2e", "train loss per step"), 15, "the run screen")
        screen = t.wait_steady(5, "the run screen drawn")
        if "1 of 2, ] next" in screen:  # a short window: one chart a page, ] the next
            t.keys("]")
            t.wait_for(("test accuracy % per epoch", "2 of 2, [ back"), 10,
                       "the accuracy chart, the Curves tab's next page")
        else:  # both curves in view
            assert "test accuracy % per epoch" in screen, screen
        t.keys("]")
        # the title is drawn a frame before the chart's axis labels: wait for both
        t.wait_for(("per-class test accuracy, head to tail", "training images"), 10,
                   "the per-class chart with its training counts")
        t.keys("C-q")
        deadline = time.monotonic() + 10
        while t.alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not t.alive(), "mfm-tui did not quit on ctrl+q"
    finally:
        t.kill()
