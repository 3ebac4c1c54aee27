"""The download path against a local HTTP server on 127.0.0.1; no network.

The server serves zips built from the synthetic tree and can be told to cut a transfer
after N bytes, to ignore Range or If-Range requests, to send an ETag, a Last-Modified date
or no validator, and to change a file after a cut; corrupt and truncated archives and
missing URLs are served as files of their own.
"""
from __future__ import annotations

import email.utils
import filecmp
import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import urllib.error
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from esc50kit.data import AUDIO_DIRNAME, EXTRACTED_DIRNAME, MARKER_NAME, META_RELPATH
from esc50kit.download import (
    TMP_PREFIX,
    DownloadError,
    download_file,
    extract_archive,
    find_dataset_root,
    prepare_dataset,
    read_verified_summary,
    verify_dataset,
)
from synthetic import make_synthetic_dataset

REPO = Path(__file__).resolve().parents[1]
BLOB = np.random.default_rng(0).bytes(50_000)  # a small payload for the transfer properties
BLOB2 = np.random.default_rng(1).bytes(61_000)  # what /blob.bin becomes when it "changes"


def _zip_tree(root: Path, top: str) -> bytes:
    """Zip ``root`` under a top folder ``top/``, as GitHub packs ESC-50-master."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:  # WAVs barely compress
        for path in sorted(root.rglob("*")):
            if path.is_file():
                zf.write(path, f"{top}/{path.relative_to(root).as_posix()}")
    return buf.getvalue()


class _Server:
    """State shared with the request handler: files to serve and how to misbehave."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.reset()

    def reset(self) -> None:
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.if_ranges: list[str | None] = []  # the If-Range header of each request
        self.cut_after: int | None = None  # one shot: close after this many body bytes
        self.ignore_range = False
        self.validator: str | None = None  # "etag", "last-modified" or None: what is sent
        self.honour_if_range = True
        self.then_serve: dict[str, bytes] = {}  # one shot: a cut path's new content
        self.versions: dict[str, int] = {}

    def etag(self, path: str) -> str:
        return '"' + hashlib.sha256(self.files[path]).hexdigest()[:16] + '"'

    def last_modified(self, path: str) -> str:
        return email.utils.formatdate(1_700_000_000 + 60 * self.versions.get(path, 0), usegmt=True)

    def current_validator(self, path: str) -> str | None:
        if self.validator == "etag":
            return self.etag(path)
        return self.last_modified(path) if self.validator == "last-modified" else None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def _handler(state: _Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep pytest output clean
            pass

        def do_GET(self) -> None:
            range_header = self.headers.get("Range")
            state.requests.append((self.path, range_header))
            state.if_ranges.append(self.headers.get("If-Range"))
            body = state.files.get(self.path)
            if body is None:
                self.send_error(404, "Not Found")
                return
            validator = state.current_validator(self.path)
            if_range = self.headers.get("If-Range")
            if if_range and state.honour_if_range and if_range != validator:
                range_header = None  # RFC 9110: the file changed, send all of it
            start = 0
            if range_header and not state.ignore_range:
                start = int(range_header.removeprefix("bytes=").split("-")[0])
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            self.send_header("Content-Type", "application/zip")
            self.send_header("Content-Length", str(len(body) - start))
            if state.validator == "etag":
                self.send_header("ETag", validator)
            elif state.validator == "last-modified":
                self.send_header("Last-Modified", validator)
            self.end_headers()
            cut, state.cut_after = state.cut_after, None
            self.wfile.write(body[start:] if cut is None else body[start : start + cut])
            self.close_connection = True
            if cut is not None and self.path in state.then_serve:  # changes between attempts
                state.files[self.path] = state.then_serve.pop(self.path)
                state.versions[self.path] = state.versions.get(self.path, 0) + 1

    return Handler


@pytest.fixture(scope="module")
def synthetic_zip(synthetic_root) -> bytes:
    return _zip_tree(synthetic_root, EXTRACTED_DIRNAME)


@pytest.fixture(scope="module")
def subset_zip(tmp_path_factory) -> bytes:
    """A tree laid out like an ESC-50 subset: 1 class x 40 clips, 5 folds x 8."""
    root = make_synthetic_dataset(tmp_path_factory.mktemp("subset") / "tree", n_classes=1, clips_per_class=40)
    return _zip_tree(root, EXTRACTED_DIRNAME)


@pytest.fixture(scope="module")
def http_server(synthetic_zip, subset_zip):
    state = _Server()
    corrupt = bytearray(synthetic_zip)
    mid = len(corrupt) // 2
    corrupt[mid : mid + 64] = bytes(b ^ 0xFF for b in corrupt[mid : mid + 64])  # inside a WAV member
    state.files = {
        f"/{EXTRACTED_DIRNAME}.zip": synthetic_zip,
        "/subset.zip": subset_zip,
        "/corrupt.zip": bytes(corrupt),
        "/truncated.zip": synthetic_zip[: len(synthetic_zip) // 2],
        "/blob.bin": BLOB,
    }
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def server(http_server):
    http_server.reset()
    http_server.files["/blob.bin"] = BLOB
    return http_server


def _assert_nothing_valid_left(dest: Path) -> None:
    """No dataset tree, marker or staging folder survives a failed run."""
    assert not list(dest.rglob("esc50.csv")), "a (partial) tree was left behind"
    assert not list(dest.rglob(MARKER_NAME))
    assert not list(dest.glob(TMP_PREFIX + "*"))
    with pytest.raises(DownloadError):
        find_dataset_root(dest)


# --------------------------------------------------------------------------- downloads


def test_clean_download_extracts_verifies_and_reports_the_kind(server, tmp_path):
    root = prepare_dataset(url=server.url("/subset.zip"), dest=tmp_path, progress=False)
    assert root == (tmp_path / EXTRACTED_DIRNAME).resolve()
    summary = read_verified_summary(root)
    assert (summary.kind, summary.n_clips, summary.n_classes, summary.n_folds) == ("ESC-50 subset", 40, 1, 5)
    assert sorted(p.name for p in tmp_path.iterdir()) == [EXTRACTED_DIRNAME]  # archive removed, no temp
    assert server.requests == [("/subset.zip", None)]


def test_interrupted_transfer_resumes_with_range(server, synthetic_zip, tmp_path):
    cut = len(synthetic_zip) // 2
    server.cut_after = cut
    out = download_file(server.url(f"/{EXTRACTED_DIRNAME}.zip"), tmp_path / "a.zip", backoff=0, progress=False)
    assert [r for _, r in server.requests] == [None, f"bytes={cut}-"]
    assert out.read_bytes() == synthetic_zip
    assert not (tmp_path / "a.zip.part").exists()


@settings(max_examples=25, deadline=None)
@given(cut=st.integers(0, len(BLOB) - 1), ignore_range=st.booleans())
def test_any_cut_yields_an_identical_file(http_server, cut, ignore_range):
    """Wherever the first transfer stops, and whether or not the server honours Range,
    the result is byte-identical to what the server holds."""
    http_server.reset()
    http_server.cut_after, http_server.ignore_range = cut, ignore_range
    with tempfile.TemporaryDirectory() as tmp:
        out = download_file(http_server.url("/blob.bin"), Path(tmp) / "b.bin", backoff=0, progress=False)
        assert out.read_bytes() == BLOB
        assert os.listdir(tmp) == ["b.bin"]
    if cut:
        assert http_server.requests[1][1] == f"bytes={cut}-"


def test_resume_asks_for_the_range_only_if_the_file_is_unchanged(server, tmp_path):
    server.validator, server.cut_after = "etag", 1000
    record = tmp_path / "b.bin.part.json"
    out = download_file(server.url("/blob.bin"), tmp_path / "b.bin", backoff=0, progress=False)
    assert out.read_bytes() == BLOB
    assert server.requests == [("/blob.bin", None), ("/blob.bin", "bytes=1000-")]
    assert server.if_ranges == [None, server.etag("/blob.bin")]
    assert not record.exists() and os.listdir(tmp_path) == ["b.bin"]


@settings(max_examples=40, deadline=None)
@given(cut=st.integers(1, len(BLOB) - 1), validator=st.sampled_from(["etag", "last-modified"]),
       honour_if_range=st.booleans(), ignore_range=st.booleans(), changes=st.booleans())
def test_a_file_that_changes_between_attempts_is_never_spliced(
        http_server, cut, validator, honour_if_range, ignore_range, changes):
    """Cut anywhere, then the server's file changes (or not) before the resume: whether the
    server honours Range and If-Range or not, the result is exactly one version of the
    file, the one the server holds at the end."""
    http_server.reset()
    http_server.files["/blob.bin"] = BLOB
    http_server.validator, http_server.cut_after = validator, cut
    http_server.honour_if_range, http_server.ignore_range = honour_if_range, ignore_range
    if changes:
        http_server.then_serve = {"/blob.bin": BLOB2}
    with tempfile.TemporaryDirectory() as tmp:
        out = download_file(http_server.url("/blob.bin"), Path(tmp) / "b.bin", backoff=0, progress=False)
        assert out.read_bytes() == (BLOB2 if changes else BLOB)
        assert os.listdir(tmp) == ["b.bin"]
    http_server.files["/blob.bin"] = BLOB


def test_a_partial_file_from_another_url_starts_over(server, tmp_path):
    part = tmp_path / "b.bin.part"
    part.write_bytes(BLOB2[:5000])
    (tmp_path / "b.bin.part.json").write_text(json.dumps({"url": "http://elsewhere/b.bin", "etag": '"x"'}))
    out = download_file(server.url("/blob.bin"), tmp_path / "b.bin", backoff=0, progress=False)
    assert out.read_bytes() == BLOB
    assert server.requests == [("/blob.bin", None)]  # no range: the old bytes were not its


def test_a_server_without_validators_still_resumes(server, tmp_path):
    server.cut_after = 1000  # sends neither ETag nor Last-Modified: no record, no If-Range
    out = download_file(server.url("/blob.bin"), tmp_path / "b.bin", backoff=0, progress=False)
    assert out.read_bytes() == BLOB
    assert server.if_ranges == [None, None] and server.requests[1][1] == "bytes=1000-"


@pytest.mark.parametrize("extra", [0, 10], ids=["complete part", "oversized part"])
def test_range_not_satisfiable_finishes_or_restarts(server, tmp_path, extra):
    (tmp_path / "b.bin.part").write_bytes(BLOB + b"x" * extra)
    out = download_file(server.url("/blob.bin"), tmp_path / "b.bin", backoff=0, progress=False)
    assert out.read_bytes() == BLOB


def test_no_network_suggests_source(tmp_path):
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError, match="--source"):
        download_file(f"http://127.0.0.1:{port}/x.zip", tmp_path / "x.zip", retries=1, backoff=0, progress=False)
    assert not list(tmp_path.iterdir())


def test_unresolvable_host_fails_at_once(tmp_path, monkeypatch):
    """No DNS means offline: no retries (no minute of backoff) before the advice."""
    calls = []

    def no_dns(request, timeout):
        calls.append(request.full_url)
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))

    monkeypatch.setattr("esc50kit.download.urllib.request.urlopen", no_dns)
    with pytest.raises(DownloadError, match=r"offline.*--source"):
        download_file("https://example.invalid/x.zip", tmp_path / "x.zip", backoff=60, progress=False)
    assert len(calls) == 1


