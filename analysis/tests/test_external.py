"""External validation: attribution of external rows, the gap's formula, its coverage and power."""

from __future__ import annotations

import math

import polars as pl
import pytest
from raybench_analysis import (
    AnalysisError,
    bootstrap,
    compare_external,
    external_performance,
    external_summary,
    generalisation_gap,
    summarize,
)
from raybench_analysis.external import external_rows
from raybench_analysis.report.external import external_section
from raybench_analysis.simulate import simulate_predictions
from scipy import stats

from analysis.validation.external_gap import run_study

DESIGN = {"n_sites": 6, "subjects_per_site": 8, "n_seeds": 1, "n_folds": 3}


@pytest.fixture(scope="module")
def run() -> dict[str, pl.DataFrame]:
    """A development run of two models and their predictions on an external dataset."""
    dev = simulate_predictions(models={"a": 2.0, "b": 1.0}, seed=0, **DESIGN)
    ext = simulate_predictions(models={"a": 0.5, "b": 1.0}, seed=1, dataset="ext", **DESIGN)
    external = ext.predictions.with_columns(
        split=pl.lit("external"), trial_id=pl.lit("e-") + pl.col("trial_id")
    )
    entries = ext.trials.with_columns(
        refit_trial_id=pl.col("trial_id").replace(
            dict(zip(ext.trials["trial_id"], dev.trials["trial_id"], strict=True))
        ),
        trial_id=pl.lit("e-") + pl.col("trial_id"),
        stage=pl.lit("predict"),
    )
    return {
        "predictions": pl.concat([dev.predictions, external], how="diagonal_relaxed"),
        "trials": pl.concat([dev.trials, entries], how="diagonal_relaxed"),
    }


def test_external_rows_are_attributed_to_their_development_dataset(run) -> None:
    rows = external_rows(run["predictions"], run["trials"])
    assert rows["development"].unique().to_list() == ["synth"]
    assert rows["split"].unique().to_list() == ["external"]
    assert (rows["perturbation"] == "none").all()
    two = pl.concat(
        [run["predictions"], run["predictions"].filter(pl.col("split") == "test")
         .with_columns(dataset=pl.lit("other"))]
    )  # fmt: skip
    with pytest.raises(AnalysisError, match="pass trials="):
        external_rows(two)


def test_the_gap_is_the_difference_of_two_independent_bootstraps(run) -> None:
    # Welch (1947) / Satterthwaite (1946): se = sqrt(se_i^2 + se_e^2),
    # df = se^4 / (se_i^4/df_i + se_e^4/df_e), interval gap -/+ t_{df, 0.975} se
    gap = generalisation_gap(run["predictions"], "auc", trials=run["trials"], n_boot=300, seed=4)
    test = run["predictions"].filter(pl.col("split") == "test", pl.col("perturbation") == "none")
    internal = bootstrap(test, metric="auc", levels=["site", "subject_id"], by="model",
                         n_boot=300, seed=4)  # fmt: skip
    external = external_performance(run["predictions"], "auc", trials=run["trials"],
                                     n_boot=300, seed=5)  # fmt: skip
    for model in ("a", "b"):
        g = gap.filter(pl.col("model") == model).row(0, named=True)
        i = internal.filter(pl.col("model") == model).row(0, named=True)
        e = external.filter(pl.col("model") == model).row(0, named=True)
        assert g["estimate"] == pytest.approx(i["estimate"] - e["estimate"], abs=1e-12)
        se = math.hypot(i["se"], e["se"])
        df = se**4 / (i["se"] ** 4 / i["df"] + e["se"] ** 4 / e["df"])
        assert (g["se"], g["df"]) == pytest.approx((se, df), rel=1e-12)
        half = stats.t.ppf(0.975, df) * se
        assert (g["ci_low"], g["ci_high"]) == pytest.approx(
            (g["estimate"] - half, g["estimate"] + half), rel=1e-12
        )
    # model a loses most of its separation externally (2.0 -> 0.5), model b none (1.0 -> 1.0)
    a, b = (gap.filter(pl.col("model") == m).row(0, named=True) for m in ("a", "b"))
    assert a["estimate"] > b["estimate"]


def test_paired_comparisons_on_the_external_subjects(run) -> None:
    out = compare_external(run["predictions"], "auc", trials=run["trials"], n_boot=300)
    row = out.row(0, named=True)
    assert (row["development"], row["dataset"], row["model_a"], row["model_b"]) == (
        "synth", "ext", "a", "b",
    )  # fmt: skip
    assert row["estimate"] < 0  # a is worse than b on the external subjects


def test_a_one_site_external_dataset_is_resampled_over_its_subjects_with_a_warning(run) -> None:
    """Generated samples all have site 'generated': one top-level unit, so no site interval."""
    ext = run["predictions"].filter(pl.col("split") == "external")
    ext = ext.with_columns(development=pl.lit("synth"))
    one_site = ext.with_columns(dataset=pl.lit("generated"), site=pl.lit("generated"))
    both = pl.concat([ext, one_site])
    with pytest.warns(UserWarning, match="'generated' has one site .*resamples subject_id only"):
        out = external_performance(both, "auc", n_boot=300, seed=4)
    units = dict(zip(out["dataset"] + "/" + out["model"], out["unit"], strict=True))
    assert units == {"ext/a": "site>subject_id", "ext/b": "site>subject_id",
                     "generated/a": "subject_id", "generated/b": "subject_id"}  # fmt: skip
    assert out["ci_low"].is_finite().all() and out["ci_high"].is_finite().all()
    # the same numbers as the subject-level bootstrap of that dataset alone
    alone = bootstrap(
        one_site, metric="auc", levels=["subject_id"], by=["development", "dataset", "protocol",
        "model"], n_boot=300, seed=4,
    )  # fmt: skip
    gen = out.filter(pl.col("dataset") == "generated")
    assert gen["ci_low"].to_list() == alone.sort("model")["ci_low"].to_list()
    with pytest.warns(UserWarning, match="has one site"):
        compared = compare_external(both, "auc", n_boot=300)
    assert compared["dataset"].to_list() == ["ext", "generated"]
    assert compared["p_value"].is_finite().all()


def test_summary_and_report_show_external_tables_only_when_there_are_some(run) -> None:
    tables = external_summary(run["predictions"], "auc", trials=run["trials"], n_boot=200)
    assert set(tables) == {"external", "generalisation_gap", "external_comparisons"}
    s = summarize(run, n_boot=200)
    assert "generalisation_gap" in s and "Generalisation gap" in external_section(s).body
    dev_only = {k: v.filter(pl.col("split") != "external") if k == "predictions" else v
                for k, v in run.items()}  # fmt: skip
    assert external_section(summarize(dev_only, n_boot=200)) is None


def test_gap_interval_covers_zero_without_shift_and_excludes_it_with_a_large_one() -> None:
    # fast version of analysis/validation/external_gap.py (20 replicates; the full study's
    # numbers are in docs/validation.md): at shift 0, P(reject) <= 4/20 when the true rate is
    # 5% fails with probability 1.6%; at shift 1.5 (true gap 0.33) the power is ~0.95
    report = run_study(20, [0.0, 1.5], 200)
    none, large = report["results"]
    assert none["true_gap"] == 0.0 and none["rejection"] <= 0.2 and none["coverage"] >= 0.8
    assert large["true_gap"] > 0.3 and large["rejection"] >= 0.8 and large["coverage"] >= 0.8
