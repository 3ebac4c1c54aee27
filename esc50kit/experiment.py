"""Run a training mode end to end and write its run folder.

metadata -> splits (each audited; a leak raises) -> cached features (and, when the
profile asks for them, cached augmented variants of every clip) -> for every split:
normaliser fitted on its training rows only, training on those rows (and their own
variants) with the checkpoint chosen on its validation fold, ONE scoring of its test
fold with that checkpoint -> predictions and metrics -> the run folder below.

Run folder contract (read by the notebooks and by ``predict``; keep it stable)::

    <artifacts_dir>/runs/<run_name>/
        config.json        data_dir, subset, class_names (ordered by label), mode,
                           profile (name + features/model/training dicts), features
                           (FeatureConfig dict), model (ModelConfig dict with n_classes),
                           training (TrainConfig dict), seed, folds (those used),
                           val_offset, splits (name, train_folds, val_fold, test_fold),
                           versions (python, torch, ...), created
        metrics.json       see :func:`_run_metrics`: per split accuracy and macro-F1
                           (validation and test), mean and std over splits, overall
                           (pooled) accuracy and macro-F1, times, samples per second,
                           ``warnings`` (why the score means little: empty unless the run
                           was allowed with ``allow_degenerate``; also per split)
        predictions.csv    every scored clip of every split, concatenated: the columns of
                           :mod:`esc50kit.evaluation` plus ``split``; role ``test`` (or
                           ``val`` in validation mode, which has no test fold)
        summary.md         the figures above as a short report
        audit.txt          every split's audit report (sizes, checks, the official
                           cross-fold recordings and where they sit)
        <split name>/      e.g. ``test5-val4`` (see :class:`esc50kit.splits.FoldSplit`)
            checkpoint_best.pt   model state, model_config, train_config, epoch, val_acc
            checkpoint_last.pt   + optimizer, scheduler, grad scaler and RNG states, history;
                                 only while the split trains (deleted once it is done,
                                 unless ``keep_last_checkpoints``)
            history.csv          epoch, train_loss, train_acc, val_loss, val_acc, lr, seconds
            normalizer.json      per-bin mean/std fitted on this split's training rows
            predictions.csv      validation and test clips scored by the best checkpoint
                                 (``role`` column says which)
            metrics.json         this split's figures (written last: marks the split done)

Running again with the same ``run_name`` resumes: finished splits are read back, an
interrupted split continues from its ``checkpoint_last.pt``. A finished split never reads
that file again, and it is the bulk of a run folder (the optimizer state doubles the
weights), so it is deleted when the split's ``metrics.json`` is written.

``track=True`` also logs the run to MLflow as it goes (:mod:`esc50kit.tracking`); the
folder stays the record, and without ``track`` mlflow is never imported.
"""
from __future__ import annotations

import hashlib
import json
import platform
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from . import evaluation
from .cache import load_or_compute
from .data import class_names as _class_names
from .data import OFFICIAL_FOLDS, load_metadata, summarize
from .features import FeatureConfig, Normalizer
from .fileio import atomic_write_csv, atomic_write_json, atomic_write_text
from .models import ModelConfig, build_model, load_checkpoint_model
from .packs import is_pack, read_pack
from .profiles import Profile, get_profile
from .splits import FoldSplit, assign_roles, audit, checked_splits, content_hashes, feature_hashes
from .tracking import tracked
from .training import BEST, HISTORY, LAST, TrainConfig, fit, predict_proba
from .variants import VariantSpec

RUNS_DIRNAME = "runs"
FEATURES_DIRNAME = "features"
# config.json keys that must agree for a run folder to be resumed
# (the dataset by content, not by path: a moved copy of the same data resumes)
_RESUME_KEYS = ("dataset_files", "subset", "mode", "features", "model", "training", "seed", "splits",
                "cross_fold")
# what a run folder written before a key existed behaved as
_RESUME_DEFAULTS = {"cross_fold": "allow"}


