"""validation.external / final: located suite errors, the compile-time leakage audit, the plan."""

from __future__ import annotations

import polars as pl
import pytest
from plan_fixtures import cohort, cohort_table, make_suite
from pydantic import ValidationError

from raybench.errors import LeakageError, SuiteError
from raybench.plan import compile_suite
from raybench.suite import parse_suite

DATASETS = [
    {"name": "synth", "source": "synthetic", "params": {"subjects": 24}},
    {"name": "ext", "source": "synthetic", "params": {"subjects": 24, "seed": 1}},
]


def _external_table() -> pl.DataFrame:
    table = cohort_table(seed=1)
    return table.with_columns(
        pl.col("subject_id").str.replace("sub-", "sub-ext"),
        pl.col("sample_id").str.replace("sub-", "sub-ext"),
    )


def _suite(**validation):
    return make_suite(
        datasets=DATASETS,
        training={"epochs": 1, "batch_size": 4},
        validation={"outer": {"strategy": "group_kfold", "k": 2}, **validation},
    )


def test_external_datasets_are_not_trained_and_final_refits_train_on_everything() -> None:
    suite = _suite(external=["ext"], final=True)
    cohorts = {"synth": cohort(), "ext": cohort("ext", _external_table(), "fp1")}
    plan = compile_suite(suite, cohorts)
    refits = [t for t in plan.trials if t.stage == "refit"]
    assert {t.dataset for t in plan.trials} == {"synth"}
    assert plan.meta["external"] == {"ext": "fp1"}
    final = [t for t in refits if t.protocol == "final"]
    assert len(final) == len(suite.models) * len(suite.seeds)  # outer fold 0 of each
    everyone = set(cohorts["synth"].table["sample_id"])
    for t in final:
        assert t.test_ids == () and set(t.train_ids) | set(t.val_ids) == everyone
        assert not set(t.train_ids) & set(t.val_ids)
    assert all(t.config["training"]["save_model"] == "best" for t in refits)


def test_suites_without_external_keep_their_configs() -> None:
    plan = compile_suite(_suite(), {"synth": cohort(), "ext": cohort("ext", fp="fp1")})
    assert all("save_model" not in t.config["training"] for t in plan.trials)
    assert "external" not in plan.meta


def test_a_shared_subject_is_leakage() -> None:
    suite = _suite(external=["ext"])
    with pytest.raises(LeakageError, match=r"external dataset 'ext'.*sub-000"):
        compile_suite(suite, {"synth": cohort(), "ext": cohort("ext", cohort_table(seed=1), "f")})


def test_a_shared_image_hash_is_leakage() -> None:
    dev = cohort_table().with_columns(image_sha256=pl.col("sample_id") + "-hash")
    ext = _external_table().with_columns(image_sha256=pl.lit("sub-003_ses-0-hash"))
    cohorts = {"synth": cohort("synth", dev), "ext": cohort("ext", ext, "fp1")}
    with pytest.raises(LeakageError, match="image_sha256"):
        compile_suite(_suite(external=["ext"]), cohorts)


def test_the_same_data_under_another_name_is_refused() -> None:
    suite = _suite(external=["ext"])
    with pytest.raises(SuiteError, match="same data"):
        compile_suite(suite, {"synth": cohort(), "ext": cohort("ext", _external_table())})


@pytest.mark.parametrize(
    ("validation", "message"),
    [
        ("{external: [oasis]}", r"validation.external\[0\].*not a dataset of the suite"),
        ("{external: [ext, ext]}", r"validation.external\[1\].*duplicate"),
        ("{external: [synth, ext]}", "every dataset is external"),
        ("{final: true}", "validation.final.*external"),
    ],
)
def test_located_errors(validation: str, message: str) -> None:
    text = f"""
name: s
datasets:
  - {{name: synth, source: synthetic}}
  - {{name: ext, source: synthetic, params: {{seed: 1}}}}
task: {{type: classification, label: diagnosis}}
models: [{{name: m, arch: classifier}}]
validation: {validation}
"""
    with pytest.raises((SuiteError, ValidationError, ValueError), match=message):
        parse_suite(text, "s.yaml")


def test_an_external_dataset_that_is_a_development_one_is_refused() -> None:
    text = """
name: s
datasets:
  - {name: synth, source: synthetic}
  - {name: ext, source: synthetic}
task: {type: classification, label: diagnosis}
models: [{name: m, arch: classifier}]
validation: {external: [ext]}
"""
    with pytest.raises(Exception, match=r"s.yaml:8.*reads the same data as development"):
        parse_suite(text, "s.yaml")


GENERATED = {"name": "gen", "source": "generated", "params": {"from": "synth", "samples": 8}}


def _generated_table() -> pl.DataFrame:
    ids = [f"gen-{i:05d}" for i in range(8)]
    return pl.DataFrame(
        {"sample_id": ids, "subject_id": ids, "session_id": "ses-1", "scanner": "generated",
         "site": "generated", "image": [f"{i}.nii.gz" for i in ids],
         "diagnosis": ["AD", "CN"] * 4},
    )  # fmt: skip


def test_a_generated_dataset_is_scored_by_fold_0_of_its_source_only(monkeypatch) -> None:
    import raybench.data.generated as generated

    suite = make_suite(
        datasets=[DATASETS[0], GENERATED],
        training={"epochs": 1, "batch_size": 4},
        validation={"outer": {"strategy": "group_kfold", "k": 2}, "external": ["gen"]},
    )
    cohorts = {"synth": cohort(), "gen": cohort("gen", _generated_table(), "fpg")}
    plan = compile_suite(suite, cohorts)
    assert {t.dataset for t in plan.trials} == {"synth"}
    assert plan.meta["external_scope"] == {
        "gen": {"dataset": "synth", "protocol": "outer", "outer_fold": 0}
    }
    # a generator that saw a test subject of fold 0 would make the comparison meaningless
    everyone = tuple(cohorts["synth"].table["sample_id"])
    monkeypatch.setattr(generated, "fit_sample_ids", lambda source, suite: everyone)
    with pytest.raises(LeakageError, match=r"generated dataset 'gen'.*fold 0"):
        compile_suite(suite, cohorts)


def test_a_generated_external_dataset_needs_its_source_in_development() -> None:
    text = """
name: s
datasets:
  - {name: synth, source: synthetic}
  - {name: ext, source: synthetic, params: {seed: 1}}
  - {name: gen, source: generated, params: {from: ext}}
task: {type: classification, label: diagnosis}
models: [{name: m, arch: classifier}]
validation: {external: [ext, gen]}
"""
    with pytest.raises(Exception, match=r"s.yaml:9.*'gen'.*'ext', which is external too"):
        parse_suite(text, "s.yaml")
