"""Why the protocol matters: the same model, trained honestly and trained with a leak.

A published ESC-50 project reported 99% accuracy by expanding every clip with augmented
copies *before* splitting at random: copies of test clips, and other takes of the same
recordings, sat in its training set. :func:`leakage_demo` repeats that mistake on the
data at hand, beside the honest protocol (official folds, validation fold for the
checkpoint, test fold scored once), with the same model, recipe and epochs.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd


def _train_and_score(X: np.ndarray, y: np.ndarray, roles: pd.Series, *, recipe, n_classes: int,
                     seed: int, progress: bool, desc: str) -> float:
    """Fit the normaliser and the model on 'train', choose on 'val', score 'test' once."""
    import torch

    from .features import Normalizer
    from .models import build_model
    from .training import fit, predict_proba

    r = roles.to_numpy()
    train, val, test = (np.flatnonzero(r == k) for k in ("train", "val", "test"))
    norm = Normalizer.fit(X[train])
    torch.manual_seed(seed)
    model = build_model(replace(recipe.model, n_classes=n_classes))
    fit(model, norm.transform(X[train]), y[train], norm.transform(X[val]), y[val],
        config=recipe.training, seed=seed, progress=progress, desc=desc)
    probs = predict_proba(model, norm.transform(X[test]), batch_size=recipe.training.eval_batch_size)
    return float((probs.argmax(axis=1) == y[test]).mean())


def leakage_demo(
    df: pd.DataFrame,
    *,
    recipe,
    artifacts_dir: str | Path,
    epochs: int = 12,
    copies_per_clip: int = 1,
    seed: int = 0,
    progress: bool = False,
    cross_fold: str = "allow",
) -> pd.DataFrame:
    """Train one model per protocol and compare their test accuracies. TEACHING ONLY.

    - ``official folds``: train on three folds, choose the epoch on a fourth, test once
      on the fifth (``make_splits("final")``); the audit passes.
    - ``random split + augmented copies (LEAKY)``: every clip gets ``copies_per_clip``
      augmented copies, then originals and copies are split at random; the audit fails,
      and the score is inflated by copies and takes of test recordings seen in training.

    Args:
        df: the dataset table (:func:`esc50kit.data.load_metadata`).
        recipe: a :class:`esc50kit.profiles.Profile`; its training epochs are replaced by
            ``epochs`` so both models train equally long.
        artifacts_dir: features are cached under ``features/``, copies under
            ``leakage_demo/``.
        cross_fold: the official split's cross-fold recordings (see
            :func:`esc50kit.splits.assign_roles`).

    Returns:
        pd.DataFrame: one row per protocol with ``train clips``, ``test clips``,
        ``audit`` and ``test accuracy``. It is kept under ``leakage_demo/`` by its inputs
        (the clips, the recipe, the epochs, copies, seed and policy): rerunning with the
        same inputs reads it back instead of training both models again.
    """
    import hashlib
    import json

    from .experiment import dataset_fingerprint
    from .fileio import atomic_write_json

    from .augment import expand_offline
    from .cache import load_or_compute
    from .splits import assign_roles, audit, make_splits, random_split_foil

    artifacts_dir = Path(artifacts_dir)
    recipe = replace(recipe, training=replace(recipe.training, epochs=epochs, patience=None))
    key = hashlib.sha1(json.dumps(
        [dataset_fingerprint(df), recipe.features.to_dict(), recipe.model.to_dict(),
         recipe.training.to_dict(), copies_per_clip, seed, cross_fold], default=str,
        sort_keys=True).encode()).hexdigest()[:16]
    done = artifacts_dir / "leakage_demo" / f"result-{key}.json"
    if done.is_file():
        return pd.DataFrame(json.loads(done.read_text()))
    cache = artifacts_dir / "features"
    n_classes = int(df["label"].nunique())
    X = load_or_compute(df, recipe.features, cache_dir=cache, progress=progress).X
    y = df["label"].to_numpy()

    split = make_splits("final", tuple(sorted(df["fold"].unique())))[0]
    honest_roles = assign_roles(df, split, cross_fold=cross_fold)
    honest_audit = audit(df, honest_roles)  # raises if the official split leaked
    honest = _train_and_score(X, y, honest_roles, recipe=recipe, n_classes=n_classes,
                              seed=seed, progress=progress, desc="official folds")

    # The mistake: augment everything first, then split the pool at random.
    copies = expand_offline(df, out_dir=artifacts_dir / "leakage_demo", seed=seed,
                            copies_per_clip=copies_per_clip, progress=progress)
    Xc = load_or_compute(copies, recipe.features, cache_dir=cache, progress=progress).X
    pool = pd.concat([df, copies], ignore_index=True)
    leaky_roles = random_split_foil(pool, test_size=0.2, val_size=0.2, seed=seed)
    leaky_audit = audit(pool, leaky_roles, raise_on_leak=False)
    leaky = _train_and_score(np.concatenate([X, Xc]), pool["label"].to_numpy(), leaky_roles,
                             recipe=recipe, n_classes=n_classes, seed=seed, progress=progress,
                             desc="leaky split")

    def audit_cell(report) -> str:
        if report.ok:
            return "PASSED"
        return "FAILED: " + ", ".join(sorted({leak.kind for leak in report.leaks}))

    table = pd.DataFrame([
        {"protocol": f"official folds (train {', '.join(map(str, split.train_folds))}, "
                     f"validate {split.val_fold}, test {split.test_fold})",
         "train clips": int((honest_roles == "train").sum()),
         "test clips": int((honest_roles == "test").sum()),
         "audit": audit_cell(honest_audit), "test accuracy": honest},
        {"protocol": f"random split of clips + {copies_per_clip} augmented copy each (LEAKY)",
         "train clips": int((leaky_roles == "train").sum()),
         "test clips": int((leaky_roles == "test").sum()),
         "audit": audit_cell(leaky_audit), "test accuracy": leaky},
    ])
    atomic_write_json(done, table.to_dict(orient="records"))
    return table
