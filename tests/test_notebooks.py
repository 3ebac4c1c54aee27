"""The notebooks: committed clean, and the papermill chain runs them headless end to end."""
from __future__ import annotations

import ast
import re
import json
import os
import shutil
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from esc50kit.chain import NOTEBOOK_DIR, NOTEBOOKS, ChainError, error_cells, run_chain

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def _sources():
    return sorted(NOTEBOOK_DIR.glob("*.ipynb"))


def test_every_chain_notebook_exists():
    assert [p.stem for p in _sources()] == list(NOTEBOOKS)


@pytest.mark.parametrize("path", _sources(), ids=lambda p: p.stem)
def test_source_notebook_is_committed_without_outputs(path):
    nb = nbformat.read(str(path), as_version=4)
    dirty = [i for i, c in enumerate(nb.cells)
             if c.cell_type == "code" and (c.outputs or c.execution_count is not None)]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs; clear them before committing"


@pytest.mark.parametrize("path", _sources(), ids=lambda p: p.stem)
def test_notebook_ends_with_a_recap_and_hinted_exercises(path):
    nb = nbformat.read(str(path), as_version=4)
    text = [c.source for c in nb.cells if c.cell_type == "markdown"]
    exercises = [t for t in text if t.startswith("## Exercises")]
    assert len(exercises) == 1, f"{path.name}: one '## Exercises' cell"
    items = [line for line in exercises[0].splitlines() if line[:2] in {f"{i}." for i in range(1, 10)}]
    assert 3 <= len(items) <= 5, f"{path.name}: 3-5 exercises, found {len(items)}"
    assert exercises[0].count("*Hint:*") >= len(items), f"{path.name}: every exercise has a hint"
    assert "**Read more.**" in "".join(text) and "](http" in "".join(text), f"{path.name}: links to the papers"
    # solutions are markdown (collapsed), so papermill never runs them
    assert any(t.startswith("<details><summary>") for t in text[text.index(exercises[0]):])


@pytest.mark.parametrize("path", _sources(), ids=lambda p: p.stem)
def test_each_idea_shown_by_hand_is_checked_against_the_package(path):
    """The notebook's plain-code version of an idea asserts it equals the package's."""
    nb = nbformat.read(str(path), as_version=4)
    checks = [c.source for c in nb.cells
              if c.cell_type == "code" and re.search(r"^\s*assert ", c.source, re.MULTILINE)]
    assert checks, f"{path.name}: no code cell checks its by-hand version against esc50kit"
    assert all("esc50kit" in c or "evaluation." in c or "soft_cross_entropy" in c for c in checks)


