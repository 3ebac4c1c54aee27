"""Train and score a mode end to end; print the figures the README quotes.

    python benchmarks/train_cv.py --data ../shared/data/ESC-10 --profile quick
    python benchmarks/train_cv.py --data ../shared/data/ESC-10 --profile cpu-cv --mode cv
    python benchmarks/train_cv.py --data ../shared/data/ESC-10 --profile cpu-cv --seeds 2
    python benchmarks/train_cv.py --data DEST/ESC-50-master --profile cpu-esc50
    python benchmarks/train_cv.py --data DEST/ESC-50-master --profile cpu-esc50 --set seeds=1

Prints per-split test accuracy, mean +- std over splits, training clips per second and
wall time; the LAST line is ``overall test accuracy: <pooled accuracy>``. A split whose
score would mean nothing (a class without training clips, a dataset of one class, a
scored fold with fewer clips than classes, a mode's fold without clips) is refused with
one line and exit status 2; ``--allow-degenerate`` runs it anyway and prints ``WARNING:``
lines next to the figures (an empty side is refused all the same). Checkpoints
are chosen on each split's validation fold; test folds are scored once.

A profile with ``seeds`` above 1 (``cpu-esc50``: 2; ``--set seeds=K`` for any) trains K
models per split inside ONE run folder and scores each split by their ensemble, as
``make run PROFILE=...`` does; the split lines then give each seed's score too.
``--seeds N`` instead trains N separate runs (seeds ``--seed`` ... ``--seed + N - 1``; run folders
``<run name>-seed<k>`` with ``--run-name``, ``<run name>-val<offset>-seed<k>`` for
offsets other than 1, else new time-stamped ones) and scores the
ENSEMBLE of each split's N models (mean class probabilities;
:func:`esc50kit.evaluation.average_predictions`) on validation and test.

``--val-offsets 1 2 3 4`` (cv mode) trains one run per offset: test fold i is validated
on fold i + offset (cyclically), so each test fold gets a model for every other fold as
validation fold. Their ensemble is scored per test fold; it has no validation score of
its own, since each member's validation fold is training data of the others. With
``--seeds N`` too, seeds go with offsets in turn (offset k gets seed ``--seed + k``
for N = 1 or each of the N seeds otherwise).

``--mode refit`` (the ``cpu-esc50`` profile's default) tests every fold once with a
model trained on ALL the other folds for the profile's fixed epoch count (chosen on
validation folds beforehand); its last weights are scored, and there is no validation
score to print.

``--folds 1 2 3 4`` uses those folds only: the others are never loaded. A cv run over
folds 1-4 is an inner cross-validation that compares recipes without touching fold 5;
its "test" folds are validation folds of the outer protocol.

``--from-runs RUN ...`` trains nothing: it reads finished run folders back and prints
the same report for them and their ensemble (a seed ensemble when they share their
splits, else an ensemble of fold models), e.g. to pool the members of two invocations.

``--track`` also logs every run to MLflow (:mod:`esc50kit.tracking`): configuration,
per-epoch curves, final figures, confusion matrix and the run folder, in the experiment
named after the dataset, by default in ``sqlite:///<artifacts>/mlflow.db``
(``MLFLOW_TRACKING_URI`` selects another store); the first lines say where and how to
look (``mlflow ui --backend-store-uri ...``). Without mlflow installed it says that
tracking is off and why, and the command runs untracked.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from esc50kit.errors import add_debug_flag, entry_point


def _workers(value: str) -> int | str:
    """``--workers``: "auto" or a whole number (argparse names this function in its error)."""
    return value if value == "auto" else int(value)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from esc50kit.splits import MODES

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="dataset root holding meta/esc50.csv and audio/, or a "
                                  "feature pack (python -m esc50kit pack; required unless --from-runs)")
    p.add_argument("--from-runs", nargs="+", default=None, metavar="RUN",
                   help="score these finished run folders and their ensemble; train nothing")
    p.add_argument("--mode", choices=MODES, default=None,
                   help="default: the profile's mode (quick: final-refit, fold 5 tested by a "
                        "model trained on folds 1-4 for the recipe's epoch count; cpu-cv, "
                        "full: cv; cpu-esc50: refit, every fold tested that way)")
    p.add_argument("--profile", default="quick", help="tiny, quick, cpu-cv, cpu-esc50 or full")
    p.add_argument("--artifacts", default="artifacts", help="feature cache and run folders")
    p.add_argument("--subset", default="all", choices=("all", "esc10", "esc50"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, default=1,
                   help="train this many separate runs (seeds) and score the ensemble of "
                        "their models (each run trains the profile's own seeds per split)")
    p.add_argument("--val-offsets", type=int, nargs="+", default=[1], metavar="K",
                   help="cv: one run per offset, test fold i validated on fold i+K "
                        "(cyclic); several offsets make an ensemble of fold models")
    p.add_argument("--folds", type=int, nargs="+", default=None, metavar="F",
                   help="use these folds only (e.g. 1 2 3 4 for an inner cross-validation "
                        "that never loads fold 5)")
    p.add_argument("--run-name", default=None, help="reuse to resume an interrupted run")
    p.add_argument("--epochs", type=int, default=None, help="override training.epochs")
    p.add_argument("--width", type=int, default=None, help="override model.width (resnet18)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=JSON",
                   help="any override, e.g. --set training.lr=0.001 --set features.n_mels=96")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--workers", default="auto", type=_workers,
                   help="models trained at a time, each in its own process with its share of "
                        "the threads (default auto: 2 on a CPU of 2 or more threads where the "
                        "run has models that can train side by side)")
    p.add_argument("--keep-last-checkpoints", action="store_true",
                   help="keep each finished split's checkpoint_last.pt (optimizer state)")
    p.add_argument("--cross-fold", choices=("allow", "exclude"), default="allow",
                   help="the official folds' four cross-fold recordings (ESC-50): allow them "
                        "where the official folds put them (default, the official protocol), "
                        "or exclude their clips from the less held-out side of each split")
    p.add_argument("--allow-degenerate", action="store_true",
                   help="run splits whose score means little anyway (a class without training "
                        "clips, one class, a scored fold with fewer clips than classes); the "
                        "warnings are printed and written next to every score")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--track", action="store_true",
                   help='log the runs to MLflow (pip install -e ".[tracking]")')
    add_debug_flag(p)
    return p.parse_args(argv)


def overrides_from(args: argparse.Namespace) -> dict:
    from esc50kit.profiles import parse_overrides

    out: dict = {}
    if args.epochs is not None:
        out["training.epochs"] = args.epochs
    if args.width is not None:
        out["model.width"] = args.width
    try:
        out.update(parse_overrides(args.set))
    except ValueError as exc:
        raise SystemExit(str(exc)) from exc
    return out


@entry_point  # known errors: `error: ...` and exit 1 or 2; Ctrl-C: 130 (esc50kit.errors)
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from esc50kit.experiment import load_run, run_experiment

    if args.from_runs:
        results = [load_run(r) for r in args.from_runs]
        return report(results, wall=None, threads=None)
    if not args.data:
        raise SystemExit("--data DIR is required (or --from-runs RUN ... to score finished runs)")
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    if args.seeds < 1:
        raise SystemExit(f"--seeds {args.seeds}: give 1 or more")
    from esc50kit.profiles import get_profile

    mode = args.mode or get_profile(args.profile, overrides_from(args)).mode
    if args.val_offsets != [1] and mode != "cv":  # refuse before any member trains
        raise SystemExit(f"--val-offsets applies to cv mode only; this run's mode is {mode!r}")
    track = args.track and tracking_ready(args.artifacts)
    members = [(offset, args.seed + (k if args.seeds == 1 else j))
               for k, offset in enumerate(args.val_offsets) for j in range(args.seeds)]
    t0 = time.perf_counter()
    results = []
    for offset, seed in members:
        name = args.run_name  # None: run_experiment's <profile>-<mode>-seed<k>-<time>
        if len(members) > 1 and args.run_name:  # offset 1 keeps --seeds' names: shared
            name = f"{args.run_name}-seed{seed}" if offset == 1 else \
                f"{args.run_name}-val{offset}-seed{seed}"
        results.append(run_experiment(
            args.data, artifacts_dir=args.artifacts, mode=args.mode, profile=args.profile,
            overrides=overrides_from(args), seed=seed, run_name=name,
            progress=not args.no_progress, subset=args.subset,
            val_offset=offset, folds=args.folds,
            keep_last_checkpoints=args.keep_last_checkpoints, cross_fold=args.cross_fold,
            allow_degenerate=args.allow_degenerate, track=track,
            workers=args.workers))
    return report(results, wall=time.perf_counter() - t0, threads=torch.get_num_threads(),
                  folds=args.folds)


def tracking_ready(artifacts: str) -> bool:
    """Print where tracked runs go and how to look at them, or why tracking is off."""
    from esc50kit.tracking import tracking_uri, ui_command, unavailable_reason

    reason = unavailable_reason()
    if reason:
        print(reason, flush=True)
        return False
    uri = tracking_uri(artifacts)
    print(f"tracking: MLflow runs in {uri}; look at them with: {ui_command(uri)}", flush=True)
    return True


def report(results, *, wall: float | None, threads: int | None, folds=None) -> int:
    """Print each run, then the ensemble of all of them; the last line is the overall accuracy."""
    from esc50kit.evaluation import mean_std
    from esc50kit.experiment import score_warnings

    for result in results:
        m = result.metrics
        role = m["scored_role"]
        print(f"run folder: {result.run_dir} (seed {result.config['seed']})")
        print(f"mode {result.config['mode']}, profile {result.config['profile']['name']}, "
              f"device {m['splits'][0]['device']}"
              + (f", torch threads {threads}" if threads else ""))
        for s in m["splits"]:
            score = s["test_accuracy"] if role == "test" else s["val_accuracy"]
            chosen = (f"val {s['val_accuracy']:.3f}, best epoch {s['best_epoch']}/{s['epochs_run']}"
                      if s["val_accuracy"] is not None else  # refit: a fixed epoch count
                      f"no validation fold, last epoch {s['best_epoch']}/{s['epochs_run']}")
            seeds = "".join(f"; {'student' if x.get('student') else 'seed'} {x['seed']}: "
                            f"{x[f'{role}_accuracy']:.3f}"
                            for x in s.get("members", []))  # each model of the split
            print(f"  {s['name']}: {role} accuracy {score:.3f} ({chosen}, "
                  f"{s['samples_per_s']:.1f} clips/s{seeds})")
        acc = m["accuracy"]
        vals = [s["val_accuracy"] for s in m["splits"] if s["val_accuracy"] is not None]
        val = f" (validation {mean_std(vals)['mean']:.3f})" if vals else ""
        print(f"{role} accuracy mean +- std over {acc['n']} split(s): {acc['mean']:.3f} +- "
              f"{acc['std']:.3f}{val}")
        for w in score_warnings(m):
            print(f"WARNING: {w}")
        print(f"training samples per second: {m['samples_per_s']:.1f}")
        print(f"training time: {m['times']['training_s']:.1f} s (features {m['times']['features_s']:.1f} s)")
    overall = results[0].metrics["overall_accuracy"]
    role = results[0].metrics["scored_role"]
    if folds:
        print(f"folds used: {results[0].config['folds']}; the others were never loaded, so "
              f"these '{role}' folds are validation folds of the outer protocol")
    if len({tuple(r.split_names) for r in results}) > 1:  # members validated on other folds
        overall = print_fold_ensemble(results)
    elif len(results) > 1:
        overall = print_ensemble(results, role)
    if wall is not None:
        print(f"wall time: {wall:.1f} s for {len(results)} run(s)")
    else:
        train = sum(r.metrics["times"]["training_s"] for r in results)
        print(f"read back {len(results)} finished run(s); their training time: {train:.1f} s")
    n_warnings = sum(len(score_warnings(r.metrics)) for r in results)
    if n_warnings:  # the last line stays the figure; this one stands next to it
        print(f"WARNING: {n_warnings} warning(s) above: the score below means little")
    print(f"overall {role} accuracy: {overall:.3f}")
    return 0


def print_ensemble(results, role: str) -> float:
    """Score the mean probabilities of the runs' models, split by split. Returns pooled accuracy."""
    import pandas as pd

    from esc50kit.evaluation import average_predictions, mean_std, scores, split_scores
    from esc50kit.run_folder import RunFolder

    def split_tables(result):
        run = RunFolder(result.run_dir)
        return pd.concat([run.read_split(name)[1].assign(split=name) for name in result.split_names],
                         ignore_index=True)

    ens = average_predictions([split_tables(r) for r in results])
    validated = bool((ens["role"] == "val").any())  # refit runs have no validation fold
    print(f"ensemble of {len(results)} seeds (mean probabilities; each model "
          + ("chosen on validation):" if validated else "trained for the fixed epoch count):"))
    by_split = {r: split_scores(ens, role=r) for r in ({"val", role} if validated else {role})}
    for name in results[0].split_names:
        val = f" (val {by_split['val'].loc[name, 'accuracy']:.3f})" if validated else ""
        print(f"  {name}: {role} accuracy {by_split[role].loc[name, 'accuracy']:.3f}{val}")
    acc = mean_std(by_split[role]["accuracy"].tolist())
    val = (f" (validation {mean_std(by_split['val']['accuracy'].tolist())['mean']:.3f})"
           if validated else "")
    print(f"ensemble {role} accuracy mean +- std over {acc['n']} split(s): {acc['mean']:.3f} +- "
          f"{acc['std']:.3f}{val}")
    pooled = ens[ens["role"] == role]
    return scores(pooled["true_label"], pooled["pred_label"])["accuracy"]


