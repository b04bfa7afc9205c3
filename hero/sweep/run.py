"""A sweep on Ray: one training task per scene checkpoint (keyed by the scene's content and the training
settings, shared by every job of the scene), one task per job (search, final QAT, test-view scoring).

Finished jobs (OUT/jobs/ID/job.json with the same settings) are skipped on a rerun; a job's failure is
recorded and the others go on; a job interrupted mid-search resumes from its own search state.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import traceback
import uuid
from pathlib import Path

from hero import atomic

from .config import Scene, Sweep, SweepError

FAIL_ENV = "HERO_SWEEP_FAIL"  # for tests: jobs whose id contains its value fail on purpose
TRAIN_VERSION = 1  # in the checkpoint key: a change of how the sweep trains retrains


def content_hash(root: Path) -> str:
    """A hash of every file under `root` (or of the file): names and bytes."""
    h = hashlib.sha1()
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    for p in files:
        h.update(str(p.relative_to(root) if p != root else p.name).encode())
        with p.open("rb") as f:
            for chunk in iter(lambda f=f: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def scene_data(scene: Scene) -> Path:
    """The scene's folder (the procedural scene is built where hero.train builds it)."""
    from hero.train import resolve_data

    return resolve_data(scene.data).resolve()


def checkpoint_key(scene: Scene, root: Path, test_views: int) -> str:
    """What a scene's checkpoint depends on: the scene's content and every training setting."""
    settings = {"content": content_hash(root), "preset": scene.preset, "downscale": scene.downscale,
                "steps": scene.train_steps, "minutes": scene.train_minutes, "model": scene.model,
                "test_views": test_views, "version": TRAIN_VERSION}
    return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def train_scene(scene: Scene, root: str, out: str, test_views: int) -> str:
    """The scene's checkpoint in `out`, trained there unless it is finished (a rerun resumes it)."""
    out = Path(out)
    ckpt = out / "checkpoint.pt"
    if ckpt.is_file() and (out / "metrics.json").is_file():
        return str(ckpt)
    import torch

    from hero.nerf.presets import preset
    from hero.train import default_config, train

    torch.set_num_threads(1)
    try:
        train(default_config(data=root, preset=scene.preset, out=str(out), downscale=scene.downscale,
                             steps=scene.train_steps, minutes=scene.train_minutes, progress=False,
                             test_views=test_views, save_renders=False,
                             model=preset(scene.preset, **scene.model) if scene.model else None))
    except Exception as e:
        raise RuntimeError(f"training scene {scene.name}: {type(e).__name__}: {e}") from e
    return str(ckpt)


def job_settings(job: dict, search_kwargs: dict, ckpt: str) -> dict:
    return {"search": search_kwargs, "ckpt": ckpt, "hw_spec": job["hw_spec"], "seed": job["seed"],
            "method": job["method"]}


def run_job(job: dict, ckpt: str, search_kwargs: dict, folder: str, token: str, fail: bool) -> dict:
    """One job: the search (with its final QAT and test-view scoring); its result, also in job.json."""
    import torch

    from hero.search.run import search

    torch.set_num_threads(1)
    folder = atomic.make_folder(folder)
    atomic.write(folder / "running", token)
    t0 = time.perf_counter()
    try:
        if fail:
            raise RuntimeError(f"job {job['id']} fails on purpose ({FAIL_ENV})")
        summary = search(Path(ckpt), folder, hw_preset=job["hw_spec"], seed=job["seed"], method=job["method"],
                         progress=False, **search_kwargs)
        result = job_result(job, summary, (time.perf_counter() - t0) / 60, folder)
        atomic.write_json(folder / "job.json", {"settings": job_settings(job, search_kwargs, ckpt), "result": result})
        (folder / "error.txt").unlink(missing_ok=True)
        return result
    except Exception:
        atomic.write(folder / "error.txt", traceback.format_exc())
        raise
    finally:
        (folder / "running").unlink(missing_ok=True)


def job_result(job: dict, summary: dict, minutes: float, folder: Path) -> dict:
    info, r = summary["search"], summary["results"]
    return {"id": job["id"], "scene": job["scene"], "hardware": job["hardware"], "seed": job["seed"],
            "method": job["method"], "status": "done", "best_reward": info["best_reward"],
            "reward_uniform8": info["reward_uniform8"], "evaluations": info["evaluations"],
            "hypervolume": info["hypervolume"], "pareto_size": len(info["pareto"]),
            "heldout_psnr": info["best_psnr"], "test_psnr": r["found"]["psnr"], "qat_psnr": r["found_qat"]["psnr"],
            "fp32_test_psnr": r["fp32"]["psnr"], "latency_ms": r["found"]["latency_ms"],
            "size_kib": r["found"]["size_kib"], "cost": r["found"]["cost"], "minutes": minutes,
            "folder": str(folder), "psnr_fp32_heldout": info["psnr_fp32_heldout"],
            "latency_uniform8_ms": info["latency_uniform8_ms"], "pareto": info["pareto"],
            "rewards": info["rewards"]}


