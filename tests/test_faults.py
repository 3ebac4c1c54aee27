"""Bad input and faults: non-finite audio, diverging training, a full disk, Ctrl-C.

Each fault is real where it can be made real: NaN samples written to a float WAV, a
learning rate that makes the loss overflow, a file-size limit (RLIMIT_FSIZE) that makes
``torch.save`` fail as on a full disk, SIGINT sent to the process group of a running
feature extraction as a terminal's Ctrl-C is.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from esc50kit.audio import MAX_ABS_SAMPLE, AudioReadError, load_audio
from esc50kit.cache import _Workers, load_or_compute
from esc50kit.data import AUDIO_DIRNAME, load_metadata
from esc50kit.features import FeatureConfig, Normalizer
from esc50kit.fileio import WriteError
from esc50kit.models import ModelConfig, build_model
from esc50kit.training import (
    BEST,
    LAST,
    TrainConfig,
    TrainingDivergedError,
    atomic_save,
    choose_device,
    fit,
)

REPO = Path(__file__).resolve().parents[1]
SMALL = FeatureConfig(sr=8000, n_fft=256, hop_length=128, n_mels=16)


def _float_wav(path: Path, *, bad: float, at: int = 1234, n: int = 220500) -> Path:
    y = (0.1 * np.sin(np.arange(n) / 10)).astype(np.float32)
    y[at] = bad
    sf.write(path, y, 44100, subtype="FLOAT")
    return path


# ---------------------------------------------------------------- finite audio


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 10 * MAX_ABS_SAMPLE])
def test_a_non_finite_or_huge_sample_is_refused_naming_the_file(tmp_path, bad):
    path = _float_wav(tmp_path / "bad.wav", bad=bad)
    with pytest.raises(AudioReadError, match=r"bad\.wav.*(NaN or infinite|beyond)") as info:
        load_audio(path, sr=8000)
    assert info.value.path == str(path)


def test_float_samples_a_little_past_full_scale_are_kept(tmp_path):
    path = _float_wav(tmp_path / "loud.wav", bad=3.0)  # headroom, not damage
    assert np.isfinite(load_audio(path, sr=8000)).all()


def test_extraction_raises_or_skips_a_nan_clip(writable_root, tmp_path):
    df = load_metadata(writable_root)
    victim = df["filename"].iloc[7]
    _float_wav(writable_root / AUDIO_DIRNAME / victim, bad=np.nan)
    with pytest.raises(AudioReadError, match=victim):
        load_or_compute(df, SMALL, cache_dir=tmp_path / "c", n_jobs=2, progress=False)
    assert list((tmp_path / "c").glob("*")) == []  # nothing cached for a refused table
    with pytest.warns(RuntimeWarning, match=victim):
        fs = load_or_compute(df, SMALL, cache_dir=tmp_path / "c", n_jobs=2, progress=False,
                             on_error="skip")
    assert fs.skipped == [victim] and len(fs) == len(df) - 1
    assert np.isfinite(fs.X.astype(np.float32)).all()


def test_normaliser_refuses_non_finite_features():
    X = np.zeros((6, 4, 5), dtype=np.float16)
    X[3, 1, 2] = np.nan
    with pytest.raises(ValueError, match=r"not finite.*1 of 6 clips.*rows \[3\]"):
        Normalizer.fit(X)
    X[3, 1, 2] = np.inf
    with pytest.raises(ValueError, match=r"rows \[3\]"):
        Normalizer.fit(X)


# ---------------------------------------------------------------- training


def _toy(n=16, bins=8, frames=12):
    g = np.random.default_rng(0)
    return g.normal(size=(n, bins, frames)).astype(np.float32), np.arange(n) % 4


def test_a_diverging_loss_stops_training_and_claims_no_score(tmp_path):
    X, y = _toy()
    torch.manual_seed(0)
    model = build_model(ModelConfig(n_classes=4, width=8))
    cfg = TrainConfig(epochs=5, batch_size=8, lr=1e30, schedule="constant", optimizer="adam",
                      device="cpu", mixup_alpha=0.0, freq_masks=0, time_masks=0)
    with pytest.raises(TrainingDivergedError, match=r"loss became (nan|inf|-inf) in epoch \d"):
        fit(model, X, y, X, y, config=cfg, out_dir=tmp_path, progress=False)
    assert not (tmp_path / BEST).exists()  # no checkpoint claims a validation score


def test_non_finite_features_are_refused_before_training():
    X, y = _toy()
    clean = X[:4].copy()
    X[2, 0, 0] = np.inf
    model = build_model(ModelConfig(n_classes=4, width=8))
    with pytest.raises(ValueError, match="X_train holds NaN or infinite"):
        fit(model, X, y, clean, y[:4], config=TrainConfig(epochs=1, device="cpu"),
            progress=False)
    with pytest.raises(ValueError, match="X_val holds NaN or infinite"):
        fit(model, clean, y[:4], X, y, config=TrainConfig(epochs=1, device="cpu"),
            progress=False)


def test_a_device_this_machine_lacks_is_refused_in_words():
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"'cuda'.*not available.*--device cpu"):
            choose_device("cuda")
    with pytest.raises(ValueError, match=r"cuda:99"):
        choose_device("cuda:99")
    with pytest.raises(ValueError, match="not a torch device"):
        choose_device("gpu")


def _limited(limit_bytes: int):
    """preexec_fn: files may not grow past ``limit_bytes``, as on a disk that is full."""
    import resource

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
    return apply


def test_a_checkpoint_that_cannot_be_written_is_named_and_leaves_no_partial_file(tmp_path):
    old = {"w": torch.ones(10)}
    atomic_save(old, tmp_path / LAST)
    script = textwrap.dedent(f"""
        import torch
        from esc50kit.training import atomic_save
        atomic_save({{"w": torch.zeros(200_000)}}, {str(tmp_path / LAST)!r})
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       preexec_fn=_limited(100_000), timeout=120)
    assert r.returncode != 0
    assert "WriteError" in r.stderr and "inline_container" in r.stderr  # torch's own failure
    assert f"could not write the checkpoint {tmp_path / LAST}" in r.stderr
    assert "free space there" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [LAST]  # the temporary file is gone
    assert torch.equal(torch.load(tmp_path / LAST)["w"], old["w"])  # the old one intact


