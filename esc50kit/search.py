"""Hyperparameter search on validation folds with Optuna: one study per search.

A trial trains a recipe (a profile plus overrides) as a cross-validation over the search
folds only (default 1-4; the others are never loaded), scored by the accuracy pooled over
their held-out folds, each model's epoch chosen on another fold: all validation data
(``seeds=3``: the mean of three runs). Trial 0 is the profile itself, then TPE seeded
with (``seed``, trial number); a percentile pruner judges every inner fold.
The study lives in an Optuna storage (default ``sqlite:///<artifacts>/search/optuna.db``,
any Optuna URL, or a journal file path) that workers, the same call elsewhere, share.
Optuna's heartbeat and ``RetryHeartbeatStaleTrialCallback`` retry a dead worker's trial
(``retry_of``; it resumes in the first attempt's run folder); ``MaxTrialsCallback`` stops
workers. What Optuna lacks stays here:

- a retry of a trial stopped by Ctrl-C, which Optuna fails but does not retry
  (:meth:`_Worker.retry_interrupted`), and at once of one whose worker, a process of this
  machine, is gone: a journal has no heartbeat, SQL waits ``GRACE_S`` (:func:`_retry_dead_trials`);
- a trial counts when it starts (``MaxTrialsCallback`` counts after, so two workers may
  both start the last): a surplus one fails before it trains, and a worker waits for the
  others' last trials, so every worker returns the whole study;
- ``create_study(load_if_exists=True)`` hides which worker created the study; only that
  one may write its setup and enqueue trial 0 (:func:`_open_study`).

Trial runs: ``<artifacts>/runs/search-<name>-t<k>`` (``k``: the first attempt's number;
``-s<seed>`` with several seeds). ``<artifacts>/search/<name>/`` receives ``trials.csv``
and Optuna's plots; ``optuna-dashboard <storage>`` shows the study live.

    run_search("data/ESC-10", profile="cpu-cv", n_trials=16, name="cpu-cv-2026")
"""
from __future__ import annotations

import contextlib
import copy
import functools
import json
import os
import socket
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import optuna
import pandas as pd
from optuna.trial import TrialState

from .fileio import atomic_path, atomic_write_csv
from .profiles import Profile, get_profile

SEARCH_DIRNAME = "search"
STORAGE_NAME = "optuna.db"
KINDS = ("float", "log", "int", "choice")
HEARTBEAT_S, GRACE_S = 30, 120  # SQL storages: a RUNNING trial silent for GRACE_S is dead
POLL_S = 2.0  # how often a worker waiting for the others' last trials looks again
_CREATE_ATTEMPTS = 5
_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
_TAKEN = (*_FINISHED, TrialState.RUNNING, TrialState.WAITING)  # count against n_trials


@dataclass(frozen=True)
class Param:
    """One searched setting.

    Attributes:
        key: the override it sets, e.g. ``training.lr``; also the Optuna parameter's name.
        kind: ``float`` (uniform), ``log`` (uniform in log space), ``int`` or ``choice``.
        low, high: inclusive bounds for ``float``, ``log`` and ``int``.
        choices: the values for ``choice`` (None, bool, int, float or str).
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

    def suggest(self, trial) -> Any:
        """This setting's value for an Optuna ``trial`` (drawn by its sampler, or fixed)."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high))
        return trial.suggest_float(self.key, float(self.low), float(self.high), log=self.kind == "log")

    def describe(self) -> str:
        if self.kind == "choice":
            return f"{self.key} (one of {list(self.choices)})"
        return f"{self.key} ({self.kind} {self.low}..{self.high})"


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


class _Surplus(Exception):
    """A trial started after the study had its ``n_trials``: failed before it trains."""


class _Retry(optuna.storages.RetryHeartbeatStaleTrialCallback):
    """Optuna's retry of a failed trial, without its dead worker's id (the retry's worker
    writes its own, and until then no worker may take the retry for a dead one)."""

    def __call__(self, study, trial) -> None:
        trial = copy.deepcopy(trial)
        trial.user_attrs.pop("worker", None)
        super().__call__(study, trial)


def default_storage(artifacts_dir: str | Path) -> str:
    """``sqlite:///<artifacts_dir>/search/optuna.db`` (absolute)."""
    return f"sqlite:///{Path(artifacts_dir).expanduser().resolve() / SEARCH_DIRNAME / STORAGE_NAME}"