def print_fold_ensemble(results) -> float:
    """Score, per test fold, the mean probabilities of models validated on different folds.

    Returns the pooled test accuracy. There is no ensemble validation score: each
    member's validation fold is training data of the others.
    """
    import pandas as pd

    from esc50kit.evaluation import average_predictions, mean_std, scores, split_scores

    tables = [r.predictions[r.predictions["role"] == "test"] for r in results]
    ens = average_predictions(tables, keys=("fold", "role", "filename"))
    by_fold = split_scores(ens, by="fold", role="test")
    member_val = pd.Series([mean_std([s["val_accuracy"] for s in r.metrics["splits"]])["mean"]
                            for r in results])
    print(f"ensemble of {len(results)} runs over validation offsets "
          f"{sorted({r.config.get('val_offset', 1) for r in results})} (mean probabilities; each "
          "model chosen on its own validation fold):")
    for fold, row in by_fold.iterrows():
        print(f"  test fold {fold}: test accuracy {row['accuracy']:.3f} ({len(results)} models)")
    acc = mean_std(by_fold["accuracy"].tolist())
    print(f"ensemble test accuracy mean +- std over {acc['n']} fold(s): {acc['mean']:.3f} +- "
          f"{acc['std']:.3f} (members' validation means {member_val.min():.3f} .. "
          f"{member_val.max():.3f}; the ensemble has no validation fold of its own)")
    return scores(ens["true_label"], ens["pred_label"])["accuracy"]


if __name__ == "__main__":
    sys.exit(main())
