"""Trial ids: stable across processes; they change when the result would, and only then."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from plan_fixtures import cohort, cohort_table, make_suite

from raybench.plan import compile_suite
from raybench.plan.ids import config_digest, ids_digest, trial_id

HERE = Path(__file__).parent


def ids(suite, cohorts=None) -> list[str]:
    return [t.trial_id for t in compile_suite(suite, cohorts or {"synth": cohort()}).trials]


def keyed(suite, cohorts=None) -> dict[tuple, str]:
    """Trial ids by position (stage, dataset, model, protocol, fold, inner fold, seed, point)."""
    plan = compile_suite(suite, cohorts or {"synth": cohort()})
    return {
        (t.stage, t.model, t.protocol, t.outer_fold, t.inner_fold, t.seed, json.dumps(t.params)): (
            t.trial_id
        )
        for t in plan.trials
    }


def test_ids_are_stable_across_processes():
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]);"
        "from plan_fixtures import cohort, make_suite;"
        "from raybench.plan import compile_suite;"
        "print(json.dumps([t.trial_id for t in "
        "compile_suite(make_suite(), {'synth': cohort()}).trials]))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code, str(HERE)], env=env, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == ids(make_suite())


def test_golden_id():
    # sha256 of {"config":"c","data":"d","depends_on":[],"seed":0,"stage":"refit","test":"x",
    #            "train":"t","v":1,"val":"v"} in canonical JSON, first 16 hex characters
    import hashlib

    payload = (
        '{"config":"c","data":"d","depends_on":[],"seed":0,"stage":"refit","test":"x",'
        '"train":"t","v":1,"val":"v"}'
    )
    expected = hashlib.sha256(payload.encode()).hexdigest()[:16]
    got = trial_id(
        stage="refit", config_hash="c", data_fingerprint="d", train="t", val="v", test="x", seed=0
    )
    assert got == expected


@pytest.mark.parametrize(
    "change",
    [
        {"name": "other-name"},
        {"description": "a new description"},
        {"resources": {"cpu": 2, "gpu": 0.5, "max_retries": 3}},
        {"tracking": {"wandb": {"project": "elsewhere", "mode": "offline"}}},
        {"storage": {"results": "/tmp/elsewhere"}},
        {"analysis": {"alpha": 0.01, "n_boot": 500}},
        {
            "evaluation": {
                "metrics": ["auc", "balanced_accuracy"],
                "perturbations": [{"type": "gaussian_noise", "std": [0.05, 0.1]}],
            }
        },
        {"datasets": [{"name": "renamed", "source": "synthetic", "params": {"subjects": 24}}]},
    ],
)
def test_ids_ignore_what_does_not_change_results(change):
    base = ids(make_suite())
    cohorts = {"renamed": cohort("renamed")} if "datasets" in change else None
    assert ids(make_suite(**change), cohorts) == base


def test_ids_ignore_model_names_and_dataloader_workers():
    base = keyed(make_suite())
    renamed = make_suite(
        models=[
            {"name": "small2", "arch": "classifier"},
            {"name": "res2", "arch": "resnet10", "params": {"dropout": [0.0, 0.2]}},
        ],
        training={"epochs": 2, "batch_size": 4, "lr": [1.0e-3, 3.0e-4], "num_workers": 3},
    )
    assert sorted(base.values()) == sorted(keyed(renamed).values())


def test_ids_change_with_the_seed_and_only_for_that_seed():
    a = keyed(make_suite(seeds=[0, 1]))
    b = keyed(make_suite(seeds=[0, 2]))
    assert {k[5] for k in a} == {0, 1}
    same = {k[:5] + k[6:]: v for k, v in a.items() if k[5] == 0}
    same_b = {k[:5] + k[6:]: v for k, v in b.items() if k[5] == 0}
    assert same == same_b
    assert not {v for k, v in a.items() if k[5] == 1} & set(b.values())


def test_ids_change_with_the_learning_rate_for_the_trials_that_use_it():
    a = keyed(make_suite())
    b = keyed(make_suite(training={"epochs": 2, "batch_size": 4, "lr": [1.0e-3, 1.0e-4]}))
    old, new = set(a.values()), set(b.values())
    # search trials with lr=1e-3 are unchanged; every refit depends on the lr=3e-4 trials
    kept = {v for k, v in a.items() if k[0] == "search" and '"lr": 0.001' in k[6]}
    assert kept and kept == old & new
    assert all(a[k] != b.get(k) for k in a if k[0] == "refit")


def test_ids_change_with_an_architecture_parameter_only_for_that_model():
    a = keyed(make_suite())
    models = [
        {"name": "small", "arch": "classifier"},
        {"name": "res", "arch": "resnet10", "params": {"dropout": [0.0, 0.2], "norm": "batch"}},
    ]
    b = keyed(make_suite(models=models))

    def of(ids: dict, model: str) -> set[str]:
        return {v for k, v in ids.items() if k[1] == model}

    assert of(a, "small") == of(b, "small")
    assert of(a, "res") and not of(a, "res") & of(b, "res")


def test_ids_change_with_the_data_fingerprint():
    a = ids(make_suite(), {"synth": cohort(fp="fp0")})
    b = ids(make_suite(), {"synth": cohort(fp="fp1")})
    assert not set(a) & set(b)


def test_ids_change_when_a_sample_moves_and_only_where_it_is_used():
    table = cohort_table()
    moved = "sub-003_ses-1"
    renamed = table.with_columns(
        pl.when(pl.col("sample_id") == moved)
        .then(pl.lit("sub-003_ses-9"))
        .otherwise(pl.col("sample_id"))
        .alias("sample_id")
    )
    suite = make_suite()
    plan_a = compile_suite(suite, {"synth": cohort(table=table)})
    plan_b = compile_suite(suite, {"synth": cohort(table=renamed)})
    for ta, tb in zip(plan_a.trials, plan_b.trials, strict=True):
        uses = moved in ta.train_ids + ta.val_ids + ta.test_ids
        refit_of_changed = ta.stage == "refit" and set(ta.depends_on) != set(tb.depends_on)
        assert (ta.trial_id != tb.trial_id) == (uses or refit_of_changed), ta
    # some search trials do not see the sample (it is in their outer test fold): ids kept
    assert any(a.trial_id == b.trial_id for a, b in zip(plan_a.trials, plan_b.trials, strict=True))


def test_digest_helpers():
    assert ids_digest(["b", "a"]) == ids_digest(["a", "b"]) != ids_digest(["a"])
    cfg = {"suite": "x", "resources": {"cpu": 1}, "training": {"lr": 0.1, "num_workers": 0}}
    other = {"suite": "y", "resources": {"cpu": 4}, "training": {"lr": 0.1, "num_workers": 8}}
    assert config_digest(cfg) == config_digest(other)
    assert config_digest(cfg) != config_digest({**cfg, "training": {"lr": 0.2}})
    a = dict(stage="refit", config_hash="c", data_fingerprint="d", train="t", val="v", test="x")
    assert trial_id(**a, seed=0, depends_on=["1", "2"]) == trial_id(
        **a, seed=0, depends_on=["2", "1"]
    )
    assert trial_id(**a, seed=0) != trial_id(**{**a, "stage": "search"}, seed=0)


@pytest.mark.parametrize("text", ["0123abcdef", 'quote"d', "back\\slash", "tab\there", "naïve"])
def test_fast_id_text_is_the_canonical_json_of_the_payload(text):
    from raybench.plan.ids import ID_VERSION, content_hash

    kw = dict(stage="search", config_hash=text, data_fingerprint=text, train="t", val="v", test="")
    payload = {
        "v": ID_VERSION,
        "stage": "search",
        "config": text,
        "data": text,
        "train": "t",
        "val": "v",
        "test": "",
        "seed": 7,
        "depends_on": ["a", "b"],
    }
    assert trial_id(**kw, seed=7, depends_on=["b", "a"]) == content_hash(payload, 16)


def test_ids_do_not_depend_on_the_row_order_of_the_cohort():
    table = cohort_table()
    shuffled = table.sample(fraction=1.0, shuffle=True, seed=3)
    assert table["sample_id"].to_list() != shuffled["sample_id"].to_list()
    assert ids(make_suite(), {"synth": cohort(table=shuffled)}) == ids(make_suite())
