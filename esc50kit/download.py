"""Fetch, extract and verify the ESC-50 dataset: the download path of ``download_data.py``.

:func:`prepare_dataset` is idempotent, in the manner of torchvision's download helpers:
check what is there, fetch only what is missing, check again, and raise with the reason.

Where the dataset lands (``dest`` defaults to ``data/``)::

    dest/ESC-50-master/          from the network, the official GitHub archive
    dest/<root name>/            from --source: a zip or a folder, named after the folder
                                 that holds meta/esc50.csv (ESC-50-master for the official
                                 zip, ESC-10 for ../shared/data/ESC-10)
    dest/<root>/.verified.json   written last, after a full verification

A local folder given as ``source`` is copied into ``dest``, not used in place: ``dest``
is then self-contained, and a read-only source (such as the shared ESC-10 folder) needs
no write access, because the marker is written in the copy. A folder that already lies
where the copy would go is verified and used in place.

What is verified: the extracted tree, never the zip bytes. GitHub builds archives on the
fly, so their hash is not stable; the files themselves are what the pipeline reads:

1. ``meta/esc50.csv`` has the official columns and passes :func:`esc50kit.data.validate_table`
   (official folds, unique files, labels that agree with file names).
2. Counts, named by :func:`esc50kit.data.summarize`. A table that holds ESC-50 classes (a
   category of the official 50, or 50 classes, or 2000 rows) must be laid out like ESC-50:
   40 clips per class, folds 1-5 of equal size, each category with its official target.
   The full dataset (2000 = 50 x 40, folds 5 x 400) and subsets such as ESC-10 (400 = 10 x
   40, folds 5 x 80) pass; a truncated copy fails. A table whose classes are not ESC-50's,
   such as the synthetic tree of :mod:`esc50kit.synthetic`, is accepted as kind
   ``"custom"`` when its files pass: the tests and offline demos run on it. The kind found
   is always reported.
3. Every listed WAV is present and readable by libsndfile, 44.1 kHz, mono, 220,500 frames
   (5 s). Only headers are read, in a thread pool: 2000 files take about a second. The
   samples of a float WAV (not of ESC-50's 16-bit ones) are read too: a NaN, infinite or
   huge sample (beyond ``esc50kit.audio.MAX_ABS_SAMPLE``) fails it.

A failure names the file as the user knows it (in the ``--source`` folder, or
``<zip>:<member>``, never the staging folder) and says what to do: fetch again with
``--force`` for the network archive, fix or replace the file for a local source.

A later run checks a verified tree cheaply: the table's SHA-256 and the size of every
listed WAV must match the marker, so a deleted, truncated or edited file is noticed, and
the run stops with a message rather than fetching again over it (``force=True`` does).

Nothing half-done ever counts as valid. Downloads go to ``<archive>.part`` and are
renamed when complete; an interrupted transfer resumes with an HTTP Range request, guarded
by ``If-Range`` with the validator (a strong ETag, else Last-Modified) of the first
response, kept beside the partial file in ``<archive>.part.json``: a server whose file
changed in between sends the new file whole instead of a tail to splice onto the old
bytes, and a 206 whose ETag differs from the saved one is discarded too. Archives
are extracted, and folders copied, into a hidden staging folder of ``dest``
(``.esc50kit-tmp-*``), verified there, marked, and only then renamed into place. A
staging folder left by a killed run is removed by the next run, so two runs must not share
one ``dest`` at the same time. A resumed download that GitHub rebuilt between the two
requests fails extraction; the corrupt archive is then deleted and the next run fetches
it whole.
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

from . import __version__
from .audio import sample_problem
from .fileio import atomic_write_json
from .data import (
    AUDIO_DIRNAME,
    CLIPS_PER_CLASS,
    ESC50_N_CLASSES,
    META_RELPATH,
    OFFICIAL_FOLDS,
    DatasetError,
    DatasetSummary,
    read_table,
    summarize,
    validate_table,
)

# The official archive: the master branch of karolpiczak/ESC-50, about 600 MB.
URL = "https://github.com/karolpiczak/ESC-50/archive/refs/heads/master.zip"
EXTRACTED_DIRNAME = "ESC-50-master"  # the top folder of that archive
ARCHIVE_NAME = f"{EXTRACTED_DIRNAME}.zip"

# Expected contents of the full dataset.
ESC50_N_CLIPS = 2000
ESC50_CLIPS_PER_FOLD = 400
SAMPLE_RATE = 44100
N_CHANNELS = 1
CLIP_FRAMES = 220500  # 5.0 s at 44.1 kHz
# The 50 categories in target order (target i is ESC50_CATEGORIES[i]), as in meta/esc50.csv.
ESC50_CATEGORIES = (
    "dog", "rooster", "pig", "cow", "frog", "cat", "hen", "insects", "sheep", "crow",
    "rain", "sea_waves", "crackling_fire", "crickets", "chirping_birds", "water_drops",
    "wind", "pouring_water", "toilet_flush", "thunderstorm",
    "crying_baby", "sneezing", "clapping", "breathing", "coughing", "footsteps",
    "laughing", "brushing_teeth", "snoring", "drinking_sipping",
    "door_wood_knock", "mouse_click", "keyboard_typing", "door_wood_creaks", "can_opening",
    "washing_machine", "vacuum_cleaner", "clock_alarm", "clock_tick", "glass_breaking",
    "helicopter", "chainsaw", "siren", "car_horn", "engine",
    "train", "church_bells", "airplane", "fireworks", "hand_saw",
)

# Transfer settings.
DEFAULT_RETRIES = 5  # consecutive attempts that bring no new byte before giving up
DEFAULT_TIMEOUT = 30.0  # seconds a socket may stay silent
CHUNK_SIZE = 1 << 20
BACKOFF_SECONDS = 2.0  # waits 2, 4, 8, ... s between attempts that made no progress
RETRY_HTTP_CODES = frozenset({408, 425, 429, 500, 502, 503, 504})
USER_AGENT = f"esc50kit/{__version__} (python-urllib)"

# Local layout.
MARKER_NAME = ".verified.json"
MARKER_FORMAT = 1
TMP_PREFIX = ".esc50kit-tmp-"  # staging folders; hidden, never taken for a dataset
MAX_ROOT_DEPTH = 2  # how deep find_dataset_root looks below the folder it is given
AUDIO_CHECK_WORKERS = 8  # header reads wait on the disk, not the CPU
N_LISTED = 5  # how many offending files an error message names
FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")  # WAV sample formats that can hold NaN, inf, or >> 1

logger = logging.getLogger(__name__)

__all__ = [
    "URL", "EXTRACTED_DIRNAME", "DownloadError", "CorruptArchiveError", "download_file",
    "extract_archive", "find_dataset_root", "verify_dataset", "read_verified_summary",
    "prepare_dataset",
]


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
class Origin:
    """Where a tree under verification came from, so that messages name the user's files.

    A tree is verified in a hidden staging folder of ``dest``; its paths mean nothing to
    the user, and the advice depends on the source: a local folder or zip must be fixed
    (``--force`` would copy the same bad file again), the network archive fetched again.

    Attributes:
        root: the tree as verified (e.g. ``dest/.esc50kit-tmp-xxxx/ESC-50-master``).
        shown: what messages call ``root``: the source folder, or ``<zip>:<top folder>``.
        advice: the sentence that ends each message: what to do.
    """

    root: Path
    shown: str
    advice: str = _REFETCH_HINT

    @property
    def _sep(self) -> str:
        return "" if self.shown.endswith((":", "/")) else "/"

    def name(self, path: Path) -> str:
        """``path`` (under ``root``) as the user knows it."""
        rel = Path(path).relative_to(self.root).as_posix()
        return self.shown if rel == "." else f"{self.shown}{self._sep}{rel}"

    def text(self, message: str) -> str:
        """A message of another module with the staged paths replaced by the user's."""
        return (message.replace(f"{self.root}{os.sep}", f"{self.shown}{self._sep}")
                .replace(str(self.root), self.shown))


