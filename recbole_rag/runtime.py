"""CPU settings that make training faster without changing what a model computes.

Applied once per run (``cpu_tuning: True`` in properties/overall.yaml), to RecBole's models as
much as to ours:

- Denormal floats flush to zero. GELU's backward on activations near zero meets denormals,
  which x86 cores handle in microcode: 3x slower on a SASRec step here (53 -> 16 ms per call).
- glibc keeps freed tensor memory for reuse. By default every block above 32 MB is mmap-ed
  and returned to the OS when freed, so each training step faults the pages of its large
  activations in again; element-wise ops on them ran 2-3x slower.
"""

import ctypes
import ctypes.util
import sys

import torch

_M_TOP_PAD, _M_MMAP_THRESHOLD = -2, -3


def _tune_glibc_malloc():
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, 1 << 30) and libc.mallopt(_M_TOP_PAD, 256 << 20))
    except (OSError, AttributeError):  # not glibc (musl, ...): keep its defaults
        return False


def tune_cpu():
    """Apply both settings; returns what took effect, for the log."""
    return {"flush_denormal": torch.set_flush_denormal(True), "glibc_malloc": _tune_glibc_malloc()}
