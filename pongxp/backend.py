"""The array namespace ``xp`` and the host <-> device boundary.

This is the only module that knows whether the math runs on NumPy (CPU), CuPy
(NVIDIA GPU) or array-api-strict (a CPU stand-in used by the tests to catch
NumPy-only calls). Everything else receives ``backend.xp`` and arrays from it.

The frame matrix X of a batch is the one object that is not a plain ``xp``
array: it is CSR-sparse on NumPy (scipy) and CuPy (cupyx), dense otherwise.
The math only ever uses ``X @ A`` and ``X.T @ B`` on it, which all three
support, and gets ``xp`` arrays back.

Crossings between host and device happen here only, each one a single copy:
``batch_to_device`` (one per update), ``to_device_all`` and ``to_host_all``
(weights and RMSProp cache, packed into one buffer). The math creates its
arrays on its inputs' device and never reads them back, so a run moves the
batch up once per update and the weights down once per batch, nothing per
step or episode (tests/test_devices.py counts this on a simulated device).
"""

from __future__ import annotations

import importlib.util
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pongxp.batch import HostBatch
from pongxp.extras import install_hint


class DeviceError(RuntimeError):
    """The requested device cannot be used; the message says what to do."""


@dataclass(frozen=True)
class DeviceBatch:
    """A batch on the device, ready for ``update.policy_gradient``.

    Attributes:
        frames: (T, D) matrix of -1/0/+1 in the math dtype; sparse or dense,
            supports ``@`` and ``.T``.
        ups: (T,) math dtype, 1.0 where the action was up.
        rewards: (T,) math dtype.
        episode_id: (T,) int32, 0..E-1, which episode each step belongs to.
        num_episodes: E.
    """

    frames: Any
    ups: Any
    rewards: Any
    episode_id: Any
    num_episodes: int


