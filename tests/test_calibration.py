"""The committed calibration (sim_py/calibration/rtl_calibrated.json) must describe today's RTL."""

import pytest

from sim_py.backends import CALIBRATION_FILE, Calibrated, CalibrationError, get_backend, load_calibration
from sim_py.calibrate import core_prediction, core_streams, fit_core, fit_mlp, rtl_fingerprint


def test_calibration_is_not_stale():
    data = load_calibration()
    now = rtl_fingerprint()
    stale = sorted(k for k in now if data["rtl_fingerprint"].get(k) != now[k])
    assert not stale, (f"the RTL of {', '.join(stale)} changed since {CALIBRATION_FILE.name} was made: "
                       f"run `make calibrate` and commit the result")


def test_calibration_fits_its_own_points():
    data = load_calibration()
    c = Calibrated(**data["constants"])
    assert data["points"]["mlp_engine"], "no MLP-engine sweep points"
    for p in data["points"]["mlp_engine"]:
        assert c.mlp_tile_cycles(p["k"], p["wbits"], p["rows"], p["cols"]) == pytest.approx(p["cycles"], rel=0.01)
    assert data["max_error_pct"]["mlp_engine"] <= 1.0
    assert data["points"]["heu"], "no HEU sweep points"
    for p in data["points"]["heu"]:
        assert c.heu_batch_cycles(p["n"], p["levels"]) == pytest.approx(p["cycles"], rel=0.01)
    assert data["max_error_pct"]["heu"] <= 1.0
    assert data["points"]["core"], "no core sweep points"
    assert any(len(p["sizes"]) > 2 for p in data["points"]["core"]), "no overlapped streams in the core sweep"
    for p in data["points"]["core"]:
        assert core_prediction(c, p) == pytest.approx(p["cycles"], rel=0.01), p["sizes"]
    assert data["max_error_pct"]["core"] <= 1.0
    assert data["points"]["config"], "no config-load points"
    for p in data["points"]["config"]:
        assert p["records"] == p["counted"]  # sim_py.core.config_records counts what the encoder makes
        assert c.config_cycles(sum(p["records"].values())) == pytest.approx(p["cycles"], rel=0.01)
    assert data["max_error_pct"]["config"] <= 1.0


def test_fit_recovers_known_constants():
    truth = Calibrated(k_bits=1.0, k_rows=3.0, k_cols=1.0, k_tile=5.0, k_lookup=1.0, k_batch=6.0, k_result=1.0,
                       k_issue=1.0, k_config=1.0)
    pts = [{"rows": r, "cols": c, "k": k, "wbits": b, "cycles": truth.mlp_tile_cycles(k, b, r, c)}
           for r, c in ((8, 8), (2, 6), (4, 3)) for k in (1, 16) for b in (2, 8)]
    consts, err = fit_mlp(pts)
    assert consts == pytest.approx({"k_bits": 1.0, "k_rows": 3.0, "k_cols": 1.0, "k_tile": 5.0}) and err < 1e-6


def test_core_fit_recovers_known_constants():
    """Given the blocks' constants, k_result and k_issue come back from single batches, and the
    error is measured over the overlapped streams too."""
    blocks = {"k_bits": 1.0, "k_rows": 2.0, "k_cols": 1.0, "k_tile": 0.0, "k_lookup": 1.0, "k_batch": 6.0}
    truth = Calibrated(**blocks, k_result=2.0, k_issue=3.0, k_config=1.0)
    layers = [(8, 16, 8), (16, 16, 4), (31, 16, 6), (16, 16, 3), (16, 3, 5)]
    pts = []
    for levels, rows, cols in ((4, 8, 8), (16, 4, 3)):
        for sizes in core_streams(rows):
            p = {"levels": levels, "rows": rows, "cols": cols, "layers": layers, "sizes": sizes}
            pts.append({**p, "cycles": core_prediction(truth, p)})
    consts, err = fit_core(pts, blocks)
    assert consts == pytest.approx({"k_result": 2.0, "k_issue": 3.0}) and err < 1e-6
    consts, err = fit_core([{**p, "cycles": p["cycles"] + 40 * (len(p["sizes"]) > 1)} for p in pts], blocks)
    assert err > 0.1  # streams the schedule does not predict show in the error


def test_missing_calibration_names_make_calibrate(tmp_path):
    with pytest.raises(CalibrationError, match="make calibrate"):
        load_calibration(tmp_path / "none.json")
    with pytest.raises(ValueError, match="unknown hardware backend 'x'"):
        get_backend("x")


def test_a_calibration_with_other_constants_names_make_calibrate(monkeypatch):
    from sim_py import backends

    monkeypatch.setattr(backends, "load_calibration", lambda: {"constants": {"k_bits": 1.0}})
    with pytest.raises(backends.CalibrationError, match="needs .*k_config.*run `make calibrate`"):
        backends.get_backend("rtl_calibrated")
