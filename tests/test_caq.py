"""CAQ (hero.caq): its quantizer's gradients, the direction of its bits, the policy file, resume, flags."""

import json
import math
import os
import signal
import subprocess
import sys

import pytest
import torch

from hero import checkpoint
from hero.caq import STATE, CAQField, Quantizer, SoftBit, caq, fake_quantize
from hero.caq.run import batch, bit_objective, calibrate, lr_factor, set_bit_grads, smooth_l1, train_step
from hero.interrupt import Interrupted
from hero.nerf.render import render_rays
from hero.quant.policy import load_policy
from tests.conftest import ctrl_c_once_written

TINY = {"rays": 256, "calib_batches": 2, "test_views": 1, "progress": False}


def _values(kind: str, rng: float, bits: int, vmax: float) -> torch.Tensor:
    """Values well inside the range (off the rounding midpoints) and well outside it on both sides."""
    g = torch.Generator().manual_seed(0)
    lo, hi = {"weight": (-rng / 2, rng / 2), "relu": (0.0, rng), "other": (vmax - rng, vmax)}[kind]
    s = rng / (2 ** bits - 1)
    k = torch.randint(1, 2 ** bits - 2, (64,), generator=g).double()
    inside = lo + (k + 0.25 * torch.rand(64, generator=g, dtype=torch.float64) - 0.125) * s
    outside = torch.cat([lo - (2 + torch.rand(8, generator=g, dtype=torch.float64)) * s,
                         hi + (2 + torch.rand(8, generator=g, dtype=torch.float64)) * s])
    if kind == "relu":
        outside = outside[outside > 0]
    return torch.cat([inside, outside])


@pytest.mark.parametrize("kind", ["weight", "relu", "other"])
def test_range_and_bit_gradients_match_finite_differences(kind):
    """Autograd through fake_quantize equals finite differences of the same forward with its roundings
    (of x/s and of the zero point) frozen: CAQ's straight-through gradients for range, v_max and bits."""
    r0, b0, v0 = 1.3, 4.0, 0.9
    x = _values(kind, r0, int(b0), v0)
    w = torch.linspace(-1, 1, len(x), dtype=torch.float64)  # an arbitrary upstream gradient
    r, b, v = (torch.tensor(t, dtype=torch.float64, requires_grad=True) for t in (r0, b0, v0))
    (fake_quantize(x, kind, r, b, v if kind == "other" else None) * w).sum().backward()

    s0 = r0 / (2 ** b0 - 1)
    frac = torch.round(x / s0) - x / s0
    zc0 = (1 - v0 / r0) * (2 ** b0 - 1)
    dz = round(zc0) - zc0

    def frozen(rr, bb, vv):
        levels = 2 ** bb - 1
        s = rr / levels
        n = x / s + frac
        if kind == "weight":
            return (s * n.clamp(-(levels + 1) / 2, (levels + 1) / 2 - 1) * w).sum()
        if kind == "relu":
            return (s * n.clamp(0, levels) * w).sum()
        z = (1 - vv / rr) * levels + dz
        return (s * ((n + z).clamp(0, levels) - z) * w).sum()

    eps = 1e-6
    fd_r = (frozen(r0 + eps, b0, v0) - frozen(r0 - eps, b0, v0)) / (2 * eps)
    fd_b = (frozen(r0, b0 + eps, v0) - frozen(r0, b0 - eps, v0)) / (2 * eps)
    assert float(r.grad) == pytest.approx(float(fd_r), rel=1e-6, abs=1e-9)
    assert float(b.grad) == pytest.approx(float(fd_b), rel=1e-6, abs=1e-9)
    if kind == "other":
        fd_v = (frozen(r0, b0, v0 + eps) - frozen(r0, b0, v0 - eps)) / (2 * eps)
        assert float(v.grad) == pytest.approx(float(fd_v), rel=1e-6, abs=1e-9)


