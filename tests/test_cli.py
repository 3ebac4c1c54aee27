"""The error boundary of the command lines (esc50kit.errors): exit codes, one-line messages
that name the file, no traceback unless --debug, nothing written that claims a score."""
from __future__ import annotations

import errno
import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from esc50kit import __main__ as cli_main
from esc50kit.errors import DEBUG_ENV, INTERRUPTED_MESSAGE, entry_point, error_lines, exit_code
from esc50kit.data import META_RELPATH, DatasetError
from esc50kit.fileio import os_error_advice

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _raising(exc: BaseException):
    @entry_point
    def main(argv=None) -> int:
        raise exc
    return main


# ---------------------------------------------------------------- the boundary itself


@pytest.mark.parametrize(("exc", "code"), [
    (DatasetError("t.csv: bad"), 2), (ValueError("--top 0 must be at least 1"), 2),
    (json.JSONDecodeError("Expecting value", "", 0), 2),
    (FileExistsError(errno.EEXIST, "File exists", "out"), 1),
    (OSError(errno.ENOSPC, "No space left on device", "a/b.pt"), 1),
    (KeyboardInterrupt(), 130), (SystemExit("--seeds 0: give 1 or more"), 2),
])
def test_known_errors_end_in_a_message_and_an_exit_code(exc, code, capsys, monkeypatch):
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    assert _raising(exc)([]) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err and 1 <= len(err.strip().splitlines()) <= 2
    first = err.splitlines()[0]
    assert first == INTERRUPTED_MESSAGE if code == 130 else first.startswith("error: ")


