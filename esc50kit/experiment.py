"""Run a training mode end to end and write its run folder (:mod:`esc50kit.run_folder`).

metadata -> splits (each audited; a leak raises) -> cached features (and the profile's
cached augmented variants of every clip) -> per split: normaliser fitted on its training
rows only, training with the checkpoint chosen on its validation fold, ONE scoring of its
test fold -> predictions and metrics -> the run folder. The same ``run_name`` resumes;
``track=True`` also logs to MLflow (:mod:`esc50kit.tracking`; otherwise never imported).
"""
from __future__ import annotations

import functools
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
from .data import OFFICIAL_FOLDS, load_metadata, summarize, class_names as _class_names
from .features import Normalizer
from .models import ModelConfig, build_model
from .packs import is_pack, read_pack
from .profiles import Profile, get_profile
from .run_folder import NORMALIZER, RUNS_DIRNAME, RunFolder, RunResult, utc_stamp  # noqa: F401
from .splits import FoldSplit, assign_roles, audit, checked_splits, content_hashes, feature_hashes
from .tracking import tracked
from .training import FitResult, TrainConfig, choose_device, fit, predict_proba
from .variants import VariantSpec

FEATURES_DIRNAME = "features"


def default_run_name(profile: str, data_dir: str | Path, *, cross_fold: str = "allow") -> str:
    """``<profile>-<dataset folder>`` (``-strict`` for ``cross_fold="exclude"``): the run
    folder of the notebooks and the chain, one per dataset (ESC-10, ESC-50)."""
    strict = "-strict" if cross_fold == "exclude" else ""
    return f"{profile}-{Path(data_dir).expanduser().resolve().name}{strict}"


def dataset_fingerprint(df: pd.DataFrame) -> str:
    """A short hash of the clips of a table (file, fold, target), independent of its path."""
    rows = sorted(f"{r.filename}|{r.fold}|{r.target}" for r in df.itertuples())
    return hashlib.sha1("\n".join(rows).encode()).hexdigest()[:16]


def load_run(run_dir: str | Path) -> RunResult:
    """Read a run folder written by :func:`run_experiment` (see :meth:`RunFolder.load`)."""
    return RunFolder(run_dir).load()


def run_versions() -> dict[str, str]:
    """Versions of Python and the libraries a run depends on, read from the installed
    distributions without importing them (a pack run without librosa: ``"not installed"``)."""
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


def _audited_splits(df: pd.DataFrame, splits: list[FoldSplit], *, cross_fold: str) -> str:
    """The audit reports of every split (``audit.txt``).

    Raises:
        LeakageError: a split shares folds, files, source recordings or copies.
    """
    reports = []
    for split in splits:
        report = audit(df, assign_roles(df, split, cross_fold=cross_fold),
                       check_content="content_hash" in df.columns)
        reports.append(f"{split.name} (cross_fold={cross_fold!r}) | {report}")
    return "\n\n".join(reports) + "\n"


