"""The training loop and the experiment: overfitting, exact resume, protocol, run folder."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from esc50kit.experiment import load_run, run_experiment
from esc50kit.models import ModelConfig, build_model, load_checkpoint_model
from esc50kit.run_folder import RunFolder
from esc50kit.splits import MODES, make_splits
from esc50kit.training import (
    BEST,
    HISTORY,
    HISTORY_COLUMNS,
    LAST,
    TrainConfig,
    amp_dtype,
    choose_device,
    evaluate,
    fit,
    lr_find,
    random_crop,
)

NO_AUGMENT = dict(mixup_alpha=0.0, freq_masks=0, time_masks=0, label_smoothing=0.0)


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _toy(n=24, n_classes=4, bins=16, frames=24, seed=0):
    """Separable toy spectrograms: class k has energy in band k."""
    g = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    X = g.normal(size=(n, bins, frames)).astype(np.float32)
    band = bins // n_classes
    for i, k in enumerate(y):
        X[i, k * band : (k + 1) * band] += 2.0
    return X, y


def _model(n_classes=4, seed=0):
    torch.manual_seed(seed)
    return build_model(ModelConfig(n_classes=n_classes, width=8))


def test_tiny_batch_can_be_overfitted():
    g = np.random.default_rng(1)
    X = g.normal(size=(16, 16, 24)).astype(np.float32)  # pure noise: only memorisation helps
    y = np.arange(16) % 4
    cfg = TrainConfig(epochs=40, batch_size=16, lr=1e-2, schedule="constant", device="cpu",
                      **NO_AUGMENT)
    model = _model()
    result = fit(model, X, y, X, y, config=cfg, progress=False)
    _, acc = evaluate(model, X, y)
    assert acc == 1.0
    assert result.best_val_acc == 1.0
    assert result.history["train_loss"].iloc[-1] < result.history["train_loss"].iloc[0] / 3


@pytest.mark.parametrize("versions, ema", [(1, None), (3, None), (1, 0.9)])
def test_stop_and_resume_equals_uninterrupted_run(tmp_path, versions, ema):
    X, y = _toy()
    if versions > 1:  # each clip and two noisy variants: the variant draws must resume too
        noise = np.random.default_rng(5).normal(scale=0.3, size=(len(X), versions - 1, *X.shape[1:]))
        X = np.concatenate([X[:, None], X[:, None] + noise.astype(np.float32)], axis=1)
    Xv, yv = _toy(n=8, seed=1)
    # augmentation on, so the generator states in the checkpoint matter
    cfg = TrainConfig(epochs=3, batch_size=8, lr=3e-3, device="cpu", mixup_alpha=0.4,
                      freq_masks=1, freq_width=3, time_masks=1, time_width=4, crop_frames=20,
                      ema=ema)
    full = _model()
    fit(full, X, y, Xv, yv, config=cfg, out_dir=tmp_path / "full", seed=7, progress=False)

    first = _model()
    part = fit(first, X, y, Xv, yv, config=cfg, out_dir=tmp_path / "cut", seed=7,
               progress=False, stop_after_epoch=1)
    assert part.epochs_run == 1
    resumed_model = _model(seed=99)  # a fresh process would start from other weights
    resumed = fit(resumed_model, X, y, Xv, yv, config=cfg, out_dir=tmp_path / "cut", seed=7,
                  progress=False)
    assert resumed.resumed_from == 1 and resumed.epochs_run == 3

    a = torch.load(tmp_path / "full" / LAST, weights_only=False)
    b = torch.load(tmp_path / "cut" / LAST, weights_only=False)
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for k, v in full.state_dict().items():  # the chosen (best) weights agree too
        assert torch.equal(v, resumed_model.state_dict()[k]), k
    ha = pd.read_csv(tmp_path / "full" / HISTORY).drop(columns="seconds")
    hb = pd.read_csv(tmp_path / "cut" / HISTORY).drop(columns="seconds")
    pd.testing.assert_frame_equal(ha, hb)


def test_identical_variants_train_exactly_like_the_clips_alone():
    """Variant draws use their own generator: they change nothing else in the run."""
    X, y = _toy()
    cfg = TrainConfig(epochs=2, batch_size=8, device="cpu", mixup_alpha=0.4, freq_masks=1,
                      freq_width=3, time_masks=1, time_width=4)
    plain, with_copies = _model(), _model()
    fit(plain, X, y, X[:8], y[:8], config=cfg, seed=3, progress=False)
    X4 = np.repeat(X[:, None], 3, axis=1)  # (N, 3, bins, frames), all three the same
    fit(with_copies, X4, y, X[:8], y[:8], config=cfg, seed=3, progress=False)
    for k, v in plain.state_dict().items():
        assert torch.equal(v, with_copies.state_dict()[k]), k


def test_variants_of_training_rows_only_reach_training(synthetic_root, tmp_path, monkeypatch):
    """With variants on, each split trains on its training rows' own copies and nothing
    else; with tta, a scored clip's probabilities are the mean over it and its copies."""
    import esc50kit.experiment as experiment
    from esc50kit.cache import load_or_compute
    from esc50kit.data import load_metadata
    from esc50kit.features import Normalizer
    from esc50kit.profiles import get_profile
    from esc50kit.splits import assign_roles
    from esc50kit.variants import VariantSpec

    seen = []
    real_fit = experiment.fit

    def spy(model, X_train, y_train, X_val, y_val, **kw):
        seen.append((kw["out_dir"].name, np.asarray(X_train), np.asarray(y_train)))
        return real_fit(model, X_train, y_train, X_val, y_val, **kw)

    monkeypatch.setattr(experiment, "fit", spy)
    over = {"training.epochs": 1, "training.variants": 2, "training.variant_transforms": ["gain"],
            "training.tta": True}
    art = tmp_path / "art"
    run = run_experiment(synthetic_root, artifacts_dir=art, mode="final", profile="tiny",
                         overrides=over, run_name="v", progress=False)
    prof = get_profile("tiny", over)
    df = load_metadata(synthetic_root)
    X = load_or_compute(df, prof.features, cache_dir=art / "features", progress=False).X
    V = load_or_compute(df, prof.features, cache_dir=art / "features", progress=False,
                        variants=VariantSpec(copies=2, transforms=("gain",), seed=0)).X
    (name, X_train, y_train), = seen
    split = next(s for s in make_splits("final", (1, 2, 3, 4, 5)) if s.name == name)
    train = np.flatnonzero((assign_roles(df, split) == "train").to_numpy())
    assert set(df["fold"].iloc[train]) == set(split.train_folds)
    norm = Normalizer.load(run.run_dir / name / "normalizer.json")
    expected = norm.transform(np.concatenate([X[train][:, None], V[train]], axis=1))
    assert X_train.shape == (len(train), 3, *prof.features.shape)
    np.testing.assert_allclose(X_train, expected, atol=1e-6)
    np.testing.assert_array_equal(y_train, df["label"].to_numpy()[train])
    # test-time averaging over the scored clip and its own copies
    from esc50kit.training import predict_proba

    model, _ = load_checkpoint_model(run.run_dir / name / BEST)
    pred = pd.read_csv(run.run_dir / name / "predictions.csv")
    rows = df.reset_index(drop=True).reset_index().set_index("filename").loc[pred["filename"], "index"]
    versions = [X[rows]] + [V[rows, k] for k in range(2)]
    expected = np.mean([predict_proba(model, norm.transform(v)) for v in versions], axis=0)
    probs = pred[[c for c in pred.columns if c.startswith("prob_")]].to_numpy()
    np.testing.assert_allclose(probs, expected, atol=1e-5)