def test_debug_flag_or_environment_shows_the_traceback(capsys, monkeypatch):
    main = _raising(DatasetError("t.csv: bad"))
    assert main(["--debug"]) == 2
    assert "Traceback" in capsys.readouterr().err
    monkeypatch.setenv(DEBUG_ENV, "1")
    assert main([]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().endswith("error: t.csv: bad")


def test_an_unknown_error_is_a_bug_and_keeps_its_traceback():
    with pytest.raises(ZeroDivisionError):
        _raising(ZeroDivisionError("x"))([])
    assert exit_code(KeyError("k")) is None


def test_file_system_faults_name_the_path_and_what_to_do(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("")
    cases = {
        errno.ENOSPC: "free space there", errno.EROFS: "not writable",
        errno.ENOTDIR: f"{blocker} is a file, not a folder", errno.EEXIST: "already exists (a file)",
    }
    for code, advice in cases.items():
        path = blocker / "x" if code == errno.ENOTDIR else blocker
        lines = error_lines(OSError(code, os.strerror(code), str(path)))
        assert str(path) in lines[0] and advice in lines[1], lines
    assert "free space" in os_error_advice(RuntimeError("file write failed"), tmp_path / "c.pt")


def test_ctrl_c_exits_130_with_the_resume_message(tmp_path):
    script = textwrap.dedent("""
        import sys, time
        from esc50kit.errors import entry_point
        @entry_point
        def main(argv=None):
            print("ready", flush=True)
            time.sleep(60)
            return 0
        sys.exit(main())
    """)
    # A shell starts background jobs with SIGINT ignored, and Python then installs no
    # KeyboardInterrupt handler: give the child the default, as a terminal would.
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130 and err.strip() == INTERRUPTED_MESSAGE


# ---------------------------------------------------------------- the known cases


def _train_cv(*args: str) -> int:
    return _script("train_cv").main(["--profile", "tiny", "--mode", "final", "--epochs", "1",
                                     "--threads", "1", "--no-progress", *args])


def test_train_cv_on_a_bad_table_prints_one_line_and_writes_no_run(writable_root, tmp_path, capsys):
    csv = writable_root / META_RELPATH
    csv.write_text(csv.read_text().replace(",1,", ",1.5,", 1))
    assert _train_cv("--data", str(writable_root), "--artifacts", str(tmp_path / "art")) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {csv}: column 'fold' must hold whole numbers")
    assert "Traceback" not in err
    assert not (tmp_path / "art" / "runs").exists()
    assert _train_cv("--data", str(writable_root), "--artifacts", str(tmp_path), "--debug") == 2
    assert "Traceback" in capsys.readouterr().err


def test_resuming_a_run_whose_config_is_empty_says_delete_or_rename(synthetic_root, tmp_path, capsys):
    run = tmp_path / "runs" / "cut"
    run.mkdir(parents=True)
    (run / "config.json").write_text("")
    assert _train_cv("--data", str(synthetic_root), "--artifacts", str(tmp_path),
                     "--run-name", "cut") == 2
    err = capsys.readouterr().err
    assert f"{run / 'config.json'} is not valid JSON" in err and f"delete the folder {run}" in err
    assert sorted(p.name for p in run.iterdir()) == ["config.json"]  # nothing else written


def test_artifacts_under_a_file_name_the_file(synthetic_root, tmp_path, capsys):
    blocker = tmp_path / "afile"
    blocker.write_text("")
    assert _train_cv("--data", str(synthetic_root), "--artifacts", str(blocker / "art")) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"{blocker} is a file, not a folder" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
def test_read_only_artifacts_are_named(synthetic_root, tmp_path, capsys):
    art = tmp_path / "ro"
    art.mkdir(mode=0o555)
    assert _train_cv("--data", str(synthetic_root), "--artifacts", str(art)) == 1
    err = capsys.readouterr().err
    assert str(art) in err and "not writable" in err


def test_run_with_out_naming_a_file_is_refused(synthetic_root, tmp_path, capsys):
    out = tmp_path / "report.md"
    out.write_text("mine")
    code = cli_main.main(["run", "--data", str(synthetic_root), "--profile", "tiny",
                          "--out", str(out), "--artifacts", str(tmp_path / "art")])
    err = capsys.readouterr().err
    assert code == 1 and f"{out} already exists (a file)" in err and "Traceback" not in err
    assert out.read_text() == "mine"


def test_a_full_disk_while_a_checkpoint_is_written(synthetic_root, tmp_path):
    """A file-size limit makes torch.save fail as on a full disk: the run stops with a
    message naming the checkpoint, leaves no temporary file and no score."""
    import resource

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        # above the feature cache and the small files, below a tiny model's checkpoint
        resource.setrlimit(resource.RLIMIT_FSIZE, (500_000, 500_000))

    r = subprocess.run([sys.executable, str(REPO / "benchmarks" / "train_cv.py"), "--data",
                        str(synthetic_root), "--profile", "tiny", "--mode", "final", "--epochs",
                        "1", "--threads", "1", "--no-progress", "--artifacts", str(tmp_path),
                        "--run-name", "full"], capture_output=True, text=True, timeout=300,
                       preexec_fn=limit)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "error: could not write the checkpoint" in r.stderr and "free space" in r.stderr
    run = tmp_path / "runs" / "full"
    assert run.name in r.stderr.split("checkpoint", 1)[1]
    files = [p.name for p in run.rglob("*")]
    assert not any(n.endswith(".tmp") for n in files), files
    assert "metrics.json" not in files and "predictions.csv" not in files


def test_every_benchmark_main_goes_through_the_boundary():
    for path in sorted((REPO / "benchmarks").glob("*.py")):
        text = path.read_text()
        if "def main(" in text:
            assert "@entry_point" in text and "add_debug_flag(" in text, path.name
    for path in (REPO / "download_data.py", REPO / "esc50kit" / "__main__.py"):
        assert "@entry_point" in path.read_text(), path.name


# ---------------------------------------------------------------- meaningless scores refused

def test_a_split_error_is_refused_input():
    from esc50kit.splits import SplitError

    assert exit_code(SplitError("data: refused, mode 'final' ...")) == 2


@pytest.mark.parametrize(("drop", "message"), [
    (lambda df: (df["category"] == "whistle") & df["fold"].isin([1, 2, 3]),
     "test5-val4: 1 of 5 class(es) without a clip in training folds 1,2,3 (24 clips): 'whistle'"),
    (lambda df: df["fold"] == 5, "test5-val4: test fold 5 holds no clips"),
])
def test_train_cv_on_a_meaningless_split_prints_one_line_and_writes_no_run(
        drop, message, writable_root, tmp_path, capsys):
    import pandas as pd

    csv = writable_root / META_RELPATH
    df = pd.read_csv(csv)
    df[~drop(df)].to_csv(csv, index=False)
    assert _train_cv("--data", str(writable_root), "--artifacts", str(tmp_path / "art")) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in captured.err
    assert err[0].startswith(f"error: {writable_root}: refused, mode 'final' would report a "
                             "meaningless score: ") and message in err[0]
    assert "To do: " in err[0]
    assert not (tmp_path / "art").exists() and "accuracy" not in captured.out
