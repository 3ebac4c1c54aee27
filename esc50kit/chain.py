"""The papermill chain: run the four notebooks in order and render them as reports.

Each notebook reads what the previous one wrote under one artifacts folder and receives
only the parameters its ``parameters`` cell declares. The executed notebooks and their
HTML go to the report folder; the chain stops at the first failing cell, naming the
notebook and the cell, and keeps the executed notebook that shows the error.
"""
from __future__ import annotations

import functools
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .fileio import atomic_path, atomic_write_json, atomic_write_text

NOTEBOOKS = ("01_EDA", "02_Preprocessing", "03_Modeling", "04_Evaluation")
NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
KERNEL_NAME = "python3"


class ChainError(RuntimeError):
    """A notebook of the chain failed; the message names the notebook and the cell."""

    def __init__(self, message: str, *, notebook: str, cell: int | None, output: Path):
        super().__init__(message)
        self.notebook, self.cell, self.output = notebook, cell, output


@dataclass
class ChainResult:
    """What a chain run produced."""

    out_dir: Path
    notebooks: list[Path] = field(default_factory=list)
    html: list[Path] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    summary: dict = field(default_factory=dict)


def render_html(notebook: Path, html: Path) -> Path:
    """Render an executed notebook to a standalone HTML file."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(str(notebook), as_version=4)
    body, _ = HTMLExporter().from_notebook_node(nb)
    atomic_write_text(html, body)
    return html


def error_cells(notebook: Path) -> list[int]:
    """Indices of code cells whose outputs hold an error (empty for a clean report)."""
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    return [i for i, c in enumerate(nb.cells) if c.cell_type == "code"
            and any(o.get("output_type") == "error" for o in c.get("outputs", []))]


def portable_path(path: Path, start: Path) -> str:
    """``path`` relative to ``start`` where it can be (another drive on Windows: absolute)."""
    try:
        return os.path.relpath(path, start)
    except ValueError:
        return str(path)


def _relative_papermill_paths(notebook: Path) -> None:
    """Papermill records its input and output paths absolute; keep them relative to the
    working directory instead, so a committed report names no machine's folders."""
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    meta = nb.metadata.get("papermill", {})
    for key in ("input_path", "output_path"):
        if meta.get(key) and Path(meta[key]).is_absolute():
            meta[key] = portable_path(Path(meta[key]), Path.cwd())
    with atomic_path(notebook) as tmp:
        nbformat.write(nb, tmp)


def run_chain(
    *, data_dir: str | Path, profile: str = "quick", out_dir: str | Path = "reports/latest",
    artifacts_dir: str | Path = "artifacts", parameters: dict | None = None,
    notebooks: tuple[str, ...] = NOTEBOOKS, notebook_dir: str | Path = NOTEBOOK_DIR,
    html: bool = True, cell_timeout: int | None = None, log=None,
) -> ChainResult:
    """Execute the notebooks in order with papermill and render each to HTML.

    Args:
        out_dir: report folder for the executed notebooks, their HTML and the summary.
        artifacts_dir: folder the notebooks share (features, runs).
        parameters: any other notebook parameter; each notebook receives those it declares.
        notebook_dir: where the source notebooks are; they also run in this folder.
        cell_timeout: seconds a cell may run (None: no limit).
        log: called with one progress line per notebook (default: print, flushed).

    Returns:
        ChainResult: the files written, seconds per notebook, and the summary.

    Raises:
        ChainError: a cell failed; names the notebook and the cell.
        ValueError: a parameter that no notebook declares, or a missing notebook.
    """
    log = log or functools.partial(print, flush=True)
    notebook_dir, out_dir = Path(notebook_dir).resolve(), Path(out_dir).resolve()
    data_abs, artifacts_abs = (Path(p).expanduser().resolve() for p in (data_dir, artifacts_dir))
    # Paths relative to the folder the notebooks run in: reports carry no machine's paths.
    # Headless: widgets show their static version and progress bars stay quiet.
    common = {"data_dir": portable_path(data_abs, notebook_dir), "profile": profile,
              "artifacts_dir": portable_path(artifacts_abs, notebook_dir),
              "interactive": False, "progress": False}
    extra = dict(parameters or {})
    sources = [notebook_dir / f"{name}.ipynb" for name in notebooks]
    declared = _declared_parameters(sources, extra, notebooks=notebooks)
    _preflight(data_abs, profile, extra)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = ChainResult(out_dir=out_dir)
    t_chain = time.perf_counter()
    for i, src in enumerate(sources, 1):
        log(f"[{i}/{len(sources)}] {src.stem} ...")
        params = {k: v for k, v in {**common, **extra}.items() if k in declared[src.stem]}
        out = _run_and_render(src, out_dir, params, result, cwd=notebook_dir, html=html,
                              cell_timeout=cell_timeout)
        log(f"[{i}/{len(sources)}] {src.stem} done in {result.seconds[src.stem]:.1f} s -> {out}")
    result.summary = write_summary(
        out_dir, data_dir=str(data_abs), artifacts_dir=str(artifacts_abs), profile=profile,
        parameters=extra, seconds=result.seconds, total_seconds=time.perf_counter() - t_chain)
    return result