def test_ema_averages_the_weights_and_is_what_gets_chosen(tmp_path):
    from esc50kit.training import ema_update

    a, b = _model(seed=0), _model(seed=1)
    before = [p.clone() for p in a.parameters()]
    ema_update(a, b, decay=0.9, step=10**6)  # past the ramp: exactly 0.9 / 0.1
    for p0, pa, pb in zip(before, a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, 0.9 * p0 + 0.1 * pb)
    # in fit, the checkpoint holds the averaged weights, scored on the validation rows
    X, y = _toy()
    cfg = TrainConfig(epochs=2, batch_size=8, device="cpu", ema=0.9, **NO_AUGMENT)
    model = _model()
    result = fit(model, X, y, X[:8], y[:8], config=cfg, out_dir=tmp_path, progress=False)
    last = torch.load(tmp_path / LAST, weights_only=False)
    best = torch.load(tmp_path / BEST, weights_only=False)
    if result.best_epoch == 2:
        for k, v in last["ema"].items():
            assert torch.equal(best["model"][k], v), k
    assert any(not torch.equal(last["ema"][k], last["model"][k]) for k in last["model"])
    _, acc = evaluate(model, X[:8], y[:8])
    assert acc == pytest.approx(result.best_val_acc)


def test_resume_with_other_settings_is_refused(tmp_path):
    X, y = _toy()
    cfg = TrainConfig(epochs=2, batch_size=8, device="cpu", **NO_AUGMENT)
    fit(_model(), X, y, X, y, config=cfg, out_dir=tmp_path, progress=False, stop_after_epoch=1)
    with pytest.raises(ValueError, match="another training configuration"):
        fit(_model(), X, y, X, y, config=TrainConfig(epochs=2, batch_size=8, lr=1e-4,
                                                     device="cpu", **NO_AUGMENT),
            out_dir=tmp_path, progress=False)


