"""Predictions tables and the numbers computed from them.

Everything here starts from a predictions table (one row per scored clip), the format
of ``predictions.csv`` in a run folder:

    filename, fold, role, true_label, true_class, pred_label, pred_class,
    prob_<class 0>, ..., prob_<class K-1>

so the metrics of a run can be recomputed from its CSV alone, without the model.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score

PROB_PREFIX = "prob_"

# Published reference points. Human listeners: K. J. Piczak, "ESC: Dataset for
# Environmental Sound Classification", ACM MM 2015; seed projects: the three this package
# was seeded from, each on one split of ESC-50. Protocols: "listening" (people labelling
# the clips, no training split), "one split" (one test fold), "cv" (mean over the folds).
REFERENCE_POINTS: tuple[dict, ...] = tuple(
    dict(zip(("system", "dataset", "accuracy", "protocol"), row)) for row in (
        ("human listeners (Piczak 2015)", "ESC-10", 0.957, "listening"),
        ("human listeners (Piczak 2015)", "ESC-50", 0.813, "listening"),
        ("seed project 1", "ESC-50", 0.730, "one split"),
        ("seed project 2", "ESC-50", 0.709, "one split"),
        ("seed project 3", "ESC-50", 0.655, "one split"),
    )
)


def predictions_frame(
    rows: pd.DataFrame, probs: np.ndarray, class_names: Sequence[str], *, role: str | Sequence[str]
) -> pd.DataFrame:
    """The predictions table (the module docstring's columns) of scored clips.

    Args:
        rows: the metadata rows scored (``filename``, ``fold``, ``label``), in the order
            of ``probs``.
        probs: shape (N, n_classes), class probabilities.
        class_names: names ordered by label.
        role: ``"test"``/``"val"`` for all rows, or one role per row.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.shape != (len(rows), len(class_names)):
        raise ValueError(
            f"probs has shape {probs.shape}; expected ({len(rows)}, {len(class_names)}) "
            "= (rows scored, classes)"
        )
    names = np.asarray(class_names, dtype=object)
    true = rows["label"].to_numpy(dtype=int)
    pred = probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=int)
    out = pd.DataFrame({
        "filename": rows["filename"].to_numpy(),
        "fold": rows["fold"].to_numpy(dtype=int),
        "role": role if isinstance(role, str) else list(role),
        "true_label": true,
        "true_class": names[true],
        "pred_label": pred,
        "pred_class": names[pred],
    })
    for k, name in enumerate(class_names):
        out[f"{PROB_PREFIX}{name}"] = probs[:, k]
    return out


def class_names_of(pred: pd.DataFrame) -> list[str]:
    """Class names ordered by label, read from the probability columns of a table."""
    return [c[len(PROB_PREFIX):] for c in pred.columns if c.startswith(PROB_PREFIX)]


