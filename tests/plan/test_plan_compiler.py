"""compile_suite: counts equal the product of the factors; folds are leakage-free; stages link."""

from __future__ import annotations

from collections import defaultdict

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from plan_fixtures import cohort, cohort_table, make_suite

from raybench.errors import DataError, SuiteError
from raybench.plan import apply_point, compile_suite, expand_search_space
from raybench.splits import check_disjoint
from raybench.suite.schema import Validation

protocols = st.sampled_from(
    [
        {"strategy": "group_kfold", "k": 2},
        {"strategy": "group_kfold", "k": 3, "repeats": 2},
        {"strategy": "group_kfold", "k": 4, "stratify": ["label", "site"]},
        {"strategy": "leave_one_site_out", "stratify": []},
    ]
)
inner_protocols = st.sampled_from(
    [
        {"strategy": "group_holdout", "fraction": 0.3},
        {"strategy": "group_kfold", "k": 2},
        {"strategy": "group_kfold", "k": 3, "stratify": []},
    ]
)


def n_folds(protocol: dict, n_sites: int) -> int:
    if protocol["strategy"] == "leave_one_site_out":
        return n_sites
    return protocol["k"] * protocol.get("repeats", 1)


def n_inner(protocol: dict) -> int:
    return protocol.get("k", 1) if protocol["strategy"] == "group_kfold" else 1


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    outer=protocols,
    inner=inner_protocols,
    extra=st.booleans(),
    seeds=st.lists(st.integers(0, 9), min_size=1, max_size=3, unique=True),
    lrs=st.lists(st.sampled_from([1e-2, 1e-3, 1e-4]), min_size=1, max_size=3, unique=True),
    dropouts=st.lists(st.sampled_from([0.0, 0.1, 0.5]), min_size=1, max_size=2, unique=True),
    n_datasets=st.integers(1, 2),
)
def test_counts_are_the_product_of_the_factors(
    outer, inner, extra, seeds, lrs, dropouts, n_datasets
):
    n_sites = 3
    extras = [{"strategy": "leave_one_site_out", "stratify": []}] if extra else []
    if outer["strategy"] == "leave_one_site_out":
        extras = []
    suite = make_suite(
        datasets=[
            {"name": f"d{i}", "source": "synthetic", "params": {"subjects": 30}}
            for i in range(n_datasets)
        ],
        training={"epochs": 2, "lr": lrs},
        models=[
            {"name": "a", "arch": "classifier"},
            {"name": "b", "arch": "resnet10", "params": {"dropout": dropouts}},
        ],
        validation={"outer": outer, "inner": inner, "extra": extras},
        seeds=seeds,
    )
    cohorts = {
        f"d{i}": cohort(f"d{i}", cohort_table(30, n_sites, 2, seed=i), f"fp{i}")
        for i in range(n_datasets)
    }
    plan = compile_suite(suite, cohorts)
    folds = n_folds(outer, n_sites) + sum(n_folds(p, n_sites) for p in extras)
    points = {"a": len(lrs), "b": len(lrs) * len(dropouts)}
    refit = [t for t in plan.trials if t.stage == "refit"]
    search = [t for t in plan.trials if t.stage == "search"]
    assert len(refit) == n_datasets * 2 * folds * len(seeds)
    expected_search = sum(
        n_datasets * p * n_inner(inner) * folds * len(seeds) for p in points.values() if p > 1
    )
    assert len(search) == expected_search
    assert [s for s, _ in plan.stages] == (["search", "refit"] if search else ["refit"])
    assert len({t.trial_id for t in plan.trials}) == len(plan.trials)
    assert_leakage_free_and_linked(plan, cohorts)


