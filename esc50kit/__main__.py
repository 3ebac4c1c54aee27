"""Command line: ``python -m esc50kit run ...``, ``... predict ...`` and ``... pack ...``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import predict
from .errors import add_debug_flag, entry_point


def _load_params(args: argparse.Namespace) -> dict:
    """Notebook parameters from ``--config`` (YAML) and ``-p NAME VALUE``; the latter win.

    A ``-p`` value is read as YAML reads it: 3 -> int, 0.5 -> float, true -> bool, else str.
    """
    import yaml

    params: dict = {}
    if args.config:
        cfg = Path(args.config)
        if not cfg.is_file():
            raise ValueError(f"--config {cfg} not found")
        try:
            loaded = yaml.safe_load(cfg.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"--config {cfg} is not valid YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ValueError(f"{cfg} must hold a mapping of parameter: value")
        params.update(loaded)
    params.update((name, yaml.safe_load(value)) for name, value in args.param or [])
    return params


def _run(args: argparse.Namespace) -> int:
    from .chain import run_chain

    params = _load_params(args)
    # The chain's own settings may come from the YAML file too; command-line flags win.
    chain = {key: params.pop(key, None) for key in ("data_dir", "profile", "out", "artifacts_dir")}
    data = args.data or chain["data_dir"]
    if not data:
        raise ValueError("give the dataset folder with --data (see `python download_data.py`)")
    notebooks = {"notebooks": tuple(args.notebooks)} if args.notebooks else {}
    result = run_chain(data_dir=data, profile=args.profile or chain["profile"] or "quick",
                       out_dir=args.out or chain["out"] or "reports/latest",
                       artifacts_dir=args.artifacts or chain["artifacts_dir"] or "artifacts",
                       parameters=params, cell_timeout=args.cell_timeout, **notebooks)
    print((result.out_dir / "summary.md").read_text())
    print(f"reports: {result.out_dir}")
    return 0


def _pack(args: argparse.Namespace) -> int:
    from .experiment import FEATURES_DIRNAME
    from .packs import write_pack
    from .profiles import get_profile

    features = get_profile(args.profile).features
    out = write_pack(args.data, args.out, features=features, subset=args.subset,
                     cache_dir=Path(args.artifacts) / FEATURES_DIRNAME)
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB): the {args.profile} profile's "
          f"features of {args.data}; train on it with --data {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m esc50kit", description=__doc__)
    add_debug_flag(parser)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="execute the four notebooks with papermill and render "
                                     "reports")
    run.add_argument("--data", help="dataset root (meta/esc50.csv and audio/)")
    run.add_argument("--profile", help="quick (minutes on a CPU) or full (meant for a GPU)")
    run.add_argument("--out", help="report folder (default reports/latest)")
    run.add_argument("--artifacts",
                     help="artifacts folder shared by the notebooks (default artifacts)")
    run.add_argument("--config", help="YAML file of parameters (any notebook parameter)")
    run.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"),
                     help="a notebook parameter, e.g. -p seed 1 (repeatable)")
    run.add_argument("--notebooks", nargs="+", metavar="NAME",
                     help="run only these notebooks, in order (e.g. 03_Modeling 04_Evaluation)")
    run.add_argument("--cell-timeout", type=int, default=None, help="seconds a cell may run")
    add_debug_flag(run)
    run.set_defaults(func=_run)

    pack = sub.add_parser("pack", help="write a dataset's features and table to one .npz "
                                       "(train where the audio is not, e.g. on a GPU machine)")
    pack.add_argument("--data", required=True, help="dataset root (meta/esc50.csv and audio/)")
    pack.add_argument("--profile", default="full", help="whose features to pack (default full)")
    pack.add_argument("--out", required=True, help="the pack file, *.npz")
    pack.add_argument("--subset", default="all", choices=("all", "esc10", "esc50"))
    pack.add_argument("--artifacts", default="artifacts", help="feature cache to read and fill")
    add_debug_flag(pack)
    pack.set_defaults(func=_pack)

    pred = sub.add_parser("predict", help="classify audio files with a trained run")
    predict.add_arguments(pred)
    add_debug_flag(pred)
    pred.set_defaults(func=predict.main)
    return parser


@entry_point
def main(argv: list[str] | None = None) -> int:
    """Run a command; errors end as ``error: ...`` and an exit status (:mod:`esc50kit.errors`)."""
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
