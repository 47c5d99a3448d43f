"""bench/gpu.sh and bench/threads.py run end to end on the CPU (their --smoke sizes) and print
the Markdown they promise."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# the measured runs plan their own threads; an inherited plan would hide that
ENV = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "MKL_", "MFM_THREADS"))}


@pytest.mark.slow
def test_gpu_sh_smoke_on_the_cpu_writes_its_markdown_block(tmp_path):
    out = tmp_path / "gpu.md"
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu.sh"), "--device", "cpu", "--smoke",
                           "--out", str(out)], cwd=tmp_path, env={**ENV, "PYTHON": sys.executable},
                          capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert text == proc.stdout  # the block on stdout is the one written to --out
    assert text.startswith("<!-- bench/gpu.sh: begin -->\n")
    assert text.rstrip().endswith("<!-- bench/gpu.sh: end -->")
    for heading in ("Environment", "Tests marked cuda", "Step time, fp32",
                    "Step time, bf16 + channels_last", "Step time, the plain step compiled",
                    "Seconds per epoch", "Runs at once"):
        assert f"#### {heading}" in text, heading
    assert "torch: " in text and "cuda available: False" in text
    # the cuda tests are collected and skip here, saying why
    assert re.search(r"SKIPPED \[\d+\] .*needs a CUDA device", text), text
    # every timing table has its rows, none failed or stopped
    assert "(exit code" not in text and "stopped at its" not in text and "failed:" not in text
    assert len(re.findall(r"^\| ce \| [\d.]+ \| 1\.00 \|", text, flags=re.M)) == 2
    assert len(re.findall(r"^\| mfm \| [\d.]+ \| [\d.]+ min \|", text, flags=re.M)) == 2
    assert re.search(r"^\| 2 \| \d+ \| [\d.]+ \|$", text, flags=re.M)


def test_gpu_sh_refuses_an_unknown_option():
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu.sh"), "--device", "tpu"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "--device cuda|cpu" in proc.stderr


@pytest.mark.slow
def test_threads_bench_smoke_compares_the_old_default_with_auto():
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "threads.py"), "--smoke",
                           "--methods", "ce", "--busy", "0,1", "--pairs"], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr
    pattern = r"^\| ce \| (old|auto) \| .*\| (\d+) thread\(s\), (\w+)[^|]* \|$"
    rows = {m[0]: (m[1], m[2]) for m in re.findall(pattern, proc.stdout, flags=re.M)}
    assert rows["old"][1] == "default" and rows["auto"][1] == "passive", proc.stdout
    assert re.search(r"^\| ce \| [\d.]+ \| [\d.]+ / [\d.]+ \| [\d.]+ \|$", proc.stdout,
                     flags=re.M), proc.stdout
