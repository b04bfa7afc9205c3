"""Greedy refinement of the agent's best policy: coordinate ascent in one-bit steps.

DDPG finds the region; a few dozen exact evaluations then settle each unit. Each pass visits every
unit in turn and tries one bit less; while that raises the reward it keeps going down, otherwise it
tries one bit more and keeps going up while that raises the reward (within [b_min, b_max] and the
budgets). A unit that costs no latency thus climbs to the bits that stop paying in PSNR within
one pass. It stops after `passes` passes, after a pass with no move, or after `max_evaluations`
candidates (a budget shared with the search that found the start).
"""

from __future__ import annotations

from collections.abc import Callable

REFINE_METHOD = "coordinate-ascent/1"  # kept in the search state: a resumed search refines again when it changes


def refine(bits: list[int], b_min: int, b_max: int, reward: Callable[[list[int]], float],
           fits: Callable[[list[int]], bool], passes: int = 2, on_eval: Callable | None = None,
           max_evaluations: int | None = None) -> list[int]:
    """Return the refined bit list; `reward(bits)` scores a candidate, `on_eval(bits, r)` sees each one;
    at most `max_evaluations` candidates are scored (None: no cap)."""
    bits = list(bits)
    best = reward(bits)
    left = float("inf") if max_evaluations is None else max_evaluations
    for _ in range(passes):
        moved = False
        for i in range(len(bits)):
            for delta in (-1, 1):
                stepped = False
                while b_min <= bits[i] + delta <= b_max:
                    cand = bits[:i] + [bits[i] + delta] + bits[i + 1:]
                    if not fits(cand):
                        break
                    if left <= 0:
                        return bits
                    left -= 1
                    r = reward(cand)
                    if on_eval is not None:
                        on_eval(cand, r)
                    if r <= best:
                        break
                    bits, best, stepped = cand, r, True
                if stepped:
                    moved = True
                    break
        if not moved:
            break
    return bits