def error_line(exc: BaseException) -> str:
    """One line: the innermost cause of a Ray task's failure."""
    cause = getattr(exc, "cause", None) or exc
    while getattr(cause, "cause", None) is not None and cause.cause is not cause:  # a failed dependency
        cause = cause.cause
    text = str(cause).strip().splitlines()
    msg = text[-1] if text else ""
    return f"{type(cause).__name__}: {msg}" if not msg.startswith(type(cause).__name__) else msg


def run_sweep(sw: Sweep, address: str | None = None, num_cpus: int | None = None, log=print) -> dict:
    """Run every job not finished yet; returns {"rows": [...], "seconds": wall time, "ran": jobs run}."""
    t0 = time.perf_counter()
    out = atomic.check_folder(sw.out).resolve()  # made once the scenes are found: no empty folder on failure
    jobs = sw.jobs()
    scenes = {s.name: s for s in sw.scenes}
    test_views = sw.search["test_views"]
    ckpts = {}  # scene -> checkpoint path (str)
    for s in sw.scenes:
        if s.ckpt is not None:
            ckpts[s.name] = s.ckpt
        else:
            root = scene_data(s)
            folder = out / "checkpoints" / f"{s.name}-{checkpoint_key(s, root, test_views)}"
            ckpts[s.name] = (str(root), str(folder))
    results, todo = {}, []
    for job in jobs:
        ck = ckpts[job["scene"]]
        ck = ck if isinstance(ck, str) else str(Path(ck[1]) / "checkpoint.pt")
        done = out / "jobs" / job["id"] / "job.json"
        if done.is_file():
            st = json.loads(done.read_text())
            if st.get("settings") == json.loads(json.dumps(job_settings(job, sw.search, ck))):
                results[job["id"]] = st["result"]
                continue
        todo.append(job)
    atomic.make_folder(out)
    log(f"sweep {sw.path}: {len(jobs)} jobs, {len(jobs) - len(todo)} finished before, {len(todo)} to run")
    if todo:
        _run_on_ray(sw, todo, ckpts, scenes, out, results, address, num_cpus, log, t0)
    rows = [results[j["id"]] for j in jobs if j["id"] in results]
    return {"rows": rows, "seconds": time.perf_counter() - t0, "ran": len(todo)}


def _run_on_ray(sw, todo, ckpts, scenes, out, results, address, num_cpus, log, t0) -> None:
    import ray

    started = not ray.is_initialized()
    if started:
        if address:
            try:
                ray.init(address=address, log_to_driver=False, logging_level="WARNING")
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise SweepError(f"--address {address}: no Ray cluster there ({e})") from None
        else:
            ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, log_to_driver=False,
                     logging_level="WARNING")
    try:
        train_remote = ray.remote(num_cpus=1, max_retries=0)(train_scene)
        job_remote = ray.remote(num_cpus=1, max_retries=0)(run_job)
        token, fail = uuid.uuid4().hex, os.environ.get(FAIL_ENV)
        trained = {}
        pending = {}
        for job in todo:
            ck = ckpts[job["scene"]]
            if not isinstance(ck, str):
                if job["scene"] not in trained:
                    trained[job["scene"]] = train_remote.remote(scenes[job["scene"]], ck[0], ck[1],
                                                                sw.search["test_views"])
                ck = trained[job["scene"]]
            ref = job_remote.remote(job, ck, sw.search, str(out / "jobs" / job["id"]), token,
                                    bool(fail) and fail in job["id"])
            pending[ref] = job
        total = len(results) + len(pending)
        failed, last = 0, None
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=20)
            for ref in ready:
                job = pending.pop(ref)
                try:
                    results[job["id"]] = ray.get(ref)
                except Exception as e:  # the job's own error, or its scene's training's
                    failed += 1
                    msg = error_line(e)
                    results[job["id"]] = {**{k: job[k] for k in ("id", "scene", "hardware", "seed", "method")},
                                          "status": "failed", "error": msg,
                                          "folder": str(out / "jobs" / job["id"])}
                    log(f"FAILED {job['id']}: {msg}")
            running = sum(1 for j in pending.values() if _marker(out, j) == token)
            done = sum(1 for r in results.values() if r["status"] == "done")
            line = f"done {done}/{total}, running {running}, failed {failed}, queued {len(pending) - running}"
            if line != last or ready:
                best = max((r for r in results.values() if r["status"] == "done"), key=lambda r: r["best_reward"],
                           default=None)
                extra = "" if best is None else (f" | best reward {best['best_reward']:.4f} ({best['id']}: "
                                                 f"{best['heldout_psnr']:.2f} dB, {best['latency_ms']:.1f} ms)")
                log(f"[{(time.perf_counter() - t0) / 60:6.1f} min] {line}{extra}")
                last = line
    finally:
        if started:
            ray.shutdown()


def _marker(out: Path, job: dict) -> str | None:
    try:
        return (out / "jobs" / job["id"] / "running").read_text()
    except OSError:
        return None
