"""python -m sim_py.report on a real (tiny) trained checkpoint."""

import json
import subprocess
import sys

import pytest


@pytest.fixture
def ckpt(tiny_ckpt):
    return tiny_ckpt


def run(*args):
    return subprocess.run([sys.executable, "-m", "sim_py.report", *args], capture_output=True, text=True)


def test_report_writes_breakdown_json_and_png(ckpt, tmp_path):
    res = run("--ckpt", ckpt, "--hw", "edge_asic", "--policies", "uniform8,uniform2", "--out", str(tmp_path))
    assert res.returncode == 0, res.stderr
    data = json.loads((tmp_path / "breakdown.json").read_text())
    p8, p2 = data["policies"]["uniform8"], data["policies"]["uniform2"]
    assert data["samples"] > 0 and p8["total_ms"] > p2["total_ms"] > 0
    assert p8["mlp_cycles"] > p2["mlp_cycles"]
    assert sum(p8["shares"].values()) == pytest.approx(1.0)
    png = (tmp_path / "breakdown.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


@pytest.mark.parametrize("args, message", [
    (["--policies", "int8"], "not a policy name of the form uniformN"),
    (["--hw", "nope"], "no such file or preset"),
    (["--view", "999"], "--view 999: the test split has"),
])
def test_report_bad_arguments_get_one_line(ckpt, tmp_path, args, message):
    res = run("--ckpt", ckpt, "--out", str(tmp_path), *args)
    assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr
