"""A generated dataset as an external test set inside `raybench run` (real Ray, cvae, NIfTI)."""

from __future__ import annotations

import polars as pl
import pytest
from suite_runs import run_suite_text

pytestmark = pytest.mark.slow

SUITE = """
name: generated
datasets:
  - name: synth
    source: synthetic
    params: {sites: 2, subjects: 16, shape: [16, 16, 16], effect: 2.0, seed: 0}
  - name: gen
    source: generated
    params: {from: synth, latent: 8, epochs: 2, samples: 12, seed: 0}
task: {type: classification, label: diagnosis, positive: AD}
models:
  - {name: cnn, arch: classifier, params: {channels: [[4, 8]], strides: [[2, 2]]}}
training: {epochs: 1, batch_size: 4}
validation:
  outer: {strategy: group_kfold, k: 2, stratify: [label]}
  inner: {strategy: group_holdout, fraction: 0.25}
  external: [gen]
seeds: [0]
evaluation: {metrics: [auc]}
"""


def test_generated_data_is_scored_by_fold_0_with_features(ray_session, tmp_path, capsys) -> None:
    from raybench_analysis import load, summarize
    from raybench_analysis.contract import check_leakage
    from raybench_analysis.report.external import feature_shift_section

    from raybench.cli.summary import print_summary

    _, results, _ = run_suite_text(SUITE, tmp_path)

    trials = pl.read_parquet(str(results / "trials" / "*.parquet"))
    refits = trials.filter(pl.col("stage") == "refit")
    entries = trials.filter(pl.col("stage") == "predict")
    assert refits.height == 2 and set(trials["dataset"]) == {"synth", "gen"}
    # only fold 0's model: the generator was fitted to its training subjects
    fold0 = refits.filter(pl.col("outer_fold") == 0)["trial_id"].to_list()
    assert entries["refit_trial_id"].to_list() == fold0
    preds = pl.read_parquet(str(results / "predictions" / "*.parquet"))
    assert preds.filter(pl.col("split") == "external")["dataset"].unique().to_list() == ["gen"]

    features = pl.read_parquet(str(results / "features" / "*.parquet"))
    test_ids = preds.filter((pl.col("trial_id") == fold0[0]) & (pl.col("split") == "test"))
    real = features.filter(pl.col("origin") == "test")
    assert sorted(real["sample_id"]) == sorted(test_ids["sample_id"].unique())
    assert set(real["dataset"]) == {"synth"}
    assert features.filter(pl.col("origin") == "generated").height == 12
    assert features["features"].list.len().n_unique() == 1

    loaded = load(str(results))
    assert check_leakage(loaded).is_empty()
    tables = summarize(loaded, n_boot=100)
    shift = tables["feature_shift"]
    assert shift.select("dataset", "development", "model", "distance").rows() == [
        ("gen", "synth", "cnn", "mmd"),
        ("gen", "synth", "cnn", "frechet"),
    ]
    assert shift["halves_p"].is_between(0, 1).all() and (shift["n_half"] >= 2).all()
    assert "external" in tables  # the AUC on generated samples, next to the internal one
    print_summary(tables)
    assert "real vs generated" in capsys.readouterr().out
    section = feature_shift_section(tables)
    assert section is not None and 'data-table="feature_shift"' in section.body
