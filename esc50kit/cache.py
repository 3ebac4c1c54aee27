"""Compute the features of a table of clips once, in parallel, and cache them on disk::

    fs = load_or_compute(load_metadata(root), FeatureConfig())  # fs.X: (N, n_mels, frames)

A cache file holds the features (float16), the files they came from, the configuration
and the library versions. Its name holds ``config.key()`` and a fingerprint of the files
(names, sizes, modification times, a sample of their bytes) and library versions, so a
changed parameter, file or library never reuses a stale cache; a file that fails its
checksum is rebuilt with a warning. Cache files and feature packs (:mod:`esc50kit.packs`)
share one layout (:func:`write_npz`, :func:`read_npz`): named arrays and a JSON header.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing as mp
import os
import signal
import sys
import threading
import warnings
from dataclasses import dataclass, field
from multiprocessing import connection as mp_connection
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd

from .audio import AudioReadError, load_audio
from .features import FEATURE_VERSION, FeatureConfig, compute
from .fileio import atomic_path
from .variants import VariantSpec, make_copies

ON_ERROR = ("raise", "skip")
CACHE_FORMAT = 2  # in the file name's fingerprint: caches of another format are recomputed
# Bytes hashed from the middle of each file: catches a file rewritten in place with its
# size and modification time kept (e.g. ``rsync -t``).
_SAMPLE_BYTES = 4096


@dataclass
class FeatureSet:
    """Features of the clips of a table, row-aligned with that table.

    Attributes:
        X: np.ndarray, shape (N, n_bins, frames), float16 (steps of 0.06 dB at -100 dB, far
            below what a model can use), in the table's order; row ``i`` is ``filenames[i]``.
            With ``on_error="skip"`` the failed files (``skipped``) are left out.
        path: the cache file (None when caching was off).
    """

    X: np.ndarray
    filenames: list[str]
    config: FeatureConfig
    path: Path | None = None
    skipped: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.filenames)

    def rows(self, df: pd.DataFrame) -> pd.DataFrame:
        """The rows of ``df`` that have features, in the order of ``X`` (after
        ``on_error="skip"``, ``fs.rows(df)["label"]`` aligns with ``fs.X``)."""
        pos = pd.Index(df["filename"].astype(str)).get_indexer(self.filenames)
        if (pos < 0).any():
            missing = [f for f, p in zip(self.filenames, pos) if p < 0][:3]
            raise ValueError(f"df lacks file(s) {missing} of this FeatureSet; "
                             "pass the table it was computed from")
        return df.iloc[pos]


def library_versions(config: FeatureConfig | None = None) -> dict[str, str]:
    """Versions of the libraries whose numbers end up in the features of ``config``."""
    import scipy
    import soundfile
    import soxr

    versions = {"esc50kit_features": str(FEATURE_VERSION), "numpy": np.__version__,
                "scipy": scipy.__version__, "soxr": soxr.__version__,
                "soundfile": soundfile.__version__,
                "libsndfile": soundfile.__libsndfile_version__}
    if config is not None and config.resize is not None:
        import cv2

        versions["opencv"] = cv2.__version__
    return versions


def _file_fingerprint(path: str) -> list[Any]:
    """``[size, mtime_ns, blake2b of a sample of the bytes]`` of a file, or its error."""
    try:
        st = os.stat(path)
        with open(path, "rb") as fh:
            fh.seek(max(0, st.st_size // 2 - _SAMPLE_BYTES // 2))
            sample = hashlib.blake2b(fh.read(_SAMPLE_BYTES), digest_size=8).hexdigest()
        return [st.st_size, st.st_mtime_ns, sample]
    except OSError as exc:
        return ["missing", type(exc).__name__]


def files_fingerprint(paths: Sequence[str], filenames: Sequence[str],
                      versions: dict[str, str]) -> str:
    """A hash of the ordered file list, each file's fingerprint, and the library versions."""
    h = hashlib.sha1()
    h.update(json.dumps(versions, sort_keys=True).encode())
    for name, path in zip(filenames, paths):
        h.update(json.dumps([name, _file_fingerprint(path)]).encode())
    return h.hexdigest()[:12]


def _checksum(X: np.ndarray) -> str:
    return hashlib.blake2b(np.ascontiguousarray(X).data, digest_size=16).hexdigest()


