"""Hyperparameter search on validation folds: a few random trials, then Bayesian ones.

A *trial* trains one recipe (a profile plus overrides) as a cross-validation over the
*search folds* only, by default folds 1-4: the other folds are never loaded, so the
search cannot see them. Its score is the accuracy pooled over the held-out folds of
that inner cross-validation, each scored by a model whose epoch was chosen on another
fold: from the outer protocol's view, all of it is validation data.

The first ``n_initial`` trials draw settings at random; after that a Gaussian process
(scikit-learn, Matern kernel plus noise) is fitted to the scores seen so far and the
next trial is the candidate with the highest expected improvement. Every trial uses the
same seed, so two recipes are compared on the same initialisation, shuffling and
augmentation draws (common random numbers). The seed noise is still there: on ESC-10 one
seed moves a trial's score as much as the settings do, so give each trial several seeds
(``seeds=3`` scores it by the mean of three runs) or confirm the winner with other seeds
before adopting it.

The search keeps its record in ``<artifacts>/search/<name>/``: ``search.json`` (the
profile, space, folds and seed; a rerun with other ones is refused) and ``trials.json``
(one entry per finished trial, rewritten atomically). A rerun continues where the last
one stopped; an interrupted trial resumes from its finished splits.

    run_search("data/ESC-10", profile="cpu-cv", n_trials=16, name="cpu-cv-2026")
"""
from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from .fileio import atomic_write_json
from .profiles import get_profile

SEARCH_DIRNAME = "search"
_SETUP_DEFAULTS = {"seeds": 1}  # settings added later: what a search written before them used
KINDS = ("float", "log", "int", "choice")


@dataclass(frozen=True)
class Param:
    """One searched setting.

    Attributes:
        key: the override it sets, ``section.field`` (e.g. ``training.lr``).
        kind: ``float`` (uniform), ``log`` (uniform in log space), ``int`` (uniform,
            rounded) or ``choice`` (one of ``choices``, in the order given).
        low, high: bounds for ``float``, ``log`` and ``int`` (inclusive).
        choices: the values for ``choice``.
    """

    key: str
    kind: str
    low: float | None = None
    high: float | None = None
    choices: tuple = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"parameter {self.key!r}: kind={self.kind!r}; choose one of {KINDS}")
        if self.kind == "choice":
            if len(self.choices) < 2:
                raise ValueError(f"parameter {self.key!r}: give at least two choices")
            return
        if self.low is None or self.high is None or not self.low < self.high:
            raise ValueError(f"parameter {self.key!r}: need low < high, got {self.low}, {self.high}")
        if self.kind == "log" and self.low <= 0:
            raise ValueError(f"parameter {self.key!r}: a log range needs low > 0, got {self.low}")

    def from_unit(self, u: float) -> Any:
        """The value at position ``u`` in [0, 1] of the range."""
        u = min(max(float(u), 0.0), 1.0)
        if self.kind == "choice":
            return self.choices[min(int(u * len(self.choices)), len(self.choices) - 1)]
        if self.kind == "int":
            return int(round(self.low + u * (self.high - self.low)))
        if self.kind == "log":
            value = math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
        else:
            value = self.low + u * (self.high - self.low)
        return float(min(max(value, self.low), self.high))  # rounding must not leave the range

    def to_unit(self, value: Any) -> float:
        """Where ``value`` sits in [0, 1] (a choice: the middle of its bin)."""
        if self.kind == "choice":
            if value not in self.choices:
                raise ValueError(f"parameter {self.key!r}: {value!r} is not one of {self.choices}")
            return (self.choices.index(value) + 0.5) / len(self.choices)
        if self.kind == "log":
            u = (math.log(value) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))
        else:
            u = (float(value) - self.low) / (self.high - self.low)
        return min(max(u, 0.0), 1.0)


# The CPU recipe's regularisation and optimiser settings: what a search on ESC-10 can
# hope to move on a 2-core CPU (architecture, features and epochs were chosen earlier).
DEFAULT_SPACE: tuple[Param, ...] = (
    Param("training.lr", "log", 1e-3, 1e-2),
    Param("training.weight_decay", "log", 1e-3, 1e-1),
    Param("training.mixup_alpha", "float", 0.0, 0.6),
    Param("training.label_smoothing", "float", 0.0, 0.2),
    Param("training.freq_width", "int", 0, 16),
    Param("training.time_width", "int", 0, 32),
)


def expected_improvement(mean: np.ndarray, std: np.ndarray, best: float, *, xi: float = 0.01) -> np.ndarray:
    """Expected improvement over ``best`` of normal predictions (maximisation).

    Args:
        mean, std: predicted mean and standard deviation, shape (n,).
        best: the best score seen so far.
        xi: the margin an improvement must beat (exploration).

    Returns:
        np.ndarray, shape (n,), non-negative.
    """
    from scipy.stats import norm

    std = np.maximum(std, 1e-12)
    z = (mean - best - xi) / std
    return np.maximum((mean - best - xi) * norm.cdf(z) + std * norm.pdf(z), 0.0)