def _folder_origin(root: Path, src_root: Path) -> Origin:
    return Origin(root, str(src_root), (
        f"Fix or replace the named file(s) in the source folder {src_root}, then run the "
        "same command again (the source is copied as it is, so --force alone would copy "
        "the same files)."))


def _zip_origin(root: Path, archive: Path, prefix: str, *, owned: bool) -> Origin:
    shown = f"{archive}:{prefix}" if prefix else f"{archive}:"
    if owned:  # downloaded here: fetching it again is the remedy
        return Origin(root, shown, _REFETCH_HINT)
    return Origin(root, shown, (
        f"Fix or replace the named member(s) of the zip {archive} (or download the official "
        f"archive again, {URL}), then run the same command again."))


# --------------------------------------------------------------------------- download


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
    """Delete a partial download and the record of what it holds."""
    part.unlink(missing_ok=True)
    _validator_path(part).unlink(missing_ok=True)


def _response_validator(headers) -> dict[str, str]:
    """The headers that identify one version of a resource, as If-Range can use them:
    a strong ETag, else Last-Modified (weak ETags cannot guard a range, RFC 9110 13.1.5)."""
    etag = headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return {"etag": etag}
    modified = headers.get("Last-Modified")
    return {"last_modified": modified} if modified else {}


def _saved_validator(part: Path, url: str) -> dict[str, str] | None:
    """What ``part`` was fetched as, or None when nothing was recorded (a server that sent
    no validator, or a partial file from an esc50kit without the record). A record for
    another URL means the bytes belong to another file: they are discarded."""
    path = _validator_path(part)
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        saved = None
    if not isinstance(saved, dict) or saved.get("url") != url:
        logger.warning("%s was fetched from another URL (or its record %s is unreadable); "
                       "starting it over", part, path.name)
        _discard(part)
        return None
    return {k: saved[k] for k in ("etag", "last_modified") if isinstance(saved.get(k), str)}