def test_weight_gradients_are_caqs_closed_form():
    """The symmetric weight quantizer's gradients equal the formulas of CAQ's custom backward."""
    rng, bits = 0.8, 3
    x = _values("weight", rng, bits, 0.0)
    r = torch.tensor(rng, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(float(bits), dtype=torch.float64, requires_grad=True)
    fake_quantize(x, "weight", r, b).sum().backward()
    qr = 2 ** bits - 1
    s = rng / qr
    tmp = (qr + 1) * math.log(2)
    factor = tmp * rng / qr ** 2
    mid, large, small = x.abs() <= rng / 2, x > rng / 2, x < -rng / 2
    q = torch.round(x / s)
    g_r = torch.where(mid, q / qr - x / rng, torch.where(large, torch.full_like(x, (2 ** (bits - 1) - 1) / qr),
                                                          torch.full_like(x, -2 ** (bits - 1) / qr)))
    g_b = torch.where(mid, -factor * q + x * tmp / qr,
                      torch.where(large, torch.full_like(x, -(2 ** (bits - 1) - 1) * factor + factor * qr / 2),
                                  torch.full_like(x, 2 ** (bits - 1) * factor - factor * qr / 2)))
    assert small.any() and large.any()
    assert float(r.grad) == pytest.approx(float(g_r.sum()), rel=1e-9)
    assert float(b.grad) == pytest.approx(float(g_b.sum()), rel=1e-9)


def _calibrated_field(tiny_ckpt):
    model, meta = checkpoint.load(tiny_ckpt)
    from hero.quant.calib import checkpoint_scenes

    train, _, _ = checkpoint_scenes(meta)
    field = CAQField(model)
    r = meta["render"]
    calibrate(field, r.grid, train, r.dt, r.max_steps, r.background, 256, 2, 0, False)
    return field, meta, train


def test_soft_bits_follow_the_penalty_under_target_and_oppose_it_over():
    """CAQ's bit objective on a layer whose loss is its own quantization error: under the loss target
    the bits fall (the penalty and the target agree), over it they rise (more bits lower the loss)."""
    g = torch.Generator().manual_seed(1)
    x, w = torch.randn(512, 32, generator=g), torch.randn(32, 16, generator=g) * 0.2
    y = x @ w

    def run(t_loss, lam, start, steps=20):
        bit = SoftBit(start, 2, 8)
        q = Quantizer("weight", bit)
        q.observe(w)
        opt = torch.optim.Adam([bit.value], lr=1e-2, betas=(0.9, 0.99), eps=1e-15)
        for _ in range(steps):
            loss = smooth_l1(x @ q(w), y)
            opt.zero_grad()
            bit_objective(loss, t_loss, lam, bit.hard()).backward()
            opt.step()
            bit.project()
        return float(bit.value.detach())

    assert run(t_loss=1.0, lam=1e-3, start=6.0) < 6.0 - 0.15  # under target: down, with the penalty
    assert run(t_loss=1.0, lam=0.0, start=6.0) < 6.0 - 0.15  # the target term alone also pulls down
    assert run(t_loss=0.0, lam=1e-3, start=3.0) > 3.0 + 0.15  # over target: up, against the penalty


def test_bits_follow_the_bit_objective_and_the_rest_only_the_loss(tiny_ckpt):
    """One train_step: the bits move down under target; the weights, table and ranges get L's gradient
    only, so lambda and the target change nothing but the bits."""
    results = []
    for t_loss, lam in ((1.0, 1e-3), (0.0, 10.0)):
        torch.manual_seed(0)
        field, meta, train = _calibrated_field(tiny_ckpt)
        before = [float(p.detach()) for p in field.bit_parameters()]
        opts = {"model": torch.optim.Adam(field.model_parameters(), lr=1e-3),
                "ranges": torch.optim.Adam(field.range_parameters(), lr=1e-3),
                "bits": torch.optim.Adam(field.bit_parameters(), lr=1e-2)}
        for k in range(2):
            r = meta["render"]
            train_step(field, opts, r.grid, train, r.dt, r.max_steps, r.background, 256, 0, k, 30, t_loss, lam)
        after = [float(p.detach()) for p in field.bit_parameters()]
        results.append((field, before, after))
    (f1, b1, a1), (f2, _, a2) = results
    assert all(a < b - 0.01 for a, b in zip(a1, b1, strict=True))  # under target: every bit falls
    for p1, p2 in zip(f1.model_parameters() + f1.range_parameters(), f2.model_parameters() + f2.range_parameters(),
                      strict=True):
        assert torch.equal(p1, p2)
    assert a1 != a2


@pytest.mark.parametrize("t_loss", [1.0, 0.0])
def test_one_backward_pass_gives_the_bit_objectives_gradient(tiny_ckpt, t_loss):
    """set_bit_grads from L's single backward pass equals the gradient of CAQ's separate bit objective."""
    field, meta, train = _calibrated_field(tiny_ckpt)
    o, d, target = batch(train, 256, 0, 0)
    torch.manual_seed(0)
    r = meta["render"]
    loss = smooth_l1(render_rays(field, r.grid, o, d, r.dt, r.max_steps, r.background)[0], target)
    bits = field.bit_parameters()
    ref = torch.autograd.grad(bit_objective(loss, t_loss, 1e-3, field.penalty()), bits, retain_graph=True)
    loss.backward()
    set_bit_grads(field, float(loss.detach()), t_loss, 1e-3)
    for p, r in zip(bits, ref, strict=True):
        assert float(p.grad) == pytest.approx(float(r), rel=1e-4, abs=1e-9)
    assert any(float(r) != 0 for r in ref)


def test_penalty_is_caqs_weighted_mean():
    from hero.nerf.model import NGPField
    from hero.nerf.presets import preset

    field = CAQField(NGPField(preset("tiny"), [[-1, -1, -1], [1, 1, 1]]))
    # all at 8 except the exp output at 24: (0.3 * 6 * 8 + 1 * 24 + 14 * 8 + 24) / 17.8
    assert float(field.penalty().detach()) == pytest.approx((0.3 * 6 * 8 + 24 + 14 * 8 + 24) / 17.8)
    assert len(field.slots) == 15 and field.mean_bits() == pytest.approx((14 * 8 + 24) / 15)
    assert lr_factor(0, 3000) == 1.0 and lr_factor(1999, 3000) == 1.0
    assert lr_factor(2500, 3000) == pytest.approx(0.1 ** 0.5) and lr_factor(3000, 3000) == pytest.approx(0.1)


def test_policy_file_round_trips_with_one_table_width(tiny_ckpt, tmp_path):
    field, meta, _ = _calibrated_field(tiny_ckpt)
    with torch.no_grad():
        field.quantizer("grid.table").bit.value.fill_(3.2)
        field.quantizer("color.fc1.weight").bit.value.fill_(4.6)
        field.quantizer("sh.output").bit.value.fill_(5.0)  # shared with density.fc1's output
    pol = field.policy()
    pol.save(tmp_path / "policy.json")
    back = load_policy(tmp_path / "policy.json", field.model)
    assert back == pol
    assert set(back.tables.values()) == {3} and len(back.tables) == field.model.grid.levels
    assert back.weights["color.fc1"] == 5 and back.activations["color.fc0"] == 5
    assert field.hard_bits()["density.fc1.output"] == 5 and back.activations["density.fc0"] == 8
    assert json.loads((tmp_path / "policy.json").read_text())["format"] == "hero-policy/1"


def test_resume_after_ctrl_c_equals_an_uninterrupted_run(tiny_ckpt, tmp_path):
    full = caq(tiny_ckpt, tmp_path / "full", steps=6, **TINY)

    def ctrl_c(step):
        if step == 3:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(Interrupted, match="step 3"):
        caq(tiny_ckpt, tmp_path / "cut", steps=6, on_step=ctrl_c, **TINY)
    assert checkpoint.load_state(tmp_path / "cut" / STATE)["step"] == 3
    resumed = caq(tiny_ckpt, tmp_path / "cut", steps=6, **TINY)
    a = checkpoint.load_state(tmp_path / "full" / STATE)["field"]
    b = checkpoint.load_state(tmp_path / "cut" / STATE)["field"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["psnr"] == full["psnr"] and resumed["bits"] == full["bits"]
    for key in ("size_bits", "bitops_t", "mean_bits"):
        assert resumed[key] == full[key]
    assert full["size_bits"] > 0 and full["bitops_t"] > 0 and 2 <= full["mean_bits"] <= 24
    assert load_policy(tmp_path / "full" / "policy.json", field_model(tiny_ckpt)).weights == full["policy"]["weights"]
    with pytest.raises(ValueError, match="other settings"):
        caq(tiny_ckpt, tmp_path / "full", steps=6, target="mdl", **TINY)


def test_cli_ctrl_c_saves_the_step_it_stopped_at_and_the_rerun_resumes(tiny_ckpt, tmp_path):
    """A real SIGINT to python -m hero.caq: the step in progress finishes, caq_state.pt is saved, one line on
    stderr, no traceback, exit 130; the rerun resumes from the saved step."""
    out = tmp_path / "caq"
    step = ctrl_c_once_written(["hero.caq", "--ckpt", str(tiny_ckpt), "--out", str(out), "--steps", "100000",
                                "--rays", "256", "--calib-batches", "1", "--no-progress"], out / STATE, STATE)
    assert step >= 100 and checkpoint.load_state(out / STATE)["step"] == step  # saved every 100 steps, and then
    seen = []

    def ctrl_c(s):
        seen.append(s)
        os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(Interrupted, match=f"step {step + 1};"):  # the same settings as the command's
        caq(tiny_ckpt, out, steps=100000, rays=256, calib_batches=1, progress=False, on_step=ctrl_c)
    assert seen == [step + 1] and checkpoint.load_state(out / STATE)["step"] == step + 1


def field_model(ckpt):
    return checkpoint.load(ckpt)[0]


@pytest.mark.parametrize("args, message", [
    (["--target", "max"], "argument --target: invalid choice: 'max'"),
    (["--steps", "0"], "--steps: 0 is out of range; expected an integer >= 1"),
    (["--lambda", "-1"], "--lambda: -1 is out of range; expected a number >= 0"),
    (["--psnr-target", "0"], "--psnr-target: 0 is out of range; expected a number > 0 and <= 100"),
    (["--rays", "x"], "argument --rays: 'x' is not an integer; expected an integer >= 1"),
    (["--ckpt", "nope.pt"], "--ckpt nope.pt: no such file"),
])
def test_cli_refuses_bad_flags(tiny_ckpt, tmp_path, args, message):
    argv = ["--ckpt", tiny_ckpt, "--out", str(tmp_path / "out")]
    for flag, value in zip(args[::2], args[1::2], strict=True):
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]
    res = subprocess.run([sys.executable, "-m", "hero.caq", *argv], capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr
