"""What a run folder already holds, said before training, and how to start afresh.

:func:`esc50kit.experiment.run_experiment` resumes a run folder of the same name: a
finished run is read back without training, an interrupted one continues from its
checkpoints. Notebook 03 says which will happen, so that a student who runs it to watch
a model train is never shown old numbers in silence, and :func:`set_aside` starts a run
afresh without deleting the old one.

    print(describe_run_folder(run_dir))   # "Reusing the finished run ... (no training)"
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path


def _state(run_dir: Path) -> tuple[str, list[str], list[str]]:
    """("new" | "finished" | "partial", finished split names, all split names)."""
    config_path = run_dir / "config.json"
    if not config_path.is_file():
        return "new", [], []
    try:
        config = json.loads(config_path.read_text())
    except ValueError:
        return "partial", [], []
    names = [s["name"] for s in config.get("splits", [])]
    done = [n for n in names if (run_dir / n / "metrics.json").is_file()]
    return ("finished" if (run_dir / "metrics.json").is_file() else "partial"), done, names


def describe_run_folder(run_dir: str | Path, *, retrain_hint: str = "set retrain = True") -> str:
    """One paragraph: will training happen in ``run_dir``, and how to train afresh.

    Args:
        run_dir: the folder :func:`~esc50kit.experiment.run_experiment` will write.
        retrain_hint: how the reader asks for a fresh run (the notebook's parameter).
    """
    run_dir = Path(run_dir)
    state, done, names = _state(run_dir)
    if state == "new":
        return f"Training a new run into {run_dir} (progress below, one bar per split)."
    afresh = (f"To train afresh, {retrain_hint} (the old folder is kept, renamed) or choose "
              "another run_name (give notebook 04 the same one).")
    if state == "finished":
        metrics = json.loads((run_dir / "metrics.json").read_text())
        acc = metrics.get("accuracy", {})
        score = (f", {metrics.get('scored_role', 'test')} accuracy {acc['mean']:.1%}"
                 if isinstance(acc.get("mean"), float) else "")
        when = datetime.fromtimestamp((run_dir / "metrics.json").stat().st_mtime, timezone.utc)
        return (f"Reusing the finished run {run_dir} (finished {when:%Y-%m-%d %H:%M} UTC{score}): "
                f"nothing is trained below; its results are read back. {afresh}")
    left = [n for n in names if n not in done]
    return (f"Resuming the interrupted run {run_dir}: {len(done)} of {len(names)} split(s) "
            f"finished; training {', '.join(left) or 'the rest'} from its last checkpoint. {afresh}")


def set_aside(run_dir: str | Path) -> Path | None:
    """Rename an existing ``run_dir`` to ``<name>.replaced-<UTC time>`` so a run starts afresh.

    Returns:
        the new path of the old folder, or None when there was none.
    """
    run_dir = Path(run_dir)
    if not run_dir.exists():
        return None
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    target = run_dir.with_name(f"{run_dir.name}.replaced-{stamp}")
    n = 1
    while target.exists():
        target = run_dir.with_name(f"{run_dir.name}.replaced-{stamp}-{n}")
        n += 1
    run_dir.rename(target)
    return target