class Backend:
    """NumPy on the CPU. Subclasses swap in CuPy or array-api-strict."""

    name = "cpu"
    #: Why ``--device auto`` fell back to the CPU although CuPy is installed.
    gpu_problem: str | None = None
    #: Whether "device" arrays are host memory (NumPy): moving them is free, so
    #: the packing of several arrays into one copy is skipped.
    host_memory = True

    def __init__(self, dtype: str = "float32", sparse: bool = True) -> None:
        import array_api_compat.numpy as xp

        self.xp: Any = xp
        self.dtype_name = dtype
        self.dtype: Any = getattr(xp, dtype)
        self.sparse = sparse

    def __repr__(self) -> str:
        kind = "sparse" if self.sparse else "dense"
        return f"{type(self).__name__}({self.dtype_name}, {kind} frames)"

    # -- host <-> device ---------------------------------------------------
    def asarray(self, host: np.ndarray) -> Any:
        """Host array -> device array; floating arrays take the math dtype."""
        if np.issubdtype(host.dtype, np.floating):
            host = host.astype(self.dtype_name, copy=False)
        return self._upload(np.ascontiguousarray(host))

    def to_host(self, array: Any) -> np.ndarray:
        """Device array -> host array (one copy)."""
        return np.asarray(array)

    def to_device_all(self, *groups: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
        """Host float arrays (weights, RMSProp cache) -> device, all in one copy.

        Args:
            groups: dicts of floating host arrays, e.g. ``params, cache``.

        Returns:
            One dict per group, same keys and shapes, in the math dtype.
        """
        if self.host_memory:
            return [{k: self.asarray(v) for k, v in g.items()} for g in groups]
        flat = np.concatenate([np.ravel(v) for g in groups for v in g.values()])
        return _unpack(self.asarray(flat), groups, self.xp.reshape)

    def to_host_all(self, *groups: Mapping[str, Any]) -> list[dict[str, np.ndarray]]:
        """Device arrays of one dtype (weights, RMSProp cache) -> host, all in one copy.

        Returns:
            One dict of host arrays per group, same keys, shapes and dtype.
        """
        if self.host_memory:
            return [{k: self.to_host(v) for k, v in g.items()} for g in groups]
        xp = self.xp
        flat = xp.concat([xp.reshape(v, (-1,)) for g in groups for v in g.values()])
        return _unpack(self.to_host(flat), groups, np.reshape)

    def sync(self) -> None:
        """Wait for queued device work (a no-op on the CPU)."""

    def out_of_memory(self, exc: BaseException, tips: Sequence[str] = ()) -> DeviceError | None:
        """``exc`` as a one-line DeviceError saying what to do, if it means the
        memory ran out; None for any other error.

        Args:
            tips: the settings whose change would shrink what ran out, e.g.
                ``["a smaller --hidden"]`` (the caller knows the run's settings).
        """
        if isinstance(exc, MemoryError):
            return DeviceError(_out_of_memory_message("the CPU", exc, tips))
        return None

    def batch_to_device(self, batch: HostBatch, input_size: int) -> DeviceBatch:
        """Move one batch to the device in a single transfer.

        All per-step arrays are packed into one int32 buffer, sent once, and cut
        into views on the device.
        """
        episode_id = np.repeat(np.arange(batch.num_episodes, dtype=np.int32), batch.lengths)
        parts = [batch.ups, batch.rewards, episode_id, *self._frame_parts(batch, input_size)]
        dev = self._upload(np.concatenate(parts, dtype=np.int32))
        bounds = itertools.accumulate((p.shape[0] for p in parts), initial=0)
        ups, rewards, ep, *frames = (dev[a:b] for a, b in itertools.pairwise(bounds))
        xp = self.xp
        return DeviceBatch(
            frames=self._frames(frames, batch.num_steps, input_size),
            ups=xp.astype(ups, self.dtype),
            rewards=xp.astype(rewards, self.dtype),
            episode_id=ep,
            num_episodes=batch.num_episodes,
        )

    # -- library specifics -------------------------------------------------
    def _upload(self, host: np.ndarray) -> Any:
        return host

    def _frame_parts(self, batch: HostBatch, input_size: int) -> list[np.ndarray]:
        """The 1-D host arrays that describe X in the packed upload: CSR's three."""
        return [batch.indptr, batch.cols, batch.signs]

    def _frames(self, parts: list[Any], rows: int, input_size: int) -> Any:
        """X on the device from the uploaded ``_frame_parts`` (int32 views)."""
        indptr, cols, signs = parts
        data = self.xp.astype(signs, self.dtype)
        if self.sparse:
            import scipy.sparse

            return scipy.sparse.csr_matrix((data, cols, indptr), shape=(rows, input_size))
        return _dense_from_csr(np, indptr, cols, data, rows, input_size)


class CupyBackend(Backend):
    """CuPy on the current CUDA device; frames as cupyx CSR matrices."""

    name = "gpu"
    host_memory = False

    def __init__(self, dtype: str = "float32", sparse: bool = True) -> None:
        import array_api_compat.cupy as xp
        import cupy

        self.cupy = cupy
        self.xp = xp
        self.dtype_name = dtype
        self.dtype = getattr(xp, dtype)
        self.sparse = sparse

    def _upload(self, host: np.ndarray) -> Any:
        return self.cupy.asarray(host)

    def to_host(self, array: Any) -> np.ndarray:
        return self.cupy.asnumpy(array)

    def sync(self) -> None:
        self.cupy.cuda.get_current_stream().synchronize()

    def out_of_memory(self, exc: BaseException, tips: Sequence[str] = ()) -> DeviceError | None:
        oom = isinstance(exc, (MemoryError, self.cupy.cuda.memory.OutOfMemoryError))
        # cuBLAS, cuSPARSE and the CUDA runtime report a failed allocation as
        # their own error types, with the status in the message.
        from_cupy = type(exc).__module__.startswith(("cupy", "cupyx", "cupy_backends"))
        markers = ("ALLOC_FAILED", "cudaErrorMemoryAllocation", "out of memory")
        if oom or (from_cupy and any(m in str(exc) for m in markers)):
            return DeviceError(_out_of_memory_message("the GPU", exc, [*tips, "--device cpu"]))
        return None

    def _frames(self, parts: list[Any], rows: int, input_size: int) -> Any:
        indptr, cols, signs = parts
        data = self.xp.astype(signs, self.dtype)
        if self.sparse:
            import cupyx.scipy.sparse

            return cupyx.scipy.sparse.csr_matrix((data, cols, indptr), shape=(rows, input_size))
        return _dense_from_csr(self.cupy, indptr, cols, data, rows, input_size)


class StrictBackend(Backend):
    """array-api-strict with dense frames, on one of its simulated devices: the
    tests' check that the math is portable and device-true.

    ``device`` names the device: ``"CPU_DEVICE"`` (its default), ``"device1"``
    (refuses to combine its arrays with another device's, as a GPU library
    refuses host memory) or ``"no_float64"`` (refuses float64 arrays, so no
    float64 temporary can hide in a float32 update). Not offered by ``--device``.
    """

    name = "strict"
    host_memory = False

    def __init__(self, dtype: str = "float32", device: str = "CPU_DEVICE") -> None:
        import array_api_strict as xp

        self.xp = xp
        self.dtype_name = dtype
        self.dtype = getattr(xp, dtype)
        self.sparse = False
        self.device_name = device
        self.device = xp.Device(device)

    def _upload(self, host: np.ndarray) -> Any:
        return self.xp.asarray(host, device=self.device)

    def to_host(self, array: Any) -> np.ndarray:
        return np.from_dlpack(array.to_device(self.xp.Device("CPU_DEVICE")))

    def _frame_parts(self, batch: HostBatch, input_size: int) -> list[np.ndarray]:
        # The array API has no scatter to build a dense X on the device, so X is
        # built here and travels, flattened, in the batch's one upload.
        return [batch.dense_frames(input_size).reshape(-1)]

    def _frames(self, parts: list[Any], rows: int, input_size: int) -> Any:
        return self.xp.astype(self.xp.reshape(parts[0], (rows, input_size)), self.dtype)


def _out_of_memory_message(where: str, exc: BaseException, tips: Sequence[str]) -> str:
    detail = (str(exc).splitlines() or [type(exc).__name__])[0]
    if not tips:
        return f"{where} ran out of memory ({detail})"
    advice = tips[0] if len(tips) == 1 else f"{', '.join(tips[:-1])} or {tips[-1]}"
    return f"{where} ran out of memory ({detail}); try {advice}"


def _unpack(
    flat: Any, groups: Sequence[Mapping[str, Any]], reshape: Callable[[Any, tuple[int, ...]], Any]
) -> list[dict[str, Any]]:
    """Cut a flat array into ``groups``' arrays, in order, with their shapes."""
    out, start = [], 0
    for group in groups:
        cut = {}
        for name, like in group.items():
            shape = tuple(like.shape)
            size = math.prod(shape)
            cut[name] = reshape(flat[start : start + size], shape)
            start += size
        out.append(cut)
    return out


def _dense_from_csr(lib: Any, indptr: Any, cols: Any, data: Any, rows: int, input_size: int) -> Any:
    """Scatter CSR arrays into a dense (rows, input_size) array with ``lib`` (numpy or cupy)."""
    out = lib.zeros((rows, input_size), dtype=data.dtype)
    # Row of each non-zero. (repeat() with device-array counts fails on CuPy < 14.)
    row_of = lib.searchsorted(indptr, lib.arange(data.shape[0]), side="right") - 1
    out[row_of, cols] = data
    return out


def cupy_installed() -> bool:
    """Whether a CuPy package is there to import (usable or not)."""
    return importlib.util.find_spec("cupy") is not None


def _gpu_problem() -> tuple[str, str] | None:
    """None if CuPy imports and can run a kernel on a device, else (what is
    wrong, what to do)."""
    if not cupy_installed():
        hint = install_hint("cuda12")
        return "CuPy is not installed", f"{hint} (CUDA 12.x; cuda13 for CUDA 13.x)"
    try:
        import cupy

        count = cupy.cuda.runtime.getDeviceCount()
        if count < 1:
            return "CuPy sees no CUDA device", "check nvidia-smi, or use --device cpu"
        int((cupy.arange(3) * 2).sum())  # a real kernel: catches driver/toolkit mismatches
    except Exception as exc:  # CuPy raises many types for a missing driver or device
        first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
        return f"CuPy cannot use a CUDA device ({first_line})", "use --device cpu"
    return None


def gpu_available() -> tuple[bool, str]:
    """(usable, reason). Usable means CuPy imports and can run a kernel on a device."""
    problem = _gpu_problem()
    return (True, "ok") if problem is None else (False, "; ".join(problem))


def gpu_name() -> str:
    import cupy

    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    name = props["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


def select(device: str, dtype: str = "float32", sparse: bool = True) -> Backend:
    """Backend for ``--device cpu|gpu|auto`` (also ``strict`` for tests).

    Raises:
        DeviceError: ``gpu`` was asked for and no CUDA device is usable.
    """
    if device == "cpu":
        return Backend(dtype, sparse)
    if device == "strict":
        return StrictBackend(dtype)
    problem = _gpu_problem()
    if device == "gpu":
        if problem is not None:
            raise DeviceError(f"--device gpu: {'; '.join(problem)}")
        return CupyBackend(dtype, sparse)
    if device == "auto":
        if problem is None:
            return CupyBackend(dtype, sparse)
        backend = Backend(dtype, sparse)
        # Without CuPy this is a CPU machine, nothing to explain; with CuPy
        # installed a GPU was meant to be used, so say why it is not.
        if cupy_installed():
            backend.gpu_problem = problem[0]
        return backend
    raise DeviceError(f"unknown device {device!r}; use cpu, gpu or auto")


def describe(backend: Backend) -> str:
    """One line naming the device, e.g. for the start of a training log."""
    if isinstance(backend, CupyBackend):
        return f"GPU ({gpu_name()}, CuPy {backend.cupy.__version__}), {backend.dtype_name}"
    if isinstance(backend, StrictBackend):
        return f"array-api-strict ({backend.device_name}), {backend.dtype_name}"
    cpu = f"CPU (NumPy {np.__version__}), {backend.dtype_name}"
    return cpu if backend.gpu_problem is None else f"{cpu} (GPU not used: {backend.gpu_problem})"
