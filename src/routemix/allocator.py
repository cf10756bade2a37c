"""Keep freed CPU memory for reuse: a glibc ``malloc`` setting that speeds up training on CPU.

PyTorch allocates CPU tensors with the C library's ``malloc``. glibc's ``malloc`` serves a request
above its mmap threshold (at most 32 MiB on 64-bit Linux) with a fresh ``mmap`` and gives it back to
the kernel on ``free``. The kernel then zero-fills every page of the next such block on first
touch, one page fault per 4 KiB. The activations and gradients of a multi-path network are P times
those of one path, and at the thesis' batch sizes they are above the threshold (BaseCNN-4 at batch
128: 67 MB per activation, one path's is 17 MB), so every training step maps, faults in and unmaps
each of them again. Measured with ``routemix bench speed`` (docs/RESULTS.md, 2026-12-03): this
made the batched BaseCNN-4-CC 1.29x slower than P single-path networks looped in Python, whose
17 MB blocks stay in the heap; with freed memory kept it is 0.94x, its step 25% shorter.

:func:`keep_freed_memory` turns ``mmap`` off for ``malloc`` (``M_MMAP_MAX = 0``) and raises the
threshold above which freed memory at the top of the heap is returned to the kernel
(``M_TRIM_THRESHOLD``, to 2 GiB), so freed blocks stay in the heap for later requests. Child
processes inherit the setting through glibc's environment variables ``MALLOC_MMAP_MAX_`` and
``MALLOC_TRIM_THRESHOLD_``.

The cost: the process keeps its heap resident instead of handing freed blocks back, which a
training run needs again at its next step anyway (PyTorch's CUDA allocator caches the same way),
and glibc's aligned allocations fragment it, so the peak is higher: +21-56% for BaseCNN-P-CC over
two steps, +14% for BaseCNN-4-CC over twenty (docs/RESULTS.md).

The ``routemix`` command calls it at start on Linux with glibc; set
``ROUTEMIX_KEEP_FREED_MEMORY=0`` to leave ``malloc`` as it is. Python users call it themselves.
jemalloc or tcmalloc loaded with ``LD_PRELOAD`` are an alternative that needs no call (not
measured: neither is installed on the machines these figures come from).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

from routemix.errors import RoutemixError

M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's <malloc.h>
M_MMAP_MAX = -4
TRIM_THRESHOLD_BYTES = 2**31 - 1  # mallopt takes an int: the largest is 2 GiB
OPT_OUT_VARIABLE = "ROUTEMIX_KEEP_FREED_MEMORY"
CHILD_ENVIRONMENT = {"MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD_BYTES), "MALLOC_MMAP_MAX_": "0"}

_applied = False


def keep_freed_memory() -> bool:
    """Make glibc's ``malloc`` keep freed blocks for reuse (module docstring). Process-wide.

    Returns True when the setting is in force (now or from an earlier call), False where it does
    not apply: not Linux, a C library without glibc's ``mallopt``, or ``mallopt`` refusing.
    """
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success; set the trim threshold first so that turning mmap off never
    # leaves a process whose freed large blocks are trimmed straight back to the kernel.
    _applied = mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1 and mallopt(M_MMAP_MAX, 0) == 1
    if _applied:
        # Processes started from this one (spawned benchmark children, data-parallel workers) read
        # the same setting from glibc's environment aliases when their malloc starts.
        for name, value in CHILD_ENVIRONMENT.items():
            os.environ.setdefault(name, value)
    return _applied


def keep_freed_memory_unless_opted_out() -> bool:
    """:func:`keep_freed_memory`, unless the environment sets ``ROUTEMIX_KEEP_FREED_MEMORY=0``
    (or false/no/off); a value that is neither on nor off is a :class:`RoutemixError`."""
    value = os.environ.get(OPT_OUT_VARIABLE, "1").strip().lower()
    if value in ("0", "false", "no", "off"):
        return False
    if value not in ("1", "true", "yes", "on", ""):
        raise RoutemixError(
            f"{OPT_OUT_VARIABLE} is {os.environ[OPT_OUT_VARIABLE]!r}; set it to 0 to turn the malloc setting off "
            "or to 1 (or leave it unset) to keep it."
        )
    return keep_freed_memory()


def is_keeping_freed_memory() -> bool:
    """Whether :func:`keep_freed_memory` has put its setting in force in this process."""
    return _applied
