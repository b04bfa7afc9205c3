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
