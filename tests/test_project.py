"""The README's two commands, as CI and a newcomer run them."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    """The commands in the README's "Two commands" block, e.g. ["make run", "make test"]."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Two commands", 1)[1]
    block = section.split("```bash", 1)[1].split("```", 1)[0]
    return [line.split("#", 1)[0].strip() for line in block.strip().splitlines()]


def test_ci_runs_the_readme_test_command():
    commands = readme_commands()
    assert commands == ["make run", "make test"]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    steps = [line.strip() for line in ci.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert "make test" in steps, "CI must run the README's test command as it is written"


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_refuses_a_new_environment_on_a_full_disk(tmp_path):
    venv = tmp_path / "venv"
    result = subprocess.run(
        ["make", "-s", "env", f"VENV={venv}", "NEED_GIB=1000000000", f"PYTHON={sys.executable}"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0
    message = result.stderr
    assert re.search(r"only [\d.]+ GiB free on the disk of " + re.escape(str(tmp_path)), message), message
    assert "VENV=" in message  # says what to do
    assert not venv.exists()  # and created nothing


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_keeps_an_existing_environment_whatever_the_disk(tmp_path):
    """The check guards creating the environment only; one that exists is never refused."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    stub = venv / "bin" / "python"  # stands in for the environment's python: pip calls succeed
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    result = subprocess.run(
        ["make", "-s", "env", f"VENV={venv}", "NEED_GIB=1000000000", f"PYTHON={sys.executable}"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "GiB free" not in result.stderr
    assert (venv / ".installed").exists()
