#!/usr/bin/env python
"""Fetch, extract and verify ESC-50 into data/; print the dataset path.

    python download_data.py                                   # the official archive (~600 MB)
    python download_data.py --source ~/Downloads/ESC-50-master.zip   # a zip fetched by hand
    python download_data.py --source ../shared/data/ESC-10 --dest data/esc10   # a folder

Already verified data is not fetched again; --force fetches it anyway. On success the
summary is printed, then the dataset path as the last line of stdout (for scripts:
``root=$(python download_data.py | tail -n 1)``). On failure the reason and what to do
go to stderr and the exit code is 1 (2 for a bad argument; 130 after Ctrl-C: run the
same command again to resume; --debug shows the traceback). All the logic is in
:mod:`esc50kit.download`.
"""
from __future__ import annotations

import argparse
import logging
import sys

from esc50kit.errors import add_debug_flag, entry_point
from esc50kit.data import URL
from esc50kit.download import prepare_dataset, read_verified_summary


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--source", help="a local ESC-50 zip file or extracted folder, instead of the network")
    where.add_argument("--url", default=URL, help="the archive to download (default: the official one)")
    parser.add_argument("--dest", default="data", help="folder that receives the dataset (default: data)")
    parser.add_argument("--force", action="store_true", help="fetch again even if verified data is there")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or log lines")
    add_debug_flag(parser)
    return parser.parse_args(argv)


@entry_point  # DownloadError, OSError: `error: ...`, exit 1; Ctrl-C: exit 130 (esc50kit.errors)
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(message)s", stream=sys.stderr)
    root = prepare_dataset(source=args.source, dest=args.dest, force=args.force,
                           url=args.url, progress=not args.quiet)
    summary = read_verified_summary(root)
    print(summary)
    print(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
