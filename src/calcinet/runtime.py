"""Process-level settings that the calcinet commands apply at start.

glibc ``malloc`` serves every block above a threshold (128 KiB at first, raised as blocks are
freed) with its own ``mmap`` and gives it back with ``munmap`` when freed, and it returns the free
top of the heap to the system above 128 KiB. A 3D CNN allocates and frees activations of several
MiB to tens of MiB in every forward pass, so with those defaults each call pays again for page
faults on freshly mapped, zero-filled memory. Measured with ``scripts/bench_export.py`` on 2 CPU
cores, four runs each: the default compact CNN takes 217-235 ms for a batch of 32 with the
defaults and 161-174 ms with :func:`tune_malloc`.

:func:`tune_malloc` keeps blocks up to 32 MiB (glibc's largest allowed threshold) on the heap and
keeps up to 1 GiB of freed heap for reuse. The process holds on to its peak memory instead of
returning it between calls, which is what PyTorch's own CUDA caching allocator does. It also
exports the equivalent ``MALLOC_*_`` variables, so processes started from this one (DDP workers,
spawned data-loader workers) run with the same settings.

Standard library only: the torch-only inference code may import it. Library users who load a
model in their own process get the same effect from the environment::

    MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824 python serve.py
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import gc
import os
import sys

#: ``mallopt`` parameter numbers from glibc's ``malloc.h``.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

#: Largest mmap threshold glibc accepts on 64-bit systems (``DEFAULT_MMAP_THRESHOLD_MAX``).
MMAP_THRESHOLD = 32 * 1024 * 1024
TRIM_THRESHOLD = 1024 * 1024 * 1024

#: ``CALCINET_MALLOC_TUNING=0`` leaves the allocator alone.
OPT_OUT = "CALCINET_MALLOC_TUNING"
_ENVIRONMENT = {
    "MALLOC_MMAP_THRESHOLD_": MMAP_THRESHOLD,
    "MALLOC_TRIM_THRESHOLD_": TRIM_THRESHOLD,
}


def glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (the only one whose ``mallopt`` this module knows)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 -- absent from musl and other C libraries
    except (OSError, AttributeError):
        return None
    return libc


def tune_malloc() -> bool:
    """Apply the thresholds above to this process and its children; True when applied.

    Leaves everything as it is on other C libraries, when ``CALCINET_MALLOC_TUNING=0``, or when
    the user already chose ``MALLOC_MMAP_THRESHOLD_`` or ``MALLOC_TRIM_THRESHOLD_`` (glibc read
    those at start).
    """
    if os.environ.get(OPT_OUT, "1").strip().lower() in {"0", "false", "no", "off"}:
        return False
    if any(name in os.environ for name in _ENVIRONMENT):
        return False
    libc = glibc()
    if libc is None:
        return False
    applied = bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
    if applied:
        for name, value in _ENVIRONMENT.items():
            os.environ[name] = str(value)
    return applied


def native_bf16_cpu() -> bool:
    """True when this CPU computes bfloat16 natively (AVX-512-BF16 or AMX tiles).

    There, bf16 autocast with ``channels_last_3d`` trains the default 3D CNN 2.3-2.6x faster than
    float32 (measured on 2 cores of a Xeon with AMX, see the README); elsewhere bf16 is emulated
    and slower than float32. torch has no public query for it: these are the checks its own CPU
    kernels dispatch on (``torch.cpu._is_avx512_bf16_supported``, ``_is_amx_tile_supported``);
    a torch without them answers False.
    """
    import torch

    checks = [getattr(torch.cpu, name, None)
              for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(check() for check in checks if callable(check))


_exit_collection_skipped = False


def skip_exit_collection() -> None:
    """Freeze the garbage collector when the interpreter exits, once the ``atexit`` handlers
    registered later (those of the libraries a command imports) have run.

    A command that imported torch, Lightning, MONAI and MLflow spends 1.5-2.3 s after its work is
    done while the interpreter's last collections walk those libraries' millions of objects:
    ``python -c "import torch, monai, lightning, mlflow"`` took 10.1-10.7 s, and 7.8-9.0 s with
    ``gc.freeze`` registered at exit (2-core AMD EPYC). The freeze only stops those last
    collections: every ``atexit`` handler still runs (logging and MLflow flush), objects are
    still freed by reference counting, and nothing changes while the process runs (commands
    called in-process, by the tests, keep collecting). Idempotent.
    """
    global _exit_collection_skipped
    if not _exit_collection_skipped:
        atexit.register(gc.freeze)
        _exit_collection_skipped = True