def _fetch_once(url: str, part: Path, *, timeout: float, chunk_size: int, progress: bool) -> bool:
    """One HTTP request that appends to ``part``. Returns True when ``part`` is complete.

    Returns False when the transfer stopped early (the caller retries and resumes).
    Raises urllib/http.client/OS errors for the caller to classify.
    """
    saved = _saved_validator(part, url) if part.exists() else None
    offset = _size(part)
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if saved:  # the range only if the file is still the one we have the start of
            headers["If-Range"] = saved.get("etag") or saved["last_modified"]
    try:
        request = urllib.request.Request(url, headers=headers)
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code != 416 or not offset:
            raise
        # 416: the range starts at or past the end. Complete if the sizes agree, else the
        # partial file belongs to another version of the resource: start over.
        _, total = _parse_content_range(exc.headers.get("Content-Range"))
        if total == offset:
            return True
        _discard(part)
        return False
    with response:
        status = getattr(response, "status", None) or 200  # file:// answers without a status
        length = response.headers.get("Content-Length")
        if status == 206:
            start, total = _parse_content_range(response.headers.get("Content-Range"))
            now = _response_validator(response.headers)
            changed = bool(saved) and bool(now) and now != saved
            if start != offset or changed:  # not the range, or not the file, asked for
                if changed:
                    logger.warning("%s changed on the server since %s was started "
                                   "(%s, was %s); fetching it whole", url, part.name, now, saved)
                _discard(part)
                return False
        elif status == 200:
            # A fresh transfer; a server that ignores Range; or, answering If-Range, one
            # whose file changed. Record which version these bytes are before writing any.
            offset, total = 0, None
            validator = _response_validator(response.headers)
            if validator:
                atomic_write_json(_validator_path(part), {"url": url, **validator})
            else:
                _validator_path(part).unlink(missing_ok=True)
        else:
            raise DownloadError(
                f"{url} answered HTTP {status}, expected 200 or 206. {_OFFLINE_HINT}"
            )
        expected = total if total is not None else (offset + int(length) if length else None)
        with open(part, "ab" if offset else "wb") as fh, tqdm(
            total=expected, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
            desc=part.name.removesuffix(".part"), disable=not progress, leave=False,
        ) as bar:
            while chunk := response.read(chunk_size):
                fh.write(chunk)
                bar.update(len(chunk))
    size = _size(part)
    if expected is None:  # no length announced: a clean end of stream is the end of file
        return True
    if size > expected:  # more bytes than announced: nothing in this file can be trusted
        _discard(part)
        return False
    return size == expected


