"""The per-episode metrics log: one JSON object per line (JSONL)."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from pongxp.checkpoint import remove_stale_temps, temp_name


class MetricsLog:
    """Appends one record per episode; flushed per line so a crash keeps them."""

    def __init__(
        self, path: str | os.PathLike[str], records: Sequence[dict[str, Any]] = ()
    ) -> None:
        """Start ``path`` with ``records`` (none for a new run; on a resume, the
        run's episodes up to its checkpoint, as ``resume.plan`` checked them),
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