def _declared_parameters(sources: list[Path], extra: dict, *,
                         notebooks: tuple[str, ...]) -> dict[str, dict]:
    """Each notebook's declared parameters (name -> papermill's description of each).

    Raises:
        ValueError: a notebook is missing, or a parameter of ``extra`` is declared by none.
    """
    import papermill as pm

    for src in sources:
        if not src.is_file():
            raise ValueError(f"notebook {src} not found; the chain runs {list(notebooks)}")
    declared = {src.stem: dict(pm.inspect_notebook(str(src))) for src in sources}
    known = set().union(*[set(d) for d in declared.values()])
    unknown = set(extra) - known
    if unknown:
        raise ValueError(f"parameter(s) {sorted(unknown)} are declared by none of the notebooks; "
                         f"known: {sorted(known)}")
    return declared


def _run_and_render(src: Path, out_dir: Path, params: dict, result: ChainResult, *, cwd: Path,
                    html: bool, cell_timeout: int | None) -> Path:
    """Execute one notebook into ``out_dir`` and render it (also when it fails, to show
    the error); record its seconds and files in ``result``. Returns the executed notebook."""
    import papermill as pm

    out = out_dir / f"{src.stem}.ipynb"
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(str(src), str(out), parameters=params, kernel_name=KERNEL_NAME,
                            cwd=str(cwd), progress_bar=False, log_output=False,
                            execution_timeout=cell_timeout)
    except pm.PapermillExecutionError as exc:
        raise ChainError(
            f"notebook {src.stem} failed at cell {exc.exec_count} (cell index "
            f"{exc.cell_index}): {exc.ename}: {exc.evalue}\n  the executed notebook that shows "
            f"it: {out}", notebook=src.stem, cell=exc.cell_index, output=out) from exc
    finally:
        if out.is_file():
            _relative_papermill_paths(out)
        result.seconds[src.stem] = round(time.perf_counter() - t0, 1)
        if html and out.is_file():
            result.html.append(render_html(out, out.with_suffix(".html")))
    result.notebooks.append(out)
    return out


def _preflight(data_dir: Path, profile: str, params: dict) -> None:
    """Refuse, before the first notebook, a dataset or split whose chain could not run or
    whose score would mean nothing (the checks of notebook 03's training).

    Raises:
        DatasetError: the table or tree is not usable.
        SplitError: a split of the run's mode is empty or degenerate.
    """
    from .data import class_names, load_metadata
    from .profiles import get_profile
    from .splits import checked_splits

    df = load_metadata(data_dir)
    mode = params.get("mode") or get_profile(profile, params.get("overrides") or None).mode
    checked_splits(df, mode, class_names=class_names(df),
                   cross_fold=params.get("cross_fold", "allow"), source=str(data_dir))


def write_summary(out_dir: Path, *, data_dir: str, artifacts_dir: str, profile: str,
                  parameters: dict, seconds: dict[str, float], total_seconds: float) -> dict:
    """Write ``summary.json`` and ``summary.md``: dataset, profile, accuracy (with the run's
    ``warnings`` next to it, when its score means little), times."""
    from .data import load_metadata, summarize
    from .experiment import default_run_name

    summary: dict = {
        "data_dir": portable_path(Path(data_dir), Path.cwd()),
        "dataset": str(summarize(load_metadata(data_dir, check_audio=False))),
        "profile": profile, "parameters": parameters, "seconds_per_notebook": seconds,
        "total_seconds": round(total_seconds, 1), "python": sys.version.split()[0],
    }
    run_name = parameters.get("run_name") or default_run_name(
        profile, data_dir, cross_fold=parameters.get("cross_fold", "allow"))
    summary.update(_run_metrics(Path(artifacts_dir), run_name))
    atomic_write_json(out_dir / "summary.json", summary)
    lines = ["# esc50kit run summary", "",
             f"- dataset: {summary['dataset']} ({summary['data_dir']})", f"- profile: {profile}"]
    if summary.get("accuracy") is not None:
        lines.append(f"- {summary['scored_role']} accuracy: {summary['accuracy']:.1%}"
                     + (f" (mean over folds {summary['cv_mean']:.1%} +- {summary['cv_std']:.1%})"
                        if summary.get("cv_mean") is not None else ""))
        lines += [f"- WARNING: {w}" for w in summary.get("warnings", [])]
    lines.append(f"- total time: {summary['total_seconds']:.0f} s "
                 + "(" + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()) + ")")
    atomic_write_text(out_dir / "summary.md", "\n".join(lines) + "\n")
    return summary


def _run_metrics(artifacts_dir: Path, run_name: str) -> dict:
    """Accuracy figures of the run the chain trained, if it left its metrics."""
    from .experiment import score_warnings
    from .run_folder import RunFolder

    run = RunFolder.named(artifacts_dir, run_name)
    metrics = run.metrics()
    if metrics is None:
        return {}
    acc = metrics.get("accuracy", {})
    several = acc.get("n", 0) > 1
    return {"run_dir": portable_path(run.path, Path.cwd()),
            "scored_role": metrics.get("scored_role"), "accuracy": metrics.get("overall_accuracy"),
            "cv_mean": acc.get("mean") if several else None,
            "cv_std": acc.get("std") if several else None,
            "macro_f1": metrics.get("overall_macro_f1"),
            "warnings": score_warnings(metrics)}  # why the score means little; [] if sound