def test_torch_save_failures_that_are_not_writes_are_not_disguised(tmp_path):
    with pytest.raises(Exception) as info:
        atomic_save({"f": lambda: 0}, tmp_path / "x.pt")  # cannot be pickled
    assert not isinstance(info.value, WriteError)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- Ctrl-C


_EXTRACT = textwrap.dedent("""
    import sys
    import pandas as pd
    from esc50kit.cache import load_or_compute
    from esc50kit.data import load_metadata
    from esc50kit.features import FeatureConfig
    df = pd.concat([load_metadata(sys.argv[1])] * 40, ignore_index=True)  # a long extraction
    print("ready", flush=True)
    load_or_compute(df, FeatureConfig(n_mels=64), cache_dir=sys.argv[2], n_jobs=2,
                    progress=False)
    print("done", flush=True)
""")


def _ctrl_c_as_in_a_terminal() -> None:
    """A background job (nohup, `cmd &`, some CI runners) starts with SIGINT ignored, and so
    would every child: give the child Python's usual Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
def test_ctrl_c_stops_feature_extraction_promptly_every_time(synthetic_root, tmp_path):
    """SIGINT to the whole process group at varied moments: the run ends within a few
    seconds each time (the old multiprocessing.Pool hung in about 1 of 10 tries) and the
    cache folder never holds a partial file."""
    script = tmp_path / "extract.py"
    script.write_text(_EXTRACT)
    interrupted = 0
    for k, delay in enumerate([0.0, 0.05, 0.1, 0.2, 0.3, 0.45, 0.6, 0.8, 1.0, 1.2, 0.15, 0.7]):
        cache = tmp_path / f"cache{k}"
        proc = subprocess.Popen([sys.executable, str(script), str(synthetic_root), str(cache)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True, preexec_fn=_ctrl_c_as_in_a_terminal)
        try:
            assert proc.stdout.readline().strip() == "ready"
            time.sleep(delay)
            os.killpg(proc.pid, signal.SIGINT)
            t0 = time.monotonic()
            out, err = proc.communicate(timeout=15)
            elapsed = time.monotonic() - t0
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
        assert elapsed < 5, f"delay {delay}: took {elapsed:.1f} s to stop"
        left_over = subprocess.run(["ps", "-o", "pid,stat,args", "-g", str(proc.pid)],
                                   capture_output=True, text=True).stdout.splitlines()[1:]
        assert not left_over, f"delay {delay}: outlived it: {left_over}"  # reaped, none orphaned
        interrupted += "done" not in out
        if "done" not in out:  # interrupted (not finished before the signal)
            assert "KeyboardInterrupt" in err and "Traceback" in err
        left = sorted(p.name for p in cache.glob("*")) if cache.exists() else []
        assert all(n.endswith(".npz") and not n.startswith(".") for n in left), left
        if left:  # a file that is there is complete
            df = pd.concat([load_metadata(synthetic_root)] * 40, ignore_index=True)
            fs = load_or_compute(df, FeatureConfig(n_mels=64), cache_dir=cache, progress=False)
            assert fs.path.name == left[0]
    assert interrupted >= 6  # most tries were cut short, so the test tested Ctrl-C


@pytest.mark.skipif("fork" not in mp.get_all_start_methods(), reason="needs fork")
def test_a_ctrl_c_while_the_workers_start_waits_until_all_are_known_then_stops_them_all():
    """No worker is left forked but unregistered, idle for ever beside a live notebook
    kernel: the Ctrl-C lands once every worker has started, and all are stopped and reaped."""
    fork = mp.get_context("fork")
    started = []

    class InterruptedAfterFork(fork.Process):
        def start(self):
            super().start()
            started.append(self)
            signal.raise_signal(signal.SIGINT)

    class Context:
        Pipe = staticmethod(fork.Pipe)
        Process = InterruptedAfterFork

    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # a background job ignores it
    try:
        with pytest.raises(KeyboardInterrupt):
            _Workers(3, Context)
    finally:
        signal.signal(signal.SIGINT, before)
    assert len(started) == 3
    assert [p.exitcode for p in started] == [-signal.SIGKILL] * 3


def test_a_run_on_a_nan_clip_is_refused_and_leaves_no_run_folder(writable_root, tmp_path):
    from esc50kit.experiment import run_experiment

    victim = load_metadata(writable_root)["filename"].iloc[3]
    _float_wav(writable_root / AUDIO_DIRNAME / victim, bad=np.nan)
    with pytest.raises(AudioReadError, match=victim):
        run_experiment(writable_root, artifacts_dir=tmp_path, profile="tiny", mode="final",
                       run_name="r", progress=False)
    assert not (tmp_path / "runs" / "r").exists()  # no config, audit or score for it