def download_file(
    url: str,
    dest: str | Path,
    *,
    retries: int = DEFAULT_RETRIES,
    timeout: float = DEFAULT_TIMEOUT,
    chunk_size: int = CHUNK_SIZE,
    backoff: float = BACKOFF_SECONDS,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``dest`` through ``dest.part``, resuming after interruptions.

    Bytes go to ``<dest>.part``; an existing partial file is continued with an HTTP
    ``Range: bytes=N-`` request, sent with ``If-Range: <validator>`` when the response
    that started the file carried a strong ETag or a Last-Modified date (recorded, with
    the URL, in ``<dest>.part.json``). A server that answers 206 is appended to, unless
    its ETag or date differs from the record (then the partial file is discarded); one
    that answers 200 (it ignores ranges, or the file changed) is written from the start;
    416 means the partial file is already complete (sizes agree) or stale (it is
    discarded). The finished file is renamed to ``dest`` (atomic on one filesystem), so
    ``dest`` is never half-written, and the record is deleted.

    Args:
        url: an http(s) (or file) URL.
        dest: the file to write; its folder is created.
        retries: consecutive attempts that bring no new byte before giving up; an
            attempt that makes progress resets the count, so a long transfer survives
            many short cuts.
        timeout: seconds a connection may stay silent before the attempt fails.
        chunk_size: bytes read per call.
        backoff: seconds before the first retry, doubling after each failed attempt.
        progress: show a tqdm progress bar.

    Returns:
        Path: ``dest``.

    Raises:
        DownloadError: an HTTP error that retrying cannot fix (such as 404), or no
            progress after ``retries`` retries (no network, server down). A partial file
            is kept for the next call to resume.
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    high_water, failures = _size(part), 0
    while True:
        try:
            if _fetch_once(url, part, timeout=timeout, chunk_size=chunk_size, progress=progress):
                break
            reason = "the connection closed before the end of the file"
        except urllib.error.HTTPError as exc:
            if exc.code not in RETRY_HTTP_CODES:
                if _size(part) == 0:
                    _discard(part)
                raise DownloadError(
                    f"{url} answered HTTP {exc.code} ({exc.reason}). Check the URL (the "
                    f"official archive is {URL}). {_OFFLINE_HINT}"
                ) from exc
            reason = f"HTTP {exc.code} ({exc.reason})"
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, socket.gaierror):  # no DNS: offline, waiting will not help
                raise DownloadError(
                    f"could not download {url}: cannot resolve its host ({exc.reason}); "
                    f"this machine seems to be offline. {_OFFLINE_HINT}"
                ) from exc
            reason = str(exc.reason)
        except (http.client.HTTPException, OSError) as exc:  # cut connections, timeouts
            reason = str(getattr(exc, "reason", None) or exc or type(exc).__name__)
        size = _size(part)
        if size > high_water:
            high_water, failures = size, 0
        else:
            failures += 1
        if failures > retries:
            if size == 0:
                _discard(part)
            kept = f" The {size:,} bytes received are kept in {part}; run again to resume."
            kept = kept if size else ""
            raise DownloadError(
                f"could not download {url}: {reason} ({failures} attempts without "
                f"progress).{kept} Check the network connection. {_OFFLINE_HINT}"
            )
        delay = backoff * 2 ** max(failures - 1, 0)
        logger.warning("download interrupted (%s) at %s bytes; retrying in %.0f s",
                       reason, f"{size:,}", delay)
        time.sleep(delay)
    os.replace(part, dest)
    _validator_path(part).unlink(missing_ok=True)
    return dest


# --------------------------------------------------------------------------- extract


def _corrupt(zip_path: Path, exc: BaseException) -> CorruptArchiveError:
    return CorruptArchiveError(
        f"{zip_path} is not a valid zip archive: it is truncated or corrupt ({exc}). "
        "Download it again (for the official archive: `python download_data.py --force`)."
    )


