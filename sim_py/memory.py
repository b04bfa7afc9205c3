"""Memory model: where each hash-table level lives, and what its lookups cost off chip.

Kept apart from the compute models (sim_py/mlp_engine.py, sim_py/heu.py), as SCALE-Sim does.

- Placement: levels are packed at their policy bit width (hero.intarith.hash_words_per_level) and
  placed on chip smallest first until the table SRAM is full; every level takes the same 8 lookups
  per sample, so smallest-first keeps the most lookups on chip. The rest live in DRAM.
- Off-chip lookups go through a set-associative LRU cache, simulated on the real trace of hash
  indices that a frame's samples touch (lru_misses, a small C kernel compiled on first use).
- DRAM: each miss fetches one line. The misses cost the larger of their bandwidth time
  (misses * line / bytes per cycle) and their latency time with `outstanding` misses in flight
  (misses * latency / outstanding): dram_cycles().
"""

from __future__ import annotations

import ctypes
import hashlib
import math
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hero.intarith import hash_entry_address, hash_words_per_level

_SRC = Path(__file__).resolve().parent / "native" / "cache_sim.c"
_BUILD = Path(__file__).resolve().parents[1] / "build" / "native"
_lib = None


@dataclass(frozen=True)
class Placement:
    words: tuple[int, ...]  # memory words per level at its bit width
    on_chip: tuple[bool, ...]
    base_word: tuple[int, ...]  # first word of each level in its memory (SRAM or DRAM image)

    @property
    def on_chip_words(self) -> int:
        return sum(w for w, o in zip(self.words, self.on_chip, strict=True) if o)


def place_levels(entries: list[int], features: int, bits: list[int], word_bits: int,
                 sram_words: int) -> Placement:
    """Smallest levels on chip first, until the table SRAM is full."""
    words = [hash_words_per_level(e, features, b, word_bits) for e, b in zip(entries, bits, strict=True)]
    on_chip = [False] * len(words)
    used = 0
    for lvl in sorted(range(len(words)), key=lambda i: (words[i], i)):
        if used + words[lvl] > sram_words:
            break
        on_chip[lvl] = True
        used += words[lvl]
    base, next_on, next_off = [], 0, 0
    for w, o in zip(words, on_chip, strict=True):
        base.append(next_on if o else next_off)
        if o:
            next_on += w
        else:
            next_off += w
    return Placement(tuple(words), tuple(on_chip), tuple(base))


def entry_line(idx: np.ndarray, base_word: int, features: int, bits: int, word_bits: int,
               line_bytes: int) -> np.ndarray:
    """Cache line of each entry's first bit: entries are packed densely, F*bits each, from base."""
    word, bit = hash_entry_address(idx, features, bits, word_bits, base_word)
    return (word * word_bits + bit) // (8 * line_bytes)


def _compile() -> ctypes.CDLL:
    src = _SRC.read_text()
    key = hashlib.sha256(src.encode()).hexdigest()[:16]
    so = _BUILD / f"cache_sim-{key}.so"
    if not so.exists():
        cc = shutil.which("gcc") or shutil.which("cc")
        if cc is None:
            raise RuntimeError("no C compiler (gcc) found: install build-essential")
        _BUILD.mkdir(parents=True, exist_ok=True)
        tmp = so.with_suffix(f".{np.random.randint(1 << 30)}.tmp")
        subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", str(tmp), str(_SRC)], check=True)
        tmp.replace(so)
    lib = ctypes.CDLL(str(so))
    lib.lru_misses.restype = ctypes.c_int64
    lib.lru_misses.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                               ctypes.c_int64, ctypes.c_int32, ctypes.c_void_p]
    return lib


def lru_misses(lines: np.ndarray, stream: np.ndarray, n_streams: int, sets: int, ways: int,
               counted: np.ndarray | None = None) -> np.ndarray:
    """Misses per stream of a set-associative LRU cache, cold at the start of the trace.

    Accesses whose `counted` flag is 0 only warm the cache (default: every access counts).
    """
    global _lib
    if _lib is None:
        _lib = _compile()
    lines = np.ascontiguousarray(lines, dtype=np.int64)
    stream = np.ascontiguousarray(stream, dtype=np.int32)
    counted = np.ones(lines.shape, np.uint8) if counted is None else np.ascontiguousarray(counted, np.uint8)
    if not lines.shape == stream.shape == counted.shape:
        raise ValueError("lines, stream and counted must have the same shape")
    out = np.zeros(n_streams, dtype=np.int64)
    if sets < 1 or ways < 1:  # no cache: every counted access misses
        out += np.bincount(stream[counted.astype(bool)], minlength=n_streams)[:n_streams]
        return out
    total = _lib.lru_misses(lines.ctypes.data, stream.ctypes.data, counted.ctypes.data, lines.size, sets, ways,
                            out.ctypes.data)
    if total < 0:
        raise MemoryError("cache simulator could not allocate its tag store")
    return out


def lru_misses_reference(lines, stream, n_streams: int, sets: int, ways: int, counted=None) -> np.ndarray:
    """Plain-Python LRU cache, the definition the C kernel is tested against."""
    cache = [[] for _ in range(max(sets, 1))]
    out = np.zeros(n_streams, dtype=np.int64)
    counted = np.ones(len(lines), bool) if counted is None else np.asarray(counted, bool)
    for line, s, c in zip(np.asarray(lines).tolist(), np.asarray(stream).tolist(), counted.tolist(), strict=True):
        ways_list = cache[line % max(sets, 1)]
        if sets >= 1 and ways >= 1 and line in ways_list:
            ways_list.remove(line)
            ways_list.append(line)
            continue
        out[s] += c
        if sets >= 1 and ways >= 1:
            if len(ways_list) == ways:
                ways_list.pop(0)
            ways_list.append(line)
    return out


def dram_cycles(misses: int, line_bytes: int, bytes_per_cycle: float, latency_cycles: int,
                outstanding: int = 8) -> int:
    """Cycles to serve `misses` line fills: bandwidth- or latency-bound, whichever is slower."""
    if misses <= 0:
        return 0
    bandwidth = misses * line_bytes / bytes_per_cycle
    latency = misses * latency_cycles / outstanding
    return math.ceil(max(bandwidth, latency))
