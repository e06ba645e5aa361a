"""The tutorial notebook runs top to bottom, and its executed copy shows what it runs.

docs/tutorial.md (MyST Markdown, no outputs) is executed headless in a fresh
kernel with PONGXP_TUTORIAL_QUICK=1, which only shortens the loops (fewer
episodes, games and repeats): every cell runs. Any error in a cell fails the test,
and so does a check the notebook prints that did not come out (the plain-NumPy
loop against pongxp, the finite differences). PONGXP_TUTORIAL_RUNS points the
training run of its section 9 into a temporary directory, where the tests check
that train.py with the same settings gives the same weights and resumes it.

docs/tutorial.ipynb is the same notebook run in full, committed so that its
pictures show where the repository is browsed. Regenerate it after changing
the tutorial or a function it shows:

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

import jupytext
import nbformat
import numpy as np
import pytest
from conftest import ROOT, cli_env
from nbclient import NotebookClient

from pongxp import checkpoint, metrics

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
    # the loop diagram, the screen, its preprocessing, the input, the learner's
    # curve, the pretrained curve, the weights, two units
    assert kinds.count("image/png") >= 8
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
def runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tutorial-runs")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory, runs_dir: Path) -> nbformat.NotebookNode:
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
    env["PONGXP_TUTORIAL_RUNS"] = str(runs_dir)
    client.execute(env=env)  # raises CellExecutionError, naming the cell, on any error
    assert not any(workdir.iterdir()), "the notebook wrote into its working directory"
    return notebook


def test_the_notebook_runs_top_to_bottom(quick_run: nbformat.NotebookNode) -> None:
    check_ran_cleanly(quick_run)
    text = printed(quick_run)
    assert str(ROOT) not in text  # the executed copy must not show where it was made
    assert "same as the loop: True" in text  # returns: pongxp's equal the tutorial's loop
    assert "sparse and dense agree: True" in text
    assert re.search(r"game 1: +\d+-\d+ +\| score +[+-]?\d+\nwon [01] of 1,", text)  # evaluation
    # p(up) from the changed columns is the forward pass's, to the digits printed.
    fast, full = re.search(r"changed columns: ([\d.]+); from all 6,400: ([\d.]+)", text).groups()
    assert fast == full


def test_the_plain_numpy_loop_is_pongxp(quick_run: nbformat.NotebookNode) -> None:
    """Section 6's hand-written game and gradient are pongxp's, and the checks hold."""
    text = printed(quick_run)
    assert re.search(r"pongxp's actor played the same game \(\d+ steps\): True", text)
    for name in ("W1", "W2"):
        assert number(text, rf"\(float64\): max \|difference\|.*{name} ([\d.e+-]+)") < 1e-12
        assert number(text, rf"\(float32\): max \|difference\|.*{name} ([\d.e+-]+)") < 1e-4
    assert number(text, r"equations to a relative ([\d.e+-]+)") < 1e-5  # finite differences
    assert len(re.findall(r"finite difference [+-][\d.]+, equation", text)) == 8
    assert number(text, r"2 x the game's\| = ([\d.e+-]+)") < 1e-12  # a doubled game
    # The text says most of W1's gradient is zero in a game, and that RMSProp's
    # first step is about 10 x the learning rate (1e-3) whatever the gradient's size.
    assert number(text, r"exactly 0 in this game: (\d+)%") > 50
    for label in ("one game", "the gradient x 2"):
        moved = number(text, rf"{label}: largest change of a W1 weight ([\d.e+-]+)")
        assert abs(moved - 1e-2) < 1e-4, label


def test_the_learners_run_is_train_py(quick_run: nbformat.NotebookNode, runs_dir: Path) -> None:
    """Section 9's loop gives train.py's weights and log, bit for bit, and train.py
    --resume continues its checkpoint."""
    text = printed(quick_run)
    batches = re.findall(r"\| mean log pi\(a\) ([+-][\d.]+) \|", text)
    assert len(batches) == 2  # the quick run's two batches
    assert all(-0.7 < float(v) < 0 for v in batches)
    saved = runs_dir / "tutorial-1" / "checkpoint.npz"
    mine = checkpoint.load(saved)
    cfg = mine.config
    replay = runs_dir / "replay"
    env = cli_env()
    env.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the notebook does: BLAS rounds alike
    flags = ["--lr", str(cfg.learning_rate), "--batch-size", str(cfg.batch_size)]
    flags += ["--episodes", str(cfg.episodes), "--seed", str(cfg.seed), "--quiet"]
    train = [sys.executable, str(ROOT / "train.py"), "--device", "cpu"]
    paths = ["--run", str(replay)]
    done = subprocess.run([*train, *flags, *paths], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    theirs = checkpoint.load(replay)
    for name in ("W1", "W2"):
        assert np.array_equal(mine.params[name], theirs.params[name]), name
        assert np.array_equal(mine.cache[name], theirs.cache[name]), name
    assert (mine.episode, mine.total_steps, mine.streams) == (
        theirs.episode,
        theirs.total_steps,
        theirs.streams,
    )
    keys = ("episode", "reward", "running_reward", "steps", "total_steps")
    logs = [metrics.read(d / "metrics.jsonl") for d in (saved.parent, replay)]
    assert [[r[k] for k in keys] for r in logs[0]] == [[r[k] for k in keys] for r in logs[1]]
    # The command the notebook prints continues the run (here on a copy of it).
    copy = runs_dir / "resumed"
    shutil.copytree(saved.parent, copy)
    more = ["--resume", str(copy), "--episodes", str(cfg.episodes + 1), "--quiet"]
    done = subprocess.run([*train, *more], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert [r["episode"] for r in metrics.read(copy / "metrics.jsonl")][-1] == cfg.episodes + 1
    assert f"train.py --resume {saved.parent} --episodes 1000" in text


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
    assert len(shown) >= 14
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
    env["PONGXP_TUTORIAL_RUNS"] = str(tmp_path / "runs")
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
