"""bench.fronts: Pareto fronts read at equal PSNR (the HERO-against-CAQ ratios)."""

import math

import pytest

from bench import fronts


def test_front_keeps_the_points_no_other_beats():
    pts = [(30.0, 10.0), (29.0, 12.0), (31.0, 20.0), (28.0, 5.0), (30.5, 25.0)]
    assert fronts.front(pts) == [(28.0, 5.0), (30.0, 10.0), (31.0, 20.0)]


def test_value_at_interpolates_inside_the_span_only():
    pts = [(28.0, 5.0), (30.0, 10.0), (31.0, 20.0)]
    assert fronts.value_at(pts, 29.0) == pytest.approx(7.5)
    assert fronts.value_at(pts, 31.0) == pytest.approx(20.0)
    assert fronts.value_at(pts, 27.9) is None and fronts.value_at(pts, 31.1) is None
    assert fronts.cheapest_at_least(pts, 29.5) == (30.0, 10.0) and fronts.cheapest_at_least(pts, 32) is None


def test_ratios_at_equal_psnr():
    caq = [(29.0, 20.0), (30.0, 30.0)]
    hero = [(28.0, 10.0), (31.0, 16.0)]  # at 29 dB: 12, at 30 dB: 14
    r = fronts.ratio_interpolated(caq, hero)
    assert r[:2] == pytest.approx([20 / 12, 30 / 14])
    assert len(r) == 2  # HERO's points lie outside CAQ's span [29, 30]: left out
    near = fronts.ratio_nearest(caq, hero)
    assert near == [(pytest.approx(20 / 16), pytest.approx(2.0)), (pytest.approx(30 / 16), pytest.approx(1.0))]
    assert math.isnan(fronts.median([])) and fronts.median([1.0, 3.0, 2.0]) == 2.0
