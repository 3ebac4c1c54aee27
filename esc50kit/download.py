"""Fetch, extract and verify the ESC-50 dataset: the download path of ``download_data.py``.

:func:`prepare_dataset` is idempotent, as torchvision's download helpers are: check what is
there, fetch only what is missing, check again, raise with the reason. It leaves
``dest/<root>/``: ``ESC-50-master`` from the network; from ``--source``, a zip extracted or
a folder copied (so a read-only source works), named after the folder that holds
``meta/esc50.csv`` (``ESC-10`` for ../shared/data/ESC-10). ``.verified.json`` is written
last, after a full check of the extracted tree (not of the zip, which GitHub rebuilds):

1. the table has the official columns and passes :func:`esc50kit.data.validate_table`;
2. a table that holds ESC-50 classes (an official category, 50 classes or 2000 rows) is
   laid out like ESC-50 (40 clips per class, equal folds 1-5, official targets): ESC-10
   and other subsets pass, a truncated copy fails; other classes are kind ``"custom"``;
3. every listed WAV is readable, 44.1 kHz, mono, 220,500 frames (headers only, read in
   threads: 2000 files in about a second), and a float WAV's samples are finite and
   within ``esc50kit.audio.MAX_ABS_SAMPLE``.

Messages name files as the user knows them (in the ``--source`` folder, or
``<zip>:<member>``, never the staging folder) and say what to do. A later run checks a
verified tree cheaply (the table's SHA-256, each WAV's size). Nothing half-done counts:
downloads go to ``<archive>.part`` and resume with ``Range`` guarded by ``If-Range`` (the
validator is kept in ``<archive>.part.json``), so a file changed on the server is fetched
whole, never spliced; trees are built in a hidden staging folder of ``dest``
(``.esc50kit-tmp-*``, so two runs must not share a ``dest``), then renamed into place.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import shutil
import socket
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Callable

import pandas as pd
import soundfile as sf
from tqdm.auto import tqdm
from tqdm.utils import CallbackIOWrapper

from . import __version__
from .audio import sample_problem
from .fileio import atomic_write_json
from .data import (
    ARCHIVE_NAME, AUDIO_DIRNAME, CLIP_FRAMES, CLIPS_PER_CLASS, ESC50_CATEGORIES,
    ESC50_CLIPS_PER_FOLD, ESC50_N_CLASSES, ESC50_N_CLIPS, EXTRACTED_DIRNAME, MARKER_NAME,
    META_RELPATH, N_CHANNELS, OFFICIAL_FOLDS, SAMPLE_RATE, URL, DatasetError, DatasetSummary,
    read_table, summarize, validate_table,
)

DEFAULT_RETRIES = 5  # consecutive attempts that bring no new byte before giving up
DEFAULT_TIMEOUT = 30.0  # seconds a socket may stay silent
CHUNK_SIZE = 1 << 20
BACKOFF_SECONDS = 2.0  # waits 2, 4, 8, ... s between attempts that made no progress
RETRY_HTTP_CODES = frozenset({408, 425, 429, 500, 502, 503, 504})
USER_AGENT = f"esc50kit/{__version__} (python-urllib)"
MARKER_FORMAT = 1
TMP_PREFIX = ".esc50kit-tmp-"  # staging folders; hidden, never taken for a dataset
MAX_ROOT_DEPTH = 2  # how deep find_dataset_root looks below the folder it is given
AUDIO_CHECK_WORKERS = 8  # header reads wait on the disk, not the CPU
N_LISTED = 5  # how many offending files an error message names
FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")  # WAV sample formats that can hold NaN, inf, or >> 1

logger = logging.getLogger(__name__)


class DownloadError(RuntimeError):
    """Fetching, extracting or verifying the dataset failed; the message says what to do."""


class CorruptArchiveError(DownloadError):
    """A zip file is truncated or corrupt."""


_OFFLINE_HINT = (
    f"To work offline, download {URL} in a browser and run "
    f"`python download_data.py --source path/to/{ARCHIVE_NAME}`."
)
_REFETCH_HINT = "Fetch the dataset again with `python download_data.py --force`."


@dataclass(frozen=True)
class SourceTree:
    """A tree under verification as messages name it: ``root`` (e.g.
    ``dest/.esc50kit-tmp-xxxx/ESC-50-master``) is ``shown`` as the user's source folder or
    ``<zip>:<top folder>``, and ``advice`` (fix a local source, fetch the archive again)
    ends each message."""

    root: Path
    shown: str
    advice: str = _REFETCH_HINT

    @classmethod
    def folder(cls, root: Path, src_root: Path) -> SourceTree:
        return cls(root, str(src_root), (
            f"Fix or replace the named file(s) in the source folder {src_root}, then run the "
            "same command again (the source is copied as it is, so --force alone would copy "
            "the same files)."))

    @classmethod
    def zip(cls, root: Path, archive: Path, prefix: str, *, owned: bool) -> SourceTree:
        shown = f"{archive}:{prefix}"
        if owned:  # downloaded here: fetching it again is the remedy
            return cls(root, shown, _REFETCH_HINT)
        return cls(root, shown, (
            f"Fix or replace the named member(s) of the zip {archive} (or download the "
            f"official archive again, {URL}), then run the same command again."))

    @property
    def _sep(self) -> str:
        return "" if self.shown.endswith(":") else "/"  # "<zip>:" for a zip without top folder

    def name(self, path: Path) -> str:
        """``path`` (under ``root``) as the user knows it."""
        rel = Path(path).relative_to(self.root).as_posix()
        return self.shown if rel == "." else f"{self.shown}{self._sep}{rel}"

    def text(self, message: str) -> str:
        """A message of another module with the staged paths replaced by the user's."""
        return (message.replace(f"{self.root}{os.sep}", f"{self.shown}{self._sep}")
                .replace(str(self.root), self.shown))


