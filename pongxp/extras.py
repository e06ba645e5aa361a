"""Optional dependencies (pip extras): import them late, fail with the install line.

The core (training) needs only NumPy, SciPy, Gymnasium and ale-py. Plotting and
video pull in matplotlib, imageio and an ffmpeg binary, so they are extras,
imported only by the commands that use them.
"""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the pip extra."""


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise MissingExtraError naming ``pongxp[extra]``.

    Args:
        module: the import name, e.g. ``"matplotlib"``.
        extra: the pongxp extra that installs it, e.g. ``"plot"``.
        purpose: what needs it, for the message, e.g. ``"plotting"``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{purpose} needs {module.split('.')[0]}, which is not installed; "
            f"pip install 'pongxp[{extra}]'"
        ) from exc