def assert_leakage_free_and_linked(plan, cohorts):
    by_id = {t.trial_id: t for t in plan.trials}
    assert len(by_id) == len(plan.trials)
    used = set()
    for t in plan.trials:
        table = cohorts[t.dataset].table
        check_disjoint(
            {"train": t.train_ids, "val": t.val_ids, "test": t.test_ids}, table, where=t.trial_id
        )
        if t.stage == "search":
            assert t.test_ids == () and t.inner_fold is not None
    for t in plan.trials:
        if t.stage != "refit":
            continue
        assert t.inner_fold is None
        deps = [by_id[d] for d in t.depends_on]  # every dependency is a trial of the plan
        used.update(t.depends_on)
        outer_train = set(t.train_ids) | set(t.val_ids)
        for d in deps:
            assert (d.stage, d.dataset, d.model, d.seed) == ("search", t.dataset, t.model, t.seed)
            # the search never sees the outer test fold: inner folds live in the outer train fold
            assert set(d.train_ids) | set(d.val_ids) == outer_train
            assert d.params in t.candidates
            assert apply_point(t.config, d.params) == d.config
        if deps:
            assert t.params is None
            assert len(t.candidates) == len({tuple(sorted(c.items())) for c in t.candidates})
            inner = {(d.train_ids, d.val_ids) for d in deps}
            assert len(deps) == len(t.candidates) * len(inner)  # every point x inner fold
        else:
            assert t.params is not None and t.candidates == ()
    assert used == {t.trial_id for t in plan.trials if t.stage == "search"}  # none orphaned


def test_seeds_share_the_same_splits():
    plan = compile_suite(make_suite(seeds=[0, 1, 2]), {"synth": cohort()})
    roles = defaultdict(set)
    for t in plan.trials:
        key = (t.stage, t.model, t.protocol, t.outer_fold, t.inner_fold, str(t.params))
        roles[key].add((t.train_ids, t.val_ids, t.test_ids))
    assert roles and all(len(v) == 1 for v in roles.values())


def test_refit_uses_the_first_inner_fold_and_the_outer_test_fold():
    suite = make_suite(
        validation={
            "outer": {"strategy": "group_kfold", "k": 3},
            "inner": {"strategy": "group_kfold", "k": 2},
        }
    )
    plan = compile_suite(suite, {"synth": cohort()})
    table = cohort().table
    all_ids = set(table["sample_id"].to_list())
    for t in plan.trials:
        if t.stage == "refit" and t.model == "res":
            first = [d for d in plan.trials if d.trial_id in t.depends_on and d.inner_fold == 0]
            assert {(d.train_ids, d.val_ids) for d in first} == {(t.train_ids, t.val_ids)}
            assert set(t.train_ids) | set(t.val_ids) | set(t.test_ids) == all_ids


def test_config_holds_the_resolved_settings():
    plan = compile_suite(make_suite(), {"synth": cohort()})
    search = next(t for t in plan.trials if t.stage == "search" and t.model == "res")
    cfg = search.config
    assert cfg["task"] == {
        "type": "classification",
        "label": "diagnosis",
        "positive": "AD",
        "classes": ["CN", "AD"],
    }
    assert cfg["model"] == {
        "arch": "resnet10",
        "params": {"dropout": search.params["model.dropout"]},
    }
    assert cfg["training"]["lr"] == search.params["lr"]
    assert cfg["training"]["epochs"] == 2 and cfg["training"]["batch_size"] == 4
    assert [p["id"] for p in cfg["evaluation"]["perturbations"]] == [
        "gaussian_noise(std=0.05)",
        "gaussian_noise(std=0.1)",
    ]
    assert cfg["evaluation"]["perturbations"][1]["severity"] == 0.1
    assert cfg["resources"]["cpu"] == 1.0 and cfg["suite"] == "unit" and cfg["plugins"] == {}
    refit = next(t for t in plan.trials if t.stage == "refit" and t.model == "res")
    assert refit.config["training"]["lr"] is None  # chosen at run time
    assert refit.config["model"]["params"] == {"dropout": None}
    assert len(refit.candidates) == 4
    single = next(t for t in plan.trials if t.model == "small" and t.stage == "refit")
    assert single.params is None and single.config["model"]["params"] == {}


