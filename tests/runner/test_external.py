"""Saved models, external validation in a run, and ``raybench predict`` (real Ray, NIfTI, torch)."""

from __future__ import annotations

import hashlib
import json

import polars as pl
import pytest
from suite_runs import run_suite_text
from typer.testing import CliRunner

from raybench.cli.main import app

pytestmark = pytest.mark.slow

SUITE = """
name: external
datasets:
  - name: synth
    source: synthetic
    params: {sites: 2, subjects: 12, shape: [16, 16, 16], effect: 1.0, seed: 0}
  - name: ext
    source: synthetic
    params: {sites: 2, subjects: 8, shape: [16, 16, 16], effect: 1.0, seed: 1, subject_prefix: ext}
task: {type: classification, label: diagnosis, positive: AD}
models:
  - {name: cnn, arch: classifier, params: {channels: [[4, 8]], strides: [[2, 2]]}}
training: {epochs: 1, batch_size: 4}
validation:
  outer: {strategy: group_kfold, k: 2, stratify: [label]}
  inner: {strategy: group_holdout, fraction: 0.25}
  external: [ext]
  final: true
seeds: [0]
evaluation: {metrics: [auc], perturbations: [{type: gaussian_noise, std: 0.1}]}
"""


def _invoke(*args: str):
    return CliRunner().invoke(app, [*args])


def test_external_run_predict_and_saved_models(ray_session, tmp_path) -> None:
    from raybench.data import load_cohort
    from raybench.data.synthetic import generate_cohort
    from raybench.suite import load_suite
    from raybench.suite.schema import SyntheticParams
    from raybench.training.predict import predict_saved
    from raybench.training.saved import load_saved_model

    suite_path, results, data = run_suite_text(SUITE, tmp_path)
    trials = pl.read_parquet(str(results / "trials" / "*.parquet"))
    refits = trials.filter(pl.col("stage") == "refit").sort("protocol", "outer_fold")
    entries = trials.filter(pl.col("stage") == "predict")
    assert refits["protocol"].to_list() == ["final", "outer", "outer"]
    assert set(trials["status"]) == {"completed"}
    assert sorted(entries["refit_trial_id"]) == sorted(refits["trial_id"])
    preds = pl.read_parquet(str(results / "predictions" / "*.parquet"))
    external = preds.filter(pl.col("split") == "external")
    # every refit model (final included) on every external image, clean and perturbed
    assert external["dataset"].unique().to_list() == ["ext"]
    assert external.height == 3 * 8 * 2
    assert set(external["trial_id"]) == set(entries["trial_id"])
    assert external["subject_id"].str.starts_with("sub-ext").all()
    final_id = refits.filter(pl.col("protocol") == "final")["trial_id"][0]
    assert preds.filter((pl.col("trial_id") == final_id) & (pl.col("split") == "test")).is_empty()

    # saved models: one per refit, hash recorded; reloaded, they reproduce the test predictions
    suite = load_suite(suite_path)
    synth = load_cohort(suite.datasets[0], tmp_path, data)
    for row in refits.iter_rows(named=True):
        blob = (results / "models" / f"{row['trial_id']}.pt").read_bytes()
        assert hashlib.sha256(blob).hexdigest() == row["model_sha256"]
        if row["protocol"] == "final":
            continue
        own = preds.filter((pl.col("trial_id") == row["trial_id"]) & (pl.col("split") == "test"))
        ids = own.filter(pl.col("perturbation") == "none")["sample_id"].to_list()
        saved = load_saved_model(blob, row["model_sha256"], "model")
        again = predict_saved(
            saved, synth, data / "cache", entry_id=row["trial_id"], sample_ids=ids,
            split="test", perturbations=True,
        )  # fmt: skip
        key = ["sample_id", "perturbation"]
        cols = [*key, "y_true", "y_pred", "score", "probs", "loss"]
        again = pl.from_arrow(again).select(cols).sort(key)
        assert again.equals(own.filter(pl.col("variant") == "raw").select(cols).sort(key))

    # raybench predict: a new cohort from a manifest; resumable; hash-checked; leakage-checked
    new = generate_cohort(
        tmp_path / "new", SyntheticParams(sites=2, subjects=6, shape=(16, 16, 16), seed=2,
                                          subject_prefix="new")
    )  # fmt: skip
    args = ["predict", str(results), "--dataset", "new", "--manifest", str(new), "--json"]
    first = _invoke(*args, "--data-root", str(data))
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout.strip().splitlines()[-1])["completed"] == 3
    again = _invoke(*args, "--data-root", str(data))
    assert json.loads(again.stdout.strip().splitlines()[-1])["skipped"] == 3
    preds = pl.read_parquet(str(results / "predictions" / "*.parquet"))
    assert preds.filter(pl.col("dataset") == "new")["split"].unique().to_list() == ["external"]

    leak = _invoke("predict", str(results), "--dataset", "synth", "--data-root", str(data))
    assert leak.exit_code == 2 and "subject(s) of the external dataset" in leak.output

    model = results / "models" / f"{refits['trial_id'][1]}.pt"
    model.write_bytes(model.read_bytes() + b"\0")
    bad = _invoke(*args, "--perturbations", "--data-root", str(data))
    assert bad.exit_code == 1
    assert "differs from the" in json.dumps(json.loads(bad.stdout.strip().splitlines()[-1]))

    # the analysis: external performance and generalisation gap of the run's own external rows
    from raybench_analysis import load, summarize

    tables = summarize(str(results), n_boot=200)
    assert set(tables["external"]["dataset"]) == {"ext", "new"}
    gap = tables["generalisation_gap"]
    assert gap.select("development", "dataset", "protocol").unique().sort("dataset").rows() == [
        ("synth", "ext", "outer"),
        ("synth", "new", "outer"),
    ]
    from raybench_analysis.contract import check_leakage

    assert check_leakage(load(str(results))).is_empty()
