"""Optional dependencies (pip extras): import them late, fail with the install line.

The core (training) needs only NumPy, SciPy, Gymnasium and ale-py. Plotting and
video pull in matplotlib, imageio and an ffmpeg binary, so they are extras,
imported only by the commands that use them.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the pip extra."""


def install_hint(extra: str) -> str:
    """The command that installs ``extra``: "pip install -e '.[EXTRA]' in DIR".

    pongxp is installed from its clone, not from a package index, so the hint
    is an editable install run there; DIR is this pongxp's source tree when it
    is one (an editable install), else described.
    """
    root = Path(__file__).resolve().parents[1]
    where = root if (root / "pyproject.toml").is_file() else "the pongxp clone"
    return f"pip install -e '.[{extra}]' in {where}"


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise MissingExtraError naming the extra's install.

    Args:
        module: the import name, e.g. ``"matplotlib"``.
        extra: the pongxp extra that installs it, e.g. ``"plot"``.
        purpose: what needs it, for the message, e.g. ``"plotting"``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{purpose} needs {module.split('.')[0]}, which is not installed; {install_hint(extra)}"
        ) from exc