def test_files_are_complete_and_early_stopping_uses_validation(tmp_path):
    X, y = _toy()
    # lr=0: only batch-norm statistics move, so validation soon stops improving
    cfg = TrainConfig(epochs=10, batch_size=8, lr=0.0, schedule="constant", patience=2,
                      device="cpu", **NO_AUGMENT)
    result = fit(_model(), X, y, X[:8], y[:8], config=cfg, out_dir=tmp_path, progress=False)
    assert result.stopped_early and result.epochs_run == result.best_epoch + 2 < 10
    hist = pd.read_csv(tmp_path / HISTORY)
    assert tuple(hist.columns) == HISTORY_COLUMNS and len(hist) == result.epochs_run
    assert hist["val_acc"].iloc[result.best_epoch:].max() <= result.best_val_acc
    best = torch.load(tmp_path / BEST, weights_only=False)
    assert best["epoch"] == result.best_epoch and best["model_config"]["width"] == 8
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    model, _ = load_checkpoint_model(tmp_path / BEST)
    assert model(torch.randn(1, 1, 16, 24)).shape == (1, 4)


def test_lr_finder_restores_weights_and_suggests_a_rate():
    X, y = _toy()
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = lr_find(model, X, y, config=TrainConfig(batch_size=8, device="cpu", **NO_AUGMENT),
                  num_steps=12, start_lr=1e-5, end_lr=1.0)
    assert list(res.history.columns) == ["lr", "loss", "smoothed"]
    assert 1e-5 <= res.suggestion <= 1.0
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_lr_finder_takes_the_training_step_of_fit(monkeypatch):
    """lr_find steps like fit: weights in channels-last (on the CPU too, for the ResNets),
    clipped gradients with grad_clip, one version per clip from (N, V, bins, frames)."""
    X, y = _toy()
    X4 = np.stack([X, X + 0.1, X - 0.1], axis=1)  # (N, 3, bins, frames)
    model = _model()
    shapes = []
    model.register_forward_pre_hook(lambda m, args: shapes.append(tuple(args[0].shape)))
    clips = []
    real_clip = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_",
                        lambda params, max_norm, **kw: clips.append(max_norm)
                        or real_clip(params, max_norm, **kw))
    cfg = TrainConfig(batch_size=8, device="cpu", grad_clip=0.5, **NO_AUGMENT)
    res = lr_find(model, X4, y, config=cfg, num_steps=5, start_lr=1e-5, end_lr=1e-3)
    assert len(res.history) == 5 and clips == [0.5] * 5
    assert shapes == [(8, 1, 16, 24)] * 5
    np.testing.assert_allclose(res.history["lr"], np.geomspace(1e-5, 1e-3, 5))
    convs = [p for p in model.parameters() if p.dim() == 4 and p.shape[1] > 1]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)


def test_random_crop_takes_windows_of_each_clip():
    x = torch.arange(2 * 3 * 10, dtype=torch.float32).reshape(2, 3, 10)  # (batch, bins, frames)
    out = random_crop(x, 4, torch.Generator().manual_seed(0))
    assert out.shape == (2, 3, 4)
    for i in range(2):
        start = int(out[i, 0, 0] - x[i, 0, 0])
        assert torch.equal(out[i], x[i, :, start : start + 4])
    assert random_crop(x, 50, torch.Generator()).shape == x.shape


def test_device_choice_on_this_machine():
    dev = choose_device("auto")
    assert dev.type in ("cuda", "mps", "cpu")
    assert choose_device("cpu").type == "cpu"


def test_cpu_autocasts_to_bf16_only_when_asked_and_native(monkeypatch):
    import esc50kit.training as training

    cpu = torch.device("cpu")
    monkeypatch.setattr(training, "cpu_has_native_bf16", lambda: True)
    assert amp_dtype("bf16", cpu) == torch.bfloat16
    assert amp_dtype("auto", cpu) is None  # measured results stay float32
    assert amp_dtype("off", cpu) is None
    monkeypatch.setattr(training, "cpu_has_native_bf16", lambda: False)
    assert amp_dtype("bf16", cpu) is None  # emulated bf16 would be slower: float32


def test_bf16_on_the_cpu_still_learns(monkeypatch):
    import esc50kit.training as training

    monkeypatch.setattr(training, "cpu_has_native_bf16", lambda: True)  # emulated is fine here
    X, y = _toy(n=32)
    cfg = TrainConfig(epochs=15, batch_size=16, lr=1e-2, schedule="constant", device="cpu",
                      amp="bf16", **NO_AUGMENT)
    model = _model()
    result = fit(model, X, y, X, y, config=cfg, progress=False)
    assert result.best_val_acc >= 0.9  # chance: 0.25
    assert result.history["train_loss"].iloc[-1] < result.history["train_loss"].iloc[0] / 2
    assert all(p.dtype == torch.float32 for p in model.parameters())  # weights stay fp32


@settings(max_examples=60, deadline=None)
@given(mode=st.sampled_from(MODES),
       folds=st.lists(st.integers(1, 9), min_size=3, max_size=6, unique=True),
       data=st.data())
