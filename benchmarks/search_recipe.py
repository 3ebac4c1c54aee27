"""Search a recipe's settings on validation folds with Optuna; print every trial and the best.

    python benchmarks/search_recipe.py --data ../shared/data/ESC-10 --profile cpu-cv --trials 16

Each trial is a cross-validation over ``--folds`` (default 1 2 3 4; the other folds are
never loaded) and is scored by the accuracy pooled over its held-out folds
(:mod:`esc50kit.search`). Trial 0 is the profile itself; then Optuna's TPE sampler
(``--initial`` random draws first). After each inner fold a trial reports its mean so
far, and a trial below the ``--prune-below`` percentile of the finished ones at that fold
is pruned (after ``--prune-after`` finished trials). ``--seeds N`` scores each trial by
the mean of N runs (on ESC-10 one seed moves a score as much as the settings do).

The study is kept in ``--storage`` (default ``sqlite:///<artifacts>/search/optuna.db``;
any Optuna URL such as ``postgresql://user@host/db``, or a journal file path). Workers
are this same command started again, in another terminal or on another machine with
``--storage`` pointing to one database: they share the study's ``--trials`` and never
run a trial twice. Rerun the command to resume an interrupted search (an interrupted
trial resumes from its run folder), or with a larger ``--trials`` to extend it.

The last lines give the pruned trials and the time they saved, the plots, the dashboard
command, and the best trial as ``--set`` flags for ``benchmarks/train_cv.py``, to confirm
it with another seed on the same folds before any test fold sees it.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time

from esc50kit.errors import add_debug_flag, entry_point


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="dataset root holding meta/esc50.csv and audio/")
    p.add_argument("--profile", default="cpu-cv", help="the recipe searched around")
    p.add_argument("--trials", type=int, default=16,
                   help="finished trials in all (earlier ones and other workers' count)")
    p.add_argument("--initial", type=int, default=5,
                   help="trials TPE draws at random first (the profile's own included)")
    p.add_argument("--folds", type=int, nargs="+", default=[1, 2, 3, 4], metavar="F",
                   help="search folds; leave at least one fold out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, default=1,
                   help="runs per trial (seeds --seed, --seed + 1, ...); a trial scores their mean")
    p.add_argument("--name", "--study", dest="name", default=None,
                   help="the study's name and search folder (reuse to resume or to join)")
    p.add_argument("--storage", default=None, metavar="URL",
                   help="Optuna storage shared by the workers (default: sqlite:///<artifacts>/search/"
                        "optuna.db; e.g. postgresql://user@host/db, or a journal file path)")
    p.add_argument("--prune-below", type=float, default=25.0, metavar="P",
                   help="prune a trial below this percentile of the finished trials at the same "
                        "fold (0: no pruning)")
    p.add_argument("--prune-after", type=int, default=4, metavar="K",
                   help="finished trials before any trial is pruned")
    p.add_argument("--artifacts", default="artifacts")
    p.add_argument("--subset", default="all", choices=("all", "esc10", "esc50"))
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=JSON",
                   help="a fixed override for every trial, e.g. --set training.epochs=60")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--track", action="store_true",
                   help='log every trial run to MLflow (pip install -e ".[tracking]")')
    add_debug_flag(p)
    return p.parse_args(argv)


def _flag_value(value) -> str:
    """A setting as train_cv's --set reads it (JSON), floats to 3 significant digits."""
    value = value.item() if hasattr(value, "item") else value
    return f"{value:.3g}" if isinstance(value, float) else json.dumps(value)


@entry_point  # known errors: `error: ...` and exit 1 or 2; Ctrl-C: 130 (esc50kit.errors)
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from esc50kit.search import (DEFAULT_SPACE, SEARCH_DIRNAME, default_name, default_storage,
                                 run_search, time_saved)

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from train_cv import overrides_from, tracking_ready  # the same --set parsing as train_cv

    args.epochs = args.width = None
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    print("search space: " + ", ".join(p.describe() for p in DEFAULT_SPACE))
    print(f"profile {args.profile}, search folds {args.folds}, seed {args.seed}"
          + (f" to {args.seed + args.seeds - 1} (mean per trial)" if args.seeds > 1 else "") + ", "
          f"torch threads {torch.get_num_threads()}", flush=True)
    storage = args.storage or default_storage(args.artifacts)
    print(f"storage {storage}; this worker: {socket.gethostname()} pid {os.getpid()} (start the same "
          "command again, here or elsewhere with this --storage, to add workers)", flush=True)
    track = args.track and tracking_ready(args.artifacts)
    t0 = time.perf_counter()
    table = run_search(args.data, profile=args.profile, n_trials=args.trials, n_initial=args.initial,
                       folds=args.folds, seed=args.seed, seeds=args.seeds, name=args.name,
                       artifacts_dir=args.artifacts, storage=storage, overrides=overrides_from(args),
                       subset=args.subset, prune_below=args.prune_below, prune_after=args.prune_after,
                       track=track, log=lambda line: print(line, flush=True))
    print(f"\n{len(table)} trials, best first ({time.perf_counter() - t0:.0f} s in this call):")
    shown = table.drop(columns=["run_dir"])
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    pruned = table[table["state"] == "pruned"]
    print(f"\npruned: {len(pruned)} trial(s) {pruned['trial'].tolist()}, about "
          f"{time_saved(table):.0f} s saved (estimate: for each pruned trial, the mean duration "
          "of a complete trial that ran whole, minus its own)")
    name = args.name or default_name(args.profile, args.folds, args.seed)
    print(f"plots and trials.csv: {os.path.join(args.artifacts, SEARCH_DIRNAME, name)}; "
          f"live view: optuna-dashboard {storage}")
    best = table[table["state"] == "complete"].iloc[0]
    flags = " ".join(f"--set {p.key}={_flag_value(best[p.key])}" for p in DEFAULT_SPACE)
    own = table.loc[table["trial"] == 0, "score"]
    print(f"best: trial {best['trial']} ({best['proposed_by']}), score {best['score']:.3f} "
          f"(the profile itself: {f'{own.iloc[0]:.3f}' if len(own) else 'failed'})")
    fixed = "".join(f" --set {item}" for item in args.set)  # the search's own fixed overrides
    print(f"confirm with another seed: python benchmarks/train_cv.py --data {args.data} "
          f"--profile {args.profile} --mode cv --folds {' '.join(map(str, args.folds))} "
          f"--seed {args.seed + args.seeds}{fixed} {flags}")
    print(f"best search score: {best['score']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
