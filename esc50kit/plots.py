"""Figures of a run, each drawn on a matplotlib Axes the caller owns.

Every function takes ``ax`` (and returns it), so a notebook lays out its own grid::

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    plot_loss(history, a); plot_accuracy(history, b)
"""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes


def _axes(ax: Axes | None) -> Axes:
    return ax if ax is not None else plt.subplots()[1]


def _plot_curves(history: pd.DataFrame, ax: Axes | None, metric: str, **labels) -> Axes:
    """``train_<metric>`` and ``val_<metric>`` per epoch, the kept epoch marked."""
    ax = _axes(ax)
    epochs = history["epoch"]
    ax.plot(epochs, history[f"train_{metric}"], label="train (augmented)")
    if history["val_acc"].notna().any():  # refit mode has no validation fold: NaN columns
        ax.plot(epochs, history[f"val_{metric}"], label="validation")
        best = int(history.loc[history["val_acc"].idxmax(), "epoch"])
        ax.axvline(best, color="grey", ls=":", lw=1, label=f"best val (epoch {best})")
    elif len(history):  # refit: the recipe's fixed epoch count, the last weights kept
        ax.axvline(epochs.iloc[-1], color="grey", ls=":", lw=1,
                   label="last epoch (kept; no validation fold)")
    ax.set(xlabel="epoch", **labels)
    ax.legend()
    return ax


def plot_loss(history: pd.DataFrame, ax: Axes | None = None, *, title: str = "Loss") -> Axes:
    """Training and validation loss per epoch (from ``history.csv``)."""
    return _plot_curves(history, ax, "loss", ylabel="cross-entropy", title=title)


def plot_accuracy(history: pd.DataFrame, ax: Axes | None = None, *,
                  title: str = "Accuracy") -> Axes:
    """Training and validation accuracy per epoch."""
    return _plot_curves(history, ax, "acc", ylabel="accuracy", ylim=(0, 1.02), title=title)


def plot_lr(history: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """The learning-rate schedule (value at the end of each epoch)."""
    ax = _axes(ax)
    ax.plot(history["epoch"], history["lr"])
    ax.set(xlabel="epoch", ylabel="learning rate", title="Learning rate")
    return ax


def plot_training_curves(history: pd.DataFrame,
                         axes: Sequence[Axes] | None = None) -> Sequence[Axes]:
    """Loss, accuracy and the learning rate side by side on three Axes (created when not
    given; with two, the learning rate is left out)."""
    if axes is None:
        axes = plt.subplots(1, 3, figsize=(15, 3.5))[1]
    plot_loss(history, axes[0])
    plot_accuracy(history, axes[1])
    if len(axes) > 2:
        plot_lr(history, axes[2])
    return axes


def plot_confusion(cm: pd.DataFrame, ax: Axes | None = None, *, title: str | None = None,
                   annot: bool | None = None) -> Axes:
    """Seaborn heatmap of a confusion matrix from :func:`esc50kit.evaluation.confusion`.

    Counts are annotated as integers, a normalised matrix as fractions; annotations are
    left out beyond 20 classes, where they would not be readable.
    """
    ax = _axes(ax)
    normalised = not np.issubdtype(cm.to_numpy().dtype, np.integer)
    annot = len(cm) <= 20 if annot is None else annot
    sns.heatmap(cm, ax=ax, annot=annot, fmt=".2f" if normalised else "d", cmap="Blues",
                vmin=0, vmax=1 if normalised else None, square=True, cbar=True,
                annot_kws={"size": 7})
    ax.set(xlabel="predicted", ylabel="true",
           title=title or ("Confusion (row-normalised)" if normalised else "Confusion (counts)"))
    return ax


def plot_per_class(report: pd.DataFrame, ax: Axes | None = None, *,
                   metric: str = "f1-score") -> Axes:
    """Horizontal bars of one per-class metric of :func:`esc50kit.evaluation.report`."""
    ax = _axes(ax)
    per_class = report.drop(index=["accuracy", "macro avg", "weighted avg"], errors="ignore")
    per_class = per_class.sort_values(metric)
    ax.barh(per_class.index.astype(str), per_class[metric])
    ax.set(xlabel=metric, xlim=(0, 1), title=f"Per-class {metric}")
    return ax


def plot_fold_scores(fold_scores: pd.DataFrame, ax: Axes | None = None, *,
                     metric: str = "accuracy") -> Axes:
    """One bar per split/fold with the mean as a line (:func:`evaluation.split_scores`)."""
    ax = _axes(ax)
    ax.bar(fold_scores.index.astype(str), fold_scores[metric])
    mean = fold_scores[metric].mean()
    ax.axhline(mean, color="k", ls="--", lw=1, label=f"mean {mean:.3f}")
    ax.set(ylabel=metric, ylim=(0, 1), title=f"Test {metric} per split")
    ax.legend()
    return ax


def plot_comparison(table: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Bars of :func:`esc50kit.evaluation.comparison_table`, comparable rows highlighted."""
    ax = _axes(ax)
    rows = table[::-1]  # barh draws bottom-up: the first row on top
    labels = rows["system"] + " [" + rows["dataset"] + ", " + rows["protocol"] + "]"
    ax.barh(labels.to_numpy(), rows["accuracy"].to_numpy(),
            color=np.where(rows["comparable"], "tab:blue", "lightgrey"))
    ax.set(xlabel="accuracy", xlim=(0, 1), title="Against the reference points")
    return ax