def train_and_score(
    X: np.ndarray, y: np.ndarray, *, train: np.ndarray, val: np.ndarray, scored: np.ndarray,
    model_config: ModelConfig, train_config: TrainConfig, seed: int, progress: bool, desc: str,
    variants: np.ndarray | None = None, out_dir: Path | None = None,
    checkpoint_meta: dict[str, Any] | None = None, teacher: np.ndarray | None = None,
) -> tuple[np.ndarray, FitResult]:
    """Normalise (statistics of the ``train`` rows only), build, fit with the checkpoint
    chosen on ``val``, then score the ``scored`` rows once.

    Args:
        X: shape (N, n_bins, frames), every clip's features; ``y``: shape (N,), labels.
        variants: shape (N, copies, n_bins, frames), each clip's augmented copies: a
            training row trains on its own, a scored row averages over them (``tta``).
        out_dir: the split folder (normaliser, checkpoints, history); None writes nothing.
        checkpoint_meta: stored in every checkpoint (a run stores its features).
        teacher: shape (len(train), n_classes), class probabilities of the ``train`` rows
            that make up ``train_config.distill`` of their targets (distillation), or None.

    Returns:
        tuple: (probabilities, shape (len(scored), n_classes); the :class:`FitResult`).
    """
    import torch

    norm = Normalizer.fit(X[train])  # statistics from the training rows only
    if out_dir is not None:
        norm.save(Path(out_dir) / NORMALIZER)
    X_train = X[train]
    if variants is not None:  # (n_train, 1 + copies, n_bins, frames): each clip, its variants
        X_train = np.concatenate([X_train[:, None], variants[train]], axis=1)
    torch.manual_seed(seed)  # the same initial weights for a given seed
    model = build_model(model_config)
    result = fit(model, norm.transform(X_train), y[train], norm.transform(X[val]), y[val],
                 config=train_config, out_dir=out_dir, seed=seed, progress=progress, desc=desc,
                 checkpoint_meta=checkpoint_meta, levels=(norm.mean, norm.std), teacher=teacher)
    # `model` now holds the checkpoint chosen on `val`; `scored` is scored here, once,
    # and never fed back into any choice.
    score = functools.partial(predict_proba, model, batch_size=train_config.eval_batch_size,
                              amp=train_config.amp)
    probs = score(norm.transform(X[scored]))
    if variants is not None and train_config.tta:  # the mean over each clip and its variants
        for k in range(variants.shape[1]):
            probs += score(norm.transform(variants[scored, k]))
        probs /= 1 + variants.shape[1]
    return probs, result


@dataclass
class _Inputs:
    """What every split of one run trains and scores with."""

    df: pd.DataFrame
    X: np.ndarray  # (N, n_bins, frames), float16, row-aligned with df
    V: np.ndarray | None  # (N, copies, n_bins, frames): augmented copies, or None
    names: list[str]  # class names, ordered by label
    dataset: str  # its kind (ESC-50, ESC-10, ...)
    profile: Profile
    model_config: ModelConfig
    seed: int  # the first member's; member k of a split trains with seed + k
    cross_fold: str
    progress: bool


def _role_scores(pred: pd.DataFrame, role: str) -> dict[str, float | None]:
    """``<role>_accuracy`` and ``<role>_macro_f1`` of the clips of ``role`` (None without any)."""
    rows = pred[pred["role"] == role]
    s = evaluation.scores(rows["true_label"], rows["pred_label"]) if len(rows) else {}
    return {f"{role}_accuracy": s.get("accuracy"), f"{role}_macro_f1": s.get("macro_f1")}


def _train_member(name: str, seed: int, inputs: _Inputs, run: RunFolder, rows: tuple,
                  warnings: Sequence[str], *, member: bool, teacher: np.ndarray | None = None,
                  ) -> tuple[dict[str, Any], pd.DataFrame]:
    """Train one model of a split into ``<run>/<name>`` and score its validation and test
    ``rows`` (train, val, test indices). A ``member`` of an ensemble writes its metrics and
    predictions there, and one written before is read back. A ``teacher`` (probabilities of
    the training rows) makes the model the split's student (``Profile.student``)."""
    if member and run.split_done(name):
        metrics, pred = run.read_split(name)
        return {"student": False, **metrics}, pred  # written before students existed
    df, (train, val, test) = inputs.df, rows
    scored = np.concatenate([val, test])
    config = inputs.profile.training
    if teacher is not None:
        config = replace(config, distill=inputs.profile.student,
                         epochs=inputs.profile.student_epochs)
    probs, result = train_and_score(
        inputs.X, df["label"].to_numpy(), train=train, val=val, scored=scored,
        model_config=inputs.model_config, train_config=config, seed=seed,
        progress=inputs.progress, desc=name, variants=inputs.V, out_dir=run.path / name,
        checkpoint_meta={"features": inputs.profile.features.to_dict()}, teacher=teacher)
    pred = evaluation.predictions_frame(df.iloc[scored], probs, inputs.names,
                                        role=["val"] * len(val) + ["test"] * len(test))
    metrics = {
        "seed": seed, "n_train": int(len(train)), "n_val": int(len(val)),
        "n_test": int(len(test)), "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run, "stopped_early": result.stopped_early,
        "resumed_from": result.resumed_from, **_role_scores(pred, "val"),
        **_role_scores(pred, "test"), "train_seconds": result.train_seconds,
        "samples_per_s": result.samples_per_s, "device": result.device,
        "warnings": list(warnings), "student": teacher is not None,
    }
    if member:
        run.write_split(name, metrics, pred)
    return metrics, pred


