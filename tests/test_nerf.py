"""Hash grid (tiny-cuda-nn conventions, native kernel vs reference), model names, SH, occupancy, rendering, metrics."""

import math

import pytest
import torch

from hero.nerf import hashgrid
from hero.nerf.hashgrid import HashGrid, encode_reference, grid_index, level_params
from hero.nerf.metrics import psnr, ssim
from hero.nerf.model import NGPField, sh_encode
from hero.nerf.occupancy import OccupancyGrid
from hero.nerf.presets import preset
from hero.nerf.render import (
    Samples,
    composite,
    frame_samples,
    march,
    render_rays,
    render_samples,
    render_view,
    select_rays,
)


def test_level_params_paper_config():
    ps = level_params(16, 2, 19, 16, 2048 * 1.5)
    b = math.exp(math.log(2048 * 1.5 / 16) / 15)
    assert ps[0]["scale"] == pytest.approx(15.0) and ps[0]["resolution"] == 16 and ps[0]["dense"]
    assert ps[0]["entries"] == 16**3
    assert ps[5]["scale"] == pytest.approx(16 * b**5 - 1, rel=1e-6)
    assert ps[5]["resolution"] == math.ceil(ps[5]["scale"]) + 1
    assert not ps[15]["dense"] and ps[15]["entries"] == 2**19
    assert all(p["entries"] <= 2**19 and p["entries"] % 8 == 0 for p in ps)
    assert [p["offset"] for p in ps[1:]] == [sum(q["entries"] for q in ps[:i + 1]) for i in range(15)]


def test_spatial_hash_matches_uint32_arithmetic():
    c = torch.tensor([[123, 45678, 901234]])
    want = (123 ^ ((45678 * 2654435761) % 2**32) ^ ((901234 * 805459861) % 2**32)) % 2**19
    assert grid_index(c, 1000, 2**19, dense=False).item() == want
    assert grid_index(torch.tensor([[1, 2, 3]]), 10, 1000, dense=True).item() == 1 + 20 + 300


def test_reference_interpolates_trilinearly():
    g = HashGrid(1, 1, 12, 4, 4, use_native=False)  # one dense level, scale 3
    with torch.no_grad():
        g.embeddings.copy_(torch.arange(g.embeddings.shape[0], dtype=torch.float32)[:, None])
    # a point exactly on a vertex returns that vertex's value; dense index x + y*R + z*R*R (R = 4)
    x = torch.tensor([[(1 - 0.5) / 3, (2 - 0.5) / 3, (1 - 0.5) / 3]])
    assert g(x).item() == pytest.approx(1 + 2 * 4 + 1 * 16, abs=1e-3)
    # half-way between z = 0 and z = 1: the mean of the two vertices
    x[0, 2] = 0.0
    assert g(x).item() == pytest.approx(1 + 2 * 4 + 0.5 * 16, abs=1e-3)


@pytest.mark.skipif(hashgrid.native() is None, reason="native kernel could not be built")
def test_native_kernel_matches_reference():
    torch.manual_seed(0)
    g = HashGrid(8, 2, 14, 16, 512)  # dense and hashed levels
    assert any(p["dense"] for p in g.params) and not all(p["dense"] for p in g.params)
    with torch.no_grad():
        g.embeddings.uniform_(-1, 1)
    x = torch.rand(5000, 3)
    out_n = g(x)
    out_r = encode_reference(x, g.embeddings, g.params)
    assert torch.allclose(out_n, out_r, atol=1e-6)
    go = torch.randn_like(out_n)
    (gn,) = torch.autograd.grad(g(x), g.embeddings, go)
    (gr,) = torch.autograd.grad(encode_reference(x, g.embeddings, g.params), g.embeddings, go)
    assert gn.abs().sum() > 0
    assert torch.allclose(gn, gr, atol=1e-4)


def test_model_names_and_shapes():
    cfg = preset("cpu")
    m = NGPField(cfg, [[-1.5] * 3, [1.5] * 3])
    units = m.quant_units()
    names = [u[0] for u in units]
    assert names[: cfg["levels"]] == [f"grid.level{i:02d}" for i in range(cfg["levels"])]
    assert names[cfg["levels"]:] == ["density.fc0", "density.fc1", "color.fc0", "color.fc1", "color.fc2"]
    info = dict((n, i) for n, _, i in units)
    assert info["density.fc0"]["in_features"] == cfg["levels"] * cfg["features"]
    assert info["density.fc1"]["out_features"] == 16 and info["color.fc0"]["in_features"] == 31
    assert info["color.fc2"]["out_features"] == 3
    for n, kind, _ in units:
        u = m.unit(n)
        if kind == "linear":
            assert isinstance(u, torch.nn.Linear) and u.bias is None
        else:
            assert u.shape == (info[n]["entries"], cfg["features"])
    assert all(p.dim() == 2 for p in m.parameters())  # no biases anywhere
    sigma, rgb = m(torch.rand(10, 3) * 3 - 1.5, torch.nn.functional.normalize(torch.randn(10, 3), dim=-1))
    assert sigma.shape == (10,) and (sigma > 0).all() and rgb.shape == (10, 3) and ((rgb > 0) & (rgb < 1)).all()


def test_sh_basis_is_orthonormal():
    torch.manual_seed(0)
    d = torch.nn.functional.normalize(torch.randn(400000, 3, dtype=torch.float64), dim=-1)
    y = sh_encode(d)
    gram = 4 * math.pi * (y.T @ y) / d.shape[0]
    assert torch.allclose(gram, torch.eye(16, dtype=torch.float64), atol=0.03)


