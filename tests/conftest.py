"""Shared fixtures: one tiny NeRF trained on the procedural scene, for the tests that need a checkpoint."""

import pytest

from hero.nerf.presets import preset
from hero.train import default_config, train

#: The model the shared tests train: small, and pinned here so tests do not follow preset changes.
TINY_MODEL = {"levels": 4, "features": 2, "log2T": 12, "n_min": 8, "n_max_per_bound": 32, "hidden": 16,
              "grid_res": 16, "steps_per_ray": 64, "rays": 256, "max_samples": 16384}


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny_ckpt")
    res = train(default_config(preset="tiny", model=preset("tiny", **TINY_MODEL), out=str(out), steps=40,
                               progress=False, save_renders=False, test_views=2))
    return res["checkpoint"]


def ctrl_c_once_written(argv: list[str], path, state_name: str) -> int:
    """Run `python -m argv`, send a real SIGINT once `path` exists, and check the answer: exit 130, one
    line naming the step and the saved state `state_name`. Returns that step."""
    import re
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-m", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not path.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    lines = [line for line in err.splitlines() if line.strip()]
    assert proc.returncode == 130, err[-2000:]
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    return int(re.search(rf"interrupted at step (\d+); state saved in .*{re.escape(state_name)}; rerun the same "
                         r"command to resume", lines[0]).group(1))
