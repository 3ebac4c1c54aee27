"""Feature extraction speed: esc50kit against the plain per-clip librosa loop.

Prints, for one dataset root, in one run (so other load on the machine hits both alike):

* esc50kit clips/s computing features into a fresh temporary cache (nothing reused);
* the plain loop of the seed projects, one clip at a time::

      y, sr = librosa.load(path, sr=22050)
      S = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=sr))

  run as they ran it (library defaults), and once more with BLAS/OpenMP limited to one
  thread: on a busy machine librosa's mel product spins OpenBLAS threads and the default
  loop slows several-fold, which would flatter esc50kit;
* their ratio: for whole runs (each paying its own one-time setup: esc50kit its imports,
  worker processes and filterbank, the plain loop librosa's first-call imports), in
  steady state (setup excluded from both), and against the faster plain variant;
* the time of a second, cached run, and the peak memory of the process and its workers.

Usage::

    python benchmarks/bench_features.py --data ../shared/data/ESC-10
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

from esc50kit.errors import add_debug_flag, entry_point

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ESC-10"


def _peak_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # Linux reports KiB


def _cpu_seconds() -> float:
    """CPU time of this process and its finished workers (user + system)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _esc50kit_run(df, config, n_jobs) -> dict:
    """Compute into a fresh cache, then read it back. Returns timings."""
    from esc50kit.cache import load_or_compute

    with tempfile.TemporaryDirectory(prefix="esc50kit-bench-") as cache_dir:
        t0, c0 = time.perf_counter(), _cpu_seconds()
        fs = load_or_compute(df, config, cache_dir=cache_dir, n_jobs=n_jobs, progress=False)
        seconds, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
        t0 = time.perf_counter()
        cached = load_or_compute(df, config, cache_dir=cache_dir, n_jobs=n_jobs, progress=False)
        cached_seconds = time.perf_counter() - t0
        size_mb = fs.path.stat().st_size / 2**20
    assert cached.X.shape == fs.X.shape == (len(df), *config.shape)
    return {"seconds": seconds, "cpu": cpu, "cached": cached_seconds, "size_mb": size_mb}


def _plain_loop(paths: list[str], *, one_thread: bool) -> dict:
    """The seed projects' loop. Returns whole-run and first-clip timings."""
    import librosa

    if one_thread:
        from threadpoolctl import threadpool_limits

        limit = threadpool_limits(1)
    else:
        limit = nullcontext()
    with limit:
        t0, c0 = time.perf_counter(), _cpu_seconds()
        first = None
        for path in paths:
            y, sr = librosa.load(path, sr=22050)
            S = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=sr))
            if first is None:
                first = time.perf_counter() - t0
        seconds, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
    n = len(paths)
    steady = (n - 1) / (seconds - first) if n > 1 else n / seconds
    return {"seconds": seconds, "cpu": cpu, "first": first, "steady": steady, "shape": S.shape}


def _stage_costs(paths: list[str], config) -> dict:
    """Single-thread milliseconds per clip of each stage of esc50kit's extraction (best of 3).

    Reading (libsndfile), resampling to ``config.sr`` with soxr HQ (the call librosa.load
    makes too), and the features of the resampled clip. Their sum bounds what any
    number of workers can reach: clips/s <= workers * 1000 / sum.
    """
    import numpy as np
    import soundfile as sf
    from threadpoolctl import threadpool_limits

    from esc50kit.audio import fix_length, resample
    from esc50kit.features import compute

    def best_ms(fn, items):
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            out = [fn(x) for x in items]
            best = min(best, (time.perf_counter() - t0) / len(items) * 1000)
        return best, out

    with threadpool_limits(1):
        read_ms, raw = best_ms(lambda p: sf.read(p, dtype="int16", always_2d=True), paths)
        mono = [np.ascontiguousarray(d[:, 0] if d.shape[1] == 1 else d.mean(axis=1)).astype(np.float32)
                / 32768 for d, _ in raw]
        rates = {sr for _, sr in raw}
        res_ms, waves = best_ms(lambda y: resample(y, orig_sr=raw[0][1], target_sr=config.sr), mono)
        waves = [fix_length(w, size=config.n_samples) for w in waves]
        feat_ms, _ = best_ms(lambda y: compute(y, config), waves)
    return {"read": read_ms, "resample": res_ms, "features": feat_ms, "rates": sorted(rates)}


