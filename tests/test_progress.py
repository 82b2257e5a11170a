"""Progress off a terminal: periodic lines with counts, rate and ETA, and a summary line."""

from __future__ import annotations

import io
import subprocess
import sys

from robustbench_seg.progress import Progress, progress_iter
from tests.fake_cityscapes import make_fake_cityscapes


def test_lines_off_a_terminal(monkeypatch):
    monkeypatch.setenv("ROBUSTSEG_PROGRESS_INTERVAL", "0")
    out = io.StringIO()
    with Progress(4, "evaluate b0", unit="img", stream=out) as bar:
        for _ in range(4):
            bar.update()
            bar.set_postfix(cell="fog-2")
    lines = out.getvalue().splitlines()
    assert len(lines) == 4  # three interim lines (not at 4/4) and the summary
    assert lines[0].startswith("evaluate b0: 1/4 img (25%), ") and "ETA" in lines[0]
    assert lines[1].endswith("[cell=fog-2]")
    assert lines[-1].startswith("evaluate b0: done, 4/4 img in 0:00:00")


def test_quiet_between_intervals_and_when_incomplete(monkeypatch):
    monkeypatch.setenv("ROBUSTSEG_PROGRESS_INTERVAL", "3600")
    out = io.StringIO()
    with Progress(10, "x", stream=out) as bar:
        bar.update(3)
    assert out.getvalue() == ""  # no line within the interval, no summary of unfinished work
    out = io.StringIO()
    assert list(progress_iter(range(3), 3, "y", enabled=False)) == [0, 1, 2]
    with Progress(2, "z", stream=out, enabled=False) as bar:
        bar.update(2)
    assert out.getvalue() == ""


def test_cli_prints_progress_with_stderr_in_a_file(tmp_path):
    root = tmp_path / "cs"
    make_fake_cityscapes(root, (2, 1))
    log = tmp_path / "stderr.log"
    with open(log, "w") as err:
        proc = subprocess.run(
            [sys.executable, "-m", "robustbench_seg", "make-cityscapes-c", "--cityscapes-root",
             str(root), "--out", str(tmp_path / "cc"), "--corruptions", "fog", "--severities", "1",
             "--workers", "1"],
            stderr=err, stdout=subprocess.PIPE, text=True, timeout=300,
            env={**__import__("os").environ, "ROBUSTSEG_PROGRESS_INTERVAL": "0"},
        )  # fmt: skip
    assert proc.returncode == 0, log.read_text()
    lines = [x for x in log.read_text().splitlines() if x.startswith("cityscapes-c:")]
    assert lines[-1].startswith("cityscapes-c: done, 3/3 img in ")
    assert any(x.startswith("cityscapes-c: 1/3 img (33%)") for x in lines)