def _bytes_bar(total: int | None, desc: str, *, progress: bool, **kwargs) -> tqdm:
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                disable=not progress, leave=False, **kwargs)


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _parse_content_range(value: str | None) -> tuple[int | None, int | None]:
    """``"bytes 100-199/200"`` -> (100, 200); ``"bytes */200"`` -> (None, 200)."""
    if not value or not value.startswith("bytes "):
        return None, None
    span, _, total = value[len("bytes "):].partition("/")
    start = None if span == "*" else int(span.split("-")[0])
    return start, (int(total) if total.isdigit() else None)


def _validator_path(part: Path) -> Path:
    """``x.zip.part`` -> ``x.zip.part.json``: which file (URL and validator) ``part`` holds."""
    return part.with_name(part.name + ".json")


def _discard(part: Path) -> None:
    part.unlink(missing_ok=True)
    _validator_path(part).unlink(missing_ok=True)


def _validator(headers) -> str | None:
    """What identifies this version of the resource for If-Range: a strong ETag, else
    Last-Modified (weak ETags cannot guard a range, RFC 9110 13.1.5)."""
    etag = headers.get("ETag")
    return etag if etag and not etag.startswith("W/") else headers.get("Last-Modified")


def _saved_validator(part: Path, url: str) -> str | None:
    """What ``part`` was fetched as; None when nothing was recorded (the server sent no
    validator). A record of another URL, or an unreadable one, discards ``part``."""
    path = _validator_path(part)
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        saved = None
    if isinstance(saved, dict) and saved.get("url") == url:
        keys = ("validator", "etag", "last_modified")  # the last two: an older record format
        return next((saved[k] for k in keys if isinstance(saved.get(k), str)), None)
    logger.warning("%s was fetched from another URL (or its record %s is unreadable); "
                   "starting it over", part, path.name)
    _discard(part)
    return None


