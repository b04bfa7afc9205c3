"""Scene loaders: NeRF-synthetic (Blender), LLFF, instant-ngp transforms.json and the procedural scene."""

from hero.data.errors import DataError
from hero.data.scene import Scene, load_scene

__all__ = ["DataError", "Scene", "load_scene"]
