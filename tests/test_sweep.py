"""hero.sweep: a tiny sweep on a local Ray (rows, resume, a job that fails on purpose) and the sweep file's errors."""

import csv
import os
import subprocess
import sys

import pytest

from hero.sweep.config import SweepError, load_sweep
from hero.sweep.run import FAIL_ENV

TINY = """
out = "out"
hardware = ["fpga_ecp5"]
seeds = [0, 1]
methods = ["ddpg", "random"]

[[scenes]]
data = "procedural"
preset = "tiny"
train_steps = 40

[scenes.model]   # the shared tests' tiny model (tests/conftest.py)
levels = 4
log2T = 12
n_max_per_bound = 32
hidden = 16
grid_res = 16
steps_per_ray = 64
rays = 256

[search]
episodes = 3
evaluations = 6
warmup = 1
held_out_rays = 256
refine_passes = 1
qat_steps = 1
test_views = 1
"""


def sweep(path, fail: str | None = None):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop(FAIL_ENV, None)
    if fail:
        env[FAIL_ENV] = fail
    return subprocess.run([sys.executable, "-m", "hero.sweep", str(path), "--num-cpus", "2"], capture_output=True,
                          text=True, env=env, timeout=300)


def rows(out):
    return list(csv.DictReader((out / "results.csv").open()))


def test_tiny_sweep_on_ray_writes_a_row_per_job_resumes_and_survives_a_failing_job(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    out = tmp_path / "out"
    bad = "procedural-fpga_ecp5-s1-random"
    res = sweep(path, fail=bad)
    assert res.returncode == 1, res.stdout + res.stderr[-3000:]
    assert f"FAILED {bad}: RuntimeError: job {bad} fails on purpose" in res.stdout
    assert "done 3/4" in res.stdout and "failed 1" in res.stdout and "best reward" in res.stdout
    first = rows(out)
    assert [(r["seed"], r["method"]) for r in first] == [("0", "ddpg"), ("0", "random"), ("1", "ddpg"),
                                                        ("1", "random")]
    assert [r["status"] for r in first] == ["done", "done", "done", "failed"]
    assert "fails on purpose" in first[3]["error"]
    for r in first[:3]:
        assert int(r["evaluations"]) == 6 and float(r["best_reward"]) > float(r["reward_uniform8"])
        assert float(r["hypervolume"]) > 0 and 0 < float(r["latency_ms"]) and r["test_psnr"] and r["qat_psnr"]
    assert first[0]["evals_to_99"] or first[1]["evals_to_99"]  # the better method of seed 0 reaches its own best
    assert len(list((out / "checkpoints").iterdir())) == 1  # one checkpoint shared by every job
    assert (out / "front_procedural_fpga_ecp5.png").stat().st_size > 0
    md = (out / "summary.md").read_text()
    assert "## procedural on fpga_ecp5" in md and "| ddpg | 2/2 |" in md and "| random | 1/2 |" in md
    assert f"`{bad}`" in md
    # The rerun skips the finished jobs (their rows unchanged) and runs the failed one again (it fails again).
    again = sweep(path, fail=bad)
    assert "4 jobs, 3 finished before, 1 to run" in again.stdout, again.stdout + again.stderr[-3000:]
    second = rows(out)
    assert [r for r in second[:3]] == [r for r in first[:3]]


@pytest.mark.parametrize("edit, message", [
    (("seeds = [0, 1]", "seeds = [0, 0]"), "tiny.toml: seeds[1]: 0 is listed twice"),
    (("methods = [\"ddpg\", \"random\"]", "methods = [\"ddpg\", \"bayes\"]"),
     "methods[1]: 'bayes' is not a method (choose from ddpg, random, greedy, tpe, nsga2, caq)"),
    (("hardware = [\"fpga_ecp5\"]", "hardware = [\"fpga_nope\"]"), "hardware[0]: hardware 'fpga_nope': no such"),
    (("preset = \"tiny\"", "preset = \"huge\""), "scenes[0].preset: 'huge' is not a preset"),
    (("data = \"procedural\"", "data = \"no/such/scene\""), "scenes[0].data:"),
    (("levels = 4", "levels = 4\nlayers = 3"), "scenes[0].model.layers: unknown model key"),
    (("episodes = 3", "episodes = 0"), "search.episodes: 0: out of range"),
    (("evaluations = 6", "evaluations = 2"), "search.evaluations: 2: fewer than search.episodes 3"),
    (("qat_steps = 1", "qat_step = 1"), "search.qat_step: unknown key"),
    (("held_out_rays = 256", "held_out_rays = \"many\""), "search.held_out_rays: 'many' is not an integer"),
    (("qat_steps = 1", "qat_steps = 1\nlevelled_warmup = 1"), "search.levelled_warmup: 1 is not true or false"),
    (("episodes = 3", "episodes = true"), "search.episodes: True is not an integer"),
    (("out = \"out\"", "out = \"out\"\nscene = 1"), "tiny.toml: scene: unknown key"),
    (("[[scenes]]", "[scenes]"), "scenes: expected a non-empty list of [[scenes]] tables"),
    (("seeds = [0, 1]", "seeds = [0, 1"), "tiny.toml: not valid TOML"),
    (("data = \"procedural\"", "ckpt = \"none.pt\""), "scenes[0].ckpt: "),
])
def test_sweep_file_errors_name_the_key(tmp_path, edit, message):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY.replace(*edit))
    with pytest.raises(SweepError) as e:
        load_sweep(path)
    assert message in str(e.value)


def test_sweep_cli_refuses_a_bad_file_in_one_line(tmp_path):
    res = subprocess.run([sys.executable, "-m", "hero.sweep", str(tmp_path / "none.toml")], capture_output=True,
                         text=True)
    assert res.returncode == 2 and res.stderr.strip() == (f"error: {tmp_path / 'none.toml'}: no such file (expected "
                                                          "a sweep TOML file)")
    (tmp_path / "t.toml").write_text(TINY)
    sw = load_sweep(tmp_path / "t.toml")
    ids = [f"procedural-fpga_ecp5-s{s}-{m}" for s in (0, 1) for m in ("ddpg", "random")]
    assert [j["id"] for j in sw.jobs()] == ids
    assert sw.out == tmp_path / "out" and sw.search["evaluations"] == 6 and sw.search["held_out"] == 256


def test_a_scene_given_by_its_checkpoint_is_not_trained_again(tmp_path):
    (tmp_path / "lego").mkdir()
    (tmp_path / "lego" / "checkpoint.pt").write_bytes(b"")
    text = TINY.replace('data = "procedural"', 'ckpt = "lego/checkpoint.pt"')
    (tmp_path / "t.toml").write_text(text)
    with pytest.raises(SweepError, match=r"scenes\[0\]\.preset: not with scenes\[0\]\.ckpt"):
        load_sweep(tmp_path / "t.toml")
    (tmp_path / "t.toml").write_text(text.split("preset =")[0] + "[search]" + text.split("[search]")[1])
    sc = load_sweep(tmp_path / "t.toml").scenes[0]
    assert sc.name == "lego" and sc.ckpt == str(tmp_path / "lego" / "checkpoint.pt")
