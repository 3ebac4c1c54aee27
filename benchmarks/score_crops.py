"""Would averaging over time crops beat scoring whole clips? Asked on VALIDATION folds only.

Loads the checkpoint chosen for every split of finished run folders and scores each
split's validation clips three ways: the whole clip (what esc50kit does), the mean
probabilities of ``--crops`` evenly spaced windows of the training crop length, and the
mean of both. Test folds are not loaded.

The checkpoints were chosen on whole-clip validation accuracy, which tilts this
comparison slightly towards whole clips; a large gain from crops would still show.

    python benchmarks/score_crops.py artifacts/runs/RUN_A artifacts/runs/RUN_B ...
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from esc50kit.errors import add_debug_flag, entry_point


@entry_point  # known errors: `error: ...` and exit 1 or 2; Ctrl-C: 130 (esc50kit.errors)
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="finished run folders of one profile")
    p.add_argument("--crops", type=int, default=5, help="windows per clip")
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
    from esc50kit.training import predict_proba

    scores: dict[str, list[float]] = {"whole clip": [], "crops": [], "whole + crops": []}
    for run in args.runs:
        config = RunFolder(run).config()
        length = config["training"]["crop_frames"]
        if not length:
            raise SystemExit(f"{run}: trained on whole clips (crop_frames is null); nothing to compare")
        df = load_metadata(config["data_dir"], subset=config["subset"])
        X = load_or_compute(df, FeatureConfig.from_dict(config["features"]),
                            cache_dir=Path(args.artifacts) / FEATURES_DIRNAME, progress=False).X
        y = df["label"].to_numpy()
        per_run = {k: [] for k in scores}
        for s in config["splits"]:
            split = FoldSplit(tuple(s["train_folds"]), s["val_fold"], s["test_fold"])
            val = np.flatnonzero((assign_roles(df, split) == "val").to_numpy())
            model, _, normalizer, _, _ = RunFolder(run).load_model(s["name"])
            Xv = normalizer.transform(X[val]).astype(np.float32)  # (n_val, n_bins, frames)
            whole = predict_proba(model, Xv)
            starts = np.linspace(0, Xv.shape[-1] - length, args.crops).round().astype(int)
            crops = np.mean([predict_proba(model, Xv[..., o:o + length]) for o in starts], axis=0)
            for name, probs in (("whole clip", whole), ("crops", crops),
                                ("whole + crops", (whole + crops) / 2)):
                per_run[name].append(float((probs.argmax(1) == y[val]).mean()))
        print(f"{run.name}: " + ", ".join(f"{k} {np.mean(v):.3f}" for k, v in per_run.items()))
        for k, v in per_run.items():
            scores[k].append(float(np.mean(v)))
    print(f"mean validation accuracy over {len(args.runs)} run(s), {args.crops} crops of "
          f"{length} frames: " + ", ".join(f"{k} {np.mean(v):.3f}" for k, v in scores.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
