"""The tutorial notebook runs top to bottom, and its executed copy shows what it runs.

docs/tutorial.md (MyST Markdown, no outputs) is executed headless in a fresh
kernel with PONGXP_TUTORIAL_QUICK=1, which only shortens the loops (fewer
episodes, games and repeats): every cell runs. Any error in a cell fails the test.

docs/tutorial.ipynb is the same notebook run in full, committed so that its
pictures show where the repository is browsed. Regenerate it after changing
the tutorial or a function it shows:

    .venv/bin/jupytext --to ipynb --execute docs/tutorial.md
"""

from __future__ import annotations

import importlib
import inspect
import re
import textwrap

import jupytext
import nbformat
import pytest
from conftest import ROOT, cli_env
from nbclient import NotebookClient

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
    assert kinds.count("image/png") >= 6  # frames, input, curve, weights, two units
    assert "image/gif" in kinds  # the trained agent's game


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
    text = "".join(
        out.get("text", "") + out.get("data", {}).get("text/plain", "")
        for out in outputs(quick_run)
    )
    assert str(ROOT) not in text  # the executed copy must not show where it was made
    assert "same as the loop: True" in text  # returns: pongxp's equal the tutorial's loop
    assert "sparse and dense agree: True" in text
    assert re.search(r"game 1: +\d+-\d+ +\| score +[+-]?\d+\nwon [01] of 1,", text)  # evaluation


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
    """Each function the copy shows is the function as it is now, less its docstring."""
    shown = shown_functions(nbformat.read(EXECUTED, as_version=4))
    assert len(shown) >= 10
    for name, lines in shown:
        source = current_source(name)
        # The shown lines are the source with one run of lines (the docstring) cut out.
        head = next(
            (i for i, (a, b) in enumerate(zip(lines, source, strict=False)) if a != b), len(lines)
        )
        tail = len(lines) - head
        assert lines[head:] == source[len(source) - tail :], f"{name} changed; {REGENERATE}"
        assert len(source) - len(lines) <= 30, name
