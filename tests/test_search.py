"""hero.search: environment, agent, budgets, the whole run with resume, and its errors."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from hero import checkpoint
from hero.search.agent import DDPG, DDPGConfig
from hero.search.env import QuantEnv, action_to_bits, units_of
from hero.search.refine import refine
from hero.search.run import search

ARGS = {"episodes": 5, "qat_steps": 2, "held_out": 256, "test_views": 1, "progress": False, "warmup": 2,
        "refine_passes": 1}


def test_action_to_bits_is_haqs_mapping():
    assert [action_to_bits(a, 2, 8) for a in (0.0, 0.07, 0.15, 0.5, 0.93, 1.0)] == [2, 2, 3, 5, 8, 8]


def test_environment_steps_through_every_unit(tiny_ckpt):
    model, _ = checkpoint.load(tiny_ckpt)
    env = QuantEnv(model, units_of(model, {}, {}))
    kinds = [u.kind for u in env.units]
    assert kinds.count("table") == model.grid.levels and kinds.count("weights") == 5 and kinds.count("activations") == 4
    obs, done, n = env.reset(), False, 0
    while not done:
        assert obs.shape == (env.obs_dim,) and 0 <= obs.min() and obs.max() <= 1
        obs, done = env.step(0.5)
        n += 1
    assert n == len(env.units) and set(env.bits) == {5}
    pol = env.policy()
    assert set(pol.tables.values()) == {5} and pol.activations["density.fc0"] == 8


def test_budget_lowers_bits_from_the_last_unit(tiny_ckpt):
    model, _ = checkpoint.load(tiny_ckpt)
    env = QuantEnv(model, units_of(model, {}, {}))
    bits = [8] * len(env.units)
    fitted = env.fit_budget(bits, lambda p: sum(p.weights.values()) <= 36)
    weights = [b for b, u in zip(fitted, env.units, strict=True) if u.kind == "weights"]
    assert sum(weights) <= 36 and weights[-1] < weights[0]
    assert env.fit_budget(bits, lambda p: False) is None


def test_agent_is_reproducible_and_explores_less_over_time():
    a, b = DDPG(6, DDPGConfig(warmup=2), seed=3), DDPG(6, DDPGConfig(warmup=2), seed=3)
    obs = np.full(6, 0.5, dtype=np.float32)
    assert [a.act(obs, e) for e in range(5)] == [b.act(obs, e) for e in range(5)]
    assert a.sigma(2) > a.sigma(50)
    a.remember([(obs, 0.3, obs, True)] * 70, reward=-1.0)
    assert a.update()["critic"] >= 0


def test_search_writes_results_and_resumes(tiny_ckpt, tmp_path):
    summary = search(tiny_ckpt, tmp_path, **ARGS)
    for f in ("policy.json", "episodes.csv", "summary.json", "pareto.png", "latency_breakdown.png",
              "latency_breakdown.json", "side_by_side.png"):
        assert (tmp_path / f).exists(), f
    rows = list(csv.DictReader((tmp_path / "episodes.csv").open()))
    assert [int(r["episode"]) for r in rows] == list(range(5))
    r = summary["results"]
    assert set(r) == {"fp32", "uniform8", "uniform4", "found_ddpg", "found", "found_qat"}
    ref = summary["refinement"]
    assert ref["evaluations"] > 0 and ref["reward_after"] >= ref["reward_before"]
    assert r["uniform4"]["latency_ms"] < r["uniform8"]["latency_ms"]
    assert r["uniform4"]["size_kib"] < r["uniform8"]["size_kib"] < r["fp32"]["size_kib"]
    assert json.loads((tmp_path / "summary.json").read_text())["episodes"] == 5
    # Interrupted runs resume: asking for more episodes keeps the first five as they were.
    search(tiny_ckpt, tmp_path, **{**ARGS, "episodes": 7})
    rows2 = list(csv.DictReader((tmp_path / "episodes.csv").open()))
    assert len(rows2) == 7 and rows2[:5] == rows
    # Episodes scored on other held-out rays are not mixed in.
    with pytest.raises(ValueError, match="other settings"):
        search(tiny_ckpt, tmp_path, **{**ARGS, "episodes": 7, "held_out": 512})


def test_latency_budget_is_enforced(tiny_ckpt, tmp_path):
    free = search(tiny_ckpt, tmp_path / "free", **{**ARGS, "episodes": 3})
    budget = 0.8 * free["results"]["uniform8"]["latency_ms"]
    search(tiny_ckpt, tmp_path / "b", latency_budget=budget, **{**ARGS, "episodes": 3})
    rows = list(csv.DictReader((tmp_path / "b" / "episodes.csv").open()))
    assert all(float(r["latency_ms"]) <= budget for r in rows if r["feasible"] == "1")


@pytest.mark.parametrize("args, message", [
    (["--episodes", "0"], "--episodes 0: out of range"),
    (["--refine-passes", "-1"], "--refine-passes -1: out of range"),
    (["--hw", "fast"], "invalid choice: 'fast'"),
    (["--hw-preset", "nope"], "no such file or preset"),
    (["--ckpt", "none.pt"], "--ckpt none.pt: no such file"),
    (["--data", "/nonexistent/scene", "--train-minutes", "0.1"], "/nonexistent/scene"),
])
def test_search_cli_errors(tmp_path, args, message):
    res = subprocess.run([sys.executable, "-m", "hero.search", "--out", str(tmp_path), "--no-progress", *args],
                         capture_output=True, text=True)
    assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr


def test_refine_climbs_in_one_bit_steps_within_the_budget():
    target = [3, 7, 5, 8]
    seen = []

    def reward(bits):
        return -sum((b - t) ** 2 for b, t in zip(bits, target, strict=True))

    out = refine([5, 5, 5, 5], 2, 8, reward, lambda b: sum(b) <= 22, passes=10, on_eval=lambda c, r: seen.append(c))
    assert sum(out) <= 22 and reward(out) > reward([5, 5, 5, 5])
    assert all(sum(c) <= 22 and all(2 <= b <= 8 for b in c) for c in seen)
    assert refine([5, 5, 5, 5], 2, 8, reward, lambda b: True, passes=10) == target
    # a unit walks as far as the reward keeps rising within a single pass
    assert refine([5, 5, 5, 5], 2, 8, reward, lambda b: True, passes=1) == target
    assert refine([2, 2, 2, 2], 2, 8, lambda b: float(sum(b)), lambda b: True, passes=1) == [8, 8, 8, 8]
    assert refine([5, 5, 5, 5], 2, 8, reward, lambda b: True, passes=0) == [5, 5, 5, 5]