def test_validation_fold_is_never_the_test_fold(mode, folds, data):
    folds = tuple(sorted(folds))
    test = data.draw(st.sampled_from(folds))
    val = data.draw(st.sampled_from([f for f in folds if f != test]))
    for kwargs in ({}, {"val_fold": val, "test_fold": test}):
        if mode in ("cv", "refit") and kwargs:  # they lay out every fold
            continue
        if mode == "final-refit" and kwargs:  # no validation fold to name
            kwargs = {"test_fold": test}
        for split in make_splits(mode, folds, **kwargs):
            assert split.val_fold != split.test_fold
            assert split.val_fold not in split.train_folds
            assert split.test_fold not in split.train_folds


@pytest.fixture(scope="module")
def tiny_run(synthetic_root, tmp_path_factory):
    art = tmp_path_factory.mktemp("artifacts")
    result = run_experiment(synthetic_root, artifacts_dir=art, mode="cv", profile="tiny",
                            overrides={"training.epochs": 2}, run_name="t", progress=False)
    return result


def test_experiment_writes_the_run_folder_contract(tiny_run):
    run = tiny_run.run_dir
    for name in ("config.json", "metrics.json", "predictions.csv", "summary.md"):
        assert (run / name).is_file(), name
    config = json.loads((run / "config.json").read_text())
    for key in ("data_dir", "subset", "class_names", "mode", "profile", "features", "model",
                "training", "seed", "versions", "splits"):
        assert key in config, key
    assert config["model"]["n_classes"] == len(config["class_names"]) == 5
    assert len(config["splits"]) == 5
    for s in config["splits"]:
        d = run / s["name"]
        for name in (BEST, HISTORY, "normalizer.json", "predictions.csv", "metrics.json"):
            assert (d / name).is_file(), (s["name"], name)
        assert not (d / LAST).exists(), "a finished split keeps no optimizer state"
        pred = pd.read_csv(d / "predictions.csv")
        assert set(pred.loc[pred.role == "test", "fold"]) == {s["test_fold"]}
        assert set(pred.loc[pred.role == "val", "fold"]) == {s["val_fold"]}
    pred = pd.read_csv(run / "predictions.csv")
    assert (pred["role"] == "test").all() and len(pred) == 50  # each clip tested once
    assert sorted(pred["fold"].unique()) == [1, 2, 3, 4, 5]
    probs = pred[[f"prob_{c}" for c in config["class_names"]]].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["accuracy"]["n"] == 5 and 0 <= metrics["overall_accuracy"] <= 1
    assert metrics["samples_per_s"] > 0


def test_run_can_be_loaded_and_predicts_like_it_recorded(tiny_run, synthetic_root):
    from esc50kit.cache import load_or_compute
    from esc50kit.data import load_metadata
    from esc50kit.training import predict_proba

    loaded = load_run(tiny_run.run_dir)
    assert loaded.split_names == [s["name"] for s in loaded.config["splits"]]
    assert set(loaded.histories) == set(loaded.split_names)
    split = loaded.split_names[0]
    model, feature_config, normalizer, names, _ = RunFolder(loaded.run_dir).load_model(split)
    df = load_metadata(synthetic_root)
    fold = loaded.config["splits"][0]["test_fold"]
    rows = df[df["fold"] == fold]
    X = load_or_compute(rows, feature_config, cache_dir=None, progress=False).X
    probs = predict_proba(model, normalizer.transform(X))
    recorded = pd.read_csv(loaded.run_dir / split / "predictions.csv")
    recorded = recorded[recorded.role == "test"]
    np.testing.assert_allclose(probs, recorded[[f"prob_{c}" for c in names]].to_numpy(), atol=1e-3)


def test_refit_trains_on_every_other_fold_and_scores_the_last_weights(synthetic_root, tmp_path):
    from esc50kit.plots import plot_training_curves

    kw = dict(artifacts_dir=tmp_path, mode="refit", profile="tiny", run_name="refit",
              overrides={"training.epochs": 3}, progress=False)
    result = run_experiment(synthetic_root, **kw)
    m = result.metrics
    assert m["scored_role"] == "test" and m["accuracy"]["n"] == 5
    for s in m["splits"]:
        assert s["val_fold"] is None and s["val_accuracy"] is None and s["n_val"] == 0
        assert s["n_train"] == 40 and s["n_test"] == 10  # four folds train, one tests
        assert s["best_epoch"] == s["epochs_run"] == 3  # the fixed count, the last weights
        d = result.run_dir / s["name"]
        assert torch.load(d / BEST, weights_only=False)["epoch"] == 3
        assert set(pd.read_csv(d / "predictions.csv")["role"]) == {"test"}
        history = pd.read_csv(d / HISTORY)
        assert len(history) == 3 and history["val_acc"].isna().all()
        plot_training_curves(history)  # no validation curve to draw, no error either
    pred = result.predictions
    assert len(pred) == 50 and sorted(pred["fold"].unique()) == [1, 2, 3, 4, 5]
    assert "no validation fold" in (result.run_dir / "summary.md").read_text()
    assert "Split audit: PASSED" in (result.run_dir / "audit.txt").read_text()
    again = run_experiment(synthetic_root, **kw)  # finished: read back, nothing retrained
    assert again.metrics["accuracy"] == m["accuracy"]


