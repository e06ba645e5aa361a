"""TensorBoard event files on disk: whose they are, and cutting and copying their points.

A directory pongxp writes event files into holds one run's curves. Its owner
file, ``.pongxp-events.json``, says whose: the checkpoint that run writes (for
``pongxp tensorboard``, the log it converted), relative to the directory, so a
run directory moved as a whole still matches; and which event files there
pongxp wrote, by the last part of their names (the writer's ``time_ns``, unique
to each file). Any other event file in the directory is not pongxp's, and
nothing here ever changes one.

The owner file has no "tfevents" in its name, so TensorBoard never reads it.
It is replaced atomically, after the files it stops naming are gone and before
the files it starts naming exist, so a kill can leave it naming a file that is
missing (ignored), never a pongxp file that it does not name.

Directories written before there was an owner file have none; there, event
files whose names end in ``.<19 digits>`` (pongxp's naming then, and now)
count as pongxp's, and as the run's whose checkpoint names the directory
(``resume.plan`` decides).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pongxp import checkpoint
from pongxp.config import ConfigError

OWNER_FILE = ".pongxp-events.json"
#: pongxp's event file names end in the writer's time_ns (``TensorBoardLog``).
_OURS = re.compile(r".*tfevents.*\.(?P<token>\d{19})")
#: Where a file being cut or copied is written before it is renamed into place;
#: the name holds no "tfevents", so a running TensorBoard never reads it half-written.
_CUT_TEMP = "pongxp-cut"
_HEADER = struct.Struct("<QI")  # a TFRecord's length and its masked CRC-32C


@dataclass(frozen=True)
class Contents:
    """What a directory holds, as its owner file and the file names say.

    Attributes:
        owner: the real path of the checkpoint (or converted log) the owner
            file names; None without an owner file.
        ours: the event files pongxp wrote there, in name order.
        foreign: its other event files, which pongxp never changes.
    """

    directory: Path
    owner: str | None
    ours: tuple[Path, ...]
    foreign: tuple[Path, ...]


@dataclass(frozen=True)
class Plan:
    """What a run does to its directory before it writes there (``resume.plan`` decides).

    Attributes:
        directory: where the run's event files go.
        owner: the checkpoint the run writes, or the log converted.
        start: a resume's emulator step (its checkpoint's ``total_steps``);
            None for a new run.
        keep: pongxp's event files there that hold this run's history: their
            points past ``start`` go.
        drop: pongxp's event files there of another run, removed (``--overwrite``).
        copy: the resumed run's event files in its own directory: a copy of the
            run starts with their points up to ``start``, under their names.
    """

    directory: Path
    owner: str
    start: int | None = None
    keep: tuple[Path, ...] = ()
    drop: tuple[Path, ...] = ()
    copy: tuple[Path, ...] = ()


def event_files(directory: str | os.PathLike[str]) -> list[Path]:
    """The event files directly in ``directory`` (not in its subdirectories: other runs)."""
    path = Path(directory)
    if not path.is_dir():
        return []
    return sorted(p for p in path.iterdir() if "tfevents" in p.name and p.is_file())


def read(directory: str | os.PathLike[str]) -> Contents:
    """Whose the event files in ``directory`` are.

    Raises:
        ConfigError: the owner file is there but cannot be read.
    """
    path = Path(directory)
    files = event_files(path)
    owner_file = path / OWNER_FILE
    if not owner_file.exists():
        ours = [f for f in files if _OURS.fullmatch(f.name)]
        return Contents(path, None, tuple(ours), tuple(f for f in files if f not in ours))
    try:
        record = json.loads(owner_file.read_text())
        run, tokens = record["run"], set(record["files"])
        if not isinstance(run, str) or not all(isinstance(t, str) for t in tokens):
            raise TypeError("not a run and file names")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"cannot read {owner_file}, which says whose the event files there are ({exc}); "
            "choose another TensorBoard directory"
        ) from None
    ours = [f for f in files if _token(f) in tokens]
    owner = os.path.realpath(path / run)
    return Contents(path, owner, tuple(ours), tuple(f for f in files if f not in ours))


def refuse_foreign(contents: Contents, other: str) -> None:
    """Raise ConfigError if ``contents`` has event files pongxp did not write.

    Args:
        other: what to choose instead, e.g. ``"another --tensorboard directory"``.
    """
    if contents.foreign:
        names = ", ".join(f.name for f in contents.foreign[:2])
        more = f" and {len(contents.foreign) - 2} more" if len(contents.foreign) > 2 else ""
        raise ConfigError(
            f"TensorBoard directory {contents.directory} holds event files that pongxp did "
            f"not write ({names}{more}), which it never changes; move them out, or choose "
            f"{other}"
        )


def plan_new(directory: str | os.PathLike[str], owner: str, overwrite: bool, other: str) -> Plan:
    """The plan of a new run (or converted log) in ``directory``.

    Raises:
        ConfigError: the directory holds event files pongxp did not write, or,
            without ``overwrite``, another run's.
    """
    contents = read(directory)
    refuse_foreign(contents, other)
    if contents.ours and not overwrite:
        raise ConfigError(
            f"TensorBoard directory {contents.directory} already holds another run's event "
            f"files; choose {other}, or add --overwrite to replace them"
        )
    return Plan(Path(directory), owner, drop=contents.ours)


def prepare(plan: Plan) -> None:
    """Do what ``plan`` says to its directory, in an order a kill cannot make unsafe.

    Raises:
        OSError: the directory cannot be written.
    """
    directory = plan.directory
    directory.mkdir(parents=True, exist_ok=True)
    checkpoint.remove_stale_temps(directory / _CUT_TEMP)
    checkpoint.remove_stale_temps(directory / OWNER_FILE)
    for file in plan.drop:
        file.unlink(missing_ok=True)
    copies = [directory / f.name for f in plan.copy]
    claim(directory, plan.owner, [_token(f) for f in (*plan.keep, *copies)])
    if plan.start is None:
        return
    for file in plan.keep:
        kept, changed = _points_up_to(file.read_bytes(), plan.start)
        if changed:
            _replace(file, kept)
    for source, copy in zip(plan.copy, copies, strict=True):
        _replace(copy, _points_up_to(source.read_bytes(), plan.start)[0])


def claim(directory: Path, owner: str, tokens: Sequence[str]) -> None:
    """Write the owner file: ``directory``'s event files named by ``tokens`` are the run's
    that writes ``owner``."""
    run = os.path.relpath(os.path.abspath(owner), os.path.abspath(directory))
    text = json.dumps({"run": run, "files": sorted(set(tokens))})
    _replace(directory / OWNER_FILE, text.encode())


def add(directory: Path, owner: str, token: str) -> None:
    """Name one more event file (by its token) as the run's, before it is made."""
    claim(directory, owner, [*(_token(f) for f in read(directory).ours), token])