@entry_point  # known errors: `error: ...` and exit 1 or 2; Ctrl-C: 130 (esc50kit.errors)
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help=f"dataset root with meta/esc50.csv and audio/ (default {DEFAULT_DATA})")
    parser.add_argument("--n-jobs", type=int, default=None,
                        help="esc50kit worker processes (default: all CPUs)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N clips")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    if not (args.data / "meta" / "esc50.csv").is_file():
        parser.error(f"--data {args.data}: no meta/esc50.csv there; pass an ESC-50-style root")

    from esc50kit.data import load_metadata
    from esc50kit.features import FeatureConfig

    df = load_metadata(args.data)
    if args.limit:
        df = df.head(args.limit)
    n = len(df)
    paths = df["path"].tolist()
    config = FeatureConfig()
    print(f"data: {args.data} ({n} clips)")
    print(f"machine: {os.cpu_count()} CPUs, load average at start {os.getloadavg()[0]:.2f}; "
          f"python {sys.version.split()[0]}")
    print(f"esc50kit config: {config.to_dict()} -> features {config.shape} float16")

    def line(name: str, seconds: float, cpu: float, extra: str) -> None:
        print(f"{name:<31}: {seconds:6.2f} s {n / seconds:7.1f} clips/s "
              f"{1000 * cpu / n:6.2f} CPU-ms/clip  {extra}")

    # 1. esc50kit, cold: the first feature computation of this process.
    cold = _esc50kit_run(df, config, args.n_jobs)
    line("esc50kit, first run", cold["seconds"], cold["cpu"],
         f"(fresh cache; cache file {cold['size_mb']:.1f} MiB)")
    print(f"esc50kit, cached second run    : {cold['cached']:6.3f} s")
    print(f"peak memory after esc50kit     : main process {_peak_mb(resource.RUSAGE_SELF):.0f} MiB, "
          f"largest worker {_peak_mb(resource.RUSAGE_CHILDREN):.0f} MiB (ru_maxrss)")

    # 2. The plain loop as the seed projects ran it, then with one BLAS thread.
    plain = _plain_loop(paths, one_thread=False)
    line("plain loop, library defaults", plain["seconds"], plain["cpu"],
         f"(first clip {plain['first']:.2f} s; {plain['steady']:.1f} clips/s after it)")
    plain1 = _plain_loop(paths, one_thread=True)
    line("plain loop, BLAS 1 thread", plain1["seconds"], plain1["cpu"],
         f"({plain1['steady']:.1f} clips/s after the first clip)")

    # 3. esc50kit again, warm (imports done, filterbank built), into another fresh cache.
    warm = _esc50kit_run(df, config, args.n_jobs)
    line("esc50kit, warm run", warm["seconds"], warm["cpu"], "(another fresh cache)")

    ours_whole, ours_steady = n / cold["seconds"], n / warm["seconds"]
    best_plain = max(plain["steady"], plain1["steady"])
    print(f"speed ratio esc50kit / plain loop, whole runs       : "
          f"{ours_whole / (n / plain['seconds']):5.1f}x")
    print(f"speed ratio esc50kit / plain loop, steady state     : "
          f"{ours_steady / plain['steady']:5.1f}x")
    print(f"speed ratio esc50kit / faster plain variant, steady : "
          f"{ours_steady / best_plain:5.1f}x  (conservative)")
    print(f"CPU time per clip, plain loop (1 thread) / esc50kit  : "
          f"{plain1['cpu'] / warm['cpu']:5.1f}x")
    print(f"full ESC-50 (2000 clips) at the esc50kit first-run rate: {2000 / ours_whole:.1f} s")

    # 4. Where the time goes: the single-thread cost of each stage bounds any speed-up.
    stages = _stage_costs(paths[: min(n, 100)], config)
    floor = stages["read"] + stages["resample"] + stages["features"]
    workers = args.n_jobs or len(os.sched_getaffinity(0))
    plain_ms = 1000 / plain["steady"]
    print(f"stage costs, 1 thread, ms/clip (source rates {stages['rates']} Hz): read "
          f"{stages['read']:.2f}, soxr HQ resample {stages['resample']:.2f}, features "
          f"{stages['features']:.2f}; sum {floor:.2f} (plain loop {plain_ms:.2f})")
    print(f"ceiling with {workers} workers and no overhead: {workers * 1000 / floor:.0f} clips/s "
          f"= {workers * plain_ms / floor:.1f}x the plain loop's steady rate; with free "
          f"features (read + resample only): {workers * plain_ms / (floor - stages['features']):.1f}x")
    print(f"peak memory at the end: main process {_peak_mb(resource.RUSAGE_SELF):.0f} MiB, "
          f"largest worker {_peak_mb(resource.RUSAGE_CHILDREN):.0f} MiB; "
          f"load average at end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
