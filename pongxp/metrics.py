"""The per-episode metrics log: one JSON object per line (JSONL)."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, TextIO

from pongxp.checkpoint import remove_stale_temps, temp_name


class MetricsLog:
    """Appends one record per episode; flushed per line so a crash keeps them."""

    def __init__(self, path: str | os.PathLike[str], keep_until: int | None = None) -> None:
        """Open ``path`` for appending.

        Args:
            keep_until: on resume, the checkpoint's episode; records after it
                belong to episodes that will be played again and are dropped.
        """
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(self.path)  # of a rewrite below that was killed
        if keep_until is not None and self.path.exists():
            kept = [r for r in read(self.path) if r.get("episode", 0) <= keep_until]
            # Rewritten under another name and renamed, so a kill leaves the old
            # log or the new one, never half of it.
            tmp = temp_name(self.path, os.getpid())
            try:
                tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
                os.replace(tmp, self.path)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
        elif keep_until is None:
            self.path.write_text("")  # a fresh run starts a fresh log
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