def _comparable(key: str, value: Any) -> Any:
    """A config.json entry with the defaults of fields added since it was written filled
    in, so a run folder of an older esc50kit (which behaved as those defaults do) resumes."""
    sections = {"features": FeatureConfig, "model": ModelConfig, "training": TrainConfig}
    if key in sections and isinstance(value, dict):
        try:
            return json.loads(json.dumps(sections[key].from_dict(value).to_dict(), default=str))
        except (TypeError, ValueError):
            return value
    return value


def default_run_name(profile: str, data_dir: str | Path, *, cross_fold: str = "allow") -> str:
    """The run folder name the notebooks and the chain use: ``<profile>-<dataset folder>``,
    with ``-strict`` for ``cross_fold="exclude"``.

    Runs of one profile on different datasets (ESC-10, ESC-50) get different folders.
    """
    strict = "-strict" if cross_fold == "exclude" else ""
    return f"{profile}-{Path(data_dir).expanduser().resolve().name}{strict}"


def dataset_fingerprint(df: pd.DataFrame) -> str:
    """A short hash of the clips of a table (file, fold, target), independent of its path."""
    rows = sorted(f"{r.filename}|{r.fold}|{r.target}" for r in df.itertuples())
    return hashlib.sha1("\n".join(rows).encode()).hexdigest()[:16]


@dataclass
class RunResult:
    """A run folder, loaded.

    Attributes:
        run_dir: the folder.
        config: ``config.json``.
        metrics: ``metrics.json``.
        predictions: ``predictions.csv`` (scored clips of every split).
        histories: split name -> its ``history.csv``.
    """

    run_dir: Path
    config: dict[str, Any]
    metrics: dict[str, Any]
    predictions: pd.DataFrame
    histories: dict[str, pd.DataFrame]

    @property
    def class_names(self) -> list[str]:
        return list(self.config["class_names"])

    @property
    def split_names(self) -> list[str]:
        return [s["name"] for s in self.config["splits"]]


def run_versions() -> dict[str, str]:
    """Versions of Python and the libraries a run depends on.

    Read from the installed distributions, without importing them: a run from a feature
    pack on a machine without librosa says ``"not installed"`` rather than failing.
    """
    from importlib.metadata import PackageNotFoundError, version

    from . import __version__

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    import torch  # its version names the build (e.g. 2.14.1+cu128), the metadata may not

    return {"python": platform.python_version(), "esc50kit": __version__,
            "torch": torch.__version__, "torchvision": installed("torchvision"),
            "numpy": np.__version__, "pandas": pd.__version__, "librosa": installed("librosa"),
            "scikit-learn": installed("scikit-learn"), "platform": platform.platform()}


def _split_dict(split: FoldSplit) -> dict[str, Any]:
    return {"name": split.name, "train_folds": list(split.train_folds),
            "val_fold": split.val_fold, "test_fold": split.test_fold}


def _audited_splits(df: pd.DataFrame, splits: list[FoldSplit], *,
                    cross_fold: str = "allow") -> str:
    """Prove every split leak-free (the official folds' own cross-fold recordings allowed,
    or left out with ``cross_fold="exclude"``).

    Returns:
        str: the audit reports (the run folder's ``audit.txt``).

    Raises:
        LeakageError: a split shares folds, files, source recordings or copies.
    """
    reports = []
    for split in splits:
        if split.val_fold == split.test_fold:
            raise ValueError(f"split {split.name}: the validation fold is the test fold")
        report = audit(df, assign_roles(df, split, cross_fold=cross_fold),
                       check_content="content_hash" in df.columns)
        reports.append(f"{split.name} (cross_fold={cross_fold!r}) | {report}")
    return "\n\n".join(reports) + "\n"


