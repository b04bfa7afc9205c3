"""CPU tuning: keep glibc from returning large blocks to the OS after every tensor is freed.

Without this, each big temporary tensor is a fresh mmap whose pages fault in again on first touch,
which costs more than the arithmetic on 2 cores.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
_done = False


def tune_allocator(threshold: int = 1 << 30) -> bool:
    """Raise glibc's mmap and trim thresholds (idempotent); False where glibc is not available."""
    global _done
    if _done:
        return True
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        ok = libc.mallopt(M_MMAP_THRESHOLD, threshold) == 1 and libc.mallopt(M_TRIM_THRESHOLD, 2 * threshold) == 1
    except (OSError, AttributeError):
        return False
    _done = ok
    return ok
