"""Tests of raybench_analysis.summarize and of the `raybench analyze` command built on it."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from raybench_analysis._frames import AnalysisError
from raybench_analysis.metrics import auc
from raybench_analysis.simulate import simulate_predictions, write_results_dir
from raybench_analysis.summarize import read_results, summarize

N_BOOT = 60


@pytest.fixture(scope="module")
def run():
    return simulate_predictions(n_sites=4, subjects_per_site=8, n_seeds=2, n_folds=2,
                                perturbations={"noise": [0.2]}, seed=1)  # fmt: skip


@pytest.fixture(scope="module")
def summary(run):
    return summarize({"trials": run.trials, "predictions": run.predictions}, n_boot=N_BOOT)


def test_tables_and_their_method_and_unit(summary) -> None:
    expected = {"models", "ranking", "sites", "calibration", "reliability", "robustness"}
    assert expected <= set(summary)
    for name, table in summary.items():
        assert {"method", "unit"} <= set(table.columns), name
        assert table.height > 0, name
    assert set(summary["models"]["unit"]) == {"site>subject_id"}
    assert set(summary["sites"]["unit"]) == {"subject_id"}  # below site, within each site
    assert summary.settings["metric"] == "auc" and summary.settings["task"] == "classification"


def test_variance_components_per_model(summary) -> None:
    pytest.importorskip("raybench_analysis.variance")
    vc = summary["variance"]
    assert set(vc["component"]) >= {"split", "seed", "test_sample", "total"}
    total = vc.filter(pl.col("component") == "total")
    assert total.height == 3 and (total["share"] == 1.0).all()


def test_model_estimates_are_fold_means_of_seed_averaged_auc(run, summary) -> None:
    clean = run.predictions.filter(perturbation="none")
    for row in summary["models"].iter_rows(named=True):
        part = clean.filter(model=row["model"])
        per_fold = []
        for fold in sorted(part["outer_fold"].unique()):
            f = part.filter(outer_fold=fold)
            seeds = sorted(f["seed"].unique())
            per_fold.append(
                sum(auc(g["y_true"], g["score"]) for g in (f.filter(seed=s) for s in seeds))
                / len(seeds)
            )
        # Mann-Whitney AUC of each (fold, seed) test set, mean over seeds, then over folds
        # (Forman & Scholz 2010: average per-fold AUCs, do not pool scores of fold models)
        assert row["estimate"] == pytest.approx(sum(per_fold) / len(per_fold), abs=1e-12)
        assert row["ci_low"] <= row["estimate"] <= row["ci_high"]
        assert row["n_outer_fold"] == 2 and row["n_seed"] == 2
        assert "averaged over seed, then outer_fold" in row["method"]


def test_models_differences_equal_compare_estimates(summary) -> None:
    models = {r["model"]: r["estimate"] for r in summary["models"].iter_rows(named=True)}
    boot = summary["comparisons"].filter(method=summary["comparisons"]["method"][0])
    assert boot.height == 3  # three pairs of three models
    for r in boot.iter_rows(named=True):
        # one question, one number: models-table difference == compare's estimate (same estimand)
        assert models[r["model_a"]] - models[r["model_b"]] == pytest.approx(
            r["estimate"], abs=1e-12
        )
    ttest = summary["comparisons"].filter(pl.col("method").str.contains("t-test|ttest"))
    for r in ttest.iter_rows(named=True):
        assert models[r["model_a"]] - models[r["model_b"]] == pytest.approx(
            r["estimate"], abs=1e-12
        )


def test_resampling_options_reach_every_section(run) -> None:
    s = summarize({"trials": run.trials, "predictions": run.predictions}, n_boot=N_BOOT,
                  scheme="two_stage", interval="percentile", strata="site",
                  hierarchy=["subject_id"])  # fmt: skip
    assert set(s["models"]["method"]) == {
        "stratified cluster bootstrap (strata: site), percentile interval; metric per "
        "outer_fold×seed cell, averaged over seed, then outer_fold"
    }
    assert s["models"]["df"].is_nan().all()  # percentile interval: no t degrees of freedom
    assert s.settings["strata"] == ["site"] and s.settings["interval"] == "percentile"
    assert all("percentile" in m for m in s["comparisons"]["method"] if "bootstrap" in m)
    assert all("stratified" in m for m in s["ranking"]["method"])


def test_regression_defaults_to_mae_without_calibration() -> None:
    reg = simulate_predictions(task="regression", models={"a": 0.0, "b": 1.0}, n_sites=3,
                               subjects_per_site=5, n_seeds=1, n_folds=2)  # fmt: skip
    s = summarize(reg.predictions, hierarchy=["site", "subject_id"], n_boot=N_BOOT)
    assert s.settings["metric"] == "mae"
    assert "calibration" not in s and "robustness" not in s
    assert s["ranking"]["model"].to_list() == ["a", "b"]  # lower MAE ranks first


def test_partial_results_directory_is_summarized_with_notes(run, tmp_path: Path) -> None:
    root = write_results_dir(run, tmp_path / "run")
    trial_files = sorted((root / "trials").glob("*.parquet"))
    # an interrupted commit: predictions written, trials file not (the trial is not committed)
    trial_files[0].unlink()
    # a failed trial: a trials row with status failed and no predictions
    failed = pl.read_parquet(trial_files[1]).with_columns(
        status=pl.lit("failed"), error=pl.lit("RuntimeError: CUDA out of memory")
    )
    failed.write_parquet(trial_files[1])
    (root / "predictions" / trial_files[1].name).unlink()
    tables = read_results(root)
    assert tables.trials.collect().height == run.trials.height - 1
    assert trial_files[0].stem not in set(tables.predictions.collect()["trial_id"])
    s = summarize(root, n_boot=N_BOOT)
    text = " ".join(s.missing)
    assert "predictions: 1 file(s) of uncommitted trials skipped" in text
    assert "failed: RuntimeError: CUDA out of memory" in text
    assert "2 of 12 (dataset, protocol, model, fold, seed) cells have no completed trial" in text
    assert "models" in s and s.settings["source"] == str(root)


def test_friedman_across_datasets() -> None:
    runs = [
        simulate_predictions(models={"weak": 0.5, "strong": 2.5}, n_sites=2, subjects_per_site=8,
                             n_seeds=1, n_folds=2, dataset=f"d{i}", seed=i)
        for i in range(3)
    ]  # fmt: skip
    preds = pl.concat([r.predictions for r in runs])
    s = summarize(preds, n_boot=N_BOOT)
    # three datasets, "strong" first on each: mean ranks 1 and 2; chi2 = 12*3/(2*3)*(1+4-4.5) = 3
    assert s["friedman_ranks"]["model"].to_list() == ["strong", "weak"]
    assert s["friedman"]["statistic"][0] == pytest.approx(3.0, abs=1e-12)
    assert set(s["friedman"]["unit"]) == {"dataset"}


def test_write_json_and_parquet(summary, tmp_path: Path) -> None:
    out = summary.write(tmp_path / "analysis")
    data = json.loads((out / "summary.json").read_text())
    assert set(data["tables"]) == set(summary)
    for name in summary:
        back = pl.read_parquet(out / f"{name}.parquet")
        assert back.equals(summary[name])  # not rounded


def test_not_a_results_directory(tmp_path: Path) -> None:
    with pytest.raises(AnalysisError, match="is not a raybench results directory"):
        read_results(tmp_path)
    with pytest.raises(AnalysisError, match="does not exist"):
        summarize(tmp_path / "nope")


def test_no_predictions_yet(run) -> None:
    s = summarize({"trials": run.trials, "predictions": pl.DataFrame()})
    assert len(s) == 0 and any("no predictions yet" in n for n in s.missing)


# ----------------------------------------------------------------------------- the CLI


def test_cli_analyze_writes_tables(run, tmp_path: Path) -> None:
    main = pytest.importorskip("raybench.cli.main")
    from typer.testing import CliRunner

    root = write_results_dir(run, tmp_path / "run")
    args = ["analyze", str(root), "--n-boot", "40", "--hierarchy", "site,subject_id"]
    result = CliRunner().invoke(main.app, args)
    assert result.exit_code == 0, result.output
    assert "models: estimates" in result.output and "pairwise comparisons" in result.output
    assert (root / "analysis" / "models.parquet").is_file()
    as_json = CliRunner().invoke(main.app, [*args, "--json", "--out", str(tmp_path / "a")])
    assert json.loads(as_json.stdout)["settings"]["n_boot"] == 40
    assert (tmp_path / "a" / "summary.json").is_file()


def test_cli_analyze_rejects_non_results_dir(tmp_path: Path) -> None:
    main = pytest.importorskip("raybench.cli.main")
    from typer.testing import CliRunner

    result = CliRunner().invoke(main.app, ["analyze", str(tmp_path)])
    assert result.exit_code == 2
    assert "not a raybench results directory" in result.output