def scores(y_true: Sequence[int], y_pred: Sequence[int]) -> dict[str, float]:
    """``accuracy``, ``macro_f1`` (sklearn's; absent classes count as 0) and ``n``."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if len(y_true) == 0:
        raise ValueError("no predictions to score")
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "n": int(len(y_true)),
    }


def report(pred: pd.DataFrame, class_names: Sequence[str] | None = None) -> pd.DataFrame:
    """Per-class precision, recall, F1 and support (scikit-learn's classification report),
    indexed by class name, plus ``accuracy``, ``macro avg`` and ``weighted avg`` rows."""
    names = list(class_names) if class_names is not None else class_names_of(pred)
    d = classification_report(pred["true_label"], pred["pred_label"], labels=range(len(names)),
                              target_names=names, output_dict=True, zero_division=0)
    acc = d.pop("accuracy", None)
    df = pd.DataFrame(d).T
    if acc is not None:
        df.loc["accuracy"] = [np.nan, np.nan, acc, df.loc["macro avg", "support"]]
    df["support"] = df["support"].astype(int)
    return df


def confusion(pred: pd.DataFrame, class_names: Sequence[str] | None = None, *,
              normalize: bool = False) -> pd.DataFrame:
    """Confusion matrix: rows are true classes, columns predicted classes.

    Args:
        normalize: divide each row by its count (rows sum to 1: per-class recall on the
            diagonal); False gives counts.

    Returns:
        pd.DataFrame, shape (n_classes, n_classes), indexed by class names.
    """
    names = list(class_names) if class_names is not None else class_names_of(pred)
    cm = confusion_matrix(pred["true_label"], pred["pred_label"], labels=range(len(names)))
    if normalize:
        totals = cm.sum(axis=1, keepdims=True)
        cm = np.divide(cm, totals, out=np.zeros(cm.shape, dtype=float), where=totals > 0)
    return pd.DataFrame(cm, index=pd.Index(names, name="true"),
                        columns=pd.Index(names, name="predicted"))


def most_confused(pred: pd.DataFrame, class_names: Sequence[str] | None = None, *,
                  top: int = 10) -> pd.DataFrame:
    """The ``top`` off-diagonal cells of the confusion matrix by clips, zero counts left
    out: ``true``, ``predicted``, ``count`` and ``rate`` (share of the true class's clips)."""
    cells = pd.concat({"count": confusion(pred, class_names).stack(),
                       "rate": confusion(pred, class_names, normalize=True).stack()},
                      axis=1).reset_index()  # one row per (true, predicted)
    out = cells[(cells["true"] != cells["predicted"]) & (cells["count"] > 0)]
    return out.sort_values(["count", "rate", "true", "predicted"],
                           ascending=[False, False, True, True]).head(top).reset_index(drop=True)


def split_scores(pred: pd.DataFrame, *, by: str = "split", role: str | None = "test") -> pd.DataFrame:
    """:func:`scores` (``accuracy``, ``macro_f1``, ``n``) of each group of a concatenated
    predictions table: by ``split`` (a run's ``predictions.csv``) or ``fold``, of the rows
    of one ``role`` (None: all rows)."""
    if role is not None:
        pred = pred[pred["role"] == role]
    rows = {key: scores(g["true_label"], g["pred_label"]) for key, g in pred.groupby(by, sort=True)}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis(by)


def average_predictions(tables: Sequence[pd.DataFrame], *,
                        keys: Sequence[str] = ("split", "role", "filename")) -> pd.DataFrame:
    """An ensemble: the mean class probabilities of several predictions tables.

    The tables must score the same clips (the same ``keys`` rows, in any order), e.g.
    the same split of runs that differ only in their seed. Each model was chosen on the
    validation fold on its own; averaging chooses nothing, so the test rows stay clean.

    Returns:
        the first table's rows, ``prob_*`` averaged, ``pred_label``/``pred_class`` recomputed.
    """
    if not tables:
        raise ValueError("no predictions tables to average")
    base = tables[0].reset_index(drop=True)
    keys = [k for k in keys if k in base.columns]
    names = class_names_of(base)
    cols = [f"{PROB_PREFIX}{c}" for c in names]
    index = pd.MultiIndex.from_frame(base[keys])
    total = base[cols].to_numpy(dtype=np.float64).copy()
    for i, t in enumerate(tables[1:], start=2):
        if class_names_of(t) != names or len(t) != len(base):
            raise ValueError(f"predictions table {i} scores other classes or another number "
                             "of clips")
        other = t.set_index(keys).reindex(index)
        if other[cols].isna().any().any():
            raise ValueError(f"predictions table {i} lacks some clips of the first table")
        total += other[cols].to_numpy(dtype=np.float64)
    probs = total / len(tables)  # (clips, classes)
    out = base.copy()
    out[cols] = probs
    out["pred_label"] = probs.argmax(axis=1)
    out["pred_class"] = np.asarray(names, dtype=object)[out["pred_label"].to_numpy()]
    return out


def member_table(split_metrics: Sequence[dict], *, role: str = "test") -> pd.DataFrame:
    """Each model's own ``role`` accuracy in a run whose splits train several
    (``metrics["splits"]``): one row per split, one column per seed (``seed 0``, ...) and
    any ``student``, then ``ensemble`` (the split's score) and a last row ``mean`` over
    the splits. Empty when the splits trained one model each."""
    label = lambda x: "student" if x.get("student") else f"seed {x['seed']}"  # noqa: E731
    rows = {m["name"]: {**{label(x): x[f"{role}_accuracy"] for x in m["members"]},
                        "ensemble": m[f"{role}_accuracy"]}
            for m in split_metrics if m.get("members")}
    table = pd.DataFrame.from_dict(rows, orient="index").rename_axis("split")
    if len(table):
        table.loc["mean"] = table.mean()
    return table


def mean_std(values: Sequence[float]) -> dict[str, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value) over folds."""
    v = np.asarray(values, dtype=float)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "n": int(len(v))}


def run_protocol(mode: str, n_splits: int) -> str:
    """The protocol name of a run for :func:`comparison_table`: ``cv`` (``cv`` and
    ``refit``: every fold tested once), ``one split`` (``final``, ``final-refit``) or
    ``validation`` (a validation score chose the epoch: it is not a test figure)."""
    if mode == "validation":
        return "validation"
    return "cv" if mode in ("cv", "refit") and n_splits > 1 else "one split"


def comparison_table(accuracy: float, *, dataset: str, system: str = "esc50kit (this run)",
                     std: float | None = None, protocol: str = "cv") -> pd.DataFrame:
    """Place a result beside the reference points, like with like.

    A row compares directly (``comparable``) when it is on the same dataset (ESC-10's
    10 classes are far easier than ESC-50's 50) and was measured the same way: one test
    split beside one split, a cross-validation mean beside human listeners (who labelled
    the whole dataset) and other cross-validation means. A ``validation`` score chose
    the epoch, so it compares with nothing.

    ``protocol`` is this run's, from :func:`run_protocol`.

    Returns:
        pd.DataFrame with ``system``, ``dataset``, ``protocol``, ``accuracy``, ``std`` and
        ``comparable``, the comparable rows first, each group best first.
    """
    rows = [dict(r, std=np.nan) for r in REFERENCE_POINTS]
    rows.append({"system": system, "dataset": dataset, "accuracy": float(accuracy),
                 "protocol": protocol, "std": np.nan if std is None else float(std)})
    df = pd.DataFrame(rows, columns=["system", "dataset", "protocol", "accuracy", "std"])
    like = {"cv": {"cv", "listening"}, "one split": {"one split"}}.get(protocol, set())
    df["comparable"] = (df["dataset"] == dataset) & df["protocol"].isin(like)
    df.loc[df["system"] == system, "comparable"] = protocol in like
    return df.sort_values(["comparable", "accuracy"], ascending=False).reset_index(drop=True)