def test_final_refit_trains_one_split_on_every_other_fold_with_stretch_and_shift(
        synthetic_root, tmp_path):
    over = {"training.epochs": 2, "training.time_stretch": 0.25, "training.freq_shift": 2}
    result = run_experiment(synthetic_root, artifacts_dir=tmp_path, mode="final-refit",
                            profile="tiny", run_name="fr", overrides=over, progress=False)
    (s,) = result.metrics["splits"]
    assert (s["name"], s["train_folds"], s["val_fold"], s["test_fold"]) == (
        "test5-noval", [1, 2, 3, 4], None, 5)
    assert s["n_train"] == 40 and s["n_test"] == 10 and s["best_epoch"] == 2
    assert result.config["training"]["time_stretch"] == 0.25
    assert "no validation fold" in (result.run_dir / "summary.md").read_text()
    with pytest.raises(ValueError, match="time_stretch=-0.1"):
        TrainConfig(time_stretch=-0.1)


def test_a_seed_ensemble_trains_each_member_like_a_single_run_and_averages_them(
        synthetic_root, tmp_path):
    from esc50kit import evaluation
    from esc50kit.predict import Classifier

    kw = dict(artifacts_dir=tmp_path, mode="final", profile="tiny", progress=False)
    single = run_experiment(synthetic_root, run_name="one", seed=3,
                            overrides={"training.epochs": 2}, **kw)
    ens_kw = dict(kw, run_name="two", seed=3, overrides={"training.epochs": 2, "seeds": 2})
    ens = run_experiment(synthetic_root, keep_last_checkpoints=True, **ens_kw)
    split = ens.config["splits"][0]["name"]
    folder = RunFolder(ens.run_dir)
    assert folder.member_names(split) == [f"{split}/seed3", f"{split}/seed4"]
    names = ens.class_names
    cols = [f"prob_{c}" for c in names]
    member_pred = [pd.read_csv(ens.run_dir / m / "predictions.csv")
                   for m in folder.member_names(split)]
    # the first member is the single run of the same seed, clip for clip
    one = pd.read_csv(single.run_dir / split / "predictions.csv")
    np.testing.assert_allclose(member_pred[0][cols], one[cols], atol=1e-6)
    assert not np.allclose(member_pred[1][cols], one[cols])  # another seed, another model
    # the split is scored by their mean probabilities
    ensemble = pd.read_csv(ens.run_dir / split / "predictions.csv")
    np.testing.assert_allclose(ensemble[cols], (member_pred[0][cols] + member_pred[1][cols]) / 2,
                               atol=1e-6)
    m = ens.metrics["splits"][0]
    assert [x["seed"] for x in m["members"]] == [3, 4]
    assert m["members"][0]["test_accuracy"] == single.metrics["splits"][0]["test_accuracy"]
    test = ensemble[ensemble.role == "test"]
    assert m["test_accuracy"] == pytest.approx((test.true_label == test.pred_label).mean())
    assert set(ens.histories) == set(folder.member_names(split))
    table = evaluation.member_table(ens.metrics["splits"])
    assert list(table.columns) == ["seed 3", "seed 4", "ensemble"]
    assert table.loc[split, "seed 4"] == m["members"][1]["test_accuracy"]
    assert "test acc of each model" in (ens.run_dir / "summary.md").read_text()
    assert evaluation.member_table(single.metrics["splits"]).empty
    # one network by default (predict, the upload widget); every member on request
    assert len(Classifier.from_run(ens.run_dir).models) == 1
    assert len(Classifier.from_run(ens.run_dir, members=True).models) == 2
    # interrupted during the second member: the first is read back, the second resumes
    (ens.run_dir / split / "metrics.json").unlink()
    (ens.run_dir / split / "seed4" / "metrics.json").unlink()
    again = run_experiment(synthetic_root, **ens_kw)
    resumed = again.metrics["splits"][0]
    assert resumed["test_accuracy"] == m["test_accuracy"]
    assert resumed["members"] == m["members"]  # seed 3 read back, seed 4 went on from its end
    assert not (ens.run_dir / split / "seed4" / LAST).exists()
    with pytest.raises(ValueError, match="another configuration"):
        run_experiment(synthetic_root, **dict(ens_kw, overrides={"training.epochs": 2,
                                                                 "seeds": 3}))