def write_npz(path: str | Path, header: dict[str, Any], **arrays: np.ndarray) -> None:
    """Write ``arrays`` and a JSON ``header`` to one ``.npz`` file, atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:  # a handle: np.savez(path) appends .npz
        np.savez(fh, header=np.array(json.dumps(header)), **arrays)


def read_npz(path: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read a file of :func:`write_npz`: ``(header, {name: array})``. Raises what numpy,
    zipfile or json raise for a damaged file, ``KeyError`` for one without a header."""
    with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    return json.loads(str(arrays.pop("header"))), arrays


def default_n_jobs() -> int:
    """CPUs this process may run on (``os.cpu_count()`` unless an affinity mask says fewer)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _worker_loop(conn, parent_pid: int) -> None:
    """A worker process: run the tasks that arrive on ``conn`` until told to stop.

    SIGINT is ignored: a Ctrl-C reaches the whole process group, and the parent alone
    decides how the workers stop (it kills them); a worker whose parent is gone exits.
    Libraries loaded before the fork get one thread each: the processes are the parallelism.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    if "cv2" in sys.modules:
        sys.modules["cv2"].setNumThreads(1)
    while True:
        while not conn.poll(1.0):
            if os.getppid() != parent_pid:
                return
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        try:
            reply = (True, _extract_chunk(task))
        except Exception as exc:  # a failure outside the per-file handling; re-raised in the parent
            reply = (False, f"{type(exc).__name__}: {exc}")
        conn.send(reply)


@contextlib.contextmanager
def _ctrl_c_held() -> Iterator[None]:
    """Hold back a Ctrl-C (SIGINT) until the block ends, then deliver it as usual.

    Blocking the signal in this thread is not enough: the kernel hands it to any other
    thread (numpy's BLAS threads), and Python then raises KeyboardInterrupt in this one at
    any line, even between a worker's fork and its registration (a CI run once saw such a
    worker outlive its parent). A forked child inherits the holding handler until it sets
    its own. Outside the main thread nothing is held: KeyboardInterrupt is not raised there.
    """
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is None):  # a handler Python cannot restore
        yield
        return
    held: list[tuple] = []
    previous = signal.signal(signal.SIGINT, lambda *sig: held.append(sig))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if held and callable(previous):
            previous(*held[0])  # Python's default handler raises KeyboardInterrupt here
        elif held and previous == signal.SIG_DFL:
            raise KeyboardInterrupt


class _Workers:
    """Worker processes with a pipe each, for :func:`extract_features`.

    Measured (#24): ``multiprocessing.Pool`` hung on Ctrl-C in 3 of 30 tries (its
    ``terminate()`` takes a task-queue lock a worker may hold; these workers: 0 in 60) and
    ``ProcessPoolExecutor`` ran ~20% slower (653 against 839 clips/s). No lock is shared
    here: on any exception, Ctrl-C included, the parent kills its workers.
    """

    def __init__(self, n: int, ctx) -> None:
        self.procs, self.conns = [], []
        try:
            with _ctrl_c_held():  # none half-started (forked, not yet known) when it lands
                for _ in range(n):
                    parent_end, child_end = ctx.Pipe(duplex=True)
                    self.conns.append(parent_end)
                    self.procs.append(ctx.Process(target=_worker_loop,
                                                  args=(child_end, os.getpid()), daemon=True))
                    self.procs[-1].start()
                    child_end.close()
        except BaseException:  # a Ctrl-C held meanwhile lands here, once all have started
            self.stop(kill=True)
            raise

    def imap_unordered(self, tasks: Sequence) -> Iterator:
        """Results of ``_extract_chunk`` on ``tasks``, in the order they finish."""
        todo = iter(tasks)
        busy = {}  # connection -> its worker process, while it computes a task
        for (conn, proc), task in zip(zip(self.conns, self.procs), todo):
            conn.send(task)
            busy[conn] = proc
        while busy:
            sentinels = {proc.sentinel: conn for conn, proc in busy.items()}
            for ready in mp_connection.wait([*busy, *sentinels]):
                conn = sentinels.get(ready, ready)
                if conn not in busy or not (conn.poll() or ready in sentinels):
                    continue  # a worker that finished its task already
                try:
                    ok, payload = conn.recv()  # a died worker: its pipe is at its end
                except EOFError:
                    busy[conn].join(1.0)
                    raise RuntimeError(
                        f"feature worker process {busy[conn].pid} died (exit code "
                        f"{busy[conn].exitcode}) while computing features; out of memory? "
                        "Try fewer workers (n_jobs).") from None
                if not ok:
                    raise RuntimeError(f"feature extraction failed in a worker: {payload}")
                yield payload
                task = next(todo, None)
                if task is None:
                    del busy[conn]
                else:
                    conn.send(task)

    def stop(self, *, kill: bool) -> None:
        """Stop the workers: ask them to finish (``kill=False``), or kill them now."""
        for conn in self.conns if not kill else ():
            with contextlib.suppress(OSError):
                conn.send(None)
        for proc in self.procs:
            if proc.pid is None:
                continue
            if kill:
                proc.kill()
            proc.join(timeout=None if kill else 5.0)
            if proc.is_alive():  # did not finish in time: no reason to wait longer
                proc.kill()
                proc.join()
        for conn in self.conns:
            conn.close()


