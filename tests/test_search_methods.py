"""hero.search --method: every method at the same tiny budget, deterministic per seed, resumable; the Pareto
set and its hypervolume; the flags' errors. (The whole search() of each method runs in tests/test_sweep.py.)"""

import pytest

from hero.search import __main__ as search_cli
from hero.search.env import QuantEnv, units_of
from hero.search.front import hypervolume, pareto_indices
from hero.search.methods import METHODS, run_method
from hero.search.refine import refine
from hero.search.run import STATE, scoring_setup, search

BUDGET = 6
OTHERS = [m for m in METHODS if m not in ("ddpg", "caq")]  # caq: one evaluation, tested below


@pytest.fixture(scope="module")
def setup(tiny_ckpt):
    model, _, _, _, _, scorer = scoring_setup(tiny_ckpt, held_out=256)
    return QuantEnv(model, units_of(model, {}, {})), scorer


def run(setup, method, folder, seed=0, budget=BUDGET):
    env, scorer = setup
    return run_method(method, env, scorer, lambda p: True, budget, seed, folder / STATE, {"method": method},
                      refine_passes=10, progress=False)


@pytest.mark.parametrize("method", OTHERS)
def test_each_method_spends_the_budget_deterministically_and_resumes(setup, tmp_path, method):
    env, _ = setup
    a = run(setup, method, tmp_path / "a")
    assert len(a) == BUDGET and all(len(r["bits"]) == len(env.units) for r in a)
    assert all(env.b_min <= b <= env.b_max for r in a for b in r["bits"])
    assert run(setup, method, tmp_path / "b") == a  # the same seed: the same evaluations
    # resumed with a larger budget: the first evaluations replayed from the state, then the same as in one go
    short = run(setup, method, tmp_path / "c", budget=BUDGET - 2)
    assert run(setup, method, tmp_path / "c") == a and short == a[:BUDGET - 2]
    if method == "greedy":  # from uniform 8, one bit at a time
        assert a[0]["bits"] == [env.b_max] * len(env.units)
        def step(p, q):
            return sum(abs(x - y) for x, y in zip(p["bits"], q["bits"], strict=True))

        assert all(any(step(r, q) == 1 for q in a[:i + 1]) for i, r in enumerate(a[1:]))
    else:
        assert run(setup, method, tmp_path / "d", seed=1) != a  # another seed explores elsewhere


def test_caq_method_scores_caqs_own_policy_once_and_resumes(setup, tiny_ckpt, tmp_path, monkeypatch):
    """CAQ trains its soft bits (hardware-blind), and its learned policy is the method's one evaluation:
    the table width is one for every level, as CAQ has it; a rerun replays it without training again."""
    from hero.quant.policy import load_policy
    from hero.search import methods
    from hero.search.env import KIND_FIELD

    monkeypatch.setitem(methods.CAQ_METHOD, "steps", 4)
    monkeypatch.setitem(methods.CAQ_METHOD, "rays", 256)
    monkeypatch.setitem(methods.CAQ_METHOD, "calib_batches", 2)
    env, scorer = setup

    def go():
        return run_method("caq", env, scorer, lambda p: True, BUDGET, 0, tmp_path / STATE, {"method": "caq"},
                          refine_passes=10, progress=False, ckpt=tiny_ckpt)

    trace = go()
    assert len(trace) == 1 and trace[0]["phase"] == "caq"
    policy = load_policy(tmp_path / "caq" / "policy.json", env.model)
    assert trace[0]["bits"] == [getattr(policy, KIND_FIELD[u.kind])[u.name] for u in env.units]
    assert len({b for u, b in zip(env.units, trace[0]["bits"], strict=True) if u.kind == "table"}) == 1
    mtime = (tmp_path / "caq" / "policy.json").stat().st_mtime_ns
    assert go() == trace and (tmp_path / "caq" / "policy.json").stat().st_mtime_ns == mtime
    with pytest.raises(ValueError, match="needs the checkpoint"):
        run_method("caq", env, scorer, lambda p: True, BUDGET, 0, tmp_path / "other" / STATE, {"method": "caq"},
                   refine_passes=10, progress=False)


def test_a_state_of_another_method_is_refused(setup, tiny_ckpt, tmp_path):
    run(setup, "random", tmp_path)
    with pytest.raises(ValueError, match="other settings"):
        run(setup, "tpe", tmp_path)
    with pytest.raises(ValueError, match="other settings"):  # nor does DDPG take it
        search(tiny_ckpt, tmp_path, episodes=2, held_out=256, progress=False)


def test_refinement_stops_at_its_evaluation_cap():
    seen = []
    out = refine([2, 2, 2, 2], 2, 8, lambda b: float(sum(b)), lambda b: True, passes=10,
                 on_eval=lambda c, r: seen.append(c), max_evaluations=3)
    assert len(seen) == 3 and out == [5, 2, 2, 2]


def test_pareto_set_and_hypervolume():
    pts = [(1.0, 5.0), (2.0, 6.0), (2.0, 5.5), (3.0, 4.0), (0.5, 1.0)]
    assert pareto_indices(pts) == [4, 0, 1]
    # against (4, 0): 3.5 x 1 + 3 x 4 + 2 x 1
    assert hypervolume(pts, (4.0, 0.0)) == pytest.approx(3.5 + 12 + 2)
    assert hypervolume([(5.0, 9.0)], (4.0, 0.0)) == 0.0  # no better than the reference in latency


@pytest.mark.parametrize("args, message", [
    (["--method", "bayes"], "argument --method: invalid choice: 'bayes' (choose from 'ddpg', 'random', 'greedy', "
                            "'tpe', 'nsga2', 'caq')"),
    (["--evaluations", "0"], "argument --evaluations: 0 is out of range; expected an integer >= 1"),
    (["--episodes", "5", "--evaluations", "3"], "--evaluations 3: fewer than --episodes 5"),
])
def test_method_flag_errors(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as e:
        search_cli.main(["--out", str(tmp_path), "--no-progress", *args])
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and len(err.strip().splitlines()) == 1