def test_http_404_fails_clearly(server, tmp_path):
    with pytest.raises(DownloadError, match=r"HTTP 404.*--source"):
        prepare_dataset(url=server.url("/missing.zip"), dest=tmp_path, progress=False)
    _assert_nothing_valid_left(tmp_path)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("path", ["/corrupt.zip", "/truncated.zip"])
def test_corrupt_archive_fails_clearly_and_leaves_nothing(server, tmp_path, path):
    with pytest.raises(DownloadError, match="truncated or corrupt") as info:
        prepare_dataset(url=server.url(path), dest=tmp_path, progress=False)
    assert "run the command again" in str(info.value)
    _assert_nothing_valid_left(tmp_path)
    assert not list(tmp_path.iterdir())  # the corrupt download was deleted too


def test_verified_data_is_not_fetched_again_and_force_refetches(server, tmp_path):
    url = server.url(f"/{EXTRACTED_DIRNAME}.zip")
    root = prepare_dataset(url=url, dest=tmp_path, progress=False)
    assert read_verified_summary(root).kind == "custom"
    server.reset()
    assert prepare_dataset(url=url, dest=tmp_path, progress=False) == root
    assert server.requests == []
    assert prepare_dataset(url=url, dest=tmp_path, force=True, progress=False) == root
    assert len(server.requests) == 1
    assert read_verified_summary(root).n_clips == 50