def _results(tasks: Sequence, n_jobs: int) -> Iterator:
    """Results of ``_extract_chunk`` on ``tasks``, here (``n_jobs <= 1``) or in ``n_jobs``
    workers (in the order they finish); the workers stop when it closes."""
    if n_jobs <= 1:
        yield from map(_extract_chunk, tasks)
        return
    # fork: workers inherit the imported modules, so start-up costs milliseconds
    # (spawn re-imports numpy and scipy in each worker); spawn where fork is absent.
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    workers = _Workers(n_jobs, ctx)
    try:
        yield from workers.imap_unordered(tasks)
    except BaseException:  # KeyboardInterrupt and GeneratorExit included: no waiting
        workers.stop(kill=True)
        raise
    workers.stop(kill=False)


def _row_shape(config: FeatureConfig, variants: VariantSpec | None) -> tuple[int, ...]:
    """Shape of one row of X: (n_bins, frames), or (copies, n_bins, frames) for variants."""
    return config.shape if variants is None else (int(variants.copies), *config.shape)


def _extract_chunk(
    task: tuple[list[int], list[str], list[str], dict[str, Any], dict[str, Any] | None],
) -> tuple[list[int], np.ndarray, list[tuple[int, str]]]:
    """Load a chunk of files (and make their variants) and compute their features.

    Returns:
        (indices that succeeded, float16 features of shape (n_ok, *row shape),
        [(index, reason)] of the files that failed).
    """
    indices, paths, names, config_dict, variants_dict = task
    config = FeatureConfig.from_dict(config_dict)
    variants = VariantSpec.from_dict(variants_dict) if variants_dict else None
    ok, waves, errors = [], [], []
    for i, path, name in zip(indices, paths, names):
        try:
            y = load_audio(path, sr=config.sr, duration=config.duration, pad_mode=config.pad_mode)
            if variants is not None:
                waves.extend(make_copies(y, sr=config.sr, filename=name, spec=variants))
            else:
                waves.append(y)
            ok.append(i)
        except AudioReadError as exc:
            errors.append((i, exc.reason))
        except Exception as exc:  # a decodable but unusable file: report it, named
            errors.append((i, f"{type(exc).__name__}: {exc}"))
    shape = _row_shape(config, variants)
    if not waves:
        return ok, np.zeros((0, *shape), dtype=np.float16), errors
    return ok, compute(np.stack(waves), config).astype(np.float16).reshape(len(ok), *shape), errors


