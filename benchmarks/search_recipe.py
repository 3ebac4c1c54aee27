"""Search a recipe's settings on validation folds; print every trial and the best.

    python benchmarks/search_recipe.py --data ../shared/data/ESC-10 --profile cpu-cv --trials 16

Each trial is a cross-validation over ``--folds`` (default 1 2 3 4; the other folds are
never loaded) and is scored by the accuracy pooled over its held-out folds
(:mod:`esc50kit.search`). Trial 0 is the profile itself; then ``--initial`` random
trials, then a Gaussian process with expected improvement. ``--seeds N`` scores each
trial by the mean of N runs (on ESC-10 one seed moves a score as much as the settings
do). Rerun the same command to continue an interrupted search, or with a larger
``--trials`` to extend it.

The last lines give the best trial as ``--set`` flags for ``benchmarks/train_cv.py``,
to confirm it with another seed on the same folds before any test fold sees it.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

from esc50kit.cli import add_debug_flag, entry_point


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="dataset root holding meta/esc50.csv and audio/")
    p.add_argument("--profile", default="cpu-cv", help="the recipe searched around")
    p.add_argument("--trials", type=int, default=16, help="trials in all (finished ones count)")
    p.add_argument("--initial", type=int, default=5,
                   help="trials before the Gaussian process takes over (the profile's own included)")
    p.add_argument("--folds", type=int, nargs="+", default=[1, 2, 3, 4], metavar="F",
                   help="search folds; leave at least one fold out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, default=1,
                   help="runs per trial (seeds --seed, --seed + 1, ...); a trial scores their mean")
    p.add_argument("--name", default=None, help="search folder name (reuse to continue)")
    p.add_argument("--artifacts", default="artifacts")
    p.add_argument("--subset", default="all", choices=("all", "esc10", "esc50"))
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=JSON",
                   help="a fixed override for every trial, e.g. --set training.epochs=60")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    add_debug_flag(p)
    return p.parse_args(argv)


def _flag_value(value) -> str:
    """A setting as train_cv's --set reads it (JSON), floats to 3 significant digits."""
    value = value.item() if hasattr(value, "item") else value
    return f"{value:.3g}" if isinstance(value, float) else json.dumps(value)


@entry_point  # known errors: `error: ...` and exit 1 or 2; Ctrl-C: 130 (esc50kit.cli)
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from esc50kit.search import DEFAULT_SPACE, run_search

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from train_cv import overrides_from  # the same --set parsing as train_cv

    args.epochs = args.width = None
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    print(f"search space: " + ", ".join(f"{p.key} ({p.kind} {p.low}..{p.high})" if p.kind != "choice"
                                        else f"{p.key} (one of {list(p.choices)})" for p in DEFAULT_SPACE))
    print(f"profile {args.profile}, search folds {args.folds}, seed {args.seed}"
          + (f" to {args.seed + args.seeds - 1} (mean per trial)" if args.seeds > 1 else "") + ", "
          f"torch threads {torch.get_num_threads()}", flush=True)
    t0 = time.perf_counter()
    table = run_search(args.data, profile=args.profile, n_trials=args.trials, n_initial=args.initial,
                       folds=args.folds, seed=args.seed, seeds=args.seeds, name=args.name, artifacts_dir=args.artifacts,
                       overrides=overrides_from(args), subset=args.subset,
                       log=lambda line: print(line, flush=True))
    print(f"\n{len(table)} trials, best first ({time.perf_counter() - t0:.0f} s in this call):")
    shown = table.drop(columns=["run_dir"])
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    best = table.iloc[0]
    flags = " ".join(f"--set {p.key}={_flag_value(best[p.key])}" for p in DEFAULT_SPACE)
    print(f"\nbest: trial {best['trial']} ({best['origin']}), score {best['score']:.3f} "
          f"(the profile itself: {table.loc[table['trial'] == 0, 'score'].iloc[0]:.3f})")
    print(f"confirm with another seed: python benchmarks/train_cv.py --data {args.data} "
          f"--profile {args.profile} --folds {' '.join(map(str, args.folds))} "
          f"--seed {args.seed + args.seeds} {flags}")
    print(f"best search score: {best['score']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