def open_storage(url: str):
    """An Optuna storage: an SQL URL (with a heartbeat and retries), or a journal file path."""
    if "://" not in url:  # a journal file, e.g. on a file system the machines share
        path = Path(url).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    engine_kwargs = {}  # workers wait for each other's SQLite writes
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs = {"connect_args": {"timeout": 60}}
    from sqlalchemy.exc import IntegrityError, OperationalError

    for attempt in range(_CREATE_ATTEMPTS):
        try:
            with warnings.catch_warnings():  # the heartbeat and the retry are marked experimental
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_S,
                    grace_period=GRACE_S, heartbeat_stale_trial_callback=_Retry())
        except (OperationalError, IntegrityError):
            # Workers started at once on a new database race to create its tables ("table
            # studies already exists", "UNIQUE constraint failed: alembic_version"); the
            # loser finds them on a retry. Another error is raised after the last attempt.
            if attempt == _CREATE_ATTEMPTS - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


def default_name(profile: str, folds: Sequence[int], seed: int) -> str:
    """The study's name when none is given: ``<profile>-folds<...>-seed<seed>``."""
    return f"{profile}-folds{''.join(map(str, sorted({int(f) for f in folds})))}-seed{seed}"


def _first_attempt(trial) -> int:
    """The number of a trial's first attempt (a retry carries it as ``retry_of``)."""
    return int(trial.user_attrs.get("retry_of", trial.number))


def _proposed_by(trial) -> str:
    """``profile``, ``random`` (TPE's start-up draws) or ``tpe``; ``origin`` in older studies."""
    return trial.user_attrs.get("proposed_by", trial.user_attrs.get("origin", "tpe"))


def _finished(trials) -> list:
    return [t for t in trials if t.state in _FINISHED]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        pass
    return True


def _retry_dead_trials(study, _finished_trial=None) -> None:
    """Fail, and enqueue the retry of, the RUNNING trials whose worker was a process of
    this machine that is gone. Also an Optuna callback (the second argument is unused)."""
    host = socket.gethostname()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = t.user_attrs.get("worker", {})
        if worker.get("host") == host and not _alive(worker["pid"]):
            try:
                study.tell(t.number, state=TrialState.FAIL)
            except (ValueError, RuntimeError):  # another worker did it first: it retries
                continue
            _Retry()(study, t)


def _trial_line(t, n_finished: int, n_trials: int, best: float | None) -> str:
    params = ", ".join(f"{k.split('.')[-1]}={format(v, '.3g') if isinstance(v, float) else v}"
                       for k, v in t.params.items())
    seconds = t.duration.total_seconds() if t.duration else float("nan")
    head = f"trial {t.number} ({n_finished} of {n_trials}, {_proposed_by(t)}"
    head += f", resumes trial {t.user_attrs['retry_of']}" if "retry_of" in t.user_attrs else ""
    if t.state == TrialState.PRUNED:
        step, value = max(t.intermediate_values.items())
        return (f"{head}): {params} -> pruned after {step + 1} of {t.user_attrs['n_steps']} folds "
                f"(mean so far {value:.3f}; {seconds:.0f} s)")
    seeds = t.user_attrs.get("seed_scores")
    per_seed = f" = mean of {', '.join(f'{x:.3f}' for x in seeds)}" if seeds else ""
    return f"{head}): {params} -> {t.value:.3f}{per_seed} (best so far {best:.3f}; {seconds:.0f} s)"


def trials_frame(study) -> pd.DataFrame:
    """The finished trials of a study, the complete ones best first, then the pruned.

    Columns: ``trial``, ``state`` (``complete``/``pruned``), ``proposed_by`` (``profile``,
    ``random`` for TPE's start-up draws, or ``tpe``), ``retry_of`` (the trial it resumed,
    or -1), ``score`` (pruned: NaN), ``folds_done``, ``partial`` (the last mean reported),
    ``val_mean``, ``seconds`` (this attempt), ``run_dir``, one column per searched setting.
    """
    cols = ["trial", "state", "proposed_by", "retry_of", "score", "folds_done", "partial",
            "val_mean", "seconds", "run_dir"]
    rows = []
    for t in _finished(study.get_trials(deepcopy=False)):
        last = t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else np.nan
        rows.append({"trial": t.number, "state": t.state.name.lower(),
                     "proposed_by": _proposed_by(t),
                     "retry_of": int(t.user_attrs.get("retry_of", -1)),
                     "score": t.value if t.state == TrialState.COMPLETE else np.nan,
                     "folds_done": len(t.intermediate_values), "partial": last,
                     "val_mean": t.user_attrs.get("val_mean", np.nan),
                     "seconds": t.duration.total_seconds() if t.duration else np.nan,
                     "run_dir": t.user_attrs.get("run_dir", ""), **t.params})
    if not rows:
        return pd.DataFrame(columns=cols)
    # pruned trials have no score: they come last, by number
    return pd.DataFrame(rows).sort_values(["score", "trial"], ascending=[False, True],
                                          na_position="last", ignore_index=True)