def remove(directory: str | os.PathLike[str], owner: str) -> None:
    """Remove the event files of the run that writes ``owner``, and the owner file,
    if ``directory`` is that run's."""
    contents = read(directory)
    if contents.owner is None or contents.owner != os.path.realpath(owner):
        return
    for file in contents.ours:
        file.unlink(missing_ok=True)
    (contents.directory / OWNER_FILE).unlink(missing_ok=True)


def _token(file: Path) -> str:
    return file.name.rsplit(".", 1)[-1]


def _replace(path: Path, data: bytes) -> None:
    """Write ``path`` under a temporary name, renamed into place: a kill leaves it whole."""
    # (An event file's temporary name must not hold "tfevents": see _CUT_TEMP.)
    named = path.parent / _CUT_TEMP if "tfevents" in path.name else path
    tmp = checkpoint.temp_name(named, os.getpid())
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _points_up_to(data: bytes, keep_through: int) -> tuple[bytes, bool]:
    """The records of event file ``data`` with steps up to ``keep_through``, and whether
    anything went. A torn last record (a run killed while writing) goes too."""
    from google.protobuf.message import DecodeError
    from tensorboardX.proto.event_pb2 import Event
    from tensorboardX.record_writer import masked_crc32c

    kept, end, dropped = [], 0, False
    for start, stop in _records(data, masked_crc32c):
        try:
            step = Event.FromString(data[start + _HEADER.size : stop - 4]).step
        except DecodeError:  # garbage from here on
            break
        if step <= keep_through:
            kept.append(data[start:stop])
        else:
            dropped = True
        end = stop
    return b"".join(kept), dropped or end != len(data)


def _records(data: bytes, crc: object) -> Iterator[tuple[int, int]]:
    """(start, stop) of each whole TFRecord in ``data``: u64 length, u32 CRC of the
    length, payload, u32 CRC of the payload. Stops at a torn or garbled header."""
    start = 0
    while start + _HEADER.size <= len(data):
        length, length_crc = _HEADER.unpack_from(data, start)
        stop = start + _HEADER.size + length + 4
        if crc(data[start : start + 8]) != length_crc or stop > len(data):  # type: ignore[operator]
            return
        yield start, stop
        start = stop