def suggest(history_x: np.ndarray, history_y: np.ndarray, *, rng: np.random.Generator,
            n_initial: int = 5, n_candidates: int = 4096) -> np.ndarray:
    """The next point to try, in the unit cube.

    Args:
        history_x: points tried so far, shape (n_trials, n_dims), in [0, 1].
        history_y: their scores, shape (n_trials,); higher is better.
        rng: draws the random points and the candidates.
        n_initial: trials drawn at random before the Gaussian process takes over.
        n_candidates: random candidates among which expected improvement is maximised.

    Returns:
        np.ndarray, shape (n_dims,).
    """
    history_x = np.asarray(history_x, dtype=float)
    history_y = np.asarray(history_y, dtype=float)
    n_dims = history_x.shape[1]
    if len(history_y) < n_initial or np.ptp(history_y) == 0:
        return rng.random(n_dims)  # a uniform point of the unit cube
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    kernel = ConstantKernel(1.0) * Matern(length_scale=np.full(n_dims, 0.5),
                                          length_scale_bounds=(0.05, 20.0), nu=2.5) \
        + WhiteKernel(noise_level=0.1, noise_level_bounds=(1e-4, 1.0))
    gp = GaussianProcessRegressor(kernel=kernel, normalize_y=True, n_restarts_optimizer=3,
                                  random_state=int(rng.integers(2**31)))
    with warnings.catch_warnings():  # bounds hit on a few noisy points are expected
        warnings.simplefilter("ignore", ConvergenceWarning)
        gp.fit(history_x, history_y)
    candidates = rng.random((n_candidates, n_dims))
    mean, std = gp.predict(candidates, return_std=True)
    ei = expected_improvement(mean, std, float(history_y.max()))
    return candidates[int(np.argmax(ei))]


def _space_dicts(space: Sequence[Param]) -> list[dict]:
    return [{**asdict(p), "choices": list(p.choices)} for p in space]


def _trial_line(trial: dict, n_trials: int, best: float) -> str:
    params = ", ".join(f"{k.split('.')[-1]}={_fmt(v)}" for k, v in trial["params"].items())
    seeds = trial.get("seed_scores")
    per_seed = f" = mean of {', '.join(f'{x:.3f}' for x in seeds)}" if seeds else ""
    return (f"trial {trial['trial']} ({trial['trial'] + 1} of {n_trials}, {trial['origin']}): {params} -> "
            f"{trial['score']:.3f}{per_seed} (best so far {best:.3f}; {trial['seconds']:.0f} s)")