def time_saved(table: pd.DataFrame) -> float:
    """Estimated seconds the pruner saved: for each pruned trial, the mean duration of the
    complete trials that ran whole (not resumed; all complete ones if none) minus its own."""
    complete = table[table["state"] == "complete"]
    whole = complete[complete["retry_of"] < 0]
    mean = (whole if len(whole) else complete)["seconds"].mean()
    pruned = table.loc[table["state"] == "pruned", "seconds"]
    return float(np.clip(mean - pruned, 0, None).sum()) if len(pruned) and len(complete) else 0.0


def save_plots(study, out_dir: str | Path) -> list[Path]:
    """Optuna's optimisation history, intermediate values and (with 4 or more complete
    trials) parameter importances as PNG files in ``out_dir``; returns those written."""
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as ovm

    plots = {"optimization_history": ovm.plot_optimization_history,
             "intermediate_values": ovm.plot_intermediate_values}
    if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) >= 4:
        plots["param_importances"] = ovm.plot_param_importances
    written = []
    for name, plot in plots.items():
        # rc_context: Optuna's plots switch the global style, which must not outlive them
        with warnings.catch_warnings(), plt.rc_context():
            warnings.simplefilter("ignore")  # the matplotlib backend is marked experimental
            try:
                ax = plot(study)
            except (ValueError, RuntimeError, ZeroDivisionError):  # e.g. importances of equal scores
                continue
            fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
            fig.set_size_inches(8, 5)
            with atomic_path(Path(out_dir) / f"{name}.png") as tmp:
                fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
            plt.close(fig)
        written.append(Path(out_dir) / f"{name}.png")
    return written


def _checked(data_dir, base: Profile, space: Sequence[Param], folds: Sequence[int], seeds: int,
             subset: str):
    """``(space, folds, start)``: the space as a tuple, the folds sorted, and trial 0 (the
    profile's own value of each searched setting). ValueError for what a search refuses."""
    from .packs import load_table

    space, folds = tuple(space), sorted({int(f) for f in folds})
    if not space:
        raise ValueError("space is empty: give at least one Param to search")
    if seeds < 1:
        raise ValueError(f"seeds={seeds}: give 1 or more runs per trial")
    all_folds = sorted(int(f) for f in load_table(data_dir, subset=subset)["fold"].unique())
    if not set(all_folds) - set(folds):
        raise ValueError(
            f"folds={folds} cover every fold of {data_dir}: the search would choose on the "
            f"folds it is later tested on; leave at least one out (e.g. folds={all_folds[:-1]})")
    start = {}
    for p in space:
        section, _, field_name = p.key.partition(".")
        get_profile(base, {p.key: p.choices[0] if p.kind == "choice" else p.low})  # names a bad key
        start[p.key] = getattr(getattr(base, section), field_name)
    return space, folds, start


def _open_study(url: str, name: str, *, setup: dict, start: dict):
    """Create the study (setup, then trial 0 enqueued) or load it and check its setup."""
    storage = open_storage(url)
    below, after = setup["prune_below"], setup["prune_after"]
    pruner = (optuna.pruners.PercentilePruner(100.0 - below, n_startup_trials=after) if below > 0
              else optuna.pruners.NopPruner())
    try:
        study = optuna.create_study(study_name=name, storage=storage, direction="maximize",
                                    pruner=pruner)
        study.set_user_attr("setup", setup)
        study.enqueue_trial(start, user_attrs={"proposed_by": "profile"})
        return study
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=storage, pruner=pruner)
    deadline = time.monotonic() + 60
    while "setup" not in study.user_attrs or not study.get_trials(deepcopy=False):
        if time.monotonic() > deadline:  # the creator died between its first writes
            raise ValueError(f"study {name!r} holds no setup or no trial; delete it (optuna "
                             f"delete-study --study-name {name} --storage URL) or pass another name")
        time.sleep(0.2)
    old = study.user_attrs["setup"]
    diff = [k for k in setup if k != "data_dir" and old.get(k) != setup[k]]
    if diff:
        raise ValueError(f"study {name!r} holds a search with other settings (differs in {diff}); "
                         "pass another name, or delete the study to start over")
    return study


