"""The tutorial notebook runs top to bottom, and its executed copy shows what it runs.

docs/tutorial.md (MyST Markdown, no outputs) is executed headless in a fresh
kernel with PONGXP_TUTORIAL_QUICK=1, which only shortens the loops (the
learner's training loop runs a few seconds, batches of 2 games): every cell
runs. Any error in a cell fails the test, and so does a check the notebook
prints that did not come out: the learner's plain-NumPy loop against pongxp's
update, the directional gradient check and its kinks, the batched returns.

docs/tutorial.ipynb is the same notebook run in full, committed so that its
pictures show where the repository is browsed. Regenerate it after changing
the tutorial or the function it shows (about 9 minutes, most of it the
training loop's MINUTES and its comparison run):

    .venv/bin/jupytext --to ipynb --execute docs/tutorial.md
"""

from __future__ import annotations

import importlib
import inspect
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import ROOT, cli_env

# The tutorial's tools come with the test extra; a machine without them (the
# GPU machine, which runs `pytest -m gpu`) skips this module and runs the rest.
jupytext = pytest.importorskip("jupytext")
nbformat = pytest.importorskip("nbformat")
NotebookClient = pytest.importorskip("nbclient").NotebookClient

SOURCE = ROOT / "docs" / "tutorial.md"
EXECUTED = ROOT / "docs" / "tutorial.ipynb"
REGENERATE = "regenerate it: .venv/bin/jupytext --to ipynb --execute docs/tutorial.md"


def cells(notebook: nbformat.NotebookNode) -> list[tuple[str, str]]:
    return [(cell.cell_type, cell.source) for cell in notebook.cells]


def outputs(notebook: nbformat.NotebookNode) -> list[dict]:
    return [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]


def check_ran_cleanly(notebook: nbformat.NotebookNode) -> None:
    """Every code cell ran, in order, without an error, and the pictures are there."""
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1))
    errors = [out for out in outputs(notebook) if out.output_type == "error"]
    assert not errors, errors
    kinds = [mime for out in outputs(notebook) for mime in out.get("data", {})]
    # the screen, its preprocessing, the returns along a game, the learning
    # curves, the trained weights
    assert kinds.count("image/png") >= 5
    assert "image/gif" in kinds  # the trained agent's game


def printed(notebook: nbformat.NotebookNode) -> str:
    """Everything the notebook's cells printed or returned as text."""
    return "".join(
        out.get("text", "") + out.get("data", {}).get("text/plain", "") for out in outputs(notebook)
    )


def number(text: str, pattern: str) -> float:
    """The number that ``pattern``'s one group matches in ``text`` (which must match)."""
    found = re.search(pattern, text)
    assert found, f"the notebook did not print {pattern!r}"
    return float(found.group(1))


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> nbformat.NotebookNode:
    notebook = jupytext.read(SOURCE)
    workdir = tmp_path_factory.mktemp("tutorial")
    client = NotebookClient(
        notebook,
        timeout=180,  # per cell
        kernel_name="python3",
        resources={"metadata": {"path": str(workdir)}},
    )
    env = cli_env()
    env["PONGXP_TUTORIAL_QUICK"] = "1"
    client.execute(env=env)  # raises CellExecutionError, naming the cell, on any error
    assert not any(workdir.iterdir()), "the notebook wrote into its working directory"
    return notebook


def test_the_notebook_runs_top_to_bottom(quick_run: nbformat.NotebookNode) -> None:
    check_ran_cleanly(quick_run)
    text = printed(quick_run)
    assert str(ROOT) not in text  # the executed copy must not show where it was made
    assert "same as your loop: True" in text  # pongxp's batched returns equal the loop's
    assert "dW1 (200, 6400), dW2 (200,)" in text


def test_the_learners_loop_makes_pongxps_update(quick_run: nbformat.NotebookNode) -> None:
    """Two updates of the plain-NumPy loop and of pongxp's functions on the same
    games give the same weights, to rounding, and the weights did move."""
    text = printed(quick_run)
    for name in ("W1", "W2"):
        found = re.search(
            rf"{name}: moved up to ([\d.e+-]+) in two updates; "
            rf"yours and pongxp's differ by at most ([\d.e+-]+)",
            text,
        )
        assert found, f"the parity line for {name} is missing"
        moved, differ = (float(v) for v in found.groups())
        assert abs(moved - 2e-2) < 1e-3, name  # two RMSProp steps of about 10 x lr
        assert differ < 1e-12, name


