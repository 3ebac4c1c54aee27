"""Train and score a mode end to end; print the figures the README quotes.

    python benchmarks/train_cv.py --data ../shared/data/ESC-10 --profile quick
    python benchmarks/train_cv.py --data ../shared/data/ESC-10 --profile cpu-cv --mode cv
    python benchmarks/train_cv.py --data ../shared/data/ESC-10 --profile cpu-cv --seeds 2

Prints per-split test accuracy, mean +- std over splits, training clips per second and
wall time; the LAST line is ``overall test accuracy: <pooled accuracy>``. Checkpoints
are chosen on each split's validation fold; test folds are scored once.

``--seeds N`` trains N runs (seeds ``--seed`` ... ``--seed + N - 1``; run folders
``<run name>-seed<k>`` with ``--run-name``, else new time-stamped ones) and scores the
ENSEMBLE of each split's N models (mean class probabilities;
:func:`esc50kit.evaluation.average_predictions`) on validation and test.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="dataset root holding meta/esc50.csv and audio/")
    p.add_argument("--mode", choices=("cv", "validation", "final"), default=None,
                   help="default: the profile's mode (quick: final; cpu-cv, full: cv)")
    p.add_argument("--profile", default="quick", help="tiny, quick, cpu-cv or full")
    p.add_argument("--artifacts", default="artifacts", help="feature cache and run folders")
    p.add_argument("--subset", default="all", choices=("all", "esc10", "esc50"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, default=1,
                   help="train this many seeds and score the ensemble of their models")
    p.add_argument("--run-name", default=None, help="reuse to resume an interrupted run")
    p.add_argument("--epochs", type=int, default=None, help="override training.epochs")
    p.add_argument("--width", type=int, default=None, help="override model.width (resnet18)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=JSON",
                   help="any override, e.g. --set training.lr=0.001 --set features.n_mels=96")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def overrides_from(args: argparse.Namespace) -> dict:
    out: dict = {}
    if args.epochs is not None:
        out["training.epochs"] = args.epochs
    if args.width is not None:
        out["model.width"] = args.width
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set {item!r}: write SECTION.FIELD=VALUE, e.g. training.lr=0.001")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value  # a bare string such as adam
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from esc50kit.evaluation import mean_std
    from esc50kit.experiment import run_experiment

    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    if args.seeds < 1:
        raise SystemExit(f"--seeds {args.seeds}: give 1 or more")
    t0 = time.perf_counter()
    results = []
    for k in range(args.seeds):
        seed = args.seed + k
        name = args.run_name  # None: run_experiment's <profile>-<mode>-seed<k>-<time>
        if args.seeds > 1 and args.run_name:
            name = f"{args.run_name}-seed{seed}"
        results.append(run_experiment(
            args.data, artifacts_dir=args.artifacts, mode=args.mode, profile=args.profile,
            overrides=overrides_from(args), seed=seed, run_name=name,
            progress=not args.no_progress, subset=args.subset))
    wall = time.perf_counter() - t0
    for result in results:
        m = result.metrics
        role = m["scored_role"]
        print(f"run folder: {result.run_dir} (seed {result.config['seed']})")
        print(f"mode {result.config['mode']}, profile {result.config['profile']['name']}, "
              f"device {m['splits'][0]['device']}, torch threads {torch.get_num_threads()}")
        for s in m["splits"]:
            score = s["test_accuracy"] if role == "test" else s["val_accuracy"]
            print(f"  {s['name']}: {role} accuracy {score:.3f} (val {s['val_accuracy']:.3f}, "
                  f"best epoch {s['best_epoch']}/{s['epochs_run']}, {s['samples_per_s']:.1f} clips/s)")
        acc, val = m["accuracy"], mean_std([s["val_accuracy"] for s in m["splits"]])
        print(f"{role} accuracy mean +- std over {acc['n']} split(s): {acc['mean']:.3f} +- "
              f"{acc['std']:.3f} (validation {val['mean']:.3f})")
        print(f"training samples per second: {m['samples_per_s']:.1f}")
        print(f"training time: {m['times']['training_s']:.1f} s (features {m['times']['features_s']:.1f} s)")
    overall = results[0].metrics["overall_accuracy"]
    role = results[0].metrics["scored_role"]
    if len(results) > 1:
        overall = print_ensemble(results, role)
    print(f"wall time: {wall:.1f} s for {len(results)} run(s)")
    print(f"overall {role} accuracy: {overall:.3f}")
    return 0


def print_ensemble(results, role: str) -> float:
    """Score the mean probabilities of the runs' models, split by split. Returns pooled accuracy."""
    import pandas as pd

    from esc50kit.evaluation import average_predictions, mean_std, scores, split_scores

    def split_tables(result):
        return pd.concat([pd.read_csv(result.run_dir / name / "predictions.csv").assign(split=name)
                          for name in result.split_names], ignore_index=True)

    ens = average_predictions([split_tables(r) for r in results])
    print(f"ensemble of {len(results)} seeds (mean probabilities; each model chosen on validation):")
    by_split = {r: split_scores(ens, role=r) for r in ("val", role)}
    for name in results[0].split_names:
        print(f"  {name}: {role} accuracy {by_split[role].loc[name, 'accuracy']:.3f} "
              f"(val {by_split['val'].loc[name, 'accuracy']:.3f})")
    acc = mean_std(by_split[role]["accuracy"].tolist())
    val = mean_std(by_split["val"]["accuracy"].tolist())
    print(f"ensemble {role} accuracy mean +- std over {acc['n']} split(s): {acc['mean']:.3f} +- "
          f"{acc['std']:.3f} (validation {val['mean']:.3f})")
    pooled = ens[ens["role"] == role]
    return scores(pooled["true_label"], pooled["pred_label"])["accuracy"]


if __name__ == "__main__":
    sys.exit(main())