def _accept(response, url: str, part: Path, offset: int,
            saved: str | None) -> tuple[int, int | None] | None:
    """Where the body of ``response`` goes in ``part`` and the file's full size (None if
    unannounced); None when the answer is not the range, or not the file, asked for
    (``part`` is then discarded)."""
    status = getattr(response, "status", None) or 200  # file:// answers without a status
    length = response.headers.get("Content-Length")
    if status == 206:
        start, total = _parse_content_range(response.headers.get("Content-Range"))
        now = _validator(response.headers)
        if saved and now and now != saved:
            logger.warning("%s changed on the server since %s was started (%s, was %s); "
                           "fetching it whole", url, part.name, now, saved)
        elif start == offset:
            return offset, total if total is not None else (offset + int(length) if length else None)
        _discard(part)
        return None
    if status != 200:
        raise DownloadError(f"{url} answered HTTP {status}, expected 200 or 206. {_OFFLINE_HINT}")
    # A fresh transfer; a server that ignores Range; or, answering If-Range, one whose file
    # changed. Record which version these bytes are before writing any.
    if validator := _validator(response.headers):
        atomic_write_json(_validator_path(part), {"url": url, "validator": validator})
    else:
        _validator_path(part).unlink(missing_ok=True)
    return 0, int(length) if length else None


def _fetch_once(url: str, part: Path, *, timeout: float, chunk_size: int, progress: bool) -> bool:
    """One HTTP request that appends to ``part``: True when ``part`` is complete, False
    when the transfer stopped early or ``part`` was discarded (the caller retries).
    urllib, http.client and OS errors are left to the caller to classify."""
    saved = _saved_validator(part, url) if part.exists() else None
    offset = _size(part)
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if saved:  # the range only if the file is still the one we have the start of
            headers["If-Range"] = saved
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                          timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code != 416 or not offset:
            raise
        # 416: the range starts at or past the end. Complete if the sizes agree, else the
        # partial file belongs to another version of the resource: start over.
        if _parse_content_range(exc.headers.get("Content-Range"))[1] == offset:
            return True
        _discard(part)
        return False
    with response:
        if (accepted := _accept(response, url, part, offset, saved)) is None:
            return False
        offset, expected = accepted
        with open(part, "ab" if offset else "wb") as fh, _bytes_bar(
                expected, part.name.removesuffix(".part"), progress=progress, initial=offset) as bar:
            shutil.copyfileobj(response, CallbackIOWrapper(bar.update, fh, "write"), chunk_size)
    if expected is None:  # no length announced: a clean end of stream is the end of file
        return True
    if _size(part) > expected:  # more bytes than announced: nothing here can be trusted
        _discard(part)
        return False
    return _size(part) == expected


def _attempt(url: str, part: Path, **fetch) -> str | None:
    """One fetch: None when ``part`` is complete, else why not (worth a retry). Raises
    DownloadError for what retrying cannot fix (an HTTP error such as 404, no DNS)."""
    try:
        return None if _fetch_once(url, part, **fetch) else (
            "the connection closed before the end of the file")
    except urllib.error.HTTPError as exc:
        if exc.code in RETRY_HTTP_CODES:
            return f"HTTP {exc.code} ({exc.reason})"
        if _size(part) == 0:
            _discard(part)
        raise DownloadError(f"{url} answered HTTP {exc.code} ({exc.reason}). Check the URL (the "
                            f"official archive is {URL}). {_OFFLINE_HINT}") from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, socket.gaierror):  # no DNS: offline, waiting will not help
            raise DownloadError(
                f"could not download {url}: cannot resolve its host ({exc.reason}); "
                f"this machine seems to be offline. {_OFFLINE_HINT}") from exc
        return str(exc.reason)
    except (http.client.HTTPException, OSError) as exc:  # cut connections, timeouts
        return str(getattr(exc, "reason", None) or exc or type(exc).__name__)