def _run_one_split(
    split: FoldSplit, *, df: pd.DataFrame, X: np.ndarray, V: np.ndarray | None, names: list[str],
    model_config: ModelConfig, train_config: TrainConfig, features: FeatureConfig,
    split_dir: Path, seed: int, progress: bool, cross_fold: str = "allow",
    warnings: Sequence[str] = (),
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Normalise, train, choose on validation, score the test fold once. Returns (metrics, predictions).

    A split without a validation fold (``refit``) trains for the profile's fixed epoch
    count and scores its last weights; its ``val_*`` figures are None.
    """
    import torch

    roles = assign_roles(df, split, cross_fold=cross_fold)
    train, val, test = (np.flatnonzero((roles == r).to_numpy()) for r in ("train", "val", "test"))
    # Normalisation statistics come from this split's training rows only.
    norm = Normalizer.fit(X[train])
    norm.save(split_dir / "normalizer.json")
    y = df["label"].to_numpy()
    X_train = X[train]
    if V is not None:  # (n_train, 1 + copies, n_bins, frames): each clip and its own variants
        X_train = np.concatenate([X_train[:, None], V[train]], axis=1)
    torch.manual_seed(seed)  # the same initial weights for a given seed
    model = build_model(model_config)
    result = fit(model, norm.transform(X_train), y[train], norm.transform(X[val]), y[val],
                 config=train_config, out_dir=split_dir, seed=seed, progress=progress,
                 desc=split.name, checkpoint_meta={"features": features.to_dict()})
    # `model` now holds the checkpoint chosen on the validation fold; the test fold is
    # scored here, once, and never fed back into any choice.
    scored = np.concatenate([val, test])
    probs = predict_proba(model, norm.transform(X[scored]),
                          batch_size=train_config.eval_batch_size, amp=train_config.amp)
    if V is not None and train_config.tta:  # the mean over each clip and its own variants
        for k in range(V.shape[1]):
            probs += predict_proba(model, norm.transform(V[scored, k]),
                                   batch_size=train_config.eval_batch_size, amp=train_config.amp)
        probs /= 1 + V.shape[1]
    pred = evaluation.predictions_frame(df.iloc[scored], probs, names,
                                        role=["val"] * len(val) + ["test"] * len(test))
    atomic_write_csv(pred, split_dir / "predictions.csv")
    val_scores = (evaluation.scores(pred.loc[pred.role == "val", "true_label"],
                                    pred.loc[pred.role == "val", "pred_label"])
                  if len(val) else None)  # refit: no validation fold
    test_scores = (evaluation.scores(pred.loc[pred.role == "test", "true_label"],
                                     pred.loc[pred.role == "test", "pred_label"])
                   if len(test) else None)
    metrics = {
        **_split_dict(split),
        "n_train": int(len(train)), "n_val": int(len(val)), "n_test": int(len(test)),
        "best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
        "stopped_early": result.stopped_early, "resumed_from": result.resumed_from,
        "val_accuracy": val_scores["accuracy"] if val_scores else None,
        "val_macro_f1": val_scores["macro_f1"] if val_scores else None,
        "test_accuracy": test_scores["accuracy"] if test_scores else None,
        "test_macro_f1": test_scores["macro_f1"] if test_scores else None,
        "train_seconds": result.train_seconds, "samples_per_s": result.samples_per_s,
        "device": result.device, "warnings": list(warnings),
    }
    atomic_write_json(split_dir / "metrics.json", metrics)
    return metrics, pred


def _run_metrics(split_metrics: list[dict], pred: pd.DataFrame, *, role: str,
                 times: dict[str, float]) -> dict[str, Any]:
    """Run-level ``metrics.json``.

    Keys: ``scored_role`` (``test``, or ``val`` in validation mode), ``splits`` (the
    per-split dicts), ``accuracy`` and ``macro_f1`` (``mean``/``std``/``n`` over splits,
    std with ddof=1), ``overall_accuracy`` and ``overall_macro_f1`` (all scored clips
    pooled), ``times`` (``features_s``, ``training_s``, ``total_s``),
    ``samples_per_s`` (training clips per second over all splits) and ``warnings``
    (every split's, in split order: why these scores mean little; empty for a sound run).
    """
    key = "test" if role == "test" else "val"
    pooled = evaluation.scores(pred["true_label"], pred["pred_label"])
    train_s = sum(m["train_seconds"] for m in split_metrics)
    samples = sum(m["samples_per_s"] * m["train_seconds"] for m in split_metrics)
    return {
        "scored_role": role,
        "splits": split_metrics,
        "accuracy": evaluation.mean_std([m[f"{key}_accuracy"] for m in split_metrics]),
        "macro_f1": evaluation.mean_std([m[f"{key}_macro_f1"] for m in split_metrics]),
        "overall_accuracy": pooled["accuracy"],
        "overall_macro_f1": pooled["macro_f1"],
        "n_scored": pooled["n"],
        "times": times,
        "samples_per_s": samples / train_s if train_s > 0 else None,
        "warnings": [w for m in split_metrics for w in m.get("warnings", [])],
    }


def score_warnings(metrics: dict[str, Any]) -> list[str]:
    """The warnings of a run's ``metrics.json`` (none for runs written before they existed)."""
    return [str(w) for w in metrics.get("warnings") or []]


def warnings_markdown(metrics: dict[str, Any]) -> str:
    """``score_warnings`` as markdown paragraphs, to append to a displayed score ("" if none)."""
    return "".join(f"\n\n**WARNING**: {w}" for w in score_warnings(metrics))


def _md_table(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def _summary_md(config: dict, metrics: dict, dataset: str) -> str:
    role = metrics["scored_role"]
    rows = pd.DataFrame([{
        "split": m["name"], "train folds": ",".join(map(str, m["train_folds"])),
        "val fold": m["val_fold"] or "-", "test fold": m["test_fold"] if m["test_fold"] else "-",
        "best epoch": m["best_epoch"],
        "val acc": m["val_accuracy"] if m["val_accuracy"] is not None else "-",
        "test acc": m["test_accuracy"] if m["test_accuracy"] is not None else "-",
        "test macro-F1": m["test_macro_f1"] if m["test_macro_f1"] is not None else "-",
        "clips/s": m["samples_per_s"],
    } for m in metrics["splits"]])
    acc = metrics["accuracy"]
    table = evaluation.comparison_table(
        acc["mean"], dataset=dataset, std=acc["std"],
        protocol=evaluation.run_protocol(config["mode"], len(metrics["splits"])))
    t = metrics["times"]
    return "\n".join([
        f"# Run `{config['run_name']}`", "",
        f"- data: `{config['data_dir']}` ({dataset}, subset `{config['subset']}`, "
        f"{len(config['class_names'])} classes)",
        f"- mode `{config['mode']}`, profile `{config['profile']['name']}`, seed {config['seed']}",
        f"- scored role: **{role}** " + ("(no validation fold: every other fold trained for "
                                         "the recipe's fixed epoch count, the last weights scored)"
                                         if config["mode"] == "refit" else
                                         "(checkpoints chosen on the validation fold only)"), "",
        _md_table(rows), "",
        f"**{role} accuracy: {acc['mean']:.3f} +- {acc['std']:.3f}** over {acc['n']} split(s); "
        f"pooled {metrics['overall_accuracy']:.3f}, macro-F1 {metrics['overall_macro_f1']:.3f}.",
        *[f"WARNING: {w}" for w in score_warnings(metrics)], "",
        f"Times: features {t['features_s']:.1f} s, training {t['training_s']:.1f} s, "
        f"total {t['total_s']:.1f} s; {metrics['samples_per_s'] or float('nan'):.1f} training clips/s.", "",
        "## Beside the reference points", "",
        _md_table(table), "",
    ])


def run_experiment(
    data_dir: str | Path,
    *,
    artifacts_dir: str | Path = "artifacts",
    mode: str | None = None,
    profile: str | Profile = "quick",
    overrides: dict[str, Any] | None = None,
    seed: int = 0,
    run_name: str | None = None,
    progress: bool = True,
    subset: str = "all",
    val_offset: int = 1,
    folds: Sequence[int] | None = None,
    keep_last_checkpoints: bool = False,
    cross_fold: str = "allow",
    allow_degenerate: bool = False,
    track: bool = False,
    on_split: Callable[[int, dict[str, Any]], None] | None = None,
) -> RunResult:
    """Run a mode end to end and write the run folder (see the module docstring).

    Args:
        data_dir: dataset root (``meta/esc50.csv`` and ``audio/``), or a feature pack
            (``.npz``, :mod:`esc50kit.packs`) whose features match the profile's.
        artifacts_dir: where ``features/`` (the cache) and ``runs/`` live.
        mode: ``"cv"``, ``"validation"``, ``"final"`` or ``"refit"`` (each fold tests
            once, all others train for the profile's epoch count, no validation fold);
            None takes the profile's (``quick``: ``final``, ``cpu-cv`` and ``full``:
            ``cv``, ``cpu-esc50``: ``refit``).
        profile: a name in :data:`esc50kit.profiles.PROFILES` or a :class:`Profile`.
        overrides: settings to change, e.g. ``{"training.epochs": 5}``.
        seed: seeds model initialisation, shuffling and augmentation.
        run_name: folder name under ``runs/``; an existing run of that name with the same
            configuration is resumed. Default: ``<profile>-<mode>-seed<seed>-<UTC time>``.
        progress: tqdm bars (feature extraction, one per split).
        subset: ``"all"``, ``"esc10"`` or ``"esc50"`` (see :func:`esc50kit.data.load_metadata`).
        val_offset: ``cv`` mode: test fold ``i`` is validated on the fold ``val_offset``
            places after it (see :func:`esc50kit.splits.cv_splits`); runs with every
            offset make an ensemble of fold models.
        folds: use these official folds only (default: all). The others are never
            loaded, so ``cv`` over folds 1-4 is an inner cross-validation that compares
            recipes without touching fold 5: its "test" folds are validation folds of
            the outer protocol.
        keep_last_checkpoints: keep each finished split's ``checkpoint_last.pt``
            (optimizer and RNG states: only needed to train a finished split further);
            ``checkpoint_best.pt``, which scoring and ``predict`` use, is always kept.
        cross_fold: the official folds' own cross-fold recordings (four ``src_file``
            of ESC-50 with clips in two folds, :data:`esc50kit.splits.OFFICIAL_CROSS_FOLD_CLIPS`):
            ``"allow"`` (the official protocol) or ``"exclude"`` (strict: a split leaves
            out their clips on its less held-out side; see :func:`esc50kit.splits.assign_roles`).
        allow_degenerate: run splits whose score means little anyway (a class without
            training clips, a dataset of one class, a scored fold with fewer clips than
            classes); ``metrics.json`` (``warnings``, run level and per split) and
            ``summary.md`` then say why next to the score. Default: refuse them.
        track: also log the run to MLflow (:mod:`esc50kit.tracking`: configuration,
            per-epoch curves as each split finishes, final figures, confusion matrix,
            the run folder). Off by default, and then mlflow is never imported; without
            mlflow installed the run goes on untracked with a ``TrackingOffWarning``.
        on_split: called as ``on_split(index, split_metrics)`` after each split, in split
            order, finished earlier (read back) or now; an exception it raises stops the
            run there (the search's pruner does so), leaving the finished splits to resume.

    Returns:
        RunResult: the run folder, loaded.

    Raises:
        SplitError: a split's score would mean nothing (see
            :func:`esc50kit.splits.checked_splits`); a mode's fold without clips (``final``
            without fold 5) is refused, never replaced by another fold. Nothing is written.
        LeakageError: a split leaks (never expected with the official folds).
        ValueError: ``run_name`` exists with another configuration.
    """
    t_start = time.perf_counter()
    prof = get_profile(profile, overrides)
    mode = mode or prof.mode
    packed = is_pack(data_dir)
    if packed:  # features and table from one file; the audio is not needed
        df, X_packed, pack_features = read_pack(data_dir, subset=subset)
        if pack_features != prof.features:
            raise ValueError(
                f"{data_dir} holds features {pack_features.to_dict()}, but profile "
                f"{prof.name!r} asks for {prof.features.to_dict()}; write a pack for it "
                f"(python -m esc50kit pack --profile {prof.name} ...)")
        if prof.training.variants:
            raise ValueError(f"{data_dir} is a feature pack: it holds no audio to make the "
                             f"{prof.training.variants} waveform variants per clip from; "
                             "pass the dataset folder, or set training.variants=0")
    else:
        df = load_metadata(data_dir, subset=subset)
    names = _class_names(df)  # from every fold, so labels agree with runs on all folds
    dataset = summarize(df).kind
    if folds is not None:
        folds = sorted({int(f) for f in folds})
        missing = sorted(set(folds) - set(df["fold"].astype(int)))
        if missing:
            raise ValueError(f"folds={folds}: fold(s) {missing} are not in {data_dir} "
                             f"(it has folds {sorted(df['fold'].unique())})")
        keep = df["fold"].isin(folds).to_numpy()
        df = df[keep].reset_index(drop=True)
        if packed:  # the pack's rows of the folds used
            X_packed = X_packed[keep]
    # Checked before the audio is hashed or anything written: a split whose score would
    # mean nothing stops here (or, allowed, carries its warnings into every report).
    # The mode is laid out over the folds asked for (all five by default), not over those
    # that hold clips: an empty fold 5 is refused, never replaced by fold 4.
    splits, split_warnings = checked_splits(
        df, mode, class_names=names, folds=OFFICIAL_FOLDS if folds is None else folds,
        val_offset=val_offset, cross_fold=cross_fold, allow_degenerate=allow_degenerate,
        source=str(data_dir))
    # The audit compares decoded audio too (a copy of a test clip under another name
    # and src_file is a leak); hashes are cached beside the features.
    if packed:
        df = df.assign(content_hash=feature_hashes(X_packed))
    else:
        df = df.assign(content_hash=content_hashes(
            df, cache_dir=Path(artifacts_dir) / FEATURES_DIRNAME, progress=progress))
    audit_text = _audited_splits(df, splits, cross_fold=cross_fold)
    model_config = replace(prof.model, n_classes=len(names))
    artifacts = Path(artifacts_dir)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    run_name = run_name or f"{prof.name}-{mode}-seed{seed}-{stamp}"
    run_dir = artifacts / RUNS_DIRNAME / run_name
    config = {
        "run_name": run_name, "data_dir": str(Path(data_dir).expanduser().resolve()),
        "dataset_files": dataset_fingerprint(df), "subset": subset, "dataset": dataset, "class_names": names, "mode": mode,
        "profile": prof.to_dict(), "features": prof.features.to_dict(),
        "model": model_config.to_dict(), "training": prof.training.to_dict(), "seed": seed,
        "folds": sorted(int(f) for f in df["fold"].unique()), "val_offset": val_offset,
        "splits": [_split_dict(s) for s in splits], "cross_fold": cross_fold,
        "versions": run_versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    config = json.loads(json.dumps(config, default=str))  # the JSON view, for comparison
    if (run_dir / "config.json").is_file():
        try:
            old = json.loads((run_dir / "config.json").read_text())
        except ValueError as exc:  # empty or cut short: a run killed while it started
            raise ValueError(f"{run_dir / 'config.json'} is not valid JSON ({exc}); the run "
                             f"cannot be resumed: delete the folder {run_dir}, or pick "
                             "another run name (-p run_name NAME, --run-name NAME)") from exc
        diff = [k for k in _RESUME_KEYS
                if _comparable(k, old.get(k, _RESUME_DEFAULTS.get(k))) != _comparable(k, config[k])]
        if diff:
            raise ValueError(
                f"{run_dir} holds a run with another configuration (differs in {diff}); "
                "pass another run_name (in the chain: -p run_name NAME), or delete the "
                "folder to start over"
            )
        config["created"] = old.get("created", config["created"])

    t_feat = time.perf_counter()
    if packed:
        X = X_packed  # (N, n_bins, frames), float16, row-aligned with df
    else:
        X = load_or_compute(df, prof.features, cache_dir=artifacts / FEATURES_DIRNAME,
                            progress=progress).X  # (N, n_bins, frames), float16, row-aligned with df
    V = None
    if prof.training.variants:
        # (N, copies, n_bins, frames): augmented copies of every clip, kept in the clip's
        # own row; a split trains on the variants of its training rows only.
        spec = VariantSpec(copies=prof.training.variants,
                           transforms=prof.training.variant_transforms, seed=seed)
        V = load_or_compute(df, prof.features, cache_dir=artifacts / FEATURES_DIRNAME,
                            progress=progress, variants=spec).X
    features_s = time.perf_counter() - t_feat
    # Written once the features exist: a clip that cannot be read leaves no run folder.
    atomic_write_json(run_dir / "config.json", config)
    atomic_write_text(run_dir / "audit.txt", audit_text)

    all_metrics, all_pred = [], []
    with tracked(enabled=track, config=config, artifacts_dir=artifacts) as tracker:
        for index, split in enumerate(splits):
            split_dir = run_dir / split.name
            if (split_dir / "metrics.json").is_file():  # finished earlier: read it back
                metrics = json.loads((split_dir / "metrics.json").read_text())
                metrics["warnings"] = split_warnings[split.name]  # the same clips: the same checks
                pred = pd.read_csv(split_dir / "predictions.csv")
            else:
                metrics, pred = _run_one_split(
                    split, df=df, X=X, V=V, names=names, model_config=model_config,
                    train_config=prof.training, features=prof.features, split_dir=split_dir,
                    seed=seed, progress=progress, cross_fold=cross_fold,
                    warnings=split_warnings[split.name])
                if not keep_last_checkpoints:  # done: metrics.json marks it, resume never reads it
                    (split_dir / LAST).unlink(missing_ok=True)
            if progress:
                from tqdm.auto import tqdm

                test = f", test acc {metrics['test_accuracy']:.3f}" if metrics["test_accuracy"] is not None else ""
                val = (f"best epoch {metrics['best_epoch']}, val acc {metrics['val_accuracy']:.3f}"
                       if metrics["val_accuracy"] is not None else
                       f"last epoch {metrics['best_epoch']} (no validation fold)")
                tqdm.write(f"{split.name}: {val}{test}")
            history = split_dir / HISTORY
            tracker.log_split(metrics, pd.read_csv(history) if history.is_file() else None)
            all_metrics.append(metrics)
            all_pred.append(pred.assign(split=split.name))
            if on_split is not None:
                on_split(index, metrics)

        role = "test" if splits[0].test_fold is not None else "val"
        pred = pd.concat(all_pred, ignore_index=True)
        pred = pred[pred["role"] == role].reset_index(drop=True)
        atomic_write_csv(pred, run_dir / "predictions.csv")
        times = {"features_s": features_s,
                 "training_s": sum(m["train_seconds"] for m in all_metrics),
                 "total_s": time.perf_counter() - t_start}
        metrics = _run_metrics(all_metrics, pred, role=role, times=times)
        atomic_write_json(run_dir / "metrics.json", metrics)
        atomic_write_text(run_dir / "summary.md", _summary_md(config, metrics, dataset))
        tracker.finish(run_dir=run_dir, metrics=metrics, predictions=pred, class_names=names)
    return load_run(run_dir)


def load_run(run_dir: str | Path) -> RunResult:
    """Read a run folder written by :func:`run_experiment`.

    Raises:
        FileNotFoundError: the folder lacks ``config.json`` or ``metrics.json`` (the
            run did not finish: run it again with the same ``run_name`` to resume).
    """
    run_dir = Path(run_dir)
    for name in ("config.json", "metrics.json", "predictions.csv"):
        if not (run_dir / name).is_file():
            raise FileNotFoundError(
                f"{run_dir / name} not found: is {run_dir} a finished run folder? Run "
                "run_experiment again with the same run_name to finish it."
            )
    config = json.loads((run_dir / "config.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    histories = {
        s["name"]: pd.read_csv(run_dir / s["name"] / HISTORY)
        for s in config["splits"] if (run_dir / s["name"] / HISTORY).is_file()
    }
    return RunResult(run_dir=run_dir, config=config, metrics=metrics,
                     predictions=pd.read_csv(run_dir / "predictions.csv"), histories=histories)


def load_predictor(run_dir: str | Path, split: str | None = None, *, device: str = "cpu"):
    """Everything needed to classify new clips with one split's chosen checkpoint.

    Args:
        run_dir: a run folder.
        split: split name (default: the first split of the run).

    Returns:
        tuple: (model in eval mode, FeatureConfig, Normalizer, class names).
    """
    run_dir = Path(run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    split = split or config["splits"][0]["name"]
    model, _ = load_checkpoint_model(run_dir / split / BEST, device=device)
    return (model, FeatureConfig.from_dict(config["features"]),
            Normalizer.load(run_dir / split / "normalizer.json"), list(config["class_names"]))