def test_a_student_learns_from_its_seeds_joins_their_ensemble_and_is_the_deployed_model(
        synthetic_root, tmp_path):
    from dataclasses import replace

    from esc50kit import evaluation
    from esc50kit.cache import load_or_compute
    from esc50kit.data import load_metadata
    from esc50kit.experiment import train_and_score
    from esc50kit.features import FeatureConfig
    from esc50kit.predict import Classifier
    from esc50kit.profiles import Profile, get_profile
    from esc50kit.splits import FoldSplit, assign_roles
    from esc50kit.training import predict_proba

    kw = dict(artifacts_dir=tmp_path, mode="final", profile="tiny", progress=False, seed=3,
              run_name="taught", overrides={"training.epochs": 2, "seeds": 2, "student": 0.5})
    run = run_experiment(synthetic_root, **kw)
    split = run.config["splits"][0]["name"]
    folder = RunFolder(run.run_dir)
    names = folder.member_names(split)
    assert names == [f"{split}/seed3", f"{split}/seed4", f"{split}/student"]
    assert folder.deployed_member(split) == f"{split}/student"
    # the student is exactly a model of seed 5 whose targets are half label, half the
    # seeds' mean probabilities of the same training clips
    df = load_metadata(synthetic_root)
    X = load_or_compute(df, FeatureConfig.from_dict(run.config["features"]), progress=False,
                        cache_dir=tmp_path / "features").X
    s = run.config["splits"][0]
    roles = assign_roles(df, FoldSplit(tuple(s["train_folds"]), s["val_fold"], s["test_fold"]))
    train, val, test = (np.flatnonzero((roles == r).to_numpy()) for r in ("train", "val", "test"))
    seeds = [folder.load_model(n) for n in names[:2]]
    teacher = np.mean([predict_proba(m.model, m.normalizer.transform(X[train])) for m in seeds],
                      axis=0)
    prof = get_profile("tiny", {"training.epochs": 2})
    probs, _ = train_and_score(X, df["label"].to_numpy(), train=train, val=val,
                               scored=np.concatenate([val, test]),
                               model_config=ModelConfig.from_dict(run.config["model"]),
                               train_config=replace(prof.training, distill=0.5), seed=5,
                               progress=False, desc="by hand", teacher=teacher)
    cols = [f"prob_{c}" for c in run.class_names]
    student = pd.read_csv(run.run_dir / names[2] / "predictions.csv")
    np.testing.assert_allclose(student[cols], probs, atol=1e-5)
    # the split is scored by the mean of all three; the table names the student
    member_pred = [pd.read_csv(run.run_dir / n / "predictions.csv")[cols] for n in names]
    ensemble = pd.read_csv(run.run_dir / split / "predictions.csv")
    np.testing.assert_allclose(ensemble[cols], sum(member_pred) / 3, atol=1e-6)
    m = run.metrics["splits"][0]
    assert [(x["seed"], x["student"]) for x in m["members"]] == [(3, False), (4, False), (5, True)]
    assert list(evaluation.member_table(run.metrics["splits"]).columns) == [
        "seed 3", "seed 4", "student", "ensemble"]
    assert "then a student of theirs" in (run.run_dir / "summary.md").read_text()
    # predict and the upload widget use the student alone by default
    clf = Classifier.from_run(run.run_dir)
    own = folder.load_model(names[2]).model.state_dict()
    assert len(clf.models) == 1 and all(torch.equal(v, own[k])
                                        for k, v in clf.models[0].state_dict().items())
    # interrupted during the student: the seeds are read back and the student retrained
    (run.run_dir / split / "metrics.json").unlink()
    (run.run_dir / names[2] / "metrics.json").unlink()
    again = run_experiment(synthetic_root, **kw).metrics["splits"][0]
    assert again["members"][:2] == m["members"][:2]  # read back, to the second
    assert again["members"][2]["test_accuracy"] == m["members"][2]["test_accuracy"]
    assert again["test_accuracy"] == m["test_accuracy"]
    with pytest.raises(ValueError, match="student=1.5 must be a weight"):
        Profile(name="x", description="", mode="cv", student=1.5)


def test_a_student_can_train_longer_than_its_seeds_and_the_run_keeps_to_that(
        synthetic_root, tmp_path):
    from esc50kit.profiles import Profile, get_profile

    over = {"training.epochs": 2, "seeds": 2, "student": 0.5, "student_epoch_factor": 1.5}
    kw = dict(artifacts_dir=tmp_path, mode="final", profile="tiny", progress=False,
              run_name="longer", overrides=over)
    run = run_experiment(synthetic_root, **kw)
    split = run.config["splits"][0]["name"]
    folder = RunFolder(run.run_dir)
    epochs = {n.split("/")[-1]: len(folder.history(n)) for n in folder.member_names(split)}
    assert epochs == {"seed0": 2, "seed1": 2, "student": 3}  # round(2 * 1.5)
    assert run.config["student_epoch_factor"] == 1.5
    assert "distillation weight 0.5 for 3 epochs" in (run.run_dir / "summary.md").read_text()
    # a run folder keeps its student's length: another factor is another configuration
    with pytest.raises(ValueError, match="another configuration.*student_epoch_factor"):
        run_experiment(synthetic_root, **dict(kw, overrides={**over, "student_epoch_factor": 2}))
    # the factor follows an epochs override; without a student it is simply unused
    assert get_profile("cpu-esc50").student_epochs == 150
    assert get_profile("cpu-esc50", {"training.epochs": 20}).student_epochs == 30
    assert get_profile("cpu-esc50", {"student": 0}).student == 0
    for bad in (0, -1.5, True, "1.5"):
        with pytest.raises(ValueError, match=f"student_epoch_factor={bad!r} must be a number > 0"):
            Profile(name="x", description="", mode="cv", student=0.5, student_epoch_factor=bad)