def download_file(url: str, dest: str | Path, *, retries: int = DEFAULT_RETRIES,
                  timeout: float = DEFAULT_TIMEOUT, chunk_size: int = CHUNK_SIZE,
                  backoff: float = BACKOFF_SECONDS, progress: bool = True) -> Path:
    """Download ``url`` (http(s) or file) to ``dest``, resuming after interruptions.

    Bytes go to ``<dest>.part``, continued with ``Range`` and ``If-Range``; a 200 answer
    (Range ignored, or the file changed) restarts it, a 416 means it is complete (sizes
    agree) or stale (discarded). The finished file is renamed to ``dest``.

    Args:
        retries: consecutive attempts that bring no new byte before giving up.
        timeout: seconds a connection may stay silent before the attempt fails.
        backoff: seconds before the first retry, doubling after each failed attempt.

    Raises:
        DownloadError: an HTTP error that retrying cannot fix (such as 404), or no
            progress after ``retries`` retries; a partial file is kept to resume.
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    high_water, failures = _size(part), 0
    while (reason := _attempt(url, part, timeout=timeout, chunk_size=chunk_size,
                              progress=progress)) is not None:
        size = _size(part)
        high_water, failures = (size, 0) if size > high_water else (high_water, failures + 1)
        if failures > retries:
            if size == 0:
                _discard(part)
            kept = (f" The {size:,} bytes received are kept in {part}; run again to resume."
                    if size else "")
            raise DownloadError(f"could not download {url}: {reason} ({failures} attempts without "
                                f"progress).{kept} Check the network connection. {_OFFLINE_HINT}")
        delay = backoff * 2 ** max(failures - 1, 0)
        logger.warning("download interrupted (%s) at %s bytes; retrying in %.0f s",
                       reason, f"{size:,}", delay)
        time.sleep(delay)
    os.replace(part, dest)
    _validator_path(part).unlink(missing_ok=True)
    return dest


def _corrupt(zip_path: Path, exc: BaseException) -> CorruptArchiveError:
    return CorruptArchiveError(
        f"{zip_path} is not a valid zip archive: it is truncated or corrupt ({exc}). "
        "Download it again (for the official archive: `python download_data.py --force`).")


def extract_archive(zip_path: str | Path, dest_dir: str | Path, *, progress: bool = True) -> Path:
    """Extract ``zip_path`` into the new folder ``dest_dir``, which appears only once
    extraction is complete (members go to a hidden sibling, renamed at the end). Returns
    ``dest_dir``, which holds the archive's members (``dest_dir/ESC-50-master/...``).

    Raises:
        CorruptArchiveError: the file is not a zip, or is truncated or corrupt.
        DownloadError: ``dest_dir`` exists, or extraction failed (disk full, permissions).
    """
    zip_path, dest_dir = Path(zip_path), Path(dest_dir)
    if not zip_path.is_file():
        raise DownloadError(f"archive {zip_path} not found; pass the path of the ESC-50 zip file.")
    if dest_dir.exists():
        raise DownloadError(f"{dest_dir} already exists; remove it or extract somewhere else.")
    dest_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=dest_dir.parent))
    try:
        with zipfile.ZipFile(zip_path) as zf:
            members = zf.infolist()
            with _bytes_bar(sum(m.file_size for m in members), f"extracting {zip_path.name}",
                            progress=progress) as bar:
                for member in members:
                    zf.extract(member, tmp)  # zipfile drops '..' and absolute paths
                    bar.update(member.file_size)
        os.replace(tmp, dest_dir)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise _corrupt(zip_path, exc) from exc
    except NotImplementedError as exc:
        raise DownloadError(
            f"{zip_path} uses a compression method Python's zipfile cannot read ({exc}); "
            "extract it with another tool and pass the folder with --source.") from exc
    except OSError as exc:
        raise DownloadError(f"could not extract {zip_path} into {dest_dir.parent}: {exc}. "
                            "Check free disk space and write permission.") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest_dir


def _zip_root_prefix(zip_path: Path) -> str:
    """The folder inside a zip that holds ``meta/esc50.csv`` ("" for the top level)."""
    suffix = META_RELPATH.as_posix()
    try:
        with zipfile.ZipFile(zip_path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, EOFError) as exc:
        raise _corrupt(zip_path, exc) from exc
    except OSError as exc:
        raise DownloadError(f"could not read {zip_path}: {exc}") from exc
    found = sorted(n[: -len(suffix)].rstrip("/") for n in names
                   if (n == suffix or n.endswith("/" + suffix)) and not n.startswith("__MACOSX/"))
    if not found:
        raise DownloadError(
            f"{zip_path} holds no {suffix}: it is not an ESC-50 archive. "
            f"Pass the ESC-50 zip ({ARCHIVE_NAME}) or the folder that holds meta/ and audio/.")
    if len(found) > 1:
        raise DownloadError(
            f"{zip_path} holds several dataset roots {found}; extract it and pass the folder "
            "of the one you want with --source.")
    return found[0]


def _visible(path: Path, top: Path) -> bool:
    """No part of ``path`` below ``top`` is hidden (such as a staging folder)."""
    return not any(part.startswith(".") for part in path.relative_to(top).parts)


def find_dataset_root(directory: str | Path) -> Path:
    """The folder that holds ``meta/esc50.csv``: ``directory`` or one at most
    ``MAX_ROOT_DEPTH`` levels below (``data/`` -> ``data/ESC-50-master``), hidden skipped.

    Raises:
        DownloadError: no root, or several, were found.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise DownloadError(f"{directory} is not a folder.")
    for depth in range(MAX_ROOT_DEPTH + 1):
        pattern = "/".join(["*"] * depth + [META_RELPATH.as_posix()])
        found = sorted(p.parents[1] for p in directory.glob(pattern) if _visible(p, directory))
        if len(found) == 1:
            return found[0]
        if found:
            raise DownloadError(
                f"{directory} holds several dataset roots: {[str(p) for p in found]}. "
                "Pass the one you want.")
    raise DownloadError(
        f"no {META_RELPATH.as_posix()} in {directory} or up to {MAX_ROOT_DEPTH} folders below it. "
        f"Pass the folder that holds meta/ and audio/ (e.g. .../{EXTRACTED_DIRNAME}), "
        "or the ESC-50 zip file.")


