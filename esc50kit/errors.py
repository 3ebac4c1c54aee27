"""One error boundary for every command-line entry point.

``python -m esc50kit run|predict|pack``, ``download_data.py`` and each ``benchmarks/``
script's ``main`` are wrapped in :func:`entry_point`, so a known fault ends as one or two
lines on stderr, never a traceback, with the exit status:

- 0: success.
- 1: a step failed after the command started: a file-system fault (``OSError``: full disk,
  read-only folder, a path under a file, ...), ``DownloadError``, ``ChainError`` (a
  notebook), diverged training, unavailable pretrained weights; also ``predict`` when some
  files could not be classified (the others are printed).
- 2: the input was refused before any result was written: ``ValueError``, argparse's usage
  errors, a script's ``SystemExit("...")``, ``DatasetError``, ``AudioReadError``,
  ``LeakageError``, ``SplitError`` (a split whose score would mean nothing),
  ``RunFolderError``.
- 130: Ctrl-C (every long step writes atomically, so the same command resumes).

Any other exception is a bug and keeps its traceback; ``--debug`` (or ``ESC50KIT_DEBUG=1``)
shows the traceback of known errors too. The error classes are looked up in
``sys.modules`` when caught, so this module imports nothing heavy: a module never imported
cannot have raised.
"""
from __future__ import annotations

import argparse
import functools
import os
import sys
import traceback
from typing import Callable, Sequence

from .fileio import WriteError, os_error_advice

DEBUG_ENV = "ESC50KIT_DEBUG"
EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 1, 2, 130
INTERRUPTED_MESSAGE = "interrupted; run the same command again to resume"

# (module, class): checked in this order, so a subclass listed first wins.
_BAD_INPUT = (("esc50kit.data", "DatasetError"), ("esc50kit.audio", "AudioReadError"),
              ("esc50kit.splits", "LeakageError"), ("esc50kit.splits", "SplitError"),
              ("esc50kit.run_folder", "RunFolderError"), ("builtins", "ValueError"))
_FAILED = (("esc50kit.download", "DownloadError"), ("esc50kit.chain", "ChainError"),
           ("esc50kit.training", "TrainingDivergedError"),
           ("esc50kit.models", "WeightsUnavailableError"), ("builtins", "OSError"))


def add_debug_flag(parser: argparse.ArgumentParser) -> None:
    """Document ``--debug`` in ``parser`` (the boundary reads it from the command line)."""
    parser.add_argument("--debug", action="store_true",
                        help=f"show the traceback of an error (or set {DEBUG_ENV}=1)")


def _classes(names: Sequence[tuple[str, str]]) -> tuple[type, ...]:
    found = (getattr(sys.modules.get(module), name, None) for module, name in names)
    return tuple(c for c in found if isinstance(c, type))


def exit_code(exc: BaseException) -> int | None:
    """The exit status of a known error (see the module docstring), None for a bug."""
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    for names, code in ((_BAD_INPUT, EXIT_BAD_INPUT), (_FAILED, EXIT_FAILED)):
        if isinstance(exc, _classes(names)):
            return code
    return None


def error_lines(exc: BaseException) -> list[str]:
    """What to print for a known error: ``error: ...`` and, for a file fault, what to do."""
    if isinstance(exc, KeyboardInterrupt):
        return [INTERRUPTED_MESSAGE]
    lines = [f"error: {str(exc).strip() or type(exc).__name__}"]
    if isinstance(exc, OSError) and not isinstance(exc, WriteError) and (
            exc.filename is not None or exc.errno is not None):
        lines.append(f"  {os_error_advice(exc)}")
    return lines


def _debug(argv: Sequence[str] | None) -> bool:
    args = sys.argv[1:] if argv is None else argv
    return "--debug" in args or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def entry_point(main: Callable[..., int]) -> Callable[..., int]:
    """Wrap a ``main(argv=None) -> int`` in the error boundary; it returns the exit status."""

    @functools.wraps(main)
    def wrapper(argv: Sequence[str] | None = None, *args, **kwargs) -> int:
        try:
            return main(argv, *args, **kwargs)
        except SystemExit as exc:  # argparse's usage errors (2), or a script's message
            if isinstance(exc.code, str):
                print(f"error: {exc.code}", file=sys.stderr)
                return EXIT_BAD_INPUT
            raise
        except BrokenPipeError:  # the reader of stdout went away (`| head`): not an error
            sys.stdout = open(os.devnull, "w")  # no second error when Python flushes it
            return EXIT_FAILED
        except BaseException as exc:
            code = exit_code(exc)
            if code is None:
                raise  # not a known error: a bug, whose traceback is wanted
            if _debug(argv):
                traceback.print_exc()
            sys.stderr.flush()
            print("\n".join(error_lines(exc)), file=sys.stderr)
            return code

    return wrapper