def _run_one_split(split: FoldSplit, inputs: _Inputs, run: RunFolder,
                   warnings: Sequence[str] = ()) -> tuple[dict[str, Any], pd.DataFrame]:
    """Train one split, score and write its validation and test folds (metrics, predictions).
    Without a validation fold (``refit``) the last weights are scored; ``val_*`` is None.
    With several seeds (``Profile.seeds``) or a student (``Profile.student``) each member is
    written in its own folder (:meth:`RunFolder.member_names`) and the split is scored by
    their mean probabilities; ``best_epoch`` is then the first member's and ``members``
    lists each one's figures. The student trains last, on the seeds' mean probabilities of
    the training rows."""
    rows = _split_rows(split, inputs)
    names = run.member_names(split.name)
    seeds = names[:inputs.profile.seeds]
    members = [_train_member(name, inputs.seed + k, inputs, run, rows, warnings,
                             member=len(names) > 1) for k, name in enumerate(seeds)]
    if inputs.profile.student > 0:
        teacher = _teacher_probs(run, seeds, inputs.X[rows[0]], inputs.profile.training)
        members.append(_train_member(names[-1], inputs.seed + len(seeds), inputs, run, rows,
                                     warnings, member=True, teacher=teacher))
    metrics, pred = members[0]
    if len(members) > 1:
        pred = evaluation.average_predictions([p for _, p in members])
        train_s = sum(m["train_seconds"] for m, _ in members)
        metrics = {**metrics, **_role_scores(pred, "val"), **_role_scores(pred, "test"),
                   "train_seconds": train_s,
                   "samples_per_s": sum(m["samples_per_s"] * m["train_seconds"]
                                        for m, _ in members) / train_s if train_s > 0 else None,
                   "members": [{k: m.get(k) for k in _MEMBER_KEYS} for m, _ in members]}
    metrics = {**_split_dict(split), **metrics}
    run.write_split(split.name, metrics, pred)
    return metrics, pred