def test_search_points_are_the_grid():
    suite = make_suite()
    points = expand_search_space(suite.models[1], suite.training)
    assert len(points) == 4
    assert {(p["lr"], p["model.dropout"]) for p in points} == {
        (1e-3, 0.0),
        (1e-3, 0.2),
        (3e-4, 0.0),
        (3e-4, 0.2),
    }
    assert set(points[0]) == {
        "epochs",
        "batch_size",
        "optimizer",
        "lr",
        "weight_decay",
        "model.dropout",
    }


def test_apply_point_rejects_unknown_keys():
    with pytest.raises(SuiteError, match=r"search point key 'momentum' is unknown"):
        apply_point({"training": {}, "model": {"params": {}}}, {"momentum": 0.9})


def test_a_search_without_inner_protocol_is_refused():
    suite = make_suite()
    no_inner = suite.model_copy(update={"validation": Validation.model_validate({"inner": None})})
    with pytest.raises(SuiteError, match=r"models\[small\]: 2 search points \(lr\).*inner"):
        compile_suite(no_inner, {"synth": cohort()})


def test_no_inner_protocol_trains_on_the_whole_outer_training_fold():
    suite = make_suite(
        training={"epochs": 1},
        models=[{"name": "small", "arch": "classifier"}],
        validation={"outer": {"strategy": "group_kfold", "k": 3}, "inner": None},
    )
    plan = compile_suite(suite, {"synth": cohort()})
    assert {len(t.val_ids) for t in plan.trials} == {0}
    assert len(plan.trials) == 3 * 2  # 3 outer folds x 2 seeds, refit only


def test_folds_drawn_twice_are_planned_once():
    # 4 subjects in 2 folds: only 3 partitions exist, so 6 repeats must draw some twice
    suite = make_suite(
        training={"epochs": 1},
        models=[{"name": "small", "arch": "classifier"}],
        validation={
            "outer": {"strategy": "group_kfold", "k": 2, "repeats": 6, "stratify": []},
            "inner": None,
        },
        seeds=[0],
    )
    with pytest.warns(UserWarning, match=r"coincide with earlier trials of the same dataset"):
        plan = compile_suite(suite, {"synth": cohort(table=cohort_table(4, 2, 1))})
    distinct = {(t.train_ids, t.test_ids) for t in plan.trials}
    assert len(plan.trials) == len(distinct) <= 6
    assert len(plan.meta["coincident"]) == 12 - len(plan.trials)


def test_identical_models_are_reported_not_duplicated():
    suite = make_suite(
        models=[{"name": "a", "arch": "classifier"}, {"name": "b", "arch": "classifier"}]
    )
    with pytest.raises(SuiteError, match=r"model=a.*model=b.*would compute the same result"):
        compile_suite(suite, {"synth": cohort()})


def test_a_degenerate_inner_split_warns_with_its_location():
    suite = make_suite(
        validation={
            "outer": {"strategy": "group_kfold", "k": 2, "stratify": []},
            "inner": {"strategy": "group_holdout", "fraction": 0.1},
        }
    )
    with pytest.warns(
        UserWarning, match=r"^dataset 'synth', validation.outer fold 'fold\d', validation.inner: "
    ):
        compile_suite(suite, {"synth": cohort(table=cohort_table(20, 2, 1))})


def test_data_problems_are_located():
    suite = make_suite()
    with pytest.raises(DataError, match=r"dataset 'synth' has no cohort"):
        compile_suite(suite, {})
    with pytest.raises(DataError, match=r"task.label='diagnosis' is not a column"):
        compile_suite(suite, {"synth": cohort(table=cohort_table().drop("diagnosis"))})
    with pytest.raises(
        DataError, match=r"dataset 'synth', validation.outer: group_kfold: k=3 folds need at least"
    ):
        compile_suite(suite, {"synth": cohort(table=cohort_table(2, 1, 1))})
    tiny = cohort(table=cohort_table(6, 2, 1))
    deep = make_suite(
        validation={
            "outer": {"strategy": "group_kfold", "k": 3},
            "inner": {"strategy": "group_kfold", "k": 5, "stratify": []},
        }
    )
    with pytest.raises(
        DataError,
        match=r"dataset 'synth', validation.outer fold 'fold0', validation.inner: group_kfold: "
        r"k=5 folds need at least 5 subjects, the cohort has 4",
    ):
        compile_suite(deep, {"synth": tiny})


