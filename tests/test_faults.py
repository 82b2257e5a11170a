"""Failures of the system, for real: a read-only file system and a full disk (tmpfs mounts in a
private mount namespace), and an error raised inside a DataLoader worker. Each reaches the user
as one line with exit code 1 (2 for a bad input), and leaves no lock or temporary file."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from robustbench_seg.cli import cli
from robustbench_seg.data.cityscapes_c import generate_cityscapes_c
from robustbench_seg.engine.evaluate import evaluate
from tests.fake_cityscapes import make_fake_cityscapes

ROBUSTSEG = [sys.executable, "-m", "robustbench_seg"]


def _can_mount() -> bool:
    """A private user+mount namespace (util-linux ``unshare -rm``) where tmpfs can be mounted."""
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=4k tmpfs /mnt"],
        capture_output=True,
    )
    return probe.returncode == 0


needs_mounts = pytest.mark.skipif(
    not _can_mount(), reason="needs unshare -rm (user and mount namespaces) to mount a tmpfs"
)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("faults")
    city = tmp / "cs"
    make_fake_cityscapes(city, (2, 1), size=(64, 128))
    make_fake_cityscapes(city, (1,), split="train", size=(64, 128))
    torch.manual_seed(0)
    evaluate("b0", weights=None, cityscapes_root=city, corruptions=None, inference="whole",
             workers=0, progress=False, out=tmp / "run")  # fmt: skip
    return {
        "tmp": tmp,
        "city": city,
        "run": tmp / "run",
        "img": next(city.rglob("*_leftImg8bit.png")),
    }


def _in_namespace(
    tmp: Path, mount_options: str, commands: dict[str, list[str]], setup: str = ""
) -> dict:
    """Runs each command in one private mount namespace where ``tmp/mnt`` is a fresh tmpfs with
    ``mount_options`` (after the shell line ``setup``, run in the mount); returns {name: (exit
    code, stderr lines, what is left in the mount)}."""
    mnt, logs = tmp / "mnt", tmp / "logs"
    mnt.mkdir(exist_ok=True)
    logs.mkdir(exist_ok=True)
    script = [f"mount -t tmpfs -o {mount_options} tmpfs {mnt}"]
    if setup:
        script.append(f"(cd {mnt} && {setup})")
    for name, args in commands.items():
        script.append(
            f"ROBUSTSEG_NO_PROGRESS=1 {shlex.join(ROBUSTSEG + args)} >/dev/null "
            f"2>{logs / name}.err; echo $? >{logs / name}.rc; "
            f"(cd {mnt} && find . -mindepth 1 | sort) >{logs / name}.left"
        )
    subprocess.run(["unshare", "-rm", "sh", "-c", "\n".join(script)], check=True, timeout=600,
                   cwd=Path(__file__).resolve().parents[1])  # fmt: skip
    return {
        name: (
            int((logs / f"{name}.rc").read_text()),
            (logs / f"{name}.err").read_text().strip().splitlines(),
            (logs / f"{name}.left").read_text().split(),
        )
        for name in commands
    }


@needs_mounts
@pytest.mark.slow
def test_read_only_file_system_is_one_line_exit_1(data, tmp_path):
    city, mnt = str(data["city"]), str(tmp_path / "mnt")
    commands = {
        "evaluate": ["evaluate", "-m", "b0", "--weights", "none", "--cityscapes-root", city,
                     "--corruptions", "none", "--workers", "0", "--out", f"{mnt}/run"],
        "make-cityscapes-c": ["make-cityscapes-c", "--cityscapes-root", city, "--corruptions",
                              "fog", "--severities", "1", "--workers", "0", "--out", f"{mnt}/c"],
        "report": ["report", str(data["run"]), "--out", f"{mnt}/rep"],
        "make-synthetic-city": ["make-synthetic-city", "--train", "1", "--val", "0", "--size",
                                "128x64", "--out", f"{mnt}/s"],
        "corrupt": ["corrupt", str(data["img"]), "-c", "fog", "-o", f"{mnt}/x.png"],
    }  # fmt: skip
    results = _in_namespace(tmp_path, "ro", commands)
    for name, (code, lines, left) in results.items():
        assert code == 1, (name, lines)
        assert len(lines) == 1 and lines[0].startswith("robustseg: error: "), (name, lines)
        assert "read-only file system" in lines[0] and mnt in lines[0], (name, lines)
        assert left == [], (name, left)


@needs_mounts
@pytest.mark.slow
def test_full_disk_is_one_line_exit_1_and_leaves_no_lock(data, tmp_path):
    city, mnt = str(data["city"]), str(tmp_path / "mnt")
    commands = {
        # the folder's marker does not fit: nothing is left
        "evaluate": ["evaluate", "-m", "b0", "--weights", "none", "--cityscapes-root", city,
                     "--corruptions", "none", "--workers", "0", "--out", f"{mnt}/run"],
        # the 15 MB weights do not fit in 1 MB: the run stops when it saves them
        "train": ["train", "-m", "b0", "--init", "none", "--iters", "1", "--crop", "32",
                  "--eval-every", "0", "--workers", "0", "--cityscapes-root", city,
                  "--out", f"{mnt}/t"],
    }  # fmt: skip
    small = _in_namespace(tmp_path, "size=4k", {"evaluate": commands["evaluate"]})
    code, lines, left = small["evaluate"]
    assert code == 1 and len(lines) == 1 and "no space left on device" in lines[0], lines
    assert left == []
    code, lines, left = _in_namespace(tmp_path, "size=1m", {"train": commands["train"]})["train"]
    assert code == 1 and len(lines) == 1, lines
    assert "no space left on device" in lines[0] and f"{mnt}/t/" in lines[0], lines
    # the run directory keeps what was complete; no lock and no half-written file remain
    assert "./t/.robustseg.lock" not in left and not [p for p in left if p.endswith(".tmp")], left


def test_an_error_in_a_loader_worker_is_one_line(data, tmp_path, monkeypatch):
    """A Cityscapes-C file that turns bad after the checks: the worker's error, as one line."""
    monkeypatch.setenv("ROBUSTSEG_NO_PROGRESS", "1")
    tree = tmp_path / "tree"
    generate_cityscapes_c(data["city"], tree, corruptions="fog", severities="1", workers=0,
                          progress=False)  # fmt: skip
    bad = next((tree / "fog" / "1").rglob("*_leftImg8bit.png"))
    bad.write_bytes(bad.read_bytes()[:300])
    args = ["evaluate", "-m", "b0", "--weights", "none", "--cityscapes-root", str(data["city"]),
            "--cityscapes-c", str(tree), "--corruptions", "fog", "--severities", "1",
            "--no-clean", "--inference", "whole", "--workers", "2", "--out", str(tmp_path / "r")]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, result.stderr
    assert lines == [f"robustseg: error: cannot decode image {bad} (truncated, corrupt or not an "
                     "image)"]  # fmt: skip
    assert not (tmp_path / "r" / ".robustseg.lock").exists()