def test_without_validation_rows_patience_is_refused_and_the_last_epoch_kept():
    X, y = _toy(n=16)
    empty = X[:0], y[:0]
    with pytest.raises(ValueError, match="patience=3 .* no validation clips"):
        fit(_model(), X, y, *empty, config=TrainConfig(epochs=4, patience=3, device="cpu"),
            progress=False)
    model = _model()
    result = fit(model, X, y, *empty, config=TrainConfig(epochs=4, device="cpu", **NO_AUGMENT),
                 progress=False)
    assert result.best_epoch == result.epochs_run == 4 and np.isnan(result.best_val_acc)


def test_an_interrupted_split_resumes_from_its_last_checkpoint_then_drops_it(synthetic_root, tmp_path):
    kw = dict(artifacts_dir=tmp_path, mode="final", profile="tiny", run_name="r",
              overrides={"training.epochs": 2}, progress=False)
    kept = run_experiment(synthetic_root, keep_last_checkpoints=True, **kw)
    split_dir = kept.run_dir / kept.config["splits"][0]["name"]
    assert (split_dir / LAST).is_file()
    (split_dir / "metrics.json").unlink()  # as if stopped after its last epoch
    again = run_experiment(synthetic_root, **kw)
    split = again.metrics["splits"][0]
    assert split["resumed_from"] == 2  # went on from the checkpoint, did not start over
    assert split["test_accuracy"] == kept.metrics["splits"][0]["test_accuracy"]
    assert not (split_dir / LAST).exists() and (split_dir / BEST).is_file()


def test_rerun_with_same_name_resumes_and_other_config_is_refused(tiny_run, synthetic_root):
    art = tiny_run.run_dir.parent.parent
    again = run_experiment(synthetic_root, artifacts_dir=art, mode="cv", profile="tiny",
                           overrides={"training.epochs": 2}, run_name="t", progress=False)
    assert again.metrics["overall_accuracy"] == tiny_run.metrics["overall_accuracy"]
    # a run folder written before a field existed (it behaved as the field's default) resumes
    path = tiny_run.run_dir / "config.json"
    config = json.loads(path.read_text())
    del config["training"]["ema"], config["model"]["stem_pool"]
    path.write_text(json.dumps(config))
    older = run_experiment(synthetic_root, artifacts_dir=art, mode="cv", profile="tiny",
                           overrides={"training.epochs": 2}, run_name="t", progress=False)
    assert older.metrics["overall_accuracy"] == tiny_run.metrics["overall_accuracy"]
    with pytest.raises(ValueError, match="another configuration"):
        run_experiment(synthetic_root, artifacts_dir=art, mode="cv", profile="tiny",
                       overrides={"training.epochs": 3}, run_name="t", progress=False)


def test_run_name_resumes_on_moved_data_and_refuses_other_data(synthetic_root, tmp_path):
    import shutil

    from esc50kit.experiment import default_run_name, run_experiment
    from synthetic import make_synthetic_dataset

    kw = dict(artifacts_dir=tmp_path / "art", mode="final", profile="tiny",
              overrides={"training.epochs": 1}, progress=False, run_name="r")
    first = run_experiment(synthetic_root, **kw)
    moved = shutil.copytree(synthetic_root, tmp_path / "moved")
    again = run_experiment(moved, **kw)  # same clips at another path: read back, not retrained
    assert again.metrics["overall_accuracy"] == first.metrics["overall_accuracy"]
    other = make_synthetic_dataset(tmp_path / "other", n_classes=3, seed=1)
    with pytest.raises(ValueError, match="dataset_files"):
        run_experiment(other, **kw)
    assert default_run_name("quick", "/x/ESC-10") == "quick-ESC-10"