def extract_archive(zip_path: str | Path, dest_dir: str | Path, *, progress: bool = True) -> Path:
    """Extract a zip file into ``dest_dir``, which appears only once extraction is complete.

    Members are extracted into a hidden temporary sibling of ``dest_dir``, renamed to
    ``dest_dir`` at the end; on any failure the temporary folder is removed, so no
    half-extracted tree is left behind.

    Args:
        zip_path: the archive.
        dest_dir: the folder to create; it must not exist. It holds the archive's
            members, e.g. ``dest_dir/ESC-50-master/meta/esc50.csv``.
        progress: show a tqdm progress bar (uncompressed bytes).

    Returns:
        Path: ``dest_dir``.

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
            with tqdm(total=sum(m.file_size for m in members), unit="B", unit_scale=True,
                      unit_divisor=1024, desc=f"extracting {zip_path.name}",
                      disable=not progress, leave=False) as bar:
                for member in members:
                    zf.extract(member, tmp)  # zipfile drops '..' and absolute paths
                    bar.update(member.file_size)
        os.replace(tmp, dest_dir)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise _corrupt(zip_path, exc) from exc
    except NotImplementedError as exc:
        raise DownloadError(
            f"{zip_path} uses a compression method Python's zipfile cannot read ({exc}); "
            "extract it with another tool and pass the folder with --source."
        ) from exc
    except OSError as exc:
        raise DownloadError(
            f"could not extract {zip_path} into {dest_dir.parent}: {exc}. "
            "Check free disk space and write permission."
        ) from exc
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
            f"Pass the ESC-50 zip ({ARCHIVE_NAME}) or the folder that holds meta/ and audio/."
        )
    if len(found) > 1:
        raise DownloadError(
            f"{zip_path} holds several dataset roots {found}; extract it and pass the folder "
            "of the one you want with --source."
        )
    return found[0]


def find_dataset_root(directory: str | Path) -> Path:
    """The folder that holds ``meta/esc50.csv``: ``directory`` itself or one below it.

    Looks at most ``MAX_ROOT_DEPTH`` levels down (``data/`` -> ``data/ESC-50-master``)
    and skips hidden folders, such as the staging folders of :func:`prepare_dataset`.

    Returns:
        Path: the dataset root.

    Raises:
        DownloadError: no root, or several, were found.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise DownloadError(f"{directory} is not a folder.")
    for depth in range(MAX_ROOT_DEPTH + 1):
        pattern = "/".join(["*"] * depth + [META_RELPATH.as_posix()])
        found = sorted(
            p.parents[1] for p in directory.glob(pattern)
            if not any(part.startswith(".") for part in p.relative_to(directory).parts)
        )
        if len(found) == 1:
            return found[0]
        if found:
            raise DownloadError(
                f"{directory} holds several dataset roots: {[str(p) for p in found]}. "
                "Pass the one you want."
            )
    raise DownloadError(
        f"no {META_RELPATH.as_posix()} in {directory} or up to {MAX_ROOT_DEPTH} folders below it. "
        f"Pass the folder that holds meta/ and audio/ (e.g. .../{EXTRACTED_DIRNAME}), "
        "or the ESC-50 zip file."
    )


# --------------------------------------------------------------------------- verify


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
            f"not an intact ESC-50 table. {advice}"
        )
    claims_esc50 = (
        any(c in official for c in summary.clips_per_class)
        or summary.n_classes == ESC50_N_CLASSES
        or summary.n_clips == ESC50_N_CLIPS
    )
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
        f"incomplete. {advice}"
    )


def _audio_problem(path: Path) -> str | None:
    """What is wrong with one WAV file, or None. Reads the header, and the samples of a
    float file (NaN, inf, or beyond :data:`esc50kit.audio.MAX_ABS_SAMPLE`)."""
    try:
        info = sf.info(str(path))
    except (RuntimeError, OSError) as exc:  # soundfile.LibsndfileError is a RuntimeError
        return f"{path.name}: unreadable ({getattr(exc, 'error_string', None) or exc})"
    issues = []
    if info.samplerate != SAMPLE_RATE:
        issues.append(f"{info.samplerate} Hz, expected {SAMPLE_RATE}")
    if info.channels != N_CHANNELS:
        issues.append(f"{info.channels} channels, expected mono")
    if info.frames != CLIP_FRAMES:
        issues.append(f"{info.frames} frames, expected {CLIP_FRAMES} (5 s at 44.1 kHz)")
    if not issues and info.subtype in FLOAT_SUBTYPES:  # integer PCM is finite and in range
        try:
            problem = sample_problem(sf.read(str(path), dtype="float64", always_2d=True)[0])
        except (RuntimeError, OSError) as exc:
            problem = f"unreadable ({getattr(exc, 'error_string', None) or exc})"
        if problem:
            issues.append(problem)
    return f"{path.name}: {', '.join(issues)}" if issues else None