def _listing(items: list[str]) -> str:
    more = f"; ... ({len(items) - N_LISTED} more)" if len(items) > N_LISTED else ""
    return "; ".join(items[:N_LISTED]) + more


def _check_counts(df: pd.DataFrame, summary: DatasetSummary, source: str, *,
                  advice: str = _REFETCH_HINT) -> None:
    """Hold a table that holds ESC-50 classes to ESC-50's layout (module docstring, rule 2)."""
    official = {name: target for target, name in enumerate(ESC50_CATEGORIES)}
    pairs = df.drop_duplicates("category")[["category", "target"]].itertuples(index=False)
    wrong = [f"{c!r} has target {t}, ESC-50 says {official[c]}" for c, t in pairs
             if c in official and official[c] != t]
    if wrong:
        raise DownloadError(
            f"{source}: categories with the wrong target: {_listing(wrong)}. The table is "
            f"not an intact ESC-50 table. {advice}")
    claims_esc50 = (any(c in official for c in summary.clips_per_class)
                    or summary.n_classes == ESC50_N_CLASSES or summary.n_clips == ESC50_N_CLIPS)
    if not claims_esc50 or summary.kind != "custom":
        return
    off = [f"{c}: {n}" for c, n in summary.clips_per_class.items() if n != CLIPS_PER_CLASS]
    detail = f" Classes without {CLIPS_PER_CLASS} clips: {_listing(off)}." if off else ""
    raise DownloadError(
        f"{source}: wrong counts for ESC-50 data: {summary.n_clips} clips, {summary.n_classes} "
        f"classes, clips per fold {summary.clips_per_fold}.{detail} ESC-50 has "
        f"{ESC50_N_CLIPS} clips ({ESC50_N_CLASSES} classes x {CLIPS_PER_CLASS}, folds "
        f"{OFFICIAL_FOLDS[0]}-{OFFICIAL_FOLDS[-1]} x {ESC50_CLIPS_PER_FOLD}); a subset such as "
        f"ESC-10 keeps {CLIPS_PER_CLASS} clips per class and equal folds. The copy is "
        f"incomplete. {advice}")


def _unreadable(exc: BaseException) -> str:
    return f"unreadable ({getattr(exc, 'error_string', None) or exc})"


def _audio_problem(path: Path) -> str | None:
    """What is wrong with one WAV file, or None. Reads the header, and the samples of a
    float file (NaN, inf, or beyond :data:`esc50kit.audio.MAX_ABS_SAMPLE`)."""
    try:
        info = sf.info(str(path))
    except (RuntimeError, OSError) as exc:  # soundfile.LibsndfileError is a RuntimeError
        return f"{path.name}: {_unreadable(exc)}"
    checks = ((info.samplerate != SAMPLE_RATE, f"{info.samplerate} Hz, expected {SAMPLE_RATE}"),
              (info.channels != N_CHANNELS, f"{info.channels} channels, expected mono"),
              (info.frames != CLIP_FRAMES,
               f"{info.frames} frames, expected {CLIP_FRAMES} (5 s at 44.1 kHz)"))
    issues = [text for bad, text in checks if bad]
    if not issues and info.subtype in FLOAT_SUBTYPES:  # integer PCM is finite and in range
        try:
            problem = sample_problem(sf.read(str(path), dtype="float64", always_2d=True)[0])
        except (RuntimeError, OSError) as exc:
            problem = _unreadable(exc)
        if problem:
            issues.append(problem)
    return f"{path.name}: {', '.join(issues)}" if issues else None


