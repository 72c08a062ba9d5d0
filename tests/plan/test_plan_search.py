"""The search: section at compile time: random points, grids, tpe templates and the budget."""

from __future__ import annotations

import math

import pytest
from plan_fixtures import cohort, make_suite

from raybench.plan import compile_suite
from raybench.plan.compiler import search_trial
from raybench.plan.search import is_template, search_budget
from raybench.suite.search import Distribution

SPACE = {
    "lr": {"loguniform": [1.0e-4, 1.0e-1]},
    "weight_decay": {"uniform": [0.0, 1.0e-3]},
    "batch_size": {"choice": [2, 4]},
    "epochs": {"randint": [1, 4]},
    "model.dropout": {"quniform": [0.0, 0.5, 0.1]},
}


def _suite(**search):
    return make_suite(
        models=[{"name": "res", "arch": "resnet10"}],
        training={"epochs": 2, "batch_size": 4, "lr": 1.0e-3},
        search=search,
    )


def _plan(**search):
    return compile_suite(_suite(**search), {"synth": cohort()})


def _search_ids(plan):
    return [t.trial_id for t in plan.trials if t.stage == "search"]


def test_random_points_are_drawn_at_compile_time_within_bounds_and_reproducibly():
    plan = _plan(algorithm="random", num_samples=5, space=SPACE)
    again = _plan(algorithm="random", num_samples=5, space=SPACE)
    assert _search_ids(plan) == _search_ids(again)  # content hashes: the same suite, the same ids
    refit = next(t for t in plan.trials if t.stage == "refit")
    points = list(refit.candidates)
    assert len(points) == 5 and len({repr(sorted(p.items())) for p in points}) == 5
    for p in points:
        assert 1e-4 <= p["lr"] <= 1e-1 and 0.0 <= p["weight_decay"] <= 1e-3
        assert p["batch_size"] in (2, 4) and p["epochs"] in (1, 2, 3)
        assert math.isclose(p["model.dropout"] * 10, round(p["model.dropout"] * 10))
        assert p["optimizer"] == "adam"  # an unsearched key keeps its single value
    # 3 outer folds x 2 seeds x 5 points x 1 inner fold
    assert len(_search_ids(plan)) == 30
    assert all(set(t.test_ids) == set() for t in plan.trials if t.stage == "search")


def test_more_samples_keep_the_first_points_so_their_trials_are_reused():
    five = set(_search_ids(_plan(algorithm="random", num_samples=5, space=SPACE)))
    eight = set(_search_ids(_plan(algorithm="random", num_samples=8, space=SPACE)))
    assert five < eight


def test_the_split_seed_draws_other_points():
    suite = _suite(algorithm="random", num_samples=3, space=SPACE)
    other = suite.model_copy(update={"validation": suite.validation.model_copy(update={"seed": 7})})
    a = compile_suite(suite, {"synth": cohort()}).stages[-1][1][0].candidates
    b = compile_suite(other, {"synth": cohort()}).stages[-1][1][0].candidates
    assert a != b


def test_a_grid_of_choices_has_the_ids_of_the_same_lists():
    lists = compile_suite(
        make_suite(
            models=[{"name": "res", "arch": "resnet10", "params": {"dropout": [0.0, 0.2]}}],
            training={"epochs": 2, "batch_size": 4, "lr": [1.0e-3, 3.0e-4]},
        ),
        {"synth": cohort()},
    )
    grid = compile_suite(
        make_suite(
            models=[{"name": "res", "arch": "resnet10"}],
            training={"epochs": 2, "batch_size": 4},
            search={
                "space": {
                    "lr": {"choice": [1.0e-3, 3.0e-4]},
                    "model.dropout": {"choice": [0.0, 0.2]},
                }
            },
        ),
        {"synth": cohort()},
    )
    assert sorted(t.trial_id for t in lists.trials) == sorted(t.trial_id for t in grid.trials)


def test_a_scheduler_is_part_of_the_search_trials_identity():
    plain = set(_search_ids(_plan(algorithm="random", num_samples=3, space=SPACE)))
    stopped = _plan(
        algorithm="random", num_samples=3, space=SPACE, scheduler={"type": "asha", "max_t": 3}
    )
    assert plain.isdisjoint(_search_ids(stopped))
    cfg = next(t for t in stopped.trials if t.stage == "search").config["search"]
    assert cfg["scheduler"] == {
        "type": "asha",
        "metric": "loss",
        "grace_period": 1,
        "reduction_factor": 3,
        "max_t": 3,
    }


def test_tpe_plans_one_template_per_inner_fold_and_points_hash_with_them():
    plan = _plan(algorithm="tpe", num_samples=6, space={"lr": SPACE["lr"]})
    templates = [t for t in plan.trials if t.stage == "search"]
    assert templates and all(is_template(t) and not t.test_ids for t in templates)
    assert len(templates) == 3 * 2  # outer folds x seeds x 1 inner fold
    refit = next(t for t in plan.trials if t.stage == "refit")
    assert set(refit.depends_on) <= {t.trial_id for t in templates} and refit.params is None
    a = search_trial(templates[0], {"lr": 0.01})
    assert a.trial_id == search_trial(templates[0], {"lr": 0.01}).trial_id
    assert a.trial_id != search_trial(templates[0], {"lr": 0.02}).trial_id
    assert a.config["training"]["lr"] == 0.01 and a.params == {"lr": 0.01}
    (row,) = search_budget(plan)
    assert (row["points"], row["inner"], row["outer"], row["seeds"]) == (6, 1, 3, 2)
    assert row["trials"] == 36


def test_the_budget_counts_points_inner_outer_and_seeds():
    plan = compile_suite(
        make_suite(
            models=[{"name": "res", "arch": "resnet10"}],
            training={"epochs": 2, "batch_size": 4},
            validation={
                "outer": {"strategy": "group_kfold", "k": 3},
                "inner": {"strategy": "group_kfold", "k": 2},
            },
            search={"algorithm": "random", "num_samples": 4, "space": {"lr": SPACE["lr"]}},
        ),
        {"synth": cohort()},
    )
    (row,) = search_budget(plan)
    assert (row["points"], row["inner"], row["outer"], row["seeds"]) == (4, 2, 3, 2)
    assert row["trials"] == len(_search_ids(plan)) == 48


@pytest.mark.parametrize(
    ("dist", "values"),
    [
        (Distribution("randint", (2, 5)), {2, 3, 4}),
        (Distribution("quniform", (0, 10, 5)), {0, 5, 10}),
        (Distribution("choice", ("adam", "sgd")), {"adam", "sgd"}),
    ],
)
def test_discrete_distributions_reach_exactly_their_values(dist, values):
    import numpy as np

    rng = np.random.default_rng(0)
    assert {dist.sample(rng) for _ in range(200)} == values
