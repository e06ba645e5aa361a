"""Whose TensorBoard event files a resume may change (GitHub issue #24): only its own
run's. A copy of a run gets a directory of its own, another run's directory is
refused unless --overwrite, and a file pongxp did not write is never changed.

Every other file is hashed before and after, so a test fails on any change.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, cli_env
from test_resume import one_error
from test_tensorboard import points

from pongxp import checkpoint, event_files

FAST = ("--device", "cpu", "--quiet")
START = 4  # run a's episodes; a.ep00000002.npz is its older --keep copy


def train(cwd: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *flags, *FAST],
        cwd=cwd, capture_output=True, text=True, timeout=300, env=cli_env(),
    )  # fmt: skip


def hashes(root: Path) -> dict[str, str]:
    """Every file under ``root``, by its path there, to the SHA-256 of its bytes."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run a, trained once: runs/a.npz (4 episodes, batches of 2), its --keep copy
    runs/a.ep00000002.npz, runs/a.jsonl and its curves in runs/tb/a, all given
    relative to the directory returned."""
    cwd = tmp_path_factory.mktemp("user")
    proc = train(cwd, "--checkpoint", "runs/a.npz", "--metrics", "runs/a.jsonl",
                 "--tensorboard", "runs/tb/a", "--hidden", "16", "--batch-size", "2",
                 "--num-envs", "1", "--episodes", str(START), "--checkpoint-every", "2",
                 "--keep", "2")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return cwd


@pytest.fixture
def user(made: Path, tmp_path: Path) -> Path:
    """A copy of ``made`` for one test to change."""
    return Path(shutil.copytree(made, tmp_path / "user"))


def steps_of(cwd: Path, name: str) -> list[int]:
    return [json.loads(line)["total_steps"] for line in (cwd / name).read_text().splitlines()]


def test_a_copy_of_a_run_needs_its_own_directory_and_starts_with_the_originals_points(
    user: Path,
) -> None:
    before = hashes(user)
    older = "runs/a.ep00000002.npz"
    # The copy as the README's Resuming section gives it, and the newest checkpoint
    # under new paths: both would have written into runs/tb/a.
    for resume in (older, "runs/a.npz"):
        line = one_error(train(user, "--resume", resume, "--checkpoint", "runs/c.npz",
                               "--metrics", "runs/c.jsonl", "--episodes", "6"))  # fmt: skip
        assert line == (
            f"error: --checkpoint runs/c.npz continues {resume} as a new run; give it its own "
            "TensorBoard directory with --tensorboard (e.g. runs/tb/c) or --no-tensorboard, "
            "so runs/tb/a stays runs/a.npz's"
        )
        assert hashes(user) == before
    # Without --metrics too: one line names both flags.
    line = one_error(train(user, "--resume", older, "--checkpoint", "runs/c.npz"))
    assert "--metrics (e.g. runs/c.jsonl) and its own TensorBoard directory" in line
    assert hashes(user) == before

    done = train(user, "--resume", older, "--checkpoint", "runs/c.npz", "--metrics",
                 "runs/c.jsonl", "--tensorboard", "runs/tb/c", "--episodes", "6")  # fmt: skip
    assert done.returncode == 0, done.stderr
    start = checkpoint.load(user / older).total_steps
    assert (
        f"note: runs/tb/c starts with the TensorBoard points up to step {start} copied from "
        "runs/tb/a"
    ) in done.stdout
    assert {k: v for k, v in hashes(user).items() if k in before} == before  # a untouched
    # c's curve: a's points up to the copy's start, then its own, each step once.
    a, c = points(user / "runs/tb/a"), points(user / "runs/tb/c")
    got = [s for s, _ in c["episode/reward"]]
    assert got == steps_of(user, "runs/c.jsonl") == sorted(set(got))
    assert [p for p in c["episode/reward"] if p[0] <= start] == [
        p for p in a["episode/reward"] if p[0] <= start
    ]


def test_another_runs_directory_is_refused_then_replaced_with_overwrite(user: Path) -> None:
    """runs/tb/b holds run b's curves (a copy of a's files, owned by runs/b.npz)."""
    runs = user / "runs"
    shutil.copytree(runs / "tb/a", runs / "tb/b")
    owner = runs / "tb/b" / event_files.OWNER_FILE
    owner.write_text(json.dumps({**json.loads(owner.read_text()), "run": "../../b.npz"}))
    before = hashes(user)
    flags = ("--resume", "runs/a.npz", "--tensorboard", "runs/tb/b", "--episodes", "6")
    line = one_error(train(user, *flags))
    assert line == (
        "error: TensorBoard directory runs/tb/b holds another run's event files (of runs/b.npz); "
        "choose another --tensorboard directory or --no-tensorboard, or add --overwrite to "
        "replace them"
    )
    assert hashes(user) == before
    done = train(user, *flags, "--overwrite")
    assert done.returncode == 0, done.stderr
    assert "note: --overwrite: replacing TensorBoard event files in runs/tb/b" in done.stdout
    # Only run a's own checkpoint and log, and b's directory, changed: a's curves did not.
    after = hashes(user)
    assert {k: after.get(k) for k in before if k.startswith("runs/tb/a/")} == {
        k: v for k, v in before.items() if k.startswith("runs/tb/a/")
    }
    # b's points are gone; the directory now has a's from the resume on, each step once.
    got = [s for s, _ in points(runs / "tb/b")["episode/reward"]]
    assert got == steps_of(user, "runs/a.jsonl")[START:]


@pytest.mark.parametrize("how", ["resume", "new run --overwrite", "convert --overwrite"])
def test_an_event_file_pongxp_did_not_write_is_never_changed(user: Path, how: str) -> None:
    """It used to be cut to 0 bytes by a resume, and removed by --overwrite."""
    foreign = user / "runs/tb/a/events.out.tfevents.1700000000.elsewhere"
    foreign.write_bytes(b"someone else's curves")
    before = hashes(user)
    if how == "resume":
        proc = train(user, "--resume", "runs/a.npz", "--episodes", "6")
    elif how == "new run --overwrite":
        proc = train(user, "--checkpoint", "runs/n.npz", "--metrics", "runs/n.jsonl",
                     "--tensorboard", "runs/tb/a", "--overwrite", "--hidden", "8")  # fmt: skip
    else:
        shutil.copyfile(user / "runs/a.jsonl", user / "a.jsonl")
        before = hashes(user)
        proc = subprocess.run(
            [sys.executable, "-m", "pongxp", "tensorboard", "a.jsonl", "runs/tb", "--overwrite"],
            cwd=user, capture_output=True, text=True, timeout=120, env=cli_env(),
        )  # fmt: skip
    line = one_error(proc)
    assert line.startswith(
        "error: TensorBoard directory runs/tb/a holds event files that pongxp did not write "
        "(events.out.tfevents.1700000000.elsewhere), which it never changes; move them out"
    ), line
    assert hashes(user) == before


def test_a_directory_of_an_older_pongxp_is_taken_as_its_runs(user: Path) -> None:
    """No owner file (pongxp before it wrote one): the files named as pongxp names
    them, in the directory the checkpoint names, are the run's, so the resume cuts
    them; the owner file is written then."""
    tb = user / "runs/tb/a"
    (tb / event_files.OWNER_FILE).unlink()
    done = train(user, "--resume", "runs/a.ep00000002.npz", "--episodes", "6")
    assert done.returncode == 0, done.stderr
    got = [s for s, _ in points(tb)["episode/reward"]]
    assert got == steps_of(user, "runs/a.jsonl") == sorted(set(got))
    contents = event_files.read(tb)
    assert contents.owner == str((user / "runs/a.npz").resolve()) and len(contents.ours) == 2
