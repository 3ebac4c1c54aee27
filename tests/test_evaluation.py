"""Evaluation numbers against scikit-learn on hand-made predictions, and the figures."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from sklearn.metrics import (  # noqa: E402
    accuracy_score,
    classification_report,
    confusion_matrix,
    f1_score,
)

from esc50kit import evaluation, plots  # noqa: E402

NAMES = ["dog", "rain", "sea_waves", "clock_tick"]
# Hand-made: 12 clips of 4 classes; rain is taken for sea waves twice, and class 3 is
# never predicted correctly (its F1 is 0).
TRUE = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3])
PRED = np.array([0, 0, 1, 2, 2, 1, 2, 2, 0, 0, 1, 2])


@pytest.fixture
def pred():
    rows = pd.DataFrame({"filename": [f"{i}.wav" for i in range(12)], "fold": [1] * 6 + [2] * 6,
                         "label": TRUE})
    probs = np.full((12, 4), 0.1)
    probs[np.arange(12), PRED] = 0.7
    return evaluation.predictions_frame(rows, probs, NAMES, role="test")


def test_predictions_frame_columns(pred):
    assert list(pred.columns[:7]) == ["filename", "fold", "role", "true_label", "true_class",
                                      "pred_label", "pred_class"]
    assert [c for c in pred.columns if c.startswith("prob_")] == [f"prob_{n}" for n in NAMES]
    assert (pred["pred_label"].to_numpy() == PRED).all()
    assert pred.loc[3, "true_class"] == "rain" and pred.loc[3, "pred_class"] == "sea_waves"
    assert evaluation.class_names_of(pred) == NAMES


def test_predictions_frame_rejects_misshapen_probs():
    rows = pd.DataFrame({"filename": ["a"], "fold": [1], "label": [0]})
    with pytest.raises(ValueError, match="expected"):
        evaluation.predictions_frame(rows, np.ones((1, 3)), NAMES, role="test")


def test_scores_match_sklearn():
    s = evaluation.scores(TRUE, PRED)
    assert s["accuracy"] == pytest.approx(accuracy_score(TRUE, PRED))
    assert s["macro_f1"] == pytest.approx(f1_score(TRUE, PRED, average="macro"))
    assert s["accuracy"] == pytest.approx(5 / 12)


def test_report_matches_sklearn(pred):
    rep = evaluation.report(pred)
    ref = classification_report(TRUE, PRED, target_names=NAMES, output_dict=True, zero_division=0)
    for name in NAMES:
        for metric in ("precision", "recall", "f1-score"):
            assert rep.loc[name, metric] == pytest.approx(ref[name][metric])
        assert rep.loc[name, "support"] == ref[name]["support"]
    assert rep.loc["macro avg", "f1-score"] == pytest.approx(ref["macro avg"]["f1-score"])
    assert rep.loc["accuracy", "f1-score"] == pytest.approx(ref["accuracy"])


def test_confusion_counts_and_normalised(pred):
    cm = evaluation.confusion(pred)
    np.testing.assert_array_equal(cm.to_numpy(), confusion_matrix(TRUE, PRED))
    assert list(cm.index) == NAMES and list(cm.columns) == NAMES
    norm = evaluation.confusion(pred, normalize=True)
    np.testing.assert_allclose(norm.to_numpy(), confusion_matrix(TRUE, PRED, normalize="true"))
    np.testing.assert_allclose(norm.sum(axis=1), 1.0)


def test_most_confused_pairs(pred):
    top = evaluation.most_confused(pred, top=3)
    assert list(top.columns) == ["true", "predicted", "count", "rate"]
    assert (top.iloc[0]["true"], top.iloc[0]["predicted"], top.iloc[0]["count"]) == ("rain", "sea_waves", 2)
    assert top.iloc[0]["rate"] == pytest.approx(2 / 3)
    assert (top["true"] != top["predicted"]).all() and len(top) == 3


def test_split_scores_and_mean_std(pred):
    per_fold = evaluation.split_scores(pred, by="fold")
    assert per_fold.loc[1, "accuracy"] == pytest.approx(accuracy_score(TRUE[:6], PRED[:6]))
    assert per_fold.loc[2, "macro_f1"] == pytest.approx(
        f1_score(TRUE[6:], PRED[6:], average="macro", zero_division=0))
    ms = evaluation.mean_std([0.8, 0.9, 1.0])
    assert ms["mean"] == pytest.approx(0.9) and ms["std"] == pytest.approx(np.std([0.8, 0.9, 1.0], ddof=1))
    assert evaluation.mean_std([0.7])["std"] == 0.0


def test_comparison_table_has_the_reference_points():
    table = evaluation.comparison_table(0.91, dataset="ESC-10", std=0.02)
    assert table.iloc[0]["accuracy"] == pytest.approx(0.957)  # comparable rows first, best first
    assert set(table.loc[table.comparable, "dataset"]) == {"ESC-10"}
    accs = sorted(table["accuracy"].round(3))
    for ref in (0.813, 0.957, 0.73, 0.709, 0.655, 0.91):
        assert ref in accs


def test_comparison_table_compares_like_with_like():
    cv = evaluation.comparison_table(0.78, dataset="ESC-50", std=0.02, protocol="cv")
    assert set(cv.loc[cv.comparable, "system"]) == {"human listeners (Piczak 2015)", "esc50kit (this run)"}
    assert set(cv.loc[cv.comparable, "dataset"]) == {"ESC-50"}
    one = evaluation.comparison_table(0.66, dataset="ESC-50", protocol="one split")
    assert set(one.loc[one.comparable, "system"]) == {
        "seed project 1", "seed project 2", "seed project 3", "esc50kit (this run)"}
    val = evaluation.comparison_table(0.7, dataset="ESC-50", protocol="validation")
    assert not val["comparable"].any()  # a validation score chose the epoch
    assert evaluation.run_protocol("cv", 5) == "cv"
    assert evaluation.run_protocol("final", 1) == "one split"
    assert evaluation.run_protocol("validation", 1) == "validation"


def test_plots_draw_on_given_axes(pred):
    history = pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [2.0, 1.5, 1.0],
                            "train_acc": [0.3, 0.5, 0.7], "val_loss": [2.1, 1.7, 1.6],
                            "val_acc": [0.25, 0.5, 0.45], "lr": [1e-3, 2e-3, 1e-4],
                            "seconds": [1, 1, 1]})
    fig, axes = plt.subplots(2, 3)
    assert plots.plot_loss(history, axes[0, 0]) is axes[0, 0]
    assert plots.plot_accuracy(history, axes[0, 1]) is axes[0, 1]
    plots.plot_lr(history, axes[0, 2])
    assert plots.plot_confusion(evaluation.confusion(pred), axes[1, 0]) is axes[1, 0]
    plots.plot_confusion(evaluation.confusion(pred, normalize=True), axes[1, 1])
    plots.plot_per_class(evaluation.report(pred), axes[1, 2])
    assert axes[0, 0].get_xlabel() == "epoch" and len(axes[0, 0].lines) >= 2
    assert axes[1, 0].get_ylabel() == "true"
    plt.close(fig)
    fig, ax = plt.subplots()
    plots.plot_comparison(evaluation.comparison_table(0.9, dataset="ESC-10"), ax)
    plots.plot_fold_scores(evaluation.split_scores(pred, by="fold"), ax)
    plt.close(fig)


def test_average_predictions_is_the_mean_of_probabilities_matched_by_clip():
    from esc50kit.evaluation import average_predictions, predictions_frame

    rows = pd.DataFrame({"filename": ["a.wav", "b.wav", "c.wav"], "fold": [1, 1, 2],
                         "label": [0, 1, 1]})
    p1 = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]])
    p2 = np.array([[0.7, 0.3], [0.1, 0.9], [0.3, 0.7]])
    t1 = predictions_frame(rows, p1, ["x", "y"], role="test").assign(split="s")
    t2 = predictions_frame(rows, p2, ["x", "y"], role="test").assign(split="s")
    ens = average_predictions([t1, t2.iloc[::-1]])  # matched by clip, not by position
    np.testing.assert_allclose(ens[["prob_x", "prob_y"]].to_numpy(), (p1 + p2) / 2)
    assert ens["pred_label"].tolist() == [0, 1, 1]  # b: 0.35 / 0.65 -> y
    assert ens["pred_class"].tolist() == ["x", "y", "y"]
    with pytest.raises(ValueError, match="lacks some clips"):
        average_predictions([t1, t2.assign(filename=["a.wav", "b.wav", "z.wav"])])
    # members of an ensemble of fold models name their splits after their own validation
    # folds ("test1-val2", "test1-val3"): they are matched by test fold and clip instead
    other_split = t2.assign(split="other")
    with pytest.raises(ValueError, match="lacks some clips"):
        average_predictions([t1, other_split])
    by_fold = average_predictions([t1, other_split], keys=("fold", "role", "filename"))
    np.testing.assert_allclose(by_fold[["prob_x", "prob_y"]].to_numpy(), (p1 + p2) / 2)


def test_spectrogram_plot_labels_its_axes_and_colour_bar():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from esc50kit.eda import plot_spectrogram

    fig, ax = plt.subplots()
    plot_spectrogram(np.zeros((8, 20)), sr=100, hop_length=10, ax=ax, colorbar="dB")
    assert ax.get_xlabel() == "time (s)" and ax.get_ylabel() == "mel band"
    assert ax.get_xlim() == (0.0, 2.0)  # 20 frames of 10 samples at 100 Hz
    bars = [a for a in fig.axes if a is not ax]
    assert len(bars) == 1 and bars[0].get_ylabel() == "dB"
    plt.close(fig)