def test_raw_waveform_profile_runs_end_to_end(synthetic_root, tmp_path):
    """The raw-waveform comparison is selectable like the others: a profile name."""
    run = run_experiment(synthetic_root, artifacts_dir=tmp_path, mode="final", profile="wave-cv",
                         overrides={"training.epochs": 1, "model.width": 8}, run_name="w",
                         progress=False)
    assert run.config["model"]["arch"] == "wavecnn"
    assert run.config["features"]["kind"] == "waveform"
    pred = run.predictions
    assert (pred["role"] == "test").all() and set(pred["fold"]) == {5}
    model, _ = load_checkpoint_model(run.run_dir / run.split_names[0] / BEST)
    assert model.config.arch == "wavecnn"


def test_folds_option_never_loads_the_held_out_fold(writable_root, tmp_path):
    """An inner cross-validation over folds 1-4 must work even if fold 5 cannot be read."""
    from esc50kit.data import load_metadata

    df = load_metadata(writable_root)
    for name in df.loc[df["fold"] == 5, "filename"]:
        (writable_root / "audio" / name).write_bytes(b"not a wav file")  # reading would fail
    kw = dict(artifacts_dir=tmp_path, mode="cv", profile="tiny", progress=False,
              overrides={"training.epochs": 1}, folds=[1, 2, 3, 4])
    run = run_experiment(writable_root, run_name="inner", val_offset=2, **kw)
    assert run.config["folds"] == [1, 2, 3, 4] and run.config["val_offset"] == 2
    assert [(s["test_fold"], s["val_fold"]) for s in run.config["splits"]] == [
        (1, 3), (2, 4), (3, 1), (4, 2)]
    assert sorted(run.predictions["fold"].unique()) == [1, 2, 3, 4]
    assert len(run.config["class_names"]) == run.config["model"]["n_classes"] == 5
    with pytest.raises(ValueError, match=r"fold\(s\) \[7\]"):
        run_experiment(writable_root, run_name="bad", **{**kw, "folds": [1, 2, 7]})


def test_profile_settings_from_the_command_line_and_their_refusals():
    from esc50kit.profiles import get_profile, parse_overrides

    over = parse_overrides(["seeds=3", "training.amp=bf16", "training.crop_frames=null",
                            "features.n_mels=96"])
    assert over == {"seeds": 3, "training.amp": "bf16", "training.crop_frames": None,
                    "features.n_mels": 96}
    prof = get_profile("quick", over)
    assert (prof.seeds, prof.training.amp, prof.training.crop_frames) == (3, "bf16", None)
    assert prof.features.shape[0] == 96
    with pytest.raises(ValueError, match="write SECTION.FIELD=VALUE"):
        parse_overrides(["seeds"])
    with pytest.raises(ValueError, match="seeds=0 must be an integer >= 1"):
        get_profile("quick", {"seeds": 0})
    with pytest.raises(ValueError, match="one of \\('mode', 'seeds', 'student', "
                                         "'student_epoch_factor', 'description'\\)"):
        get_profile("quick", {"epochs": 3})


def test_power_mixing_needs_the_normaliser_levels_and_trains_with_them():
    X, y = _toy()
    cfg = TrainConfig(epochs=2, batch_size=8, device="cpu", mixup_alpha=1.0, mix="power")
    with pytest.raises(ValueError, match="levels"):
        fit(_model(), X, y, X[:8], y[:8], config=cfg, progress=False)
    levels = (np.full(16, -50.0), np.full(16, 10.0))  # the toy's values read as dB
    result = fit(_model(), X, y, X[:8], y[:8], config=cfg, progress=False, levels=levels)
    assert result.epochs_run == 2 and np.isfinite(result.history["train_loss"]).all()
    with pytest.raises(ValueError, match="mix="):
        TrainConfig(mix="log")


def test_distilling_from_the_labels_themselves_is_training_on_the_labels():
    """distill=1 with a teacher that gives each clip its own label (no smoothing) trains
    bit for bit like plain training: the teacher enters only through the targets."""
    X, y = _toy()
    plain_cfg = TrainConfig(epochs=2, batch_size=8, device="cpu", mixup_alpha=0.4,
                            label_smoothing=0.0, freq_masks=1, freq_width=3)
    plain, taught = _model(), _model()
    fit(plain, X, y, X[:8], y[:8], config=plain_cfg, seed=2, progress=False)
    cfg = TrainConfig(**{**plain_cfg.to_dict(), "distill": 1.0})
    fit(taught, X, y, X[:8], y[:8], config=cfg, seed=2, progress=False,
        teacher=np.eye(4, dtype=np.float32)[y])
    for k, v in plain.state_dict().items():
        assert torch.equal(v, taught.state_dict()[k]), k
    with pytest.raises(ValueError, match="exactly when distill > 0"):
        fit(_model(), X, y, X[:8], y[:8], config=cfg, progress=False)
    with pytest.raises(ValueError, match=r"need \(24, 4\)"):
        fit(_model(), X, y, X[:8], y[:8], config=cfg, progress=False, teacher=np.eye(4)[y[:5]])
    with pytest.raises(ValueError, match="distill=1.5"):
        TrainConfig(distill=1.5)