def _split_rows(split: FoldSplit, inputs: _Inputs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The row indices of the split's training, validation and test clips."""
    roles = assign_roles(inputs.df, split, cross_fold=inputs.cross_fold)
    return tuple(np.flatnonzero((roles == r).to_numpy()) for r in ("train", "val", "test"))


def _teacher_probs(run: RunFolder, names: Sequence[str], X_train: np.ndarray,
                   config: TrainConfig) -> np.ndarray:
    """The mean class probabilities, shape (len(X_train), n_classes), that the models saved
    in ``names`` (the split's seeds, each with its own normaliser) give the training clips
    ``X_train`` (n, n_bins, frames): the teacher of the split's student."""
    device = str(choose_device(config.device))
    probs = [predict_proba(m.model, m.normalizer.transform(X_train),
                           batch_size=config.eval_batch_size, amp=config.amp)
             for m in (run.load_model(name, device=device) for name in names)]
    return np.mean(probs, axis=0)


# what the split's metrics.json lists of each member of a seed ensemble
_MEMBER_KEYS = ("seed", "student", "best_epoch", "val_accuracy", "test_accuracy",
                "test_macro_f1", "train_seconds")


def _run_metrics(split_metrics: list[dict], pred: pd.DataFrame, *, role: str,
                 times: dict[str, float]) -> dict[str, Any]:
    """Run-level ``metrics.json``: ``accuracy``/``macro_f1`` as mean/std (ddof=1)/n over
    splits, ``overall_*`` of the pooled clips, every split's ``warnings`` in order."""
    pooled = evaluation.scores(pred["true_label"], pred["pred_label"])
    train_s = sum(m["train_seconds"] for m in split_metrics)
    samples = sum(m["samples_per_s"] * m["train_seconds"] for m in split_metrics)
    return {
        "scored_role": role, "splits": split_metrics,  # role: "test", or "val" (validation mode)
        "accuracy": evaluation.mean_std([m[f"{role}_accuracy"] for m in split_metrics]),
        "macro_f1": evaluation.mean_std([m[f"{role}_macro_f1"] for m in split_metrics]),
        "overall_accuracy": pooled["accuracy"], "overall_macro_f1": pooled["macro_f1"],
        "n_scored": pooled["n"], "times": times,
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


def _members_column(split_metrics: dict, role: str) -> dict[str, str]:
    """Each model's own score of a split of several (seeds, then any student), for the
    summary table ({} if one model)."""
    members = split_metrics.get("members")
    if not members:
        return {}
    return {f"{role} acc of each model": ", ".join(
        "-" if m[f"{role}_accuracy"] is None else f"{m[f'{role}_accuracy']:.3f}"
        for m in members)}


def _summary_md(config: dict, metrics: dict, dataset: str) -> str:
    role = metrics["scored_role"]
    dash = lambda v: "-" if v is None else v  # noqa: E731
    rows = pd.DataFrame([{
        "split": m["name"], "train folds": ",".join(map(str, m["train_folds"])),
        "val fold": m["val_fold"] or "-", "test fold": m["test_fold"] or "-",
        "best epoch": m["best_epoch"], "val acc": dash(m["val_accuracy"]),
        "test acc": dash(m["test_accuracy"]), "test macro-F1": dash(m["test_macro_f1"]),
        "clips/s": m["samples_per_s"], **_members_column(m, role),
    } for m in metrics["splits"]])
    acc = metrics["accuracy"]
    table = evaluation.comparison_table(
        acc["mean"], dataset=dataset, std=acc["std"],
        protocol=evaluation.run_protocol(config["mode"], len(metrics["splits"])))
    how = ("(no validation fold: every other fold trained for the recipe's fixed epoch count, "
           "the last weights scored)" if config["mode"] in ("refit", "final-refit")
           else "(checkpoints chosen on the validation fold only)")
    seeds, student = config.get("seeds", 1), config.get("student", 0)
    if seeds > 1 or student:
        how += (f"; each split is scored by the mean probabilities of {seeds + bool(student)} "
                f"models (seeds {config['seed']}-{config['seed'] + seeds - 1}"
                + (f", then a student of theirs, distillation weight {student} for "
                   f"{Profile.from_dict(config['profile']).student_epochs} epochs" if student
                   else "") + ")")
    t = metrics["times"]
    return "\n".join([
        f"# Run `{config['run_name']}`", "",
        f"- data: `{config['data_dir']}` ({dataset}, subset `{config['subset']}`, "
        f"{len(config['class_names'])} classes)",
        f"- mode `{config['mode']}`, profile `{config['profile']['name']}`, seed {config['seed']}",
        f"- scored role: **{role}** {how}", "",
        _md_table(rows), "",
        f"**{role} accuracy: {acc['mean']:.3f} +- {acc['std']:.3f}** over {acc['n']} split(s); "
        f"pooled {metrics['overall_accuracy']:.3f}, macro-F1 {metrics['overall_macro_f1']:.3f}.",
        *[f"WARNING: {w}" for w in score_warnings(metrics)], "",
        f"Times: features {t['features_s']:.1f} s, training {t['training_s']:.1f} s"
        + (f" (the models' own times added up; {t['workers']} trained at a time)"
           if t.get("workers", 1) > 1 else "")
        + f", total {t['total_s']:.1f} s; {metrics['samples_per_s'] or float('nan'):.1f} "
        "training clips/s (per model).", "",
        "## Beside the reference points", "",
        _md_table(table), "",
    ])


def run_experiment(
    data_dir: str | Path, *, artifacts_dir: str | Path = "artifacts", mode: str | None = None,
    profile: str | Profile = "quick", overrides: dict[str, Any] | None = None, seed: int = 0,
    run_name: str | None = None, progress: bool = True, subset: str = "all", val_offset: int = 1,
    folds: Sequence[int] | None = None, keep_last_checkpoints: bool = False,
    cross_fold: str = "allow", allow_degenerate: bool = False, track: bool = False,
    on_split: Callable[[int, dict[str, Any]], None] | None = None, workers: int | str = "auto",
) -> RunResult:
    """Run a mode end to end and write its run folder (layout, resume: :mod:`.run_folder`).

    Args:
        data_dir: dataset root (``meta/esc50.csv``, ``audio/``), or a feature pack
            (``.npz``, :mod:`esc50kit.packs`) of the profile's features.
        artifacts_dir: holds ``features/`` (the cache) and ``runs/``.
        mode: ``cv``, ``validation``, ``final``, ``refit`` or ``final-refit``
            (:func:`.splits.make_splits`); None: the profile's.
        profile: a name in :data:`esc50kit.profiles.PROFILES` or a :class:`Profile`;
            ``overrides`` change its settings, e.g. ``{"training.epochs": 5}``.
        run_name: the folder under ``runs/``; a run of that name and configuration resumes.
            Default: ``<profile>-<mode>-seed<seed>-<UTC time>``.
        subset: ``all``, ``esc10`` or ``esc50`` (:func:`esc50kit.data.load_metadata`).
        val_offset: ``cv``: the validation fold's offset (:func:`.splits.cv_splits`).
        folds: these official folds only; the others are never loaded (inner CV).
        keep_last_checkpoints: keep each finished split's ``checkpoint_last.pt``.
        cross_fold: ``allow`` or ``exclude`` (:func:`.splits.assign_roles`).
        allow_degenerate: run splits whose score means little, with ``warnings`` beside
            the score (:func:`.splits.checked_splits`). Default: refuse them.
        track: also log to MLflow (:mod:`esc50kit.tracking`); without mlflow the run goes
            on untracked with a ``TrackingOffWarning``.
        on_split: ``on_split(index, split_metrics)`` after each split, in order, trained or
            read back; an exception it raises stops the run there (the search's pruner).
        workers: how many models train at a time, each in its own process with its share
            of the cores (:mod:`esc50kit.parallel`); a split's student starts once its
            seeds are done. ``"auto"``: 2 on a CPU of 2 or more threads when the run has
            models that can train side by side, each long enough to pay for its process
            (:func:`esc50kit.parallel.auto_workers`), and no ``on_split``; else 1 (in
            turn, in this process).

    Raises:
        SplitError: a split's score would mean nothing, or a mode's fold holds no clips
            (never replaced by another fold); nothing is written.
        LeakageError: a split leaks (never expected with the official folds).
        ValueError: ``run_name`` exists with another configuration, or ``workers`` above 1
            with ``on_split`` (which must see each split before the next one trains).
    """
    t_start = time.perf_counter()
    prof = get_profile(profile, overrides)
    mode = mode or prof.mode
    cache_dir = Path(artifacts_dir) / FEATURES_DIRNAME
    inputs, splits, split_warnings, audit_text = _plan(
        data_dir, prof, mode=mode, subset=subset, folds=folds, val_offset=val_offset, seed=seed,
        cross_fold=cross_fold, allow_degenerate=allow_degenerate, cache_dir=cache_dir,
        progress=progress)
    run_name = run_name or f"{prof.name}-{mode}-seed{seed}-{utc_stamp()}"
    run = RunFolder.named(artifacts_dir, run_name)
    config = run.resumable(_run_config(inputs, run_name, data_dir=data_dir, subset=subset,
                                       mode=mode, val_offset=val_offset, splits=splits))
    inputs.X, inputs.V, features_s = _features(inputs, cache_dir=cache_dir)
    run.write_start(config, audit_text)  # after the features: an unreadable clip leaves no folder
    workers = _workers(workers, run, splits, inputs, on_split=on_split)
    if workers > 1:
        from .parallel import train_all

        train_all(run, splits, inputs, split_warnings, workers=workers,
                  threads=max(1, _torch_threads() // workers),
                  keep_last_checkpoints=keep_last_checkpoints)
    with tracked(enabled=track, config=config, artifacts_dir=Path(artifacts_dir)) as tracker:
        all_metrics, all_pred = _run_splits(run, splits, inputs, split_warnings, tracker=tracker,
                                            keep_last_checkpoints=keep_last_checkpoints,
                                            on_split=on_split)
        _finish(run, config, inputs, all_metrics, all_pred, tracker=tracker,
                features_s=features_s, t_start=t_start, workers=workers,
                scored_role="test" if splits[0].test_fold is not None else "val")
    return run.load()


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _workers(workers: int | str, run: RunFolder, splits: Sequence[FoldSplit], inputs: _Inputs,
             *, on_split: Callable | None) -> int:
    """``run_experiment``'s ``workers`` as a number (see there).

    Raises:
        ValueError: not ``"auto"`` nor an integer >= 1, or above 1 with ``on_split``.
    """
    if workers == "auto":
        from .parallel import auto_workers, plan

        ready, _ = plan(run, splits, inputs)
        if on_split is not None or not ready:
            return 1
        clips = len(_split_rows(ready[0].split, inputs)[0]) * inputs.profile.training.epochs
        return auto_workers(ready=len(ready), clips_per_model=clips, threads=_torch_threads(),
                            on_cpu=choose_device(inputs.profile.training.device).type == "cpu")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers={workers!r}: give \"auto\" or the number of models to "
                         "train at a time (1: in turn, in this process)")
    if workers > 1 and on_split is not None:
        raise ValueError(f"workers={workers} trains splits side by side, but on_split must see "
                         "each split before the next one trains: use workers=1")
    return workers


def _finish(run: RunFolder, config: dict[str, Any], inputs: _Inputs,
            all_metrics: list[dict[str, Any]], all_pred: pd.DataFrame, *, tracker,
            features_s: float, t_start: float, scored_role: str, workers: int) -> None:
    """Write the run's predictions (of the scored role), metrics and summary; end tracking."""
    times = {"features_s": features_s, "training_s": sum(m["train_seconds"] for m in all_metrics),
             "total_s": time.perf_counter() - t_start, "workers": workers}
    pred = all_pred[all_pred["role"] == scored_role].reset_index(drop=True)
    metrics = _run_metrics(all_metrics, pred, role=scored_role, times=times)
    run.write_results(pred, metrics, _summary_md(config, metrics, inputs.dataset))
    tracker.finish(run_dir=run.path, metrics=metrics, predictions=pred, class_names=inputs.names)


def _plan(data_dir: str | Path, prof: Profile, *, mode: str, subset: str,
          folds: Sequence[int] | None, val_offset: int, seed: int, cross_fold: str,
          allow_degenerate: bool, cache_dir: Path, progress: bool,
          ) -> tuple[_Inputs, list[FoldSplit], dict[str, list[str]], str]:
    """The clips (without features unless read from a pack), the checked splits, each
    split's warnings, and the audit reports; nothing is written but the hash cache."""
    df, X_packed, names, dataset = _load_table(data_dir, prof, subset=subset, folds=folds)
    # Checked before the audio is hashed or anything written. The mode is laid out over
    # the folds asked for, not those that hold clips: an empty fold 5 is refused, never
    # replaced by fold 4.
    splits, split_warnings = checked_splits(
        df, mode, class_names=names, folds=OFFICIAL_FOLDS if folds is None else folds,
        val_offset=val_offset, cross_fold=cross_fold, allow_degenerate=allow_degenerate,
        source=str(data_dir))
    # The audit compares decoded audio too (a copy of a test clip under another name
    # and src_file is a leak); hashes are cached beside the features.
    df = df.assign(content_hash=feature_hashes(X_packed) if X_packed is not None else
                   content_hashes(df, cache_dir=cache_dir, progress=progress))
    inputs = _Inputs(df=df, X=X_packed, V=None, names=names, dataset=dataset, profile=prof,
                     model_config=replace(prof.model, n_classes=len(names)), seed=seed,
                     cross_fold=cross_fold, progress=progress)
    return inputs, splits, split_warnings, _audited_splits(df, splits, cross_fold=cross_fold)


def _load_table(data_dir: str | Path, prof: Profile, *, subset: str, folds: Sequence[int] | None,
                ) -> tuple[pd.DataFrame, np.ndarray | None, list[str], str]:
    """The clips of the folds used: (table; a pack's features, shape (N, n_bins, frames),
    or None for a dataset folder; class names, from every fold; the dataset's kind).

    Raises:
        ValueError: a pack of other features, or without audio for variants; a fold
            that is not in the data.
    """
    X_packed = None
    if is_pack(data_dir):  # features and table from one file; the audio is not needed
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
        X_packed = X_packed[keep] if X_packed is not None else None
    return df, X_packed, names, dataset


def _run_config(inputs: _Inputs, run_name: str, *, data_dir: str | Path, subset: str, mode: str,
                val_offset: int, splits: list[FoldSplit]) -> dict[str, Any]:
    """``config.json`` (its JSON view, as a resumed run compares it)."""
    prof, df = inputs.profile, inputs.df
    config = {
        "run_name": run_name, "data_dir": str(Path(data_dir).expanduser().resolve()),
        "dataset_files": dataset_fingerprint(df), "subset": subset, "dataset": inputs.dataset,
        "class_names": inputs.names, "mode": mode,
        "profile": prof.to_dict(), "features": prof.features.to_dict(),
        "model": inputs.model_config.to_dict(), "training": prof.training.to_dict(),
        "seed": inputs.seed, "seeds": prof.seeds, "student": prof.student,
        "student_epoch_factor": prof.student_epoch_factor,
        "folds": sorted(int(f) for f in df["fold"].unique()),
        "val_offset": val_offset, "splits": [_split_dict(s) for s in splits],
        "cross_fold": inputs.cross_fold, "versions": run_versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return json.loads(json.dumps(config, default=str))


def _features(inputs: _Inputs, *, cache_dir: Path) -> tuple[np.ndarray, np.ndarray | None, float]:
    """(X, V, seconds): the clips' features, shape (N, n_bins, frames), float16 (a pack's
    as they are); their augmented copies, shape (N, copies, n_bins, frames), or None when
    the profile trains on no variants; the seconds it took to compute or read them."""
    t0, prof, X, V = time.perf_counter(), inputs.profile, inputs.X, None
    load = functools.partial(load_or_compute, inputs.df, prof.features, cache_dir=cache_dir,
                             progress=inputs.progress)
    if X is None:
        X = load().X
    if prof.training.variants:
        # Kept in the clip's own row: a split trains on the variants of its training rows only.
        V = load(variants=VariantSpec(copies=prof.training.variants, seed=inputs.seed,
                                      transforms=prof.training.variant_transforms)).X
    return X, V, time.perf_counter() - t0


def _run_splits(run: RunFolder, splits: list[FoldSplit], inputs: _Inputs,
                split_warnings: dict[str, list[str]], *, tracker, keep_last_checkpoints: bool,
                on_split: Callable[[int, dict[str, Any]], None] | None,
                ) -> tuple[list[dict[str, Any]], pd.DataFrame]:
    """Train (or read back) every split in order: (their metrics, their predictions with a
    ``split`` column)."""
    all_metrics, all_pred = [], []
    for index, split in enumerate(splits):
        if run.split_done(split.name):  # finished earlier: read it back
            metrics, pred = run.read_split(split.name)
            metrics["warnings"] = split_warnings[split.name]  # the same clips: the same checks
        else:
            metrics, pred = _run_one_split(split, inputs, run, split_warnings[split.name])
            if not keep_last_checkpoints:  # done: metrics.json marks it, resume never reads it
                for name in run.member_names(split.name):
                    run.drop_last_checkpoint(name)
        if inputs.progress:
            _print_split(split.name, metrics)
        tracker.log_split(metrics, run.history(run.member_names(split.name)[0]))
        all_metrics.append(metrics)
        all_pred.append(pred.assign(split=split.name))
        if on_split is not None:
            on_split(index, metrics)
    return all_metrics, pd.concat(all_pred, ignore_index=True)


def _print_split(name: str, m: dict[str, Any]) -> None:
    from tqdm.auto import tqdm

    test = "" if m["test_accuracy"] is None else f", test acc {m['test_accuracy']:.3f}"
    val = (f"last epoch {m['best_epoch']} (no validation fold)" if m["val_accuracy"] is None
           else f"best epoch {m['best_epoch']}, val acc {m['val_accuracy']:.3f}")
    each = "".join(f"; {k}: {v}" for k, v in _members_column(
        m, "val" if m["test_accuracy"] is None else "test").items())
    tqdm.write(f"{name}: {val}{test}{each}")