@pytest.mark.parametrize(
    ("task", "protocol"),
    [
        ({"type": "regression", "label": "age"}, {"strategy": "group_kfold", "k": 3}),
        ({"type": "segmentation", "label": "mask"}, {"strategy": "group_kfold", "k": 3}),
    ],
)
def test_regression_and_segmentation_compile(task, protocol):
    metric = "mae" if task["type"] == "regression" else "dice"
    suite = make_suite(
        task=task,
        models=[{"name": "m", "arch": "unet" if metric == "dice" else "regressor"}],
        training={"epochs": 1},
        validation={"outer": protocol, "inner": {"strategy": "group_holdout"}},
        evaluation={"metrics": [metric]},
    )
    plan = compile_suite(suite, {"synth": cohort()})
    assert len(plan.trials) == 3 * 2
    assert plan.trials[0].config["task"]["classes"] is None
    assert_leakage_free_and_linked(plan, {"synth": cohort()})


def test_extra_protocols_get_their_own_outer_folds():
    suite = make_suite(
        validation={
            "outer": {"strategy": "group_kfold", "k": 3},
            "extra": [{"strategy": "leave_one_site_out", "stratify": []}],
        }
    )
    plan = compile_suite(suite, {"synth": cohort()})
    table = cohort().table
    site = dict(zip(table["sample_id"], table["site"], strict=True))
    loso = [t for t in plan.trials if t.protocol == "leave_one_site_out" and t.stage == "refit"]
    assert {t.outer_fold for t in loso} == {0, 1, 2}
    for t in loso:
        assert len({site[s] for s in t.test_ids}) == 1
        assert not {site[s] for s in t.test_ids} & {site[s] for s in t.train_ids + t.val_ids}
    assert plan.meta["folds"]["synth"]["leave_one_site_out"][0]["name"] == "site=site0"


@pytest.mark.filterwarnings("ignore:dataset 'synth':UserWarning")  # tiny hold-outs miss a class
@pytest.mark.filterwarnings("ignore:.*coincide:UserWarning")  # tiny cohorts repeat folds
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n_subjects=st.integers(4, 40),
    n_sites=st.integers(1, 4),
    sessions=st.integers(1, 3),
    table_seed=st.integers(0, 1000),
    outer=protocols,
    inner=inner_protocols,
)
def test_nested_folds_never_leak_over_random_cohorts(
    n_subjects, n_sites, sessions, table_seed, outer, inner
):
    table = cohort_table(n_subjects, n_sites, sessions, seed=table_seed)
    suite = make_suite(validation={"outer": outer, "inner": inner})
    try:
        plan = compile_suite(suite, {"synth": cohort(table=table)})
    except DataError as exc:  # too small for the protocol: the message says where and why
        event("too small")
        assert str(exc).startswith("dataset 'synth', validation.outer"), str(exc)
        assert "subject" in str(exc) or "site" in str(exc)
        return
    assert_leakage_free_and_linked(plan, {"synth": cohort(table=table)})
    subjects = dict(zip(table["sample_id"], table["subject_id"], strict=True))
    for t in plan.trials:
        if t.stage == "refit":  # every sample is somewhere in every refit
            assert len(t.train_ids) + len(t.val_ids) + len(t.test_ids) == table.height
            assert {subjects[s] for s in t.test_ids}.isdisjoint(
                subjects[s] for s in t.train_ids + t.val_ids
            )