def _check_table(root: Path, tree: SourceTree) -> tuple[pd.DataFrame, DatasetSummary]:
    """Rules 1 and 2 of the module docstring; the table and its summary."""
    csv_name = tree.name(root / META_RELPATH)
    try:
        df = read_table(root)
        validate_table(df, source=csv_name)
    except DatasetError as exc:
        raise DownloadError(f"{tree.text(str(exc))} {tree.advice}") from exc
    summary = summarize(df)
    _check_counts(df, summary, csv_name, advice=tree.advice)
    return df, summary


def _check_audio(paths: list[Path], tree: SourceTree, *, check_format: bool,
                 progress: bool) -> None:
    """Rule 3 of the module docstring, for the files ``paths`` of ``tree``'s audio folder."""
    audio_name = tree.name(tree.root / AUDIO_DIRNAME)
    missing = [p.name for p in paths if not p.is_file() or p.stat().st_size == 0]
    if missing:
        raise DownloadError(f"{audio_name}: {len(missing)} of {len(paths)} WAV file(s) listed in "
                            f"{META_RELPATH.as_posix()} are missing or empty: {_listing(missing)}. "
                            f"The tree is incomplete. {tree.advice}")
    if not check_format:
        return
    with ThreadPoolExecutor(max_workers=AUDIO_CHECK_WORKERS) as pool:
        results = list(tqdm(pool.map(_audio_problem, paths), total=len(paths), unit="file",
                            desc="checking audio", disable=not progress, leave=False))
    problems = [r for r in results if r is not None]
    if problems:
        raise DownloadError(
            f"{audio_name}: {len(problems)} of {len(paths)} WAV file(s) are not "
            f"ESC-50 clips (readable, {SAMPLE_RATE} Hz, mono, 5 s, finite samples): "
            f"{_listing(problems)}. {tree.advice}")


def verify_dataset(root: str | Path, *, check_audio_format: bool = True, progress: bool = True,
                   source: SourceTree | None = None) -> DatasetSummary:
    """Verify an extracted ESC-50-style tree by the rules of the module docstring.

    Args:
        check_audio_format: read every WAV (rule 3); without it, files need only exist
            and be non-empty.
        source: how messages name ``root``'s files and what they advise (default:
            ``root`` itself, advised to fetch again).

    Returns:
        DatasetSummary: counts and ``kind`` ("ESC-50", "ESC-10", "ESC-50 subset" or "custom").

    Raises:
        DownloadError: naming the offending files or values and what to do.
    """
    root = Path(root)
    tree = source or SourceTree(root, str(root))
    df, summary = _check_table(root, tree)
    _check_audio([root / AUDIO_DIRNAME / name for name in df["filename"]], tree,
                 check_format=check_audio_format, progress=progress)
    return summary


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_marker(root: Path, summary: DatasetSummary) -> None:
    """Record a successful verification in ``root/.verified.json``."""
    audio_dir = root / AUDIO_DIRNAME
    record = {"format": MARKER_FORMAT, "verified_by": f"esc50kit {__version__}",
              "verified_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "summary": asdict(summary), "table_sha256": _sha256(root / META_RELPATH),
              "audio_sizes": {name: (audio_dir / name).stat().st_size
                              for name in read_table(root)["filename"]}}
    try:
        atomic_write_json(root / MARKER_NAME, record)
    except OSError as exc:
        raise DownloadError(
            f"could not write {root / MARKER_NAME}: {exc}. --dest must be writable.") from exc



