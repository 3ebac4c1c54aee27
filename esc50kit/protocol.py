"""Why the protocol matters: the same model, trained honestly and trained with a leak.

A published ESC-50 project reported 99% accuracy by expanding every clip with augmented
copies *before* splitting at random, so copies and other takes of test recordings sat in
its training set. :func:`leakage_demo` repeats that mistake on the data at hand, beside
the honest protocol, with the same model, recipe and epochs.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd


def _train_and_score(X: np.ndarray, y: np.ndarray, roles: pd.Series, *, recipe, n_classes: int,
                     seed: int, progress: bool, desc: str) -> float:
    """Train on 'train', choose on 'val', score 'test' once (as a run's split): its accuracy."""
    from .experiment import train_and_score

    train, val, test = (np.flatnonzero(roles.to_numpy() == k) for k in ("train", "val", "test"))
    probs, _ = train_and_score(X, y, train=train, val=val, scored=test, seed=seed,
                               model_config=replace(recipe.model, n_classes=n_classes),
                               train_config=recipe.training, progress=progress, desc=desc)
    return float((probs.argmax(axis=1) == y[test]).mean())


def _cache_key(df: pd.DataFrame, recipe, *, copies_per_clip: int, seed: int,
               cross_fold: str) -> str:
    """The inputs of a demonstration (clips, recipe, copies, seed, policy), hashed."""
    from .experiment import dataset_fingerprint

    return hashlib.sha1(json.dumps(
        [dataset_fingerprint(df), recipe.features.to_dict(), recipe.model.to_dict(),
         recipe.training.to_dict(), copies_per_clip, seed, cross_fold], default=str,
        sort_keys=True).encode()).hexdigest()[:16]


def _row(protocol: str, roles: pd.Series, report, accuracy: float) -> dict:
    """One row of the comparison: the protocol, its sizes, its audit, its test accuracy."""
    kinds = ", ".join(sorted({leak.kind for leak in report.leaks}))
    return {"protocol": protocol, "train clips": int((roles == "train").sum()),
            "test clips": int((roles == "test").sum()),
            "audit": "PASSED" if report.ok else f"FAILED: {kinds}", "test accuracy": accuracy}


def _leaky_row(df: pd.DataFrame, X: np.ndarray, *, recipe, artifacts_dir: Path,
               copies_per_clip: int, seed: int, progress: bool) -> dict:
    """The mistake: augment every clip first, then split the pool of clips and copies at random."""
    from .augment import expand_offline
    from .cache import load_or_compute
    from .splits import audit, random_split_foil

    copies = expand_offline(df, out_dir=artifacts_dir / "leakage_demo", seed=seed,
                            copies_per_clip=copies_per_clip, progress=progress)
    Xc = load_or_compute(copies, recipe.features, cache_dir=artifacts_dir / "features",
                         progress=progress).X
    pool = pd.concat([df, copies], ignore_index=True)
    roles = random_split_foil(pool, test_size=0.2, val_size=0.2, seed=seed)
    report = audit(pool, roles, raise_on_leak=False)
    accuracy = _train_and_score(np.concatenate([X, Xc]), pool["label"].to_numpy(), roles,
                                recipe=recipe, n_classes=int(df["label"].nunique()), seed=seed,
                                progress=progress, desc="leaky split")
    return _row(f"random split of clips + {copies_per_clip} augmented copy each (LEAKY)", roles,
                report, accuracy)


def leakage_demo(df: pd.DataFrame, *, recipe, artifacts_dir: str | Path, epochs: int = 12,
                 copies_per_clip: int = 1, seed: int = 0, progress: bool = False,
                 cross_fold: str = "allow") -> pd.DataFrame:
    """Train one model per protocol and compare their test accuracies. TEACHING ONLY.

    ``official folds`` trains on three folds, chooses the epoch on a fourth and tests once
    on the fifth (``make_splits("final")``): the audit passes. ``random split + augmented
    copies (LEAKY)`` gives every clip ``copies_per_clip`` augmented copies, then splits
    them all at random: the audit fails, and copies and takes of test recordings seen in
    training inflate the score. Both train ``recipe`` (a :class:`esc50kit.profiles.Profile`)
    for ``epochs``; features are cached under ``artifacts_dir/features/``, copies under
    ``leakage_demo/``; ``cross_fold`` as in :func:`esc50kit.splits.assign_roles`.

    Returns:
        pd.DataFrame: one row per protocol (``train clips``, ``test clips``, ``audit``,
        ``test accuracy``), kept under ``leakage_demo/`` by its inputs: a rerun with the
        same clips, recipe, epochs, copies, seed and policy reads it back.
    """
    from .cache import load_or_compute
    from .fileio import atomic_write_json
    from .splits import assign_roles, audit, make_splits

    artifacts_dir = Path(artifacts_dir)
    recipe = replace(recipe, training=replace(recipe.training, epochs=epochs, patience=None))
    key = _cache_key(df, recipe, copies_per_clip=copies_per_clip, seed=seed, cross_fold=cross_fold)
    done = artifacts_dir / "leakage_demo" / f"result-{key}.json"
    if done.is_file():
        return pd.DataFrame(json.loads(done.read_text()))
    X = load_or_compute(df, recipe.features, cache_dir=artifacts_dir / "features",
                        progress=progress).X
    split = make_splits("final", tuple(sorted(df["fold"].unique())))[0]
    roles = assign_roles(df, split, cross_fold=cross_fold)
    report = audit(df, roles)  # raises if the official split leaked
    honest = _train_and_score(X, df["label"].to_numpy(), roles, recipe=recipe,
                              n_classes=int(df["label"].nunique()), seed=seed, progress=progress,
                              desc="official folds")
    table = pd.DataFrame([
        _row(f"official folds (train {', '.join(map(str, split.train_folds))}, "
             f"validate {split.val_fold}, test {split.test_fold})", roles, report, honest),
        _leaky_row(df, X, recipe=recipe, artifacts_dir=artifacts_dir,
                   copies_per_clip=copies_per_clip, seed=seed, progress=progress),
    ])
    atomic_write_json(done, table.to_dict(orient="records"))
    return table