@dataclass
class _Worker:
    """This process's share of a study: it runs trials until the study has ``n_trials``
    finished ones (its own and other workers')."""

    train: Callable[..., Any]  # run_experiment, with the data, folds and profile bound
    space: tuple[Param, ...]
    n_trials: int
    n_initial: int
    folds: list[int]
    seed: int
    seeds: int
    name: str
    log: Callable[[str], None] | None
    current: int | None = None  # the number of the trial this worker runs

    def run(self, study) -> None:
        """Run trials while some are left to start, else wait for the other workers' last."""
        from .training import TrainingDivergedError

        stop = optuna.study.MaxTrialsCallback(self.n_trials, states=_TAKEN)
        waiting_said = False
        while True:
            _retry_dead_trials(study)
            optuna.storages.fail_stale_trials(study)  # Optuna does it before a trial only
            trials = study.get_trials(deepcopy=False)
            if len(_finished(trials)) >= self.n_trials:
                return
            if any(t.state == TrialState.WAITING for t in trials) or \
                    sum(t.state in _TAKEN for t in trials) < self.n_trials:
                try:
                    study.optimize(self.objective, catch=(_Surplus, TrainingDivergedError),
                                   callbacks=[self.report, _retry_dead_trials, stop],
                                   gc_after_trial=False)
                except KeyboardInterrupt:
                    self.retry_interrupted(study)
                    raise
                waiting_said = False
            else:  # the last trials run in other workers; one that dies is retried here
                if self.log and not waiting_said:
                    running = [t.number for t in trials if t.state == TrialState.RUNNING]
                    self.log(f"waiting for trial(s) {running}, running in other workers")
                waiting_said = True
                time.sleep(POLL_S)

    def retry_interrupted(self, study) -> None:
        """After Ctrl-C (Optuna fails the trial): enqueue the retry a stale heartbeat would get."""
        t = study.get_trials(deepcopy=False)[self.current] if self.current is not None else None
        if t is not None and t.state == TrialState.FAIL and \
                not {"error", "surplus"} & t.user_attrs.keys():
            _Retry()(study, t)

    def objective(self, trial) -> float:
        """Train the trial's runs, one per seed, each reporting its inner folds (validation
        data) to the pruner; the trial's value is the mean of their pooled accuracies."""
        from .experiment import RUNS_DIRNAME

        self.current = trial.number
        params, done, runs = self._start(trial), [], []

        def report(index: int, split: dict) -> None:
            done.append(split["test_accuracy"])
            trial.report(float(np.mean(done)), len(done) - 1)
            if trial.should_prune():
                raise optuna.TrialPruned(f"mean {np.mean(done):.3f} after {len(done)} folds")

        try:
            for run_seed in range(self.seed, self.seed + self.seeds):
                run_name = f"search-{self.name}-t{_first_attempt(trial):03d}"  # a retry's too
                run_name += f"-s{run_seed}" if self.seeds > 1 else ""
                trial.set_user_attr("run_dir", str(Path(RUNS_DIRNAME) / run_name))
                runs.append(self.train(overrides=params, seed=run_seed, run_name=run_name,
                                       on_split=report))
        except Exception as exc:  # an error is not retried: the same settings would fail again
            if not isinstance(exc, optuna.TrialPruned):
                trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:500])
            raise
        splits = [s for run in runs for s in run.metrics["splits"]]
        trial.set_user_attr("val_mean", float(np.mean([s["val_accuracy"] for s in splits])))
        trial.set_user_attr("per_fold", {str(f): float(np.mean(
            [s["test_accuracy"] for s in splits if s["test_fold"] == f])) for f in self.folds})
        scores = [float(run.metrics["overall_accuracy"]) for run in runs]
        if self.seeds > 1:
            trial.set_user_attr("seed_scores", scores)
            trial.set_user_attr("run_dirs", [str(Path(RUNS_DIRNAME) / r.run_dir.name) for r in runs])
        return float(np.mean(scores))

    def _start(self, trial) -> dict[str, Any]:
        """Claim the trial for this worker and draw its settings (a retry keeps its own)."""
        trial.set_user_attr("worker", {"host": socket.gethostname(), "pid": os.getpid()})
        trials = trial.study.get_trials(deepcopy=False)  # a study's trials, by number
        retry_of = _Retry.retried_trial_number(trials[trial.number])
        if retry_of is not None:
            trial.set_user_attr("retry_of", retry_of)
        if sum(t.state != TrialState.FAIL for t in trials[:trial.number]) >= self.n_trials:
            trial.set_user_attr("surplus", True)
            raise _Surplus(f"trial {trial.number}: the study had its {self.n_trials} trials")
        # before any draw: TPE seeded with (seed, trial number), so workers share no stream
        trial_seed = int(np.random.SeedSequence([self.seed, trial.number]).generate_state(1)[0])
        trial.study.sampler = optuna.samplers.TPESampler(seed=trial_seed,
                                                         n_startup_trials=self.n_initial)
        params = {p.key: p.suggest(trial) for p in self.space}
        trial.set_user_attr("n_steps", self.seeds * len(self.folds))
        if not {"proposed_by", "origin"} & trial.user_attrs.keys():  # random until n_initial
            trial.set_user_attr("proposed_by",
                                "tpe" if len(_finished(trials)) >= self.n_initial else "random")
        return params

    def report(self, study, frozen) -> None:
        """An Optuna callback: one line per trial this worker finished or lost to an error."""
        if self.log and frozen.state in _FINISHED:
            trials = study.get_trials(deepcopy=False)
            best = max((t.value for t in trials if t.state == TrialState.COMPLETE), default=None)
            self.log(_trial_line(frozen, len(_finished(trials)), self.n_trials, best))
        elif self.log and "error" in frozen.user_attrs:
            self.log(f"trial {frozen.number} failed ({frozen.user_attrs['error']}); "
                     "another takes its place")


