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


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_lab_opens_the_first_notebook_with_the_dataset_it_verified(tmp_path):
    """make lab DATA=...: the dataset goes through download_data.py, its root reaches the
    notebooks as ESC50KIT_DATA, and JupyterLab is rooted at the project, opening 01."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    record = tmp_path / "jupyter-args.txt"
    # download_data.py prints the verified root last; this stand-in python prints one.
    (venv / "bin" / "python").write_text(
        '#!/bin/sh\ncase "$1" in download_data.py) echo "ESC-10: 400 clips"; echo /verified/ESC-10;; esac\nexit 0\n')
    (venv / "bin" / "jupyter").write_text(
        f'#!/bin/sh\necho "ESC50KIT_DATA=$ESC50KIT_DATA" > {record}\nfor a in "$@"; do echo "$a" >> {record}; done\n')
    for stub in (venv / "bin").iterdir():
        stub.chmod(0o755)
    result = subprocess.run(["make", "-s", "lab", f"VENV={venv}", "DATA=../shared/data/ESC-10",
                             "LAB_ARGS=--no-browser"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "dataset for the notebooks: /verified/ESC-10" in result.stdout
    lines = record.read_text().splitlines()
    assert lines[0] == "ESC50KIT_DATA=/verified/ESC-10"
    assert "lab" in lines and "--no-browser" in lines
    assert f"--ServerApp.root_dir={ROOT}" in lines
    url = next(a for a in lines if a.startswith("--LabApp.default_url="))
    assert (ROOT / url.split("/lab/tree/", 1)[1]).is_file()  # the page it opens exists


def test_every_package_function_fits_on_a_screen():
    """#24: no function or method of esc50kit is longer than 80 lines (aim: 60)."""
    import ast

    too_long = []
    for path in sorted((ROOT / "esc50kit").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > 80:
                    too_long.append(f"{path.name}:{node.lineno} {node.name} ({n} lines)")
    assert not too_long, "split these into functions of at most 80 lines: " + ", ".join(too_long)