def verify_dataset(
    root: str | Path, *, check_audio_format: bool = True, progress: bool = True,
    origin: Origin | None = None,
) -> DatasetSummary:
    """Verify an extracted ESC-50-style tree: table, counts, and every listed WAV file.

    The rules are those of the module docstring: official columns and a consistent
    table; ESC-50 counts for a table that holds ESC-50 classes; every listed WAV present,
    readable, 44.1 kHz, mono, 220,500 frames.

    Args:
        root: the folder that holds ``meta/esc50.csv`` and ``audio/``.
        check_audio_format: read every WAV header (readable, rate, channels, length).
            Without it, files need only exist and be non-empty.
        progress: show a tqdm progress bar over the audio files.
        origin: where ``root`` came from: messages then name the source's paths and
            end with its advice (default: ``root`` itself, advised to fetch again).

    Returns:
        DatasetSummary: counts and ``kind`` ("ESC-50", "ESC-10", "ESC-50 subset" or "custom").

    Raises:
        DownloadError: naming the offending files or values and what to do.
    """
    root = Path(root)
    origin = origin or Origin(root, str(root))
    csv_path = root / META_RELPATH
    try:
        df = read_table(root)
        validate_table(df, source=origin.name(csv_path))
    except DatasetError as exc:
        raise DownloadError(f"{origin.text(str(exc))} {origin.advice}") from exc
    if df.empty:
        raise DownloadError(f"{origin.name(csv_path)} lists no clips. {origin.advice}")
    summary = summarize(df)
    _check_counts(df, summary, origin.name(csv_path), advice=origin.advice)
    audio_dir = root / AUDIO_DIRNAME
    paths = [audio_dir / name for name in df["filename"]]
    missing = [p.name for p in paths if not p.is_file() or p.stat().st_size == 0]
    if missing:
        raise DownloadError(
            f"{origin.name(audio_dir)}: {len(missing)} of {len(paths)} WAV file(s) listed in "
            f"{META_RELPATH.as_posix()} are missing or empty: {_listing(missing)}. "
            f"The tree is incomplete. {origin.advice}"
        )
    if check_audio_format:
        with ThreadPoolExecutor(max_workers=AUDIO_CHECK_WORKERS) as pool:
            results = list(tqdm(pool.map(_audio_problem, paths), total=len(paths), unit="file",
                                desc="checking audio", disable=not progress, leave=False))
        problems = [r for r in results if r is not None]
        if problems:
            raise DownloadError(
                f"{origin.name(audio_dir)}: {len(problems)} of {len(paths)} WAV file(s) are not "
                f"ESC-50 clips (readable, {SAMPLE_RATE} Hz, mono, 5 s, finite samples): "
                f"{_listing(problems)}. {origin.advice}"
            )
    return summary


# --------------------------------------------------------------------------- marker


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_marker(root: Path, summary: DatasetSummary) -> None:
    """Record a successful verification in ``root/.verified.json`` (atomically)."""
    audio_dir = root / AUDIO_DIRNAME
    sizes = {name: (audio_dir / name).stat().st_size for name in read_table(root)["filename"]}
    record = {
        "format": MARKER_FORMAT,
        "verified_by": f"esc50kit {__version__}",
        "verified_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "summary": asdict(summary),
        "table_sha256": _sha256(root / META_RELPATH),
        "audio_sizes": sizes,
    }
    try:
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=".json", dir=root)
        with os.fdopen(fd, "w") as fh:
            json.dump(record, fh, indent=1)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the tree it describes is not
        os.replace(tmp, root / MARKER_NAME)
    except OSError as exc:
        raise DownloadError(
            f"could not write {root / MARKER_NAME}: {exc}. --dest must be writable."
        ) from exc