def run_search(
    data_dir: str | Path, *, profile: str = "cpu-cv", space: Sequence[Param] = DEFAULT_SPACE,
    n_trials: int = 16, n_initial: int = 5, folds: Sequence[int] = (1, 2, 3, 4), seed: int = 0,
    seeds: int = 1, name: str | None = None, artifacts_dir: str | Path = "artifacts",
    storage: str | None = None, overrides: dict[str, Any] | None = None, subset: str = "all",
    keep_last_checkpoints: bool = False, prune_below: float = 25.0, prune_after: int = 4,
    track: bool = False, log: Callable[[str], None] | None = print,
    train: Callable[..., Any] | None = None,
) -> pd.DataFrame:
    """Run (or join, or resume) the search's study until it has ``n_trials`` finished trials.

    Args:
        data_dir: dataset root (``meta/esc50.csv`` and ``audio/``) or a feature pack.
        profile: the recipe searched around (trial 0); ``overrides`` apply to every trial.
        space: the settings searched (override keys of ``profile``).
        n_trials: finished (complete or pruned) trials in all, earlier and other workers' too.
        n_initial: trials TPE draws at random (the profile's own counts).
        folds: the search folds; leave at least one fold of the data out, unseen.
        seed: the training seed of every trial, and the sampler's; ``seeds`` runs per trial
            (``seed``, ``seed + 1``, ...) score it by their mean.
        name: the study's name and folder under ``<artifacts>/search/`` (:func:`default_name`).
        storage: an Optuna storage URL or a journal file path (:func:`default_storage`).
        prune_below: prune a trial whose mean over its folds so far is below this percentile
            of the finished trials' at the same fold (0: never), after ``prune_after``
            finished trials.
        track: log every trial run to MLflow (:mod:`esc50kit.tracking`).
        log: called with one line per trial this worker finishes (None: silent).
        train: stands in for :func:`esc50kit.experiment.run_experiment` (tests).

    Returns:
        pd.DataFrame: :func:`trials_frame` of the study.

    Raises:
        ValueError: the folds cover the whole dataset, a space key is not a setting of
            the profile, or the study holds a search with other settings.
    """
    from .experiment import run_experiment

    base = get_profile(profile, overrides)
    space, folds, start = _checked(data_dir, base, space, folds, seeds, subset)
    name = name or default_name(base.name, folds, seed)
    setup = json.loads(json.dumps(dict(  # what a rerun and every worker must share
        profile=base.to_dict(), space=[{**asdict(p), "choices": list(p.choices)} for p in space],
        folds=folds, seed=seed, seeds=seeds, subset=subset, n_initial=n_initial,
        prune_below=prune_below, prune_after=prune_after,
        data_dir=str(Path(data_dir).expanduser().resolve())), default=str))
    train = functools.partial(train or run_experiment, data_dir, artifacts_dir=artifacts_dir,
                              mode="cv", profile=base, progress=False, subset=subset, folds=folds,
                              keep_last_checkpoints=keep_last_checkpoints, track=track)
    with _quiet_optuna():
        study = _open_study(storage or default_storage(artifacts_dir), name, setup=setup,
                            start=start)
        _Worker(train, space, n_trials, n_initial, folds, seed, seeds, name, log).run(study)
    out, table = Path(artifacts_dir) / SEARCH_DIRNAME / name, trials_frame(study)
    atomic_write_csv(table, out / "trials.csv")
    save_plots(study, out)
    return table


@contextlib.contextmanager
def _quiet_optuna():
    """Optuna's info lines (this module prints its own) and experimental warnings off."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(verbosity)