def test_the_gradient_check_and_its_kinks(quick_run: nbformat.NotebookNode) -> None:
    """The directional check agrees once no ReLU kink is crossed, and a large eps crosses some."""
    text = printed(quick_run)
    checks = {
        float(eps): (int(kinks), float(error))
        for eps, kinks, error in re.findall(
            r"eps ([\d.e+-]+): +(\d+) kinks crossed, relative error ([\d.e+-]+)", text
        )
    }
    assert set(checks) == {1e-5, 1e-7, 1e-9}
    assert checks[1e-9][0] == 0 and checks[1e-9][1] < 1e-5
    assert checks[1e-5][0] > 0 and checks[1e-5][1] > 1e-3  # the kink lesson shows
    fd, exact = re.search(r"finite difference ([+-][\d.]+), equation ([+-][\d.]+)", text).groups()
    assert fd == exact


def test_the_learners_loop_trains(quick_run: nbformat.NotebookNode) -> None:
    """The quick run's loop played at least one batch with and without learning."""
    text = printed(quick_run)
    for label in ("learning rate 1e-3", "learning rate 0   "):
        games = number(text, rf"{re.escape(label)}: (\d+) games")
        assert games >= 2 and games % 2 == 0, label  # whole batches of 2


def test_the_tutorial_stays_short() -> None:
    """The issue's bounds: about 6,000 words, no code cell over about 40 lines."""
    notebook = jupytext.read(SOURCE)
    assert len(SOURCE.read_text().split()) <= 6000
    longest = max(
        len(cell.source.splitlines()) for cell in notebook.cells if cell.cell_type == "code"
    )
    assert longest <= 40


def test_the_source_is_a_myst_notebook_without_outputs() -> None:
    text = SOURCE.read_text()
    assert text.startswith("---\njupytext:\n")
    notebook = jupytext.read(SOURCE)
    assert notebook.metadata["jupytext"]["text_representation"]["format_name"] == "myst"
    assert notebook.metadata["kernelspec"]["name"] == "python3"
    assert text.count("```{code-cell} ipython3") == sum(
        cell.cell_type == "code" for cell in notebook.cells
    )


def test_the_executed_copy_has_the_source_cells() -> None:
    copy = nbformat.read(EXECUTED, as_version=4)
    assert cells(copy) == cells(jupytext.read(SOURCE)), f"{EXECUTED} is out of date; {REGENERATE}"
    check_ran_cleanly(copy)
    nbformat.validate(copy)


def shown_functions(notebook: nbformat.NotebookNode) -> list[tuple[str, list[str]]]:
    """(qualified name, lines shown) of each ``show(...)`` output of the notebook."""
    found = []
    for out in outputs(notebook):
        code = out.get("data", {}).get("text/plain", "")
        if out.output_type == "display_data" and code.startswith("# pongxp."):
            header, *lines = code.splitlines()
            found.append((header[2:].split(",")[0], lines))
    return found


def current_source(qualified: str) -> list[str]:
    module_name, _, attribute = qualified.rpartition(".")
    obj = importlib.import_module(module_name) if module_name.count(".") == 1 else None
    if obj is None:  # a method: pongxp.rollout.Actor._play_gym
        module_name, _, owner = module_name.rpartition(".")
        obj = getattr(importlib.import_module(module_name), owner)
    return textwrap.dedent(inspect.getsource(getattr(obj, attribute))).splitlines()


def test_the_executed_copy_shows_todays_code() -> None:
    """Each function the copy shows is the function as it is now, docstring included."""
    shown = shown_functions(nbformat.read(EXECUTED, as_version=4))
    assert shown
    for name, lines in shown:
        assert lines == current_source(name), f"{name} changed; {REGENERATE}"
        assert '"""' in "\n".join(lines), f"{name} is shown without its docstring"


def test_the_executed_copy_passes_nbval(tmp_path: Path) -> None:
    """numpy-tutorials' own check: ``pytest --nbval-lax`` runs the committed copy's
    cells again in a fresh kernel (here with the quick loops) and fails on any error."""
    copy = tmp_path / "tutorial.ipynb"
    shutil.copy(EXECUTED, copy)
    env = cli_env()
    env["PONGXP_TUTORIAL_QUICK"] = "1"
    command = [sys.executable, "-m", "pytest", "--nbval-lax", "-p", "no:cacheprovider", "-q"]
    done = subprocess.run(
        [*command, "--rootdir", str(tmp_path), str(copy)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    code_cells = sum(
        cell.cell_type == "code" for cell in nbformat.read(EXECUTED, as_version=4).cells
    )
    assert f"{code_cells} passed" in done.stdout
