"""bench.worker.run_json: a bench's variant in its own process."""

import pytest

from bench.worker import run_json
from hero import cli


def test_a_workers_refusal_is_its_one_line_and_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        run_json("bench.step_time", ["--variant", "plain", "--steps", "1"])
    assert e.value.code == cli.BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["python -m bench.step_time: error: argument --steps: 1 is out of range; expected an integer >= 2 "
                   "(see --help)"]


def test_a_workers_result_is_its_last_json_line():
    res = run_json("bench.step_time", ["--variant", "plain", "--steps", "2", "--skip", "1"])
    assert set(res) == {"step_s", "samples"} and res["step_s"] > 0 and res["samples"] > 0
