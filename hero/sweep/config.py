"""The sweep file: scenes x hardware x seeds x methods, and the search settings (docs/search.md#sweeps).

    out = "runs/sweep"                      # results folder (--out overrides it)
    hardware = ["fpga_ecp5", "my_hw.toml"]  # presets or TOML files
    seeds = [0, 1, 2]
    methods = ["ddpg", "random"]            # hero.search --method

    [[scenes]]
    data = "procedural"                     # a scene folder, or procedural
    name = "procedural"                     # optional: the folder's name
    preset = "cpu"                          # training preset: cpu, paper, tiny
    downscale = "auto"                      # or an integer >= 1
    train_steps = 1000                      # or train_minutes = 4 (default: the preset's steps)
    # ckpt = "runs/lego/checkpoint.pt"      # a trained checkpoint instead: no training
    # [scenes.model]                        # overrides of the preset's model (hero/nerf/presets.py)

    [search]                                # hero.search's flags, as keys
    episodes = 60
    evaluations = 180
    # levelled_warmup = true                # DDPG's warm-up episodes each around one random level
    # sensitivity_obs = true                # DDPG also observes each unit's sensitivity

Relative paths are relative to the sweep file's folder. Every error is one `SweepError` naming the
file and the key.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from hero.cli import BadInput, read_file
from hero.data.scene import AUTO
from hero.nerf.presets import PRESETS
from hero.search.methods import METHODS
from hero.search.score import OBJECTIVES


class SweepError(BadInput):
    """A sweep file that cannot be run; the message names the file and the key."""


#: [search] keys: name -> (type, check, default, hero.search.run.search()'s parameter)
SEARCH_KEYS = {
    "episodes": (int, lambda v: v >= 1, 60, "episodes"),
    "evaluations": (int, lambda v: v >= 1, None, "evaluations"),
    "backend": (str, lambda v: v in ("analytic", "rtl_calibrated"), "rtl_calibrated", "hw"),
    "objective": (str, lambda v: v in OBJECTIVES, "latency", "objective"),
    "latency_weight": (float, lambda v: 0 <= v < math.inf, 3.0, "latency_weight"),
    "latency_budget": (float, lambda v: 0 < v < math.inf, None, "latency_budget"),
    "size_budget": (float, lambda v: 0 < v < math.inf, None, "size_budget_kib"),
    "held_out_rays": (int, lambda v: v >= 64, 16384, "held_out"),
    "refine_passes": (int, lambda v: v >= 0, 10, "refine_passes"),
    "warmup": (int, lambda v: v >= 0, None, "warmup"),
    "levelled_warmup": (bool, lambda v: True, False, "levelled_warmup"),
    "sensitivity_obs": (bool, lambda v: True, False, "sensitivity_obs"),
    "qat_steps": (int, lambda v: v >= 0, 200, "qat_steps"),
    "test_views": (int, lambda v: v >= 1, 5, "test_views"),
}
SCENE_KEYS = {"data", "name", "preset", "downscale", "train_steps", "train_minutes", "ckpt", "model"}
TOP_KEYS = {"out", "hardware", "seeds", "methods", "scenes", "search"}


@dataclass(frozen=True)
class Scene:
    name: str
    data: str  # "procedural" or an absolute path
    preset: str = "cpu"
    downscale: object = AUTO
    train_steps: int | None = None
    train_minutes: float | None = None
    ckpt: str | None = None  # a trained checkpoint: no training
    model: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Hardware:
    label: str  # the preset's name, or the TOML file's stem
    spec: str  # what load_hardware takes: the name, or the file's absolute path


@dataclass
class Sweep:
    path: Path
    out: Path
    scenes: list[Scene]
    hardware: list[Hardware]
    seeds: list[int]
    methods: list[str]
    search: dict  # search()'s keyword arguments

    def jobs(self) -> list[dict]:
        return [{"id": f"{sc.name}-{hw.label}-s{seed}-{m}", "scene": sc.name, "hardware": hw.label,
                 "hw_spec": hw.spec, "seed": seed, "method": m}
                for sc in self.scenes for hw in self.hardware for seed in self.seeds for m in self.methods]


def _typed(where: str, v, kind):
    if kind is float and isinstance(v, int) and not isinstance(v, bool):
        v = float(v)
    if not isinstance(v, kind) or (isinstance(v, bool) and kind is not bool):
        word = {int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a table",
                bool: "true or false"}[kind]
        raise SweepError(f"{where}: {v!r} is not {word}")
    return v


def load_sweep(path: str | Path, out: Path | None = None) -> Sweep:
    """Parse and check a sweep file; the first problem raises SweepError naming the file and the key."""
    path = Path(path)
    raw = read_file(path, "a sweep TOML file", SweepError, tomllib.loads, "TOML")
    base = path.resolve().parent

    def key(k: str) -> str:
        return f"{path}: {k}"

    def local(p: str) -> Path:
        q = Path(p).expanduser()
        return q if q.is_absolute() else base / q

    for k in raw:
        if k not in TOP_KEYS:
            raise SweepError(f"{key(k)}: unknown key (expected {', '.join(sorted(TOP_KEYS))})")
    for k in ("scenes", "hardware", "seeds", "methods"):
        if k not in raw:
            raise SweepError(f"{key(k)}: missing")
        if not isinstance(raw[k], list) or not raw[k]:
            raise SweepError(f"{key(k)}: expected a non-empty list" + (" of [[scenes]] tables" if k == "scenes"
                                                                       else ""))

    seeds = [_typed(key(f"seeds[{i}]"), s, int) for i, s in enumerate(raw["seeds"])]
    for i, s in enumerate(seeds):
        if s < 0 or s in seeds[:i]:
            raise SweepError(f"{key(f'seeds[{i}]')}: {s} is " + ("negative" if s < 0 else "listed twice"))
    methods = [_typed(key(f"methods[{i}]"), m, str) for i, m in enumerate(raw["methods"])]
    for i, m in enumerate(methods):
        if m not in METHODS or m in methods[:i]:
            raise SweepError(f"{key(f'methods[{i}]')}: {m!r} is " + ("listed twice" if m in METHODS else
                             f"not a method (choose from {', '.join(METHODS)})"))

    from sim_py.hw import HardwareError, load_hardware

    hardware = []
    for i, h in enumerate(raw["hardware"]):
        h = _typed(key(f"hardware[{i}]"), h, str)
        file = h.endswith(".toml") or "/" in h
        spec = str(local(h)) if file else h
        try:
            load_hardware(spec)
        except HardwareError as e:
            raise SweepError(f"{key(f'hardware[{i}]')}: {e}") from None
        label = Path(h).stem if file else h
        if label in [x.label for x in hardware]:
            raise SweepError(f"{key(f'hardware[{i}]')}: {h!r}: another entry has the name {label!r}")
        hardware.append(Hardware(label, spec))

    scenes = []
    for i, sc in enumerate(raw["scenes"]):
        at = f"scenes[{i}]"
        if not isinstance(sc, dict):
            raise SweepError(f"{key(at)}: expected a table ([[scenes]])")
        for k in sc:
            if k not in SCENE_KEYS:
                raise SweepError(f"{key(f'{at}.{k}')}: unknown key (expected {', '.join(sorted(SCENE_KEYS))})")
        kw = {}
        if "ckpt" in sc:
            ck = local(_typed(key(f"{at}.ckpt"), sc["ckpt"], str))
            if not ck.is_file():
                raise SweepError(f"{key(f'{at}.ckpt')}: {ck}: no such file")
            for k in ("data", "preset", "downscale", "train_steps", "train_minutes", "model"):
                if k in sc:
                    raise SweepError(f"{key(f'{at}.{k}')}: not with {at}.ckpt (the checkpoint has its own)")
            kw["ckpt"] = kw["data"] = data = str(ck)
        else:
            if "data" not in sc:
                raise SweepError(f"{key(f'{at}.data')}: missing (a scene folder, 'procedural', or give ckpt)")
            data = _typed(key(f"{at}.data"), sc["data"], str)
            if data != "procedural":
                if not local(data).exists():
                    raise SweepError(f"{key(f'{at}.data')}: {local(data)}: no such file or folder")
                data = str(local(data))
            kw["data"] = data
            if "preset" in sc:
                kw["preset"] = _typed(key(f"{at}.preset"), sc["preset"], str)
                if kw["preset"] not in PRESETS:
                    raise SweepError(f"{key(f'{at}.preset')}: {kw['preset']!r} is not a preset (choose from "
                                     f"{', '.join(PRESETS)})")
            if "downscale" in sc:
                d = sc["downscale"]
                if d != AUTO and (not isinstance(d, int) or isinstance(d, bool) or d < 1):
                    raise SweepError(f"{key(f'{at}.downscale')}: {d!r}: expected {AUTO!r} or an integer >= 1")
                kw["downscale"] = d
            if "train_steps" in sc and "train_minutes" in sc:
                raise SweepError(f"{key(f'{at}.train_minutes')}: give train_steps or train_minutes, not both")
            if "train_steps" in sc:
                kw["train_steps"] = _typed(key(f"{at}.train_steps"), sc["train_steps"], int)
                if kw["train_steps"] < 1:
                    raise SweepError(f"{key(f'{at}.train_steps')}: {kw['train_steps']}: expected an integer >= 1")
            if "train_minutes" in sc:
                kw["train_minutes"] = _typed(key(f"{at}.train_minutes"), sc["train_minutes"], float)
                if not 0 < kw["train_minutes"] < math.inf:
                    raise SweepError(f"{key(f'{at}.train_minutes')}: {kw['train_minutes']}: expected a number > 0")
            if "model" in sc:
                kw["model"] = _typed(key(f"{at}.model"), sc["model"], dict)
                known = PRESETS[kw.get("preset", "cpu")]
                for k in kw["model"]:
                    if k not in known:
                        raise SweepError(f"{key(f'{at}.model.{k}')}: unknown model key (expected "
                                         f"{', '.join(sorted(known))})")
        if data == "procedural":
            default_name = "procedural"
        else:  # the checkpoint's folder, or the scene's
            default_name = Path(data).parent.name if "ckpt" in kw else Path(data).name
        name = _typed(key(f"{at}.name"), sc.get("name", default_name), str)
        if not name or any(c in name for c in "/\\ ") or name.startswith("."):
            raise SweepError(f"{key(f'{at}.name')}: {name!r}: expected a name without spaces or slashes")
        if name in [s.name for s in scenes]:
            raise SweepError(f"{key(f'{at}.name')}: {name!r}: another scene has that name (give each a name)")
        scenes.append(Scene(name=name, **kw))

    search = {}
    s_raw = raw.get("search", {})
    if not isinstance(s_raw, dict):
        raise SweepError(f"{key('search')}: expected a table ([search])")
    for k, v in s_raw.items():
        if k not in SEARCH_KEYS:
            raise SweepError(f"{key(f'search.{k}')}: unknown key (expected {', '.join(SEARCH_KEYS)})")
        kind, ok, _, _ = SEARCH_KEYS[k]
        v = _typed(key(f"search.{k}"), v, kind)
        if not ok(v):
            raise SweepError(f"{key(f'search.{k}')}: {v!r}: out of range")
        search[k] = v
    kwargs = {param: search.get(k, default) for k, (_, _, default, param) in SEARCH_KEYS.items()}
    if "ddpg" in methods and kwargs["evaluations"] is not None and kwargs["evaluations"] < kwargs["episodes"]:
        raise SweepError(f"{key('search.evaluations')}: {kwargs['evaluations']}: fewer than search.episodes "
                         f"{kwargs['episodes']} (DDPG's episodes count in it)")

    if out is None:
        out = local(_typed(key("out"), raw["out"], str)) if "out" in raw else Path("runs/sweep")
    from hero import atomic

    try:
        atomic.check_folder(out)
    except atomic.OutputError as e:
        raise SweepError(f"{key('out') if 'out' in raw else 'out'}: {e}") from None
    return Sweep(path, Path(out), scenes, hardware, seeds, methods, kwargs)