def read_verified_summary(root: str | Path, *, advice: str = _REFETCH_HINT) -> DatasetSummary:
    """Check a verified tree cheaply and return the summary recorded at verification: no
    audio is decoded, but the table must have the SHA-256 recorded in ``.verified.json``
    and every listed WAV its recorded size. ``advice`` ends a message about a damaged tree.

    Raises:
        DownloadError: no marker, an unreadable marker, or a changed, missing or
            resized file (named in the message).
    """
    root = Path(root)
    marker = root / MARKER_NAME
    if not marker.is_file():
        raise DownloadError(
            f"{root} has no {MARKER_NAME}: it has not been verified. "
            f"Run `python download_data.py --source {root}` to verify and install it.")
    try:
        record = json.loads(marker.read_text())
        if record["format"] != MARKER_FORMAT:
            raise ValueError(f"marker format {record['format']}, expected {MARKER_FORMAT}")
        fields = dict(record["summary"])
        fields["clips_per_fold"] = {int(k): int(v) for k, v in fields["clips_per_fold"].items()}
        sizes = {str(k): int(v) for k, v in record["audio_sizes"].items()}
        summary, table_sha = DatasetSummary(**fields), record["table_sha256"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DownloadError(f"{marker} is unreadable ({exc}). {advice}") from exc
    csv_path = root / META_RELPATH
    if not csv_path.is_file() or _sha256(csv_path) != table_sha:
        raise DownloadError(f"{csv_path} is missing or changed since it was verified. {advice}")
    changed = []
    for name, size in sizes.items():
        path = root / AUDIO_DIRNAME / name
        if not path.is_file():
            changed.append(f"{name} (missing)")
        elif path.stat().st_size != size:
            changed.append(f"{name} ({path.stat().st_size:,} bytes, verified with {size:,})")
    if changed:
        raise DownloadError(
            f"{root / AUDIO_DIRNAME}: {len(changed)} WAV file(s) changed since verification: "
            f"{_listing(changed)}. The tree is damaged. {advice}")
    return summary


def _copy_tree(src: Path, dst: Path, *, progress: bool) -> Path:
    """Copy the non-hidden files of ``src`` to ``dst`` with new folders and default
    permissions (not ``shutil.copytree``, which would copy a read-only source's modes)."""
    files = [p for p in sorted(src.rglob("*")) if p.is_file() and _visible(p, src)]
    try:
        with _bytes_bar(sum(p.stat().st_size for p in files), f"copying {src.name}",
                        progress=progress) as bar:
            dst.mkdir(parents=True)
            for p in files:
                out = dst / p.relative_to(src)
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(p, out)
                bar.update(p.stat().st_size)
    except OSError as exc:
        raise DownloadError(f"could not copy {src} to {dst.parent}: {exc}. "
                            "Check free disk space and write permission.") from exc
    return dst


def _install(target: Path, build: Callable[[Path], Path], source: Callable[[Path], SourceTree],
             *, force: bool, progress: bool, local: bool) -> Path:
    """Put a verified tree at ``target``: the one there (unless ``force``), else the root
    that ``build(staging)`` writes in a staging folder beside it, verified (``source(root)``
    names its files) and marked there, then renamed over ``target``."""
    if target.exists() and not force:
        return _use_existing(target, progress=progress, local=local)
    staging = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=target.parent))
    try:
        root = build(staging)
        tree = source(root)
        summary = verify_dataset(root, progress=progress, source=tree)
        _write_marker(root, summary)
        if target.exists():
            os.replace(target, staging / "previous")
        os.replace(root, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("verified %s and installed it as %s (%s)", tree.shown, target, summary)
    return target.resolve()


def _use_existing(target: Path, *, progress: bool, local: bool) -> Path:
    """Accept a tree already at ``target``: cheaply if marked, else by a full verification.
    ``local``: ``--force`` would copy a local ``--source`` again, else fetch the archive."""
    again = "copy it again from the source" if local else "fetch it again"
    advice = (f"Run the same command with --force to {again} (it replaces {target}), or "
              "remove that folder.")
    if (target / MARKER_NAME).exists():
        summary = read_verified_summary(target, advice=advice)
        logger.info("%s is already verified (%s); nothing to fetch", target, summary)
        return target.resolve()
    try:
        summary = verify_dataset(target, progress=progress, source=SourceTree(target, str(target), ""))
    except DownloadError as exc:
        raise DownloadError(
            f"{target} exists but does not verify: {str(exc).rstrip()} {advice}") from exc
    _write_marker(target, summary)
    logger.info("verified the existing tree %s (%s)", target, summary)
    return target.resolve()


def prepare_dataset(*, source: str | Path | None = None, dest: str | Path = "data",
                    force: bool = False, url: str = URL, progress: bool = True) -> Path:
    """Make sure a verified dataset is in ``dest``; fetch it only when it is not.

    Args:
        source: None to download ``url``; else a local zip file (extracted into ``dest``,
            left alone) or a folder holding a dataset root (copied into ``dest``; one
            already where the copy would go is used in place).
        force: fetch, extract or copy again and replace the tree in ``dest``, even if it
            verifies; a previous partial download is discarded.

    Returns:
        Path: the absolute path of the verified root, e.g. ``data/ESC-50-master``
        (:func:`read_verified_summary` gives its summary).

    Raises:
        DownloadError: no network, an HTTP error, a truncated or corrupt archive,
            missing or unreadable files, or wrong counts; the message says what to do.
    """
    dest = Path(dest).expanduser()
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create --dest {dest}: {exc}") from exc
    for stale in dest.glob(TMP_PREFIX + "*"):
        logger.info("removing %s, left by an interrupted run", stale)
        shutil.rmtree(stale, ignore_errors=True)
    if source is None:
        archive = dest / ARCHIVE_NAME
        if force:
            archive.unlink(missing_ok=True)
            _discard(archive.with_name(archive.name + ".part"))
        elif (dest / EXTRACTED_DIRNAME).exists():
            return _use_existing(dest / EXTRACTED_DIRNAME, progress=progress, local=False)
        if not archive.exists():  # a complete archive from an interrupted run is reused
            logger.info("downloading %s to %s", url, archive)
            download_file(url, archive, progress=progress)
        return _prepare_from_zip(archive, dest, force=force, progress=progress, owned=True,
                                 name=EXTRACTED_DIRNAME)
    source = Path(source).expanduser()
    if source.is_dir():
        return _prepare_from_folder(source, dest, force=force, progress=progress)
    if source.is_file():
        return _prepare_from_zip(source, dest, force=force, progress=progress, owned=False)
    raise DownloadError(
        f"--source {source} does not exist. Pass the ESC-50 zip file or the folder that "
        "holds meta/ and audio/, or leave --source out to download.")


def _prepare_from_folder(source: Path, dest: Path, *, force: bool, progress: bool) -> Path:
    src_root = find_dataset_root(source)
    target = dest / src_root.name
    if src_root.resolve() == target.resolve() and force:  # the source is the tree in dest
        tree = SourceTree.folder(target, src_root)
        _write_marker(target, verify_dataset(target, progress=progress, source=tree))
        return target.resolve()
    return _install(target, lambda staging: _copy_tree(src_root, staging / src_root.name,
                                                       progress=progress),
                    lambda root: SourceTree.folder(root, src_root),
                    force=force, progress=progress, local=True)


def _prepare_from_zip(archive: Path, dest: Path, *, force: bool, progress: bool, owned: bool,
                      name: str | None = None) -> Path:
    """Extract ``archive`` into ``dest``. ``owned``: we downloaded it, so we may delete it."""
    try:
        prefix = _zip_root_prefix(archive)
        root = _install(
            dest / (name or PurePosixPath(prefix).name or archive.stem),
            lambda staging: extract_archive(archive, staging / "extracted", progress=progress) / prefix,
            lambda root: SourceTree.zip(root, archive, prefix, owned=owned),
            force=force, progress=progress, local=not owned)
    except CorruptArchiveError as exc:
        if not owned:
            raise
        archive.unlink(missing_ok=True)
        raise CorruptArchiveError(
            f"{exc} The corrupt download was deleted: run the command again to fetch it "
            "afresh; if this repeats, download the zip in a browser and pass it with --source."
        ) from exc
    if owned:
        archive.unlink(missing_ok=True)  # the verified tree is what the pipeline reads
    return root
