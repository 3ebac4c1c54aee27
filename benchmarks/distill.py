"""Distil a seed ensemble into one student, asked on VALIDATION folds only.

The teachers are finished validation-mode runs of one recipe, trained with
``--keep-last-checkpoints``: their last weights (the EMA where the recipe keeps one) are
what a refit run keeps. For each split, their mean class probabilities of the split's
TRAINING clips, softened by ``--temperature``, make up ``--weight`` of every training
target of a student (``training.distill``; the label the rest). The student has the
teachers' recipe, trains on the same rows with no validation fold, and its last weights
are scored on the split's validation clips beside the teachers and their ensemble. Test
folds are not loaded; no validation clip reaches the student or its targets.

    python benchmarks/train_cv.py --data DATA --mode validation --profile cpu-esc50 \\
        --set seeds=1 --seeds 2 --keep-last-checkpoints --run-name tune-x
    python benchmarks/distill.py --name tune-x-student artifacts/runs/tune-x-seed0 \\
        artifacts/runs/tune-x-seed1

The student's split folders (``<artifacts>/runs/<name>/<split>``) hold its checkpoints,
so an interrupted student resumes where it stopped.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from esc50kit.errors import add_debug_flag, entry_point


def parse_args(argv: list[str] | None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("teachers", nargs="+", type=Path, help="finished run folders, same recipe and splits")
    p.add_argument("--name", required=True, help="the student's folder under <artifacts>/runs")
    p.add_argument("--artifacts", default="artifacts", help="feature cache and runs")
    p.add_argument("--weight", type=float, default=0.5, help="share of the teachers in each target")
    p.add_argument("--temperature", type=float, default=1.0,
                   help="soften the teachers' probabilities: p ** (1 / T), renormalised")
    p.add_argument("--seed", type=int, default=100, help="the student's seed")
    p.add_argument("--no-progress", action="store_true")
    add_debug_flag(p)
    return p.parse_args(argv)


def soften(probs, temperature: float):
    """``probs`` (N, n_classes) at a temperature: softmax(logits / T) from probabilities."""
    import numpy as np

    p = np.power(np.clip(probs, 1e-12, None), 1.0 / temperature)
    return p / p.sum(axis=1, keepdims=True)


def last_weights(run: Path, split: str):
    """A teacher's last weights (its EMA where it keeps one) and its normaliser."""
    from esc50kit.run_folder import RunFolder
    from esc50kit.training import LAST

    if not (run / split / LAST).is_file():
        raise SystemExit(f"{run / split / LAST} is missing: train the teacher with "
                         "--keep-last-checkpoints")
    model, _, norm, _, ckpt = RunFolder(run).load_model(split, checkpoint=LAST)
    if ckpt.get("ema") is not None:
        model.load_state_dict(ckpt["ema"])
    return model, norm


def student_split(args, config: dict, split: dict, X, y, df) -> tuple[list[float], float, float]:
    """Train and score one split's student: (each teacher's, the ensemble's and the
    student's validation accuracy)."""
    import dataclasses

    import numpy as np
    import torch

    from esc50kit.features import Normalizer
    from esc50kit.models import ModelConfig, build_model
    from esc50kit.splits import FoldSplit, assign_roles
    from esc50kit.training import TrainConfig, fit, predict_proba

    roles = assign_roles(df, FoldSplit(tuple(split["train_folds"]), split["val_fold"], None))
    train, val = (np.flatnonzero((roles == r).to_numpy()) for r in ("train", "val"))
    teach_train, teach_val = [], []
    for run in args.teachers:
        model, norm = last_weights(run, split["name"])
        teach_train.append(predict_proba(model, norm.transform(X[train]).astype(np.float32)))
        teach_val.append(predict_proba(model, norm.transform(X[val]).astype(np.float32)))
    norm = Normalizer.fit(X[train])  # the training rows only, as every teacher did
    cfg = dataclasses.replace(TrainConfig.from_dict(config["training"]), distill=args.weight)
    torch.manual_seed(args.seed)
    student = build_model(ModelConfig.from_dict(config["model"]))
    Xt = norm.transform(X[train])
    fit(student, Xt, y[train], Xt[:0], y[train][:0], config=cfg, seed=args.seed,
        out_dir=Path(args.artifacts) / "runs" / args.name / split["name"],
        progress=not args.no_progress, levels=(norm.mean, norm.std),
        teacher=soften(np.mean(teach_train, axis=0), args.temperature))
    probs = predict_proba(student, norm.transform(X[val]).astype(np.float32))
    acc = lambda p: float((p.argmax(1) == y[val]).mean())  # noqa: E731
    return [acc(p) for p in teach_val], acc(np.mean(teach_val, axis=0)), acc(probs)


@entry_point  # known errors: `error: ...` and exit 1 or 2; Ctrl-C: 130 (esc50kit.errors)
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import time

    import numpy as np

    from esc50kit.cache import load_or_compute
    from esc50kit.data import load_metadata
    from esc50kit.experiment import FEATURES_DIRNAME
    from esc50kit.features import FeatureConfig
    from esc50kit.run_folder import RunFolder

    configs = [RunFolder(run).config() for run in args.teachers]
    if any(c["splits"] != configs[0]["splits"] or c["training"] != configs[0]["training"]
           for c in configs):
        raise SystemExit("the teachers differ in their splits or training recipe; distil "
                         "runs of one recipe (seeds of it)")
    config = configs[0]
    if any(s["val_fold"] is None for s in config["splits"]):
        raise SystemExit("a teacher's split has no validation fold; train the teachers with "
                         "--mode validation to compare a student on validation clips")
    df = load_metadata(config["data_dir"], subset=config["subset"])
    X = load_or_compute(df, FeatureConfig.from_dict(config["features"]), progress=False,
                        cache_dir=Path(args.artifacts) / FEATURES_DIRNAME).X
    y = df["label"].to_numpy()
    t0 = time.perf_counter()
    for split in config["splits"]:
        teachers, ensemble, student = student_split(args, config, split, X, y, df)
        print(f"{split['name']}: teachers {', '.join(f'{a:.3f}' for a in teachers)}; their "
              f"ensemble {ensemble:.3f}; student (weight {args.weight}, temperature "
              f"{args.temperature}, seed {args.seed}) {student:.3f}")
    print(f"wall time: {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