def test_damaged_tree_is_noticed_and_force_repairs_it(synthetic_root, tmp_path):
    root = prepare_dataset(source=synthetic_root, dest=tmp_path, progress=False)
    victim = sorted((root / AUDIO_DIRNAME).glob("*.wav"))[3]
    victim.unlink()
    with pytest.raises(DownloadError, match=rf"{victim.name}.*--force"):
        prepare_dataset(source=synthetic_root, dest=tmp_path, progress=False)
    prepare_dataset(source=synthetic_root, dest=tmp_path, force=True, progress=False)
    assert victim.is_file()
    read_verified_summary(root)


def test_stale_staging_folder_is_removed_and_never_counts(synthetic_root, tmp_path):
    stale = tmp_path / f"{TMP_PREFIX}killed"
    (stale / "x").mkdir(parents=True)
    (stale / "x" / "meta").mkdir()
    (stale / "x" / META_RELPATH).write_text("half")
    with pytest.raises(DownloadError):
        find_dataset_root(tmp_path)
    prepare_dataset(source=synthetic_root, dest=tmp_path, progress=False)
    assert not stale.exists()


# --------------------------------------------------------------------------- --source


def test_source_zip_is_extracted_and_left_alone(synthetic_zip, synthetic_root, tmp_path):
    archive = tmp_path / "manual.zip"
    archive.write_bytes(synthetic_zip)
    root = prepare_dataset(source=archive, dest=tmp_path / "data", progress=False)
    assert root == (tmp_path / "data" / EXTRACTED_DIRNAME).resolve()
    assert archive.read_bytes() == synthetic_zip
    assert filecmp.cmp(root / META_RELPATH, synthetic_root / META_RELPATH, shallow=False)


