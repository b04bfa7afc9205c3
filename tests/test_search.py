"""hero.search: environment, agent, budgets, the whole run with resume, and its errors."""

import csv
import json
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from hero import checkpoint
from hero.quant.calib import checkpoint_scenes
from hero.quant.policy import Policy
from hero.search.agent import DDPG, LEVELLED_WARMUP_SPREAD, DDPGConfig
from hero.search.env import QuantEnv, action_to_bits, sensitivities, units_of
from hero.search.refine import refine
from hero.search.run import STATE, scoring_setup, search
from hero.search.score import Score, Scorer, cost_efficiency

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


def test_sensitivity_feature_ranks_units_and_grows_at_fewer_bits(tiny_ckpt):
    import torch

    from hero.quant.qnerf import calibrate_ranges

    model, _ = checkpoint.load(tiny_ckpt)
    g = torch.Generator().manual_seed(0)
    lo, hi = model.aabb
    pos = lo + (hi - lo) * torch.rand(2048, 3, generator=g)
    d = torch.nn.functional.normalize(torch.randn(2048, 3, generator=g), dim=-1)
    samples = calibrate_ranges(model, pos, d, n_samples=1024).samples
    s4, s2 = sensitivities(model, samples, 4), sensitivities(model, samples, 2)
    plain = units_of(model, {}, {})
    assert set(s4) == {(u.name, u.kind) for u in plain}
    assert all(np.isfinite(v) and v > 0 for v in s4.values())
    assert all(s2[k] > s4[k] for k in s4), "two bits must perturb every unit more than four"
    env = QuantEnv(model, units_of(model, {}, {}, s4))
    assert env.obs_dim == QuantEnv(model, plain).obs_dim + 1 and env.features[-1] == "sensitivity"
    col = env._norm[:, -1]
    assert col.min() == 0 and col.max() == 1  # normalized over the units, which differ


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


def test_levelled_warm_up_spreads_episodes_not_units():
    """The levelled warm-up: one level per episode, the units near it; the default, HAQ's, independent."""
    obs = np.zeros(6, dtype=np.float32)

    def episodes(spread):
        agent = DDPG(6, DDPGConfig(warmup=40, warmup_spread=spread), seed=1)
        return np.array([[agent.act(obs, e) for _ in range(25)] for e in range(40)])

    lev, iid = episodes(LEVELLED_WARMUP_SPREAD), episodes(DDPGConfig().warmup_spread)
    assert lev.std(axis=1).mean() < 0.2 < iid.std(axis=1).mean()  # within an episode
    assert lev.mean(axis=1).std() > 0.2 > iid.mean(axis=1).std()  # across episodes
    assert ((lev >= 0) & (lev <= 1)).all()


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
    assert summary["objective"] == "latency"
    from PIL import Image

    w, h = Image.open(tmp_path / "side_by_side.png").size  # truth, FP32, found, difference
    _, _, test_scene = checkpoint_scenes(checkpoint.load(tiny_ckpt)[1])
    assert (w, h) == (4 * test_scene.width, test_scene.height)
    for x in r.values():  # fps per MiB: 1 / (latency in s x size in MiB)
        assert x["cost_efficiency"] == pytest.approx(1 / (x["latency_ms"] / 1000 * x["size_kib"] / 1024))
    # A state from before --objective has no objective in its key: it resumes as the latency objective.
    st = checkpoint.load_state(tmp_path / STATE)
    del st["config"]["objective"]
    checkpoint.save(tmp_path / STATE, st)
    # Interrupted runs resume: asking for more episodes keeps the first five as they were.
    search(tiny_ckpt, tmp_path, **{**ARGS, "episodes": 7})
    rows2 = list(csv.DictReader((tmp_path / "episodes.csv").open()))
    assert len(rows2) == 7 and rows2[:5] == rows
    # Episodes scored on other held-out rays are not mixed in.
    with pytest.raises(ValueError, match="other settings"):
        search(tiny_ckpt, tmp_path, **{**ARGS, "episodes": 7, "held_out": 512})
    # nor episodes rewarded by another objective
    with pytest.raises(ValueError, match="other settings"):
        search(tiny_ckpt, tmp_path, **{**ARGS, "episodes": 7}, objective="cost")


def test_cost_efficiency_is_frames_per_second_per_mib():
    assert cost_efficiency(250.0, 2 * 8 * 2**20) == pytest.approx(1 / (0.25 * 2))
    s = Score(psnr=30.0, latency_ms=40.0, size_bits=3 * 2**20, reward=0.0)  # 40 ms, 0.375 MiB
    assert s.cost == pytest.approx(40 * 0.375) and s.cost_efficiency == pytest.approx(1 / (0.04 * 0.375))