def read_verified_summary(root: str | Path, *, advice: str = _REFETCH_HINT) -> DatasetSummary:
    """Check a verified tree cheaply and return the summary recorded at verification.

    Cheap means no audio is decoded: the table must have the SHA-256 recorded in
    ``.verified.json`` and every listed WAV must exist with its recorded size.
    ``advice`` ends a message about a damaged tree (default: fetch again with --force).

    Returns:
        DatasetSummary: as returned by :func:`verify_dataset` when the tree was verified.

    Raises:
        DownloadError: no marker, an unreadable marker, or a changed, missing or
            resized file (named in the message).
    """
    root = Path(root)
    marker = root / MARKER_NAME
    if not marker.is_file():
        raise DownloadError(
            f"{root} has no {MARKER_NAME}: it has not been verified. "
            f"Run `python download_data.py --source {root}` to verify and install it."
        )
    try:
        record = json.loads(marker.read_text())
        if record["format"] != MARKER_FORMAT:
            raise ValueError(f"marker format {record['format']}, expected {MARKER_FORMAT}")
        fields = dict(record["summary"])
        fields["clips_per_fold"] = {int(k): int(v) for k, v in fields["clips_per_fold"].items()}
        summary = DatasetSummary(**fields)
        sizes = {str(k): int(v) for k, v in record["audio_sizes"].items()}
        table_sha = record["table_sha256"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DownloadError(f"{marker} is unreadable ({exc}). {advice}") from exc
    csv_path = root / META_RELPATH
    if not csv_path.is_file() or _sha256(csv_path) != table_sha:
        raise DownloadError(
            f"{csv_path} is missing or changed since it was verified. {advice}"
        )
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
            f"{_listing(changed)}. The tree is damaged. {advice}"
        )
    return summary


# --------------------------------------------------------------------------- prepare


def _copy_tree(src: Path, dst: Path, *, progress: bool) -> Path:
    """Copy the non-hidden files of ``src`` to ``dst`` (new folders, default permissions)."""
    files = [p for p in sorted(src.rglob("*"))
             if p.is_file() and not any(s.startswith(".") for s in p.relative_to(src).parts)]
    try:
        with tqdm(total=sum(p.stat().st_size for p in files), unit="B", unit_scale=True,
                  unit_divisor=1024, desc=f"copying {src.name}", disable=not progress,
                  leave=False) as bar:
            dst.mkdir(parents=True)
            for p in files:
                out = dst / p.relative_to(src)
                out.parent.mkdir(parents=True, exist_ok=True)
                # copyfile, not copy2: the copy of a read-only source must stay writable
                shutil.copyfile(p, out)
                bar.update(p.stat().st_size)
    except OSError as exc:
        raise DownloadError(
            f"could not copy {src} to {dst.parent}: {exc}. "
            "Check free disk space and write permission."
        ) from exc
    return dst