def test_source_folder_is_copied_into_dest(synthetic_root, tmp_path):
    root = prepare_dataset(source=synthetic_root, dest=tmp_path, progress=False)
    assert root == (tmp_path / synthetic_root.name).resolve()
    wavs = sorted(p.name for p in (synthetic_root / AUDIO_DIRNAME).glob("*.wav"))
    match, mismatch, errors = filecmp.cmpfiles(
        synthetic_root / AUDIO_DIRNAME, root / AUDIO_DIRNAME, wavs, shallow=False
    )
    assert (len(match), mismatch, errors) == (50, [], [])
    assert not (synthetic_root / MARKER_NAME).exists()  # the source is not written to
    assert (root / MARKER_NAME).stat().st_mode & 0o777 == 0o644  # readable, like the tree


def test_source_that_is_not_a_dataset_fails(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DownloadError, match="meta/esc50.csv"):
        prepare_dataset(source=tmp_path / "empty", dest=tmp_path / "data", progress=False)
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(DownloadError, match="truncated or corrupt"):
        prepare_dataset(source=tmp_path / "junk.zip", dest=tmp_path / "data", progress=False)
    with pytest.raises(DownloadError, match="does not exist"):
        prepare_dataset(source=tmp_path / "nowhere", dest=tmp_path / "data", progress=False)