def test_cost_objective_reward_is_psnr_less_weighted_cost_ratio(tiny_ckpt, tmp_path):
    model, meta, _, _, _, by_cost = scoring_setup(tiny_ckpt, held_out=256, latency_weight=2.5, objective="cost")
    by_latency = Scorer(model, meta, by_cost.ranges, by_cost.rays, by_cost.frame, 2.5)
    env = QuantEnv(model, units_of(model, {}, {}))
    pol = env.policy([3 + i % 5 for i in range(len(env.units))])
    s, u8 = by_cost(pol), by_cost(Policy.uniform(model, 8))
    assert s.reward == pytest.approx((s.psnr - by_cost.psnr_fp32) - 2.5 * s.cost / u8.cost, abs=1e-12)
    t = by_latency(pol)
    assert (t.psnr, t.latency_ms, t.size_bits) == (s.psnr, s.latency_ms, s.size_bits)
    assert t.reward == pytest.approx((s.psnr - by_cost.psnr_fp32) - 2.5 * s.latency_ms / u8.latency_ms, abs=1e-12)
    assert s.size_bits < u8.size_bits and s.reward > t.reward  # smaller than uniform 8: cost falls faster
    with pytest.raises(ValueError, match="objective must be one of latency, cost"):
        Scorer(model, meta, by_cost.ranges, by_cost.rays, by_cost.frame, objective="speed")
    # The CLI's search scores its episodes with the same scorer, and reports the objective.
    res = subprocess.run([sys.executable, "-m", "hero.search", "--ckpt", str(tiny_ckpt), "--out", str(tmp_path),
                          "--objective", "cost", "--latency-weight", "2.5", "--episodes", "2", "--refine-passes", "0",
                          "--qat-steps", "1", "--held-out-rays", "256", "--test-views", "1", "--no-progress"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "objective: cost (latency weight 2.5)" in res.stdout and "fps/MiB" in res.stdout
    assert json.loads((tmp_path / "summary.json").read_text())["objective"] == "cost"
    for row in csv.DictReader((tmp_path / "episodes.csv").open()):
        bits = [int(b) for b in row["bits"].split()]
        assert float(row["reward"]) == pytest.approx(by_cost(env.policy(bits)).reward, abs=2e-4)


def test_latency_budget_is_enforced(tiny_ckpt, tmp_path):
    free = search(tiny_ckpt, tmp_path / "free", **{**ARGS, "episodes": 3})
    budget = 0.8 * free["results"]["uniform8"]["latency_ms"]
    search(tiny_ckpt, tmp_path / "b", latency_budget=budget, **{**ARGS, "episodes": 3})
    rows = list(csv.DictReader((tmp_path / "b" / "episodes.csv").open()))
    assert all(float(r["latency_ms"]) <= budget for r in rows if r["feasible"] == "1")


@pytest.mark.parametrize("args, message", [
    (["--episodes", "0"], "argument --episodes: 0 is out of range; expected an integer >= 1"),
    (["--refine-passes", "-1"], "argument --refine-passes: -1 is out of range; expected an integer >= 0"),
    (["--hw", "fast"], "invalid choice: 'fast'"),
    (["--objective", "speed"], "error: argument --objective: invalid choice: 'speed' (choose from 'latency', 'cost')"),
    (["--hw-preset", "nope"], "no such file or preset"),
    (["--ckpt", "none.pt"], "--ckpt none.pt: no such file"),
    (["--data", "/nonexistent/scene", "--train-minutes", "0.1"], "/nonexistent/scene"),
])
def test_search_cli_errors(tmp_path, args, message):
    res = subprocess.run([sys.executable, "-m", "hero.search", "--out", str(tmp_path), "--no-progress", *args],
                         capture_output=True, text=True)
    assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr
    assert sum("error" in line for line in res.stderr.splitlines()) == 1  # one line says what is wrong


def test_ctrl_c_in_the_episode_loop_saves_and_the_rerun_resumes(tiny_ckpt, tmp_path):
    """A real SIGINT to python -m hero.search: it finishes the episode, saves, exits 130 with one line."""
    state = tmp_path / STATE
    proc = subprocess.Popen([sys.executable, "-m", "hero.search", "--ckpt", tiny_ckpt, "--out", str(tmp_path),
                             "--episodes", "500", "--held-out-rays", "256", "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    lines = [line for line in err.splitlines() if line.strip()]
    assert proc.returncode == 130 and len(lines) == 1 and "Traceback" not in err, err[-2000:]
    done = int(re.search(r"interrupted at episode (\d+); state saved in .*search_state\.pt; rerun the same "
                         r"command to resume", lines[0]).group(1))
    assert 1 <= done < 500 and checkpoint.load_state(state)["episode"] == done
    before = list(csv.DictReader((tmp_path / "episodes.csv").open()))
    assert len(before) == done
    search(tiny_ckpt, tmp_path, **{**ARGS, "episodes": done + 1})
    after = list(csv.DictReader((tmp_path / "episodes.csv").open()))
    assert len(after) == done + 1 and after[:done] == before


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
