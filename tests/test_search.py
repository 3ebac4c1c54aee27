"""The hyperparameter search: its ranges, its proposals, and that it never sees held-out folds."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

from esc50kit.search import (DEFAULT_SPACE, Param, expected_improvement, run_search, suggest,
                             trials_frame)

pytestmark = pytest.mark.usefixtures("torch_one_thread")

SPACE = (Param("training.lr", "log", 1e-4, 1e-1), Param("training.mixup_alpha", "float", 0.0, 0.6),
         Param("training.freq_width", "int", 0, 16), Param("training.crop_frames", "choice", choices=(None, 8, 16)))


@given(u=st.floats(0.0, 1.0))
def test_every_unit_point_maps_into_the_range_and_back(u):
    for p in SPACE:
        value = p.from_unit(u)
        if p.kind == "choice":
            assert value in p.choices
        else:
            assert p.low <= value <= p.high
        # a value maps to a point that maps back to the same value
        again = p.from_unit(p.to_unit(value))
        assert again == value if p.kind in ("int", "choice") else math.isclose(again, value, rel_tol=1e-9)


def test_log_ranges_spend_half_their_points_below_the_geometric_mean():
    p = Param("training.lr", "log", 1e-4, 1e-2)
    assert math.isclose(p.from_unit(0.5), 1e-3, rel_tol=1e-9)
    assert p.to_unit(1e-6) == 0.0 and p.to_unit(1.0) == 1.0  # out-of-range values clip


@pytest.mark.parametrize("kwargs, match", [
    (dict(kind="uniform", low=0, high=1), "kind='uniform'"),
    (dict(kind="float", low=1, high=1), "low < high"),
    (dict(kind="log", low=0, high=1), "low > 0"),
    (dict(kind="choice", choices=(1,)), "two choices"),
])
def test_bad_parameters_are_refused_with_their_key(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Param("training.lr", **kwargs)
    with pytest.raises(ValueError, match="training.lr"):
        Param("training.lr", **kwargs)


def test_expected_improvement_prefers_higher_means_and_more_doubt():
    ei = expected_improvement(np.array([0.5, 0.6, 0.6, 0.4]), np.array([0.01, 0.01, 0.1, 1e-9]), 0.55)
    assert (ei >= 0).all()
    assert ei[1] > ei[0]           # higher mean, same doubt
    assert ei[2] > ei[1]           # same mean, more doubt
    assert ei[3] == pytest.approx(0.0, abs=1e-12)  # surely worse


def test_suggest_draws_at_random_first_then_goes_where_the_scores_point():
    rng = np.random.default_rng(0)
    x0 = suggest(np.zeros((2, 3)), np.array([0.1, 0.2]), rng=rng, n_initial=5)
    assert x0.shape == (3,) and ((0 <= x0) & (x0 <= 1)).all()
    # one dimension, a smooth peak at 0.7; nothing sampled within 0.1 of it
    xs = np.array([0.0, 0.1, 0.2, 0.3, 0.45, 0.55, 0.85, 0.95, 1.0])[:, None]
    ys = -((xs[:, 0] - 0.7) ** 2)
    nxt = suggest(xs, ys, rng=np.random.default_rng(1), n_initial=5)
    assert abs(nxt[0] - 0.7) < 0.12


def test_search_runs_on_the_search_folds_only_and_resumes(writable_root, tmp_path):
    from esc50kit.data import load_metadata

    df = load_metadata(writable_root)
    for name in df.loc[df["fold"] == 5, "filename"]:
        (writable_root / "audio" / name).write_bytes(b"not a wav file")  # reading would fail
    space = (Param("training.lr", "log", 1e-3, 1e-2), Param("training.mixup_alpha", "float", 0.0, 0.4))
    lines: list[str] = []
    kw = dict(profile="tiny", space=space, n_initial=2, folds=(1, 2, 3, 4), name="s",
              artifacts_dir=tmp_path, overrides={"training.epochs": 1}, log=lines.append)
    table = run_search(writable_root, n_trials=3, **kw)
    assert len(table) == 3 and len(lines) == 3
    assert lines[0].startswith("trial 0 (1 of 3, profile): lr=0.003, mixup_alpha=0.2 -> ")
    assert sorted(table["origin"]) == ["gp", "profile", "random"]
    assert table["score"].is_monotonic_decreasing
    trials = json.loads((tmp_path / "search" / "s" / "trials.json").read_text())
    assert [t["trial"] for t in trials] == [0, 1, 2]
    assert trials[0]["params"] == {"training.lr": 0.003, "training.mixup_alpha": 0.2}
    for t in trials:
        assert set(t["per_fold"]) == {"1", "2", "3", "4"}
        assert 1e-3 <= t["params"]["training.lr"] <= 1e-2
        run = tmp_path / t["run_dir"]
        assert json.loads((run / "config.json").read_text())["folds"] == [1, 2, 3, 4]
        assert not list(run.glob("*/checkpoint_last.pt")) and len(list(run.glob("*/checkpoint_best.pt"))) == 4
    # a rerun with more trials runs only the new one and keeps the old ones as they were
    lines.clear()
    table = run_search(writable_root, n_trials=4, **kw)
    assert len(table) == 4 and len(lines) == 1 and lines[0].startswith("trial 3 (4 of 4, gp)")
    assert json.loads((tmp_path / "search" / "s" / "trials.json").read_text())[:3] == trials
    assert len(list((tmp_path / "runs").iterdir())) == 4
    with pytest.raises(ValueError, match="other settings.*space"):
        run_search(writable_root, n_trials=4, **{**kw, "space": space[:1]})


def test_search_refuses_to_see_every_fold_and_unknown_settings(synthetic_root, tmp_path):
    with pytest.raises(ValueError, match=r"cover every fold.*leave at least one out"):
        run_search(synthetic_root, profile="tiny", folds=(1, 2, 3, 4, 5), artifacts_dir=tmp_path)
    with pytest.raises(ValueError, match="training has no field 'lrate'"):
        run_search(synthetic_root, profile="tiny", artifacts_dir=tmp_path,
                   space=(Param("training.lrate", "float", 0.0, 1.0),))
    assert not (tmp_path / "runs").exists()


def test_default_space_holds_the_cpu_recipe():
    from esc50kit.profiles import get_profile

    prof = get_profile("cpu-cv")
    for p in DEFAULT_SPACE:
        value = getattr(prof.training, p.key.split(".")[1])
        assert p.low <= value <= p.high, p.key  # trial 0 lies inside the space
    assert trials_frame([]).empty


def test_several_seeds_per_trial_score_their_mean(synthetic_root, tmp_path):
    space = (Param("training.lr", "log", 1e-3, 1e-2),)
    lines: list[str] = []
    kw = dict(profile="tiny", space=space, n_initial=2, folds=(1, 2, 3), name="m", seed=3,
              artifacts_dir=tmp_path, overrides={"training.epochs": 1}, log=lines.append)
    run_search(synthetic_root, n_trials=2, seeds=2, **kw)
    trials = json.loads((tmp_path / "search" / "m" / "trials.json").read_text())
    for t in trials:
        assert len(t["seed_scores"]) == 2 and t["score"] == pytest.approx(np.mean(t["seed_scores"]))
        assert [p.split("/")[-1] for p in t["run_dirs"]] == [f"search-m-t{t['trial']:03d}-s3",
                                                            f"search-m-t{t['trial']:03d}-s4"]
        seeds = [json.loads((tmp_path / r / "config.json").read_text())["seed"] for r in t["run_dirs"]]
        assert seeds == [3, 4] and set(t["per_fold"]) == {"1", "2", "3"}
    assert " = mean of " in lines[0]
    with pytest.raises(ValueError, match="differs in.*seeds"):
        run_search(synthetic_root, n_trials=3, seeds=1, **kw)
    with pytest.raises(ValueError, match="seeds=0"):
        run_search(synthetic_root, n_trials=3, seeds=0, **kw)


def test_a_search_written_before_the_seeds_setting_still_resumes(synthetic_root, tmp_path):
    kw = dict(profile="tiny", space=(Param("training.lr", "log", 1e-3, 1e-2),), n_initial=2,
              folds=(1, 2, 3), name="old", artifacts_dir=tmp_path, overrides={"training.epochs": 1},
              log=None)
    run_search(synthetic_root, n_trials=1, **kw)
    setup_path = tmp_path / "search" / "old" / "search.json"
    setup = json.loads(setup_path.read_text())
    del setup["seeds"]  # as an earlier esc50kit wrote it
    setup_path.write_text(json.dumps(setup))
    assert len(run_search(synthetic_root, n_trials=2, **kw)) == 2