def test_extract_archive_refuses_an_existing_folder(synthetic_zip, tmp_path):
    archive = tmp_path / "a.zip"
    archive.write_bytes(synthetic_zip)
    (tmp_path / "out").mkdir()
    with pytest.raises(DownloadError, match="already exists"):
        extract_archive(archive, tmp_path / "out", progress=False)


# --------------------------------------------------------------------------- CLI


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "download_data.py"), *args],
                          capture_output=True, text=True, timeout=120)


def test_cli_prints_summary_and_path(synthetic_root, tmp_path):
    proc = _cli("--source", str(synthetic_root), "--dest", str(tmp_path), "--quiet")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert Path(lines[-1]) == (tmp_path / synthetic_root.name).resolve()
    assert lines[-2].startswith("custom: 50 clips, 5 classes, 5 folds")


def test_cli_bad_source_exits_nonzero_with_a_message(tmp_path):
    proc = _cli("--source", str(tmp_path / "nowhere"), "--dest", str(tmp_path / "data"), "--quiet")
    assert proc.returncode == 1
    assert "does not exist" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout == ""


# --------------------------------------------------------------------------- verify_dataset


def test_custom_tree_is_accepted_and_named(synthetic_root):
    summary = verify_dataset(synthetic_root, progress=False)
    assert (summary.kind, summary.n_clips) == ("custom", 50)


def _rewrite_table(root: Path, df: pd.DataFrame) -> None:
    df.to_csv(root / META_RELPATH, index=False)


def test_official_classes_with_wrong_counts_are_rejected(writable_root):
    df = pd.read_csv(writable_root / META_RELPATH, dtype={"src_file": str, "take": str})
    df["category"] = df["target"].map({0: "dog", 1: "rooster", 2: "pig", 3: "cow", 4: "frog"})
    _rewrite_table(writable_root, df)
    with pytest.raises(DownloadError, match=r"wrong counts.*dog: 10.*--force"):
        verify_dataset(writable_root, progress=False)


def test_fifty_classes_without_2000_rows_are_rejected(tmp_path):
    rows = [(f"1-{100 + t}-A-{t}.wav", 1, t, f"class{t}", False, str(100 + t), "A") for t in range(50)]
    (tmp_path / "meta").mkdir()
    _rewrite_table(tmp_path, pd.DataFrame(rows, columns=["filename", "fold", "target", "category",
                                                         "esc10", "src_file", "take"]))
    with pytest.raises(DownloadError, match=r"wrong counts.*50 clips, 50 classes.*2000"):
        verify_dataset(tmp_path, progress=False)


def _first_wav(root: Path) -> Path:
    return sorted((root / AUDIO_DIRNAME).glob("*.wav"))[0]


def _pcm16(frames: int, sr: int = 44100, channels: int = 1):
    shape = (frames, channels) if channels > 1 else frames
    return lambda path: sf.write(path, np.zeros(shape, dtype=np.float32), sr, subtype="PCM_16")


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (Path.unlink, "missing or empty"),
        (lambda path: path.write_bytes(b"this is not a wav file" * 20), "unreadable"),
        (_pcm16(220500, channels=2), "2 channels"),
        (_pcm16(110250, sr=22050), "22050 Hz"),
        (_pcm16(44100), "44100 frames"),
    ],
    ids=["missing", "garbage", "stereo", "22.05kHz", "1s"],
)
def test_broken_wav_is_rejected_by_name(writable_root, damage, expected):
    victim = _first_wav(writable_root)
    damage(victim)
    with pytest.raises(DownloadError, match=rf"{victim.name}.*{expected}|{expected}.*{victim.name}"):
        verify_dataset(writable_root, progress=False)


def test_find_dataset_root_looks_below_and_skips_hidden(synthetic_root, tmp_path):
    assert find_dataset_root(synthetic_root) == synthetic_root
    assert find_dataset_root(synthetic_root.parent) == synthetic_root
    with pytest.raises(DownloadError, match="meta/esc50.csv"):
        find_dataset_root(tmp_path)


