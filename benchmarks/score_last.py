"""How would a refit recipe's LAST weights score? Asked on VALIDATION folds only.

A refit run (``--mode refit``) has no validation fold: it keeps its last weights. To
choose such a recipe (its epoch count, or an ensemble of several seeds) on a validation
fold, train it in ``--mode validation`` with ``--keep-last-checkpoints``; this script then
scores each run's last weights (the EMA of the weights where the recipe keeps one, as
refit does) on each split's validation clips, and the ensemble of the runs (mean class
probabilities), beside the best-epoch checkpoints that validation mode chose (an
optimistic figure: the epoch was picked on the same clips). Test folds are not loaded.

    python benchmarks/train_cv.py --data DATA --mode validation --profile cpu-esc50 \\
        --epochs 80 --seeds 2 --keep-last-checkpoints --run-name tune-x
    python benchmarks/score_last.py artifacts/runs/tune-x-seed0 artifacts/runs/tune-x-seed1
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from esc50kit.errors import add_debug_flag, entry_point


@entry_point  # known errors: `error: ...` and exit 1 or 2; Ctrl-C: 130 (esc50kit.errors)
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="finished run folders sharing their splits")
    p.add_argument("--artifacts", default="artifacts", help="feature cache")
    add_debug_flag(p)
    args = p.parse_args(argv)

    import numpy as np

    from esc50kit.cache import load_or_compute
    from esc50kit.data import load_metadata
    from esc50kit.experiment import FEATURES_DIRNAME
    from esc50kit.features import FeatureConfig
    from esc50kit.run_folder import RunFolder
    from esc50kit.splits import FoldSplit, assign_roles
    from esc50kit.training import LAST, predict_proba

    configs = [RunFolder(run).config() for run in args.runs]
    splits = [[s["name"] for s in c["splits"]] for c in configs]
    for run, names in zip(args.runs[1:], splits[1:]):
        if names != splits[0]:
            raise SystemExit(f"{run} has splits {names}, {args.runs[0]} has {splits[0]}; "
                             "only runs of the same splits can be ensembled")
    first = configs[0]
    df = load_metadata(first["data_dir"], subset=first["subset"])
    y = df["label"].to_numpy()
    cache = Path(args.artifacts) / FEATURES_DIRNAME
    features = [load_or_compute(df, FeatureConfig.from_dict(c["features"]), cache_dir=cache,
                                progress=False).X for c in configs]  # each (n_clips, n_bins, frames)

    last_acc: dict[str, list[float]] = {run.name: [] for run in args.runs}
    ens_last, ens_best = [], []
    for s in first["splits"]:
        split = FoldSplit(tuple(s["train_folds"]), s["val_fold"], s["test_fold"])
        val = np.flatnonzero((assign_roles(df, split) == "val").to_numpy())
        if len(val) == 0:
            raise SystemExit(f"split {s['name']} has no validation fold (a refit run?); "
                             "train the candidate with --mode validation to score it here")
        last_probs, best_probs = [], []
        for run, X in zip(args.runs, features):
            ckpt_path = run / s["name"] / LAST
            if not ckpt_path.is_file():
                raise SystemExit(f"{ckpt_path} is missing: train the run with "
                                 "--keep-last-checkpoints (a finished split deletes it otherwise)")
            model, _, norm, _, ckpt = RunFolder(run).load_model(s["name"], checkpoint=LAST)
            Xv = norm.transform(X[val]).astype(np.float32)  # (n_val, n_bins, frames)
            if ckpt.get("ema") is not None:  # refit scores the moving average of the weights
                model.load_state_dict(ckpt["ema"])
            probs = predict_proba(model, Xv)
            last_probs.append(probs)
            last_acc[run.name].append(float((probs.argmax(1) == y[val]).mean()))
            best_model = RunFolder(run).load_model(s["name"]).model
            best_probs.append(predict_proba(best_model, Xv))
            print(f"{run.name} {s['name']}: last epoch {ckpt['epoch']}, validation accuracy "
                  f"{last_acc[run.name][-1]:.3f}")
        ens_last.append(float((np.mean(last_probs, axis=0).argmax(1) == y[val]).mean()))
        ens_best.append(float((np.mean(best_probs, axis=0).argmax(1) == y[val]).mean()))
    for name, accs in last_acc.items():
        print(f"{name}: mean validation accuracy at the last epoch {np.mean(accs):.3f}")
    print(f"ensemble of {len(args.runs)} run(s), best-epoch checkpoints (optimistic): "
          f"{np.mean(ens_best):.3f}")
    print(f"ensemble of {len(args.runs)} run(s), last weights: {np.mean(ens_last):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