@pytest.mark.parametrize("path", _sources(), ids=lambda p: p.stem)
def test_parameters_cell_holds_typed_literals_only(path):
    nb = nbformat.read(str(path), as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: exactly one cell must be tagged 'parameters'"
    for stmt in ast.parse(tagged[0].source).body:
        assert isinstance(stmt, ast.AnnAssign), f"{path.name}: {ast.unparse(stmt)} is not `name: type = literal`"
        ast.literal_eval(stmt.value)  # raises for anything computed
    names = {s.target.id for s in ast.parse(tagged[0].source).body}
    assert {"data_dir", "artifacts_dir", "profile", "seed", "interactive", "progress"} <= names


def test_unknown_parameter_is_refused(synthetic_root, tmp_path):
    with pytest.raises(ValueError, match="no_such_parameter"):
        run_chain(data_dir=synthetic_root, out_dir=tmp_path / "r", artifacts_dir=tmp_path / "a",
                  parameters={"no_such_parameter": 1})


@pytest.fixture(scope="module")
def chain(synthetic_root, tmp_path_factory):
    """The whole chain, headless, on the synthetic tree with the seconds-long profile,
    two seeds and a student per split (as the cpu-esc50 recipe trains)."""
    base = tmp_path_factory.mktemp("chain")
    # laid out like a checkout (notebooks/, artifacts/, reports/) and run from its top,
    # as `make reports` does, so the reports' relative paths can be checked
    shutil.copytree(NOTEBOOK_DIR, base / "notebooks")
    here = os.getcwd()
    os.chdir(base)
    try:
        result = run_chain(
            data_dir=synthetic_root, profile="tiny", out_dir="reports", artifacts_dir="artifacts",
            notebook_dir="notebooks",
            parameters={"demo_epochs": 2, "mode": "final", "workers": 2,
                        "overrides": {"seeds": 2, "student": 0.5}},
        )
    finally:
        os.chdir(here)
    return base, result


@pytest.mark.slow
def test_chain_writes_four_clean_reports(chain):
    base, result = chain
    assert [p.name for p in result.notebooks] == [f"{n}.ipynb" for n in NOTEBOOKS]
    for nb_path in result.notebooks:
        assert error_cells(nb_path) == [], nb_path.name
        html = nb_path.with_suffix(".html")
        assert html.is_file() and html.stat().st_size > 10_000
    summary = json.loads((base / "reports" / "summary.json").read_text())
    assert 0.0 <= summary["accuracy"] <= 1.0
    assert summary["profile"] == "tiny"
    assert "accuracy" in (base / "reports" / "summary.md").read_text()
    for nb_path in result.notebooks[2:]:  # 03 and 04 show each model beside the ensemble
        nb = nbformat.read(str(nb_path), as_version=4)
        shown = [o["data"]["text/html"] for c in nb.cells for o in c.get("outputs", [])
                 if "text/html" in o.get("data", {})]
        assert any("seed 0" in h and "seed 1" in h and "student" in h and "ensemble" in h
                   for h in shown), nb_path.name
    text = [o["data"]["text/markdown"] for c in nbformat.read(
        str(result.notebooks[3]), as_version=4).cells for o in c.get("outputs", [])
        if "text/markdown" in o.get("data", {})]
    assert any("The student model alone" in t for t in text)  # 04 names the model predict uses


@pytest.mark.slow
def test_reports_name_no_machine_specific_folders(chain, synthetic_root):
    """Paths in the reports are relative (to the notebooks' folder or the working
    directory), so a committed report does not carry the folders of the machine it ran on."""
    base, result = chain
    for path in [*result.notebooks, base / "reports" / "summary.md", base / "reports" / "summary.json"]:
        text = path.read_text()
        # the tests' temporary root holds both base and the data; pandas cuts long cells
        for folder in (synthetic_root.parent.parent, Path(__file__).resolve().parents[1]):
            assert str(folder) not in text, f"{path.name} names {folder}"
    params = nbformat.read(str(result.notebooks[2]), as_version=4).metadata["papermill"]["parameters"]
    assert not Path(params["data_dir"]).is_absolute() and not Path(params["artifacts_dir"]).is_absolute()


@pytest.mark.slow
def test_headless_widgets_show_their_static_version(chain):
    _, result = chain
    for nb_path in result.notebooks:
        nb = nbformat.read(str(nb_path), as_version=4)
        for cell in nb.cells:
            for out in cell.get("outputs", []):
                assert WIDGET_MIME not in out.get("data", {}), f"live widget in {nb_path.name}"
    eda = nbformat.read(str(result.notebooks[0]), as_version=4)
    audio = [o for c in eda.cells for o in c.get("outputs", [])
             if "<audio" in o.get("data", {}).get("text/html", "")]
    assert 1 <= len(audio) <= 4  # a few players, not one per clip


@pytest.mark.slow
def test_a_notebook_reruns_alone_from_the_artifacts(chain, synthetic_root):
    base, _ = chain
    again = run_chain(data_dir=synthetic_root, profile="tiny", out_dir=base / "rerun",
                      artifacts_dir=base / "artifacts", notebooks=("04_Evaluation",),
                      parameters={"protocol_demo": False})
    assert error_cells(again.notebooks[0]) == []


def test_a_missing_dataset_is_refused_before_any_notebook(tmp_path):
    from esc50kit.data import DatasetError

    with pytest.raises(DatasetError, match="no-data"):
        run_chain(data_dir=tmp_path / "no-data", out_dir=tmp_path / "r",
                  artifacts_dir=tmp_path / "a", html=False)
    assert not (tmp_path / "r").exists()


def test_a_split_that_would_mean_nothing_is_refused_before_any_notebook(writable_root, tmp_path):
    from esc50kit.splits import SplitError

    csv = writable_root / "meta" / "esc50.csv"
    meta = pd.read_csv(csv)
    meta[meta["fold"] != 5].to_csv(csv, index=False)  # final mode without its test fold
    with pytest.raises(SplitError, match="test fold 5 holds no clips"):
        run_chain(data_dir=writable_root, profile="tiny", out_dir=tmp_path / "r",
                  artifacts_dir=tmp_path / "a", parameters={"mode": "final"}, html=False)
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_a_failing_cell_stops_the_chain_and_names_it(synthetic_root, tmp_path):
    notebooks = tmp_path / "notebooks"
    shutil.copytree(NOTEBOOK_DIR, notebooks)
    eda = json.loads((notebooks / "01_EDA.ipynb").read_text())
    at = next(i for i, c in enumerate(eda["cells"]) if "parameters" in c["metadata"].get("tags", []))
    eda["cells"].insert(at + 2, {"cell_type": "code", "id": "planted", "metadata": {}, "execution_count": None,
                                 "outputs": [], "source": ["raise RuntimeError('planted failure')"]})
    (notebooks / "01_EDA.ipynb").write_text(json.dumps(eda))
    with pytest.raises(ChainError) as err:
        run_chain(data_dir=synthetic_root, profile="tiny", out_dir=tmp_path / "r",
                  artifacts_dir=tmp_path / "a", notebook_dir=notebooks, html=False)
    assert err.value.notebook == "01_EDA"
    assert "01_EDA" in str(err.value) and "planted failure" in str(err.value)
    kept = Path(err.value.output)
    assert kept.is_file() and error_cells(kept)  # the executed notebook shows the error
    assert not (tmp_path / "r" / "02_Preprocessing.ipynb").exists()  # the chain stopped