def test_composite_matches_dense_formula():
    torch.manual_seed(0)
    sigma = torch.rand(7) * 5
    rgb = torch.rand(7, 3)
    ray_ids = torch.tensor([0, 0, 0, 2, 2, 2, 2])
    dt = torch.full((7,), 0.3)
    s = Samples(torch.zeros(7, 3), torch.zeros(7, 3), ray_ids, torch.arange(7.0), dt, 3)
    color, acc, _, _ = composite(sigma, rgb, s)
    for r, idx in ((0, [0, 1, 2]), (2, [3, 4, 5, 6])):
        a = 1 - torch.exp(-sigma[idx] * 0.3)
        t = torch.cumprod(torch.cat([torch.ones(1), 1 - a[:-1]]), 0)
        assert torch.allclose(color[r], ((t * a)[:, None] * rgb[idx]).sum(0), atol=1e-5)
        assert acc[r].item() == pytest.approx(float((t * a).sum()), abs=1e-5)
    assert acc[1].item() == 0.0


def test_march_skips_empty_cells():
    grid = OccupancyGrid([[-1.0] * 3, [1.0] * 3], res=4)
    grid.bitfield.zero_()
    cell = torch.tensor([[0.1, 0.1, 0.1]])
    grid.bitfield[grid.cell_index(cell)] = True  # the one occupied cell: [0, 0.5)^3
    o = torch.tensor([[0.25, 0.25, 3.0], [-0.75, 0.25, 3.0]])
    d = torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.0, -1.0]])
    s = march(o, d, grid, 0.01, 1000, jitter=False)
    assert len(s) == 50 and (s.ray_ids == 0).all()
    assert ((s.positions >= 0) & (s.positions < 0.5)).all()
    assert (s.t[1:] > s.t[:-1]).all()


def test_render_view_and_frame_samples():
    cfg = preset("tiny")
    m = NGPField(cfg, [[-1.5] * 3, [1.5] * 3])
    grid = OccupancyGrid(m.aabb, cfg["grid_res"])
    meta = {"ndc": False, "height": 6, "width": 5, "fx": 5.0, "fy": 5.0, "cx": 2.5, "cy": 3.0}
    c2w = torch.tensor([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 4]])
    img = render_view(m, grid, c2w, meta, 0.05, 200, 1.0)
    assert img.shape == (6, 5, 3) and (img >= 0).all() and (img <= 1).all()
    s = frame_samples(grid, c2w, meta, 0.05, 200)
    assert len(s) > 0 and int(s.ray_ids.max()) < 30 and (s.ray_ids[1:] >= s.ray_ids[:-1]).all()
    assert (s.positions.abs() <= 1.5 + 1e-4).all()
    grid.bitfield.zero_()
    assert len(frame_samples(grid, c2w, meta, 0.05, 200)) == 0


def test_occupancy_update_marks_dense_region():
    cfg = preset("tiny")
    m = NGPField(cfg, [[-1.0] * 3, [1.0] * 3])
    p0 = m.grid.params[0]
    assert p0["dense"]
    r = p0["resolution"]
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
        # level-0 feature 0 = the vertex's x coordinate in [0, 1]; sigma = exp(30 x)
        idx = torch.arange(p0["entries"])
        m.grid.table(0)[:, 0] = (idx % r).float() / p0["scale"] - 0.5 / p0["scale"]
        m.density.fc0.weight[0, 0] = 1.0
        m.density.fc1.weight[0, 0] = 30.0
    grid = OccupancyGrid(m.aabb, 8)
    share = grid.update(m, dt=1e-4)
    # occupied where exp(30 x) * 1e-4 > 0.01, i.e. x > ln(100) / 30 ~ 0.15
    occ = grid.bitfield.reshape(8, 8, 8)  # [z, y, x]
    assert not occ[..., 0].any() and occ[..., 2:].all()
    assert 0.6 < share < 0.95


def test_psnr_and_ssim():
    torch.manual_seed(0)
    a = torch.rand(32, 32, 3)
    assert psnr(a, (a + 0.1)) == pytest.approx(20.0, abs=1e-3)
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-6)
    noisy = (a + 0.2 * torch.randn_like(a)).clamp(0, 1)
    assert ssim(a, noisy) < 0.9
    assert ssim(a, noisy) < ssim(a, (a + 0.05 * torch.randn_like(a)).clamp(0, 1))


def test_select_rays_renders_as_the_rays_alone():
    """Hard mining reuses marched samples: the samples of chosen rays render as those rays marched alone."""
    torch.manual_seed(0)
    grid = OccupancyGrid([[-1.0] * 3, [1.0] * 3], res=8)
    model = NGPField(preset("tiny"), grid.aabb)
    o = torch.tensor([[0.0, 0.0, 3.0]]).repeat(6, 1) + torch.rand(6, 3) * 0.2
    d = torch.nn.functional.normalize(torch.tensor([[0.0, 0.0, -1.0]]) + torch.rand(6, 3) * 0.3, dim=-1)
    s = march(o, d, grid, 0.02, 200, jitter=False)
    rays = torch.tensor([1, 4, 5])
    sub = select_rays(s, rays)
    assert sub.n_rays == 3 and set(sub.ray_ids.tolist()) == {0, 1, 2}
    with torch.no_grad():
        got = render_samples(model, sub, sh_encode(d[rays]), 1.0)
        want, _ = render_rays(model, grid, o[rays], d[rays], 0.02, 200, 1.0, jitter=False)
    assert torch.allclose(got, want, atol=1e-6)