def _fmt(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def trials_frame(trials: list[dict]) -> pd.DataFrame:
    """The trials as a table, best first: ``trial``, ``origin``, ``score``, ``val_mean``,
    ``seconds``, ``run_dir`` and one column per searched setting."""
    if not trials:
        return pd.DataFrame(columns=["trial", "origin", "score", "val_mean", "seconds", "run_dir"])
    rows = [{"trial": t["trial"], "origin": t["origin"], "score": t["score"],
             "val_mean": t["val_mean"], "seconds": t["seconds"], "run_dir": t["run_dir"],
             **t["params"]} for t in trials]
    return pd.DataFrame(rows).sort_values(["score", "trial"], ascending=[False, True]).reset_index(drop=True)


def run_search(
    data_dir: str | Path,
    *,
    profile: str = "cpu-cv",
    space: Sequence[Param] = DEFAULT_SPACE,
    n_trials: int = 16,
    n_initial: int = 5,
    folds: Sequence[int] = (1, 2, 3, 4),
    seed: int = 0,
    seeds: int = 1,
    name: str | None = None,
    artifacts_dir: str | Path = "artifacts",
    overrides: dict[str, Any] | None = None,
    subset: str = "all",
    keep_last_checkpoints: bool = False,
    log: Callable[[str], None] | None = print,
) -> pd.DataFrame:
    """Search ``space`` on the search folds and return every trial, best first.

    Args:
        data_dir: dataset root (``meta/esc50.csv`` and ``audio/``) or a feature pack.
        profile: the recipe searched around; trial 0 is the profile itself.
        space: the settings searched (override keys of ``profile``).
        n_trials: trials in all, including those a previous call finished.
        n_initial: random trials (the profile's own counts as one) before the Gaussian
            process picks.
        folds: the search folds; at least one fold of the data must be left out, so that
            something stays unseen by the search.
        seed: the training seed of every trial, and the search's own random draws.
        seeds: runs per trial, with seeds ``seed .. seed + seeds - 1``; the trial's score
            is the mean of theirs.
        name: the search's folder under ``<artifacts>/search/`` (default:
            ``<profile>-folds<...>-seed<seed>``); trial runs are ``search-<name>-t<k>``
            (``...-t<k>-s<seed>`` with several seeds).
        overrides: fixed changes to the profile applied to every trial.
        subset: ``"all"``, ``"esc10"`` or ``"esc50"``.
        keep_last_checkpoints: keep each finished split's ``checkpoint_last.pt`` (only
            needed to resume training; ``checkpoint_best.pt`` is always kept).
        log: called with one line per finished trial (None: silent).

    Returns:
        pd.DataFrame: :func:`trials_frame` of all trials so far.

    Raises:
        ValueError: the folds cover the whole dataset, a space key is not a setting of
            the profile, or the search folder holds a search with other settings.
    """
    from .experiment import RUNS_DIRNAME, run_experiment
    from .packs import load_table

    space = tuple(space)
    if not space:
        raise ValueError("space is empty: give at least one Param to search")
    if seeds < 1:
        raise ValueError(f"seeds={seeds}: give 1 or more runs per trial")
    folds = sorted({int(f) for f in folds})
    all_folds = sorted(int(f) for f in load_table(data_dir, subset=subset)["fold"].unique())
    if not set(all_folds) - set(folds):
        raise ValueError(
            f"folds={folds} cover every fold of {data_dir}: the search would choose on the "
            f"folds it is later tested on; leave at least one out (e.g. folds={all_folds[:-1]})")
    base = get_profile(profile, overrides)
    start = {}
    for p in space:  # the profile's own values are trial 0
        get_profile(base, {p.key: p.from_unit(0.5)})  # raises, naming the key, if unknown
        section, _, field_name = p.key.partition(".")
        start[p.key] = getattr(getattr(base, section), field_name)
    name = name or f"{base.name}-folds{''.join(map(str, folds))}-seed{seed}"
    out = Path(artifacts_dir) / SEARCH_DIRNAME / name
    setup = {"profile": base.to_dict(), "space": _space_dicts(space), "folds": folds,
             "seed": seed, "seeds": seeds, "subset": subset, "n_initial": n_initial,
             "data_dir": str(Path(data_dir).expanduser().resolve())}
    setup = json.loads(json.dumps(setup, default=str))
    if (out / "search.json").is_file():
        old = json.loads((out / "search.json").read_text())
        diff = [k for k in setup if k != "data_dir" and old.get(k, _SETUP_DEFAULTS.get(k)) != setup[k]]
        if diff:
            raise ValueError(f"{out} holds a search with other settings (differs in {diff}); "
                             "pass another name, or delete the folder to start over")
    atomic_write_json(out / "search.json", setup)
    trials_path = out / "trials.json"
    trials: list[dict] = json.loads(trials_path.read_text()) if trials_path.is_file() else []

    while len(trials) < n_trials:
        k = len(trials)
        rng = np.random.default_rng([seed, k])  # the same history gives the same trial
        if k == 0:
            params, origin = dict(start), "profile"
        else:
            x = np.array([[p.to_unit(t["params"][p.key]) for p in space] for t in trials])
            y = np.array([t["score"] for t in trials])
            u = suggest(x, y, rng=rng, n_initial=n_initial)
            params = {p.key: p.from_unit(ui) for p, ui in zip(space, u)}
            origin = "random" if k < n_initial else "gp"
        t0 = time.perf_counter()
        runs = []
        for run_seed in range(seed, seed + seeds):
            run_name = f"search-{name}-t{k:03d}" + (f"-s{run_seed}" if seeds > 1 else "")
            run = run_experiment(data_dir, artifacts_dir=artifacts_dir, mode="cv", profile=base,
                                 overrides=params, seed=run_seed, run_name=run_name,
                                 progress=False, subset=subset, folds=folds,
                                 keep_last_checkpoints=keep_last_checkpoints)
            runs.append(run)
        splits = [s for run in runs for s in run.metrics["splits"]]
        trial = {"trial": k, "origin": origin, "params": params,
                 "score": float(np.mean([run.metrics["overall_accuracy"] for run in runs])),
                 "val_mean": float(np.mean([s["val_accuracy"] for s in splits])),
                 "per_fold": {str(f): float(np.mean([s["test_accuracy"] for s in splits
                                                     if s["test_fold"] == f])) for f in folds},
                 "seconds": time.perf_counter() - t0,
                 "run_dir": str(Path(RUNS_DIRNAME) / runs[0].run_dir.name)}
        if seeds > 1:
            trial["seed_scores"] = [float(run.metrics["overall_accuracy"]) for run in runs]
            trial["run_dirs"] = [str(Path(RUNS_DIRNAME) / run.run_dir.name) for run in runs]
        trials.append(trial)
        atomic_write_json(trials_path, trials)
        if log:
            log(_trial_line(trial, n_trials, max(t["score"] for t in trials)))
    return trials_frame(trials)