def _tasks(paths: Sequence[str], names: Sequence[str], config: FeatureConfig,
           variants: VariantSpec | None, n_jobs: int) -> list[tuple]:
    """Chunks of clips for :func:`_extract_chunk` (a clip's copies stay in its chunk)."""
    per_clip = 1 if variants is None else int(variants.copies)
    # Several chunks per worker keep both the progress bar and the load balance smooth;
    # 8-32 waveforms per chunk amortise the per-call overhead of the batched FFT.
    size = max(1, int(np.clip(len(paths) // max(1, n_jobs * 4), 8, 32)) // per_clip)
    cfg, vdict = config.to_dict(), variants.to_dict() if variants is not None else None
    return [(list(r), [str(paths[i]) for i in r], [names[i] for i in r], cfg, vdict)
            for r in (range(s, min(len(paths), s + size)) for s in range(0, len(paths), size))]


def _check_on_error(on_error: str) -> None:
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error={on_error!r}; choose one of {ON_ERROR}")


def extract_features(paths: Sequence[str], config: FeatureConfig, *, n_jobs: int | None = None,
                     progress: bool = True, on_error: str = "raise",
                     variants: VariantSpec | None = None, filenames: Sequence[str] | None = None,
                     ) -> tuple[np.ndarray, list[int], dict[int, str]]:
    """Features of many files, computed in parallel worker processes.

    Args:
        n_jobs: worker processes (default: the CPUs available); 1 runs in this process.
        on_error: ``"raise"`` (stop at the first unreadable file, naming it) or
            ``"skip"`` (leave it out and report it).
        variants: compute the features of augmented copies of each clip instead of the
            clip's own (see :mod:`esc50kit.variants`).
        filenames: names seeding each clip's copies (default: the paths' file names).

    Returns:
        (X float16 of shape (n_ok, n_bins, frames), or (n_ok, copies, n_bins, frames)
        with ``variants``, in the order of ``paths``; positions in ``paths`` of its rows;
        {position: reason} of the skipped files).

    Raises:
        AudioReadError: with ``on_error="raise"``, for the first unreadable file.
    """
    from tqdm.auto import tqdm

    _check_on_error(on_error)
    n_jobs = default_n_jobs() if n_jobs is None else int(n_jobs)
    if n_jobs < 1:
        raise ValueError(f"n_jobs={n_jobs} must be >= 1 (or None for os.cpu_count())")
    names = [Path(p).name for p in paths] if filenames is None else [str(f) for f in filenames]
    tasks = _tasks(paths, names, config, variants, n_jobs)
    X = np.empty((len(paths), *_row_shape(config, variants)), dtype=np.float16)
    done = np.zeros(len(paths), dtype=bool)
    errors: dict[int, str] = {}
    # Build the filterbank and import scipy once here, so forked workers inherit them.
    compute(np.zeros(config.n_samples, dtype=np.float32), config)
    if variants is not None:
        import librosa.effects  # noqa: F401  (imported once here; forked workers inherit it)
    desc = "features" if variants is None else f"variants x{variants.copies}"
    with tqdm(total=len(paths), desc=desc, unit="clip", disable=not progress, leave=False) as bar, \
            contextlib.closing(_results(tasks, min(n_jobs, len(tasks)))) as results:
        for ok, Xc, errs in results:
            X[ok], done[ok] = Xc, True
            for i, reason in errs:
                if on_error == "raise":
                    raise AudioReadError(paths[i], reason)
                errors[i] = reason
            bar.update(len(ok) + len(errs))
    kept = np.flatnonzero(done)
    return (X if len(kept) == len(paths) else X[kept]), kept.tolist(), errors


def _load(path: Path, *, config: FeatureConfig, filenames: list[str],
          variants: VariantSpec | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Read and verify a cache file. Raises ``ValueError`` (or an I/O error) if it is unusable."""
    meta, arrays = read_npz(path)
    X = arrays["X"]
    if meta.get("format") != CACHE_FORMAT:
        raise ValueError(f"cache format {meta.get('format')} != {CACHE_FORMAT}")
    if meta["checksum"] != _checksum(X):
        raise ValueError("checksum mismatch")
    if FeatureConfig.from_dict(meta["config"]) != config:
        raise ValueError("configuration differs")
    if meta["filenames"] != filenames:
        raise ValueError("file list differs")
    if meta.get("variants") != (variants.to_dict() if variants is not None else None):
        raise ValueError("variant settings differ")
    if X.shape != (len(meta["kept"]), *_row_shape(config, variants)) or X.dtype != np.float16:
        raise ValueError(f"array of shape {X.shape} and dtype {X.dtype} does not match")
    return X, meta


def cache_path(df: pd.DataFrame, config: FeatureConfig, cache_dir: str | Path,
               variants: VariantSpec | None = None) -> Path:
    """Cache file of a table and configuration: ``features-<config key>-<files hash>.npz``
    (``variants-<config key>-<variant key>-<files hash>.npz`` for augmented variants)."""
    filenames, paths = _table_files(df)
    versions = {**library_versions(config), "cache_format": str(CACHE_FORMAT)}
    if variants is not None:
        import librosa  # pitch shift and time stretch come from librosa

        versions["librosa"] = librosa.__version__
    name = f"features-{config.key()}" if variants is None else \
        f"variants-{config.key()}-{variants.key()}"
    return Path(cache_dir) / f"{name}-{files_fingerprint(paths, filenames, versions)}.npz"


def _table_files(df: pd.DataFrame) -> tuple[list[str], list[str]]:
    """``(filenames, paths)`` of a table (file names from ``path`` without ``filename``)."""
    if "path" not in df.columns:
        raise ValueError("the table has no 'path' column; build it with esc50kit.data."
                         "load_metadata(root) or esc50kit.augment.expand_offline(...)")
    paths = df["path"].astype(str).tolist()
    if "filename" not in df.columns:
        return [Path(p).name for p in paths], paths
    return df["filename"].astype(str).tolist(), paths


def _from_cache(path: Path, paths: list[str], filenames: list[str], config: FeatureConfig,
                variants: VariantSpec | None, on_error: str) -> FeatureSet | None:
    """The FeatureSet in cache file ``path``; None (with a warning if it exists) if unusable."""
    if not path.exists():
        return None
    try:
        X, meta = _load(path, config=config, filenames=filenames, variants=variants)
    except Exception as exc:  # truncated zip, bad checksum, foreign file, ...
        warnings.warn(f"feature cache {path} is unusable ({type(exc).__name__}: {exc}); "
                      "recomputing it", RuntimeWarning, stacklevel=3)
        return None
    skipped = meta["skipped"]
    if skipped and on_error == "raise":
        raise AudioReadError(paths[skipped[0]["row"]], skipped[0]["reason"])
    return FeatureSet(X=X, filenames=[filenames[i] for i in meta["kept"]], config=config,
                      path=path, skipped=[filenames[s["row"]] for s in skipped])


def load_or_compute(df: pd.DataFrame, config: FeatureConfig | None = None, *,
                    cache_dir: str | Path | None = "artifacts/features", n_jobs: int | None = None,
                    progress: bool = True, on_error: str = "raise",
                    variants: VariantSpec | None = None) -> FeatureSet:
    """Features of every row of ``df``: read from the cache, or computed and cached.

    Args:
        df: a table with ``path`` (and ``filename``) columns, e.g. from
            :func:`esc50kit.data.load_metadata`; rows are processed in its order.
        config: feature parameters (default ``FeatureConfig()``).
        cache_dir: folder of the cache files; ``None`` computes without caching.
        n_jobs: worker processes (default: the CPUs available).
        on_error: ``"raise"``: an unreadable file raises :class:`AudioReadError` naming
            it. ``"skip"``: unreadable files are left out of ``X`` and listed in
            ``skipped`` (see :meth:`FeatureSet.rows`).
        variants: cache the features of augmented copies of each clip instead (see
            :mod:`esc50kit.variants`); ``X`` then has shape (N, copies, n_bins, frames).

    Returns:
        FeatureSet: ``X`` float16 of shape (N, n_bins, frames), row-aligned with ``df``
        (minus skipped files).
    """
    config = FeatureConfig() if config is None else config
    _check_on_error(on_error)
    filenames, paths = _table_files(df)
    path = cache_path(df, config, cache_dir, variants) if cache_dir is not None else None
    cached = _from_cache(path, paths, filenames, config, variants, on_error) if path else None
    if cached is not None:
        return cached
    X, kept, errors = extract_features(paths, config, n_jobs=n_jobs, progress=progress,
                                       on_error=on_error, variants=variants, filenames=filenames)
    skipped = [{"row": i, "file": filenames[i], "reason": r} for i, r in sorted(errors.items())]
    if skipped:
        warnings.warn(f"{len(skipped)} file(s) could not be read and were skipped: "
                      + "; ".join(f"{s['file']} ({s['reason']})" for s in skipped[:3]),
                      RuntimeWarning, stacklevel=2)
    if path is not None:
        write_npz(path, {"format": CACHE_FORMAT, "config": config.to_dict(),
                         "variants": variants.to_dict() if variants is not None else None,
                         "filenames": filenames, "kept": kept, "skipped": skipped,
                         "versions": library_versions(config), "checksum": _checksum(X)}, X=X)
    return FeatureSet(X=X, filenames=[filenames[i] for i in kept], config=config, path=path,
                      skipped=[s["file"] for s in skipped])
