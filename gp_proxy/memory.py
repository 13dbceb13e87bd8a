"""Freed memory kept for reuse while programs are scored.

Scoring a program allocates and frees tensors of the same few sizes, program after program.
glibc's malloc serves large blocks from `mmap` and trims the top of its heap, so it hands freed
tensors back to the OS, and every new tensor page-faults its memory in again (Dask's nanny sets
`MALLOC_TRIM_THRESHOLD_` low on its workers, which makes them hand back even more).
`keep_freed_memory` turns that off: each Dask worker of a discovery keeps freed memory from its
objective's set-up to its removal (`return_freed_memory`), and a discovery in one process (and its
forked workers) for the whole run (`freed_memory_kept`). `benchmarks/freed_memory.py` measures both.
"""

from __future__ import annotations

import ctypes
import os
import platform
import threading
from collections.abc import Iterator
from contextlib import contextmanager

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's <malloc.h>
GLIBC_DEFAULTS = {"MALLOC_TRIM_THRESHOLD_": 128 * 1024, "MALLOC_MMAP_MAX_": 65536}

_LOCK = threading.Lock()
_holders = 0  # calls of `keep_freed_memory` not yet paired with `return_freed_memory`, in this process


def _libc() -> ctypes.CDLL | None:
    """The process's C library where it is glibc (whose `mallopt` this module sets), else None."""
    return ctypes.CDLL(None) if platform.libc_ver()[0] == "glibc" else None


def _setting(variable: str) -> int:
    """glibc's setting from the environment `variable` (as glibc read it at start-up), else its default."""
    value = os.environ.get(variable, "")
    return min(int(value), 2**31 - 1) if value.isdigit() else GLIBC_DEFAULTS[variable]  # mallopt takes an int


def keep_freed_memory() -> bool:
    """From now on this process's malloc keeps freed memory for reuse: no block from `mmap` (those
    go back to the OS when freed) and no trim of the heap's top. True where it applies (glibc),
    False elsewhere (nothing changes). Pair each call with `return_freed_memory`."""
    global _holders
    libc = _libc()
    if libc is None:
        return False
    with _LOCK:
        _holders += 1
        if _holders == 1:
            libc.mallopt(M_MMAP_MAX, 0)
            libc.mallopt(M_TRIM_THRESHOLD, -1)  # -1: never trim (mallopt(3))
    return True


def return_freed_memory() -> None:
    """Undo `keep_freed_memory` once the last holder returns: the free memory goes back to the OS
    (`malloc_trim`) and malloc's `mmap` and trim settings are the environment's, or glibc's defaults
    (fixed from then on, as glibc fixes them once either is set)."""
    global _holders
    libc = _libc()
    if libc is None:
        return
    with _LOCK:
        _holders -= 1
        if _holders == 0:
            libc.mallopt(M_MMAP_MAX, _setting("MALLOC_MMAP_MAX_"))
            libc.mallopt(M_TRIM_THRESHOLD, _setting("MALLOC_TRIM_THRESHOLD_"))
            libc.malloc_trim(0)


@contextmanager
def freed_memory_kept() -> Iterator[bool]:
    """Within the block, freed memory is kept for reuse (see `keep_freed_memory`; yields whether it
    applies), and returned to the OS after it."""
    kept = keep_freed_memory()
    try:
        yield kept
    finally:
        if kept:
            return_freed_memory()