def _install(target: Path, build: Callable[[Path], Path], *, progress: bool,
             origin: Callable[[Path], Origin]) -> DatasetSummary:
    """Build a tree in a staging folder beside ``target``, verify and mark it, then rename it.

    ``build(staging)`` writes a dataset somewhere under ``staging`` and returns its root;
    ``origin(root)`` says how messages name that root's files.
    An existing ``target`` (only with ``force``) is replaced once the new tree verified.
    """
    staging = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=target.parent))
    try:
        root = build(staging)
        summary = verify_dataset(root, progress=progress, origin=origin(root))
        _write_marker(root, summary)
        if target.exists():
            os.replace(target, staging / "previous")
        os.replace(root, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return summary


def _use_existing(target: Path, *, progress: bool, local: bool) -> DatasetSummary:
    """Accept a tree already at ``target``: cheaply if marked, else by a full verification.

    ``local``: the command copies a local ``--source``, so ``--force`` copies it again
    (no network); else ``--force`` fetches the archive again.
    """
    again = ("copy it again from the source" if local else "fetch it again")
    advice = (f"Run the same command with --force to {again} (it replaces {target}), or "
              "remove that folder.")
    if (target / MARKER_NAME).exists():
        summary = read_verified_summary(target, advice=advice)
        logger.info("%s is already verified (%s); nothing to fetch", target, summary)
        return summary
    try:
        summary = verify_dataset(target, progress=progress, origin=Origin(target, str(target), ""))
    except DownloadError as exc:
        raise DownloadError(
            f"{target} exists but does not verify: {str(exc).rstrip()} {advice}"
        ) from exc
    _write_marker(target, summary)
    logger.info("verified the existing tree %s (%s)", target, summary)
    return summary


def _remove_stale_staging(dest: Path) -> None:
    for stale in dest.glob(TMP_PREFIX + "*"):
        logger.info("removing %s, left by an interrupted run", stale)
        shutil.rmtree(stale, ignore_errors=True)


def prepare_dataset(
    *,
    source: str | Path | None = None,
    dest: str | Path = "data",
    force: bool = False,
    url: str = URL,
    progress: bool = True,
) -> Path:
    """Make sure a verified dataset is in ``dest``; fetch it only when it is not.

    Args:
        source: None to download ``url``; else a local zip file (extracted into
            ``dest``; the zip is left alone) or a folder holding a dataset root (copied
            into ``dest``, see the module docstring).
        dest: the folder that receives the dataset root.
        force: fetch, extract or copy again and replace the tree in ``dest``, even if it
            verifies; a previous partial download is discarded.
        url: the archive to download when ``source`` is None.
        progress: show tqdm progress bars.

    Returns:
        Path: the absolute path of the verified dataset root, e.g.
        ``data/ESC-50-master``; its summary is :func:`read_verified_summary` of it.

    Raises:
        DownloadError: no network, an HTTP error, a truncated or corrupt archive,
            missing or unreadable files, or wrong counts; the message says what to do.
    """
    dest = Path(dest).expanduser()
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create --dest {dest}: {exc}") from exc
    _remove_stale_staging(dest)
    if source is None:
        return _prepare_from_url(url, dest, force=force, progress=progress)
    source = Path(source).expanduser()
    if source.is_dir():
        return _prepare_from_folder(source, dest, force=force, progress=progress)
    if source.is_file():
        return _prepare_from_zip(source, dest, force=force, progress=progress, owned=False)
    raise DownloadError(
        f"--source {source} does not exist. Pass the ESC-50 zip file or the folder that "
        "holds meta/ and audio/, or leave --source out to download."
    )


def _prepare_from_folder(source: Path, dest: Path, *, force: bool, progress: bool) -> Path:
    src_root = find_dataset_root(source)
    target = dest / src_root.name
    if src_root.resolve() == target.resolve():  # the source already is the tree in dest
        if force:
            origin = _folder_origin(target, src_root)
            _write_marker(target, verify_dataset(target, progress=progress, origin=origin))
        else:
            _use_existing(target, progress=progress, local=True)
        return target.resolve()
    if target.exists() and not force:
        _use_existing(target, progress=progress, local=True)
        return target.resolve()

    def build(staging: Path) -> Path:
        return _copy_tree(src_root, staging / src_root.name, progress=progress)

    summary = _install(target, build, progress=progress,
                       origin=lambda root: _folder_origin(root, src_root))
    logger.info("copied and verified %s into %s (%s)", src_root, target, summary)
    return target.resolve()


def _prepare_from_zip(archive: Path, dest: Path, *, force: bool, progress: bool, owned: bool,
                      name: str | None = None) -> Path:
    """Extract ``archive`` into ``dest``. ``owned``: we downloaded it, so we may delete it."""
    try:
        prefix = _zip_root_prefix(archive)
        target = dest / (name or PurePosixPath(prefix).name or archive.stem)
        if target.exists() and not force:
            _use_existing(target, progress=progress, local=not owned)
            return target.resolve()

        def build(staging: Path) -> Path:
            return extract_archive(archive, staging / "extracted", progress=progress) / prefix

        summary = _install(target, build, progress=progress,
                           origin=lambda root: _zip_origin(root, archive, prefix, owned=owned))
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
    logger.info("extracted and verified %s into %s (%s)", archive.name, target, summary)
    return target.resolve()


def _prepare_from_url(url: str, dest: Path, *, force: bool, progress: bool) -> Path:
    target = dest / EXTRACTED_DIRNAME
    archive = dest / ARCHIVE_NAME
    if force:
        archive.unlink(missing_ok=True)
        _discard(archive.with_name(archive.name + ".part"))
    elif target.exists():
        _use_existing(target, progress=progress, local=False)
        return target.resolve()
    if not archive.exists():  # a complete archive from an interrupted run is reused
        logger.info("downloading %s to %s", url, archive)
        download_file(url, archive, progress=progress)
    return _prepare_from_zip(archive, dest, force=force, progress=progress, owned=True,
                             name=EXTRACTED_DIRNAME)