# --------------------------------------------------------------------------- advice fits the source


def _nan_wav(path: Path) -> None:
    """A float WAV of the right format (44.1 kHz, mono, 5 s) holding one NaN sample."""
    y = np.zeros(220500, dtype=np.float32)
    y[1000] = np.nan
    sf.write(path, y, 44100, subtype="FLOAT")


def test_a_nan_sample_fails_verification_by_name(writable_root):
    victim = _first_wav(writable_root)
    _nan_wav(victim)
    with pytest.raises(DownloadError, match=rf"{victim.name}: 1 sample\(s\) are NaN"):
        verify_dataset(writable_root, progress=False)


def test_a_bad_file_in_a_source_folder_is_named_there_and_not_refetched(writable_root, tmp_path):
    victim = _first_wav(writable_root)
    _nan_wav(victim)
    with pytest.raises(DownloadError) as info:
        prepare_dataset(source=writable_root, dest=tmp_path / "data", progress=False)
    msg = str(info.value)
    assert f"{writable_root / AUDIO_DIRNAME}: 1 of 50" in msg and victim.name in msg
    assert TMP_PREFIX not in msg  # not the staging folder
    assert f"Fix or replace the named file(s) in the source folder {writable_root}" in msg
    assert "download_data.py --force" not in msg  # that would go to the network
    _assert_nothing_valid_left(tmp_path / "data")


def test_a_bad_member_of_a_source_zip_is_named_as_a_member(writable_root, tmp_path):
    _nan_wav(_first_wav(writable_root))
    (writable_root / META_RELPATH).write_text("filename,fold\n")  # and a broken table
    archive = tmp_path / "manual.zip"
    archive.write_bytes(_zip_tree(writable_root, "ESC-50-master"))
    with pytest.raises(DownloadError) as info:
        prepare_dataset(source=archive, dest=tmp_path / "data", progress=False)
    msg = str(info.value)
    assert f"{archive}:ESC-50-master/meta/esc50.csv" in msg and TMP_PREFIX not in msg
    assert f"Fix or replace the named member(s) of the zip {archive}" in msg
    assert "download_data.py --force" not in msg


def test_a_zip_without_a_top_folder_names_members_from_its_root(writable_root, tmp_path):
    (writable_root / META_RELPATH).write_text("filename,fold\n")
    archive = tmp_path / "flat.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(writable_root.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(writable_root).as_posix())
    with pytest.raises(DownloadError) as info:
        prepare_dataset(source=archive, dest=tmp_path / "data", progress=False)
    assert f"{archive}:meta/esc50.csv lacks the official column(s)" in str(info.value)
    _assert_nothing_valid_left(tmp_path / "data")


def test_a_bad_member_of_the_downloaded_archive_says_fetch_again(server, writable_root, tmp_path):
    victim = _first_wav(writable_root)
    _nan_wav(victim)
    server.files["/nan.zip"] = _zip_tree(writable_root, EXTRACTED_DIRNAME)
    with pytest.raises(DownloadError) as info:
        prepare_dataset(url=server.url("/nan.zip"), dest=tmp_path, progress=False)
    msg = str(info.value)
    assert f"{EXTRACTED_DIRNAME}.zip:{EXTRACTED_DIRNAME}/{AUDIO_DIRNAME}" in msg
    assert victim.name in msg and TMP_PREFIX not in msg
    assert msg.endswith("Fetch the dataset again with `python download_data.py --force`.")


def test_a_damaged_copy_of_a_local_source_says_copy_again(synthetic_root, tmp_path):
    root = prepare_dataset(source=synthetic_root, dest=tmp_path, progress=False)
    victim = _first_wav(root)
    victim.unlink()
    proc = _cli("--source", str(synthetic_root), "--dest", str(tmp_path), "--quiet")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert victim.name in proc.stderr
    assert "same command with --force to copy it again from the source" in proc.stderr
    assert proc.stdout == ""  # no summary, no path: nothing claims a verified dataset
