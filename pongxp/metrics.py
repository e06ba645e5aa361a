"""The per-episode metrics log: one JSON object per line (JSONL).

Training writes it (``MetricsLog``); a resume reads it back leniently
(``read``), as its own checks name what does not match; the commands that
take a log as input (``plot``, ``tensorboard``) read it strictly (``load``).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from pongxp.checkpoint import remove_stale_temps, temp_name
from pongxp.config import ConfigError
from pongxp.run_folder import log_of

#: Fields a record must hold as counts (integers >= 0) or numbers, where it has them.
COUNTS = ("episode", "steps", "total_steps")
NUMBERS = ("reward", "running_reward", "time", "steps_per_s", "run_steps_per_s")
#: What every record of a pongxp log has (train.py's and the tutorial's loop's alike);
#: the speeds (``steps_per_s``, ``run_steps_per_s``) are checked only where they are.
FIELDS = ("episode", "reward", "running_reward", "steps", "total_steps", "time")


class LogError(ConfigError):
    """A file cannot be read as a metrics log; the message names it, and the line."""


class MetricsLog:
    """Appends one record per episode; flushed per line so a crash keeps them."""

    def __init__(
        self, path: str | os.PathLike[str], records: Sequence[dict[str, Any]] = ()
    ) -> None:
        """Start ``path`` with ``records`` (none for a new run; on a resume or a
        fork, the run's episodes up to its checkpoint, as ``run_folder`` checked them),
        then append.

        Records are written under another name and renamed over ``path``, so
        a kill leaves the old log or the new one, never half of it.
        """
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(self.path)  # of a rewrite that was killed
        if not records:
            self.path.write_text("")  # in place: a log that is a link stays one
        else:
            tmp = temp_name(self.path, os.getpid())
            try:
                tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
                os.replace(tmp, self.path)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
        self._file: TextIO = open(self.path, "a")  # noqa: SIM115 - closed in close()

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def read(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """All records of a metrics log; a torn last line (from a crash) is skipped."""
    records = []
    with open(path) as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def load(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of a metrics log given as input, each checked before any is used.

    The one reader of ``pongxp plot`` and ``pongxp tensorboard``, with one rule:
    every line is a JSON object with all of ``FIELDS``, its ``COUNTS`` and
    ``NUMBERS`` are numbers, each episode comes after the one before (none
    twice) and ``total_steps`` never goes back, as one run writes them. A torn
    last line (a crash, or a run still writing) is left out; a UTF-8 byte-order
    mark at the start (some Windows editors write one) is read past.

    Raises:
        LogError: one line naming the file, the line and what is wrong.
    """
    path = log_of(path)  # a run folder stands for its metrics.jsonl
    if path.is_dir():
        raise LogError(f"metrics file {path} is a directory; give a .jsonl metrics log in it")
    if not path.exists():
        raise LogError(f"metrics file {path} does not exist; check the path")
    if not path.is_file():  # reading a FIFO or a device could block or never end
        raise LogError(f"metrics file {path} is not a regular file; give a .jsonl metrics log")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError:
        raise LogError(f"{path} is not a pongxp metrics log (not UTF-8 text)") from None
    except OSError as exc:
        raise LogError(f"cannot read metrics file {path}: {exc.strerror or exc}") from None
    records: list[dict[str, Any]] = []
    seen: dict[int, int] = {}  # episode -> its line
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            if number == len(lines):
                break
            raise LogError(
                f"{path} line {number} is not JSON; is it a pongxp metrics log? "
                "(fix or remove that line)"
            ) from None
        problem = _problem(record, first=not records) or _out_of_order(record, records, seen)
        if problem is not None:
            where = "" if problem.startswith("is not") else f" line {number}"
            raise LogError(f"{path}{where} {problem}")
        seen[record["episode"]] = number
        records.append(record)
    if not records:
        raise LogError(f"{path} has no episode records; is it a pongxp metrics log?")
    return records


def _problem(record: object, first: bool) -> str | None:
    """What is wrong with one record, or None."""
    if not isinstance(record, dict):
        return f"is a JSON {type(record).__name__}, not an object; fix or remove that line"
    missing = [k for k in FIELDS if k not in record]
    if missing and first:  # the first record tells a foreign file from a damaged log
        return f"is not a pongxp metrics log: no {', '.join(missing)}"
    if missing:
        return f"has no {', '.join(missing)}; fix or remove that line"
    for key in (*COUNTS, *NUMBERS):
        value = record.get(key, 0)
        # (Past 64 bits an integer fits neither an event's step nor a float array.)
        number = isinstance(value, float) or (
            isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**63
        )
        if key in COUNTS and not (number and isinstance(value, int) and value >= 0):
            return f"has {key} {json.dumps(value)[:40]}, not a count; fix or remove that line"
        if not number:
            return f"has {key} {json.dumps(value)[:40]}, not a number; fix or remove that line"
    return None


def _out_of_order(
    record: dict[str, Any], before: list[dict[str, Any]], seen: dict[int, int]
) -> str | None:
    """Why ``record`` cannot follow the records ``before`` it in one run's log, or
    None: an episode twice or back in time, or emulator steps that go back (two
    runs' logs joined, say), would draw a curve that no run played."""
    if not before:
        return None
    episode, last = record["episode"], before[-1]
    if episode in seen:
        return f"has episode {episode} again (line {seen[episode]} has it); fix or remove that line"
    if episode < last["episode"]:
        return (
            f"has episode {episode} after episode {last['episode']}; a log holds one run's "
            "episodes in order: fix or remove that line"
        )
    if record["total_steps"] < last["total_steps"]:
        return (
            f"has total_steps {record['total_steps']}, fewer than the {last['total_steps']} "
            f"of episode {last['episode']} before it; emulator steps only grow in one run: "
            "fix or remove that line"
        )
    return None
