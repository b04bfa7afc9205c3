"""Greedy refinement of the agent's best policy: one-bit moves, kept while the reward improves.

DDPG finds the region; a few dozen exact evaluations then settle each unit. Each pass tries, for
every unit in turn, one bit less and one bit more (within [b_min, b_max] and the budgets) and keeps
a move as soon as it raises the reward. It stops after `passes` passes or a pass with no move.
"""

from __future__ import annotations

from collections.abc import Callable


def refine(bits: list[int], b_min: int, b_max: int, reward: Callable[[list[int]], float],
           fits: Callable[[list[int]], bool], passes: int = 2, on_eval: Callable | None = None) -> list[int]:
    """Return the refined bit list; `reward(bits)` scores a candidate, `on_eval(bits, r)` sees each one."""
    bits = list(bits)
    best = reward(bits)
    for _ in range(passes):
        moved = False
        for i in range(len(bits)):
            for delta in (-1, 1):
                b = bits[i] + delta
                if not b_min <= b <= b_max:
                    continue
                cand = bits[:i] + [b] + bits[i + 1:]
                if not fits(cand):
                    continue
                r = reward(cand)
                if on_eval is not None:
                    on_eval(cand, r)
                if r > best:
                    bits, best, moved = cand, r, True
                    break
        if not moved:
            break
    return bits
