"""compare(): pairing, seed averaging, the three methods and the multiplicity corrections."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from raybench_analysis import compare, corrected_ttest, metric_by
from raybench_analysis._frames import AnalysisError
from statsmodels.stats.multitest import multipletests

pytestmark = pytest.mark.filterwarnings("ignore:.*replicates left")


def _by_hand(frame: pl.DataFrame, metric: str) -> dict[str, np.ndarray]:
    """Per model: per-fold metric averaged over seeds (folds sorted)."""
    per = metric_by(frame, metric, by=["model", "outer_fold", "seed"])
    folds = per.group_by("model", "outer_fold").agg(pl.col("estimate").mean()).sort("outer_fold")
    return {m: folds.filter(model=m)["estimate"].to_numpy() for m in ("a", "b")}


@pytest.mark.parametrize("metric", ["auc", "accuracy"])
def test_estimate_and_ttest_by_hand(predictions, metric):
    out = compare(predictions, metric=metric, method=["bootstrap", "corrected_ttest"], n_boot=300)
    assert out.columns == [
        "dataset",
        "model_a",
        "model_b",
        "metric",
        "estimate",
        "se",
        "ci_low",
        "ci_high",
        "p_value",
        "p_adjusted",
        "method",
        "unit",
        "correction",
        "n_splits",
        "n_seeds",
        "n_resamples",
    ]
    folds = _by_hand(predictions, metric)
    diff = folds["a"] - folds["b"]
    boot = out.filter(pl.col("method").str.contains("bootstrap")).row(0, named=True)
    # the score of a model is the mean over folds of its seed-averaged fold metric
    assert boot["estimate"] == pytest.approx(diff.mean(), abs=1e-12)
    assert boot["ci_low"] <= boot["estimate"] <= boot["ci_high"]
    assert (boot["unit"], boot["n_splits"], boot["n_seeds"]) == ("subject_id", 3, 2)
    tt = out.filter(method="corrected resampled t-test (Nadeau & Bengio 2003)").row(0, named=True)
    # reference: corrected_ttest on the per-fold differences, n_test = 80/3 samples per fold,
    # n_train = 80 - n_test (the outer training pool)
    ref = corrected_ttest(diff, n_train=80 - 80 / 3, n_test=80 / 3).row(0, named=True)
    assert tt["p_value"] == pytest.approx(ref["p_value"], abs=1e-12)
    assert tt["ci_low"] == pytest.approx(ref["ci_low"], abs=1e-12)
    assert tt["unit"] == "outer_fold"


def test_identical_models_give_zero_difference(predictions):
    twin = predictions.filter(model="a").with_columns(model=pl.lit("b"))
    data = pl.concat([predictions.filter(model="a"), twin])
    out = compare(data, metric="auc", method=["bootstrap", "permutation"], n_boot=200, n_perm=200)
    for row in out.iter_rows(named=True):
        assert row["estimate"] == 0.0
        assert row["p_value"] == 1.0
    boot = out.filter(pl.col("method").str.contains("bootstrap")).row(0, named=True)
    assert boot["ci_low"] == boot["ci_high"] == 0.0


def test_seed_copies_are_not_independent_replicates(predictions):
    """Duplicating seeds must not shrink the interval (seeds are averaged, not counted)."""
    one = predictions.filter(seed=0)
    copies = pl.concat([one.with_columns(seed=pl.lit(s, pl.Int64)) for s in range(4)])
    a = compare(one, metric="auc", method="bootstrap", n_boot=300)
    b = compare(copies, metric="auc", method="bootstrap", n_boot=300)
    cols = ["estimate", "ci_low", "ci_high", "p_value"]
    assert b.select(cols).row(0) == pytest.approx(a.select(cols).row(0), abs=1e-12)
    assert b["n_seeds"][0] == 4


def test_power_and_permutation_on_a_real_difference(make_predictions):
    data = make_predictions(models={"a": 2.5, "b": 0.3}, subjects_per_site=15, rng_seed=4)
    out = compare(
        data,
        metric="auc",
        levels=["site", "subject_id"],
        method=["bootstrap", "permutation"],
        n_boot=500,
        n_perm=500,
    )
    for row in out.iter_rows(named=True):
        assert row["estimate"] > 0.1
        assert row["p_value"] < 0.02
    assert out["unit"].to_list() == ["site>subject_id", "subject_id"]


def test_holm_and_bh_match_statsmodels(make_predictions):
    data = make_predictions(models={"a": 1.6, "b": 1.2, "c": 0.8}, rng_seed=2)
    holm = compare(data, metric="accuracy", method="bootstrap", n_boot=300)
    assert holm.select("model_a", "model_b").rows() == [("a", "b"), ("a", "c"), ("b", "c")]
    # reference: statsmodels.stats.multitest.multipletests(p, method="holm")
    expected = multipletests(holm["p_value"].to_numpy(), method="holm")[1]
    assert holm["p_adjusted"].to_numpy() == pytest.approx(expected, abs=1e-15)
    bh = compare(data, metric="accuracy", method="bootstrap", n_boot=300, correction="fdr_bh")
    expected = multipletests(bh["p_value"].to_numpy(), method="fdr_bh")[1]
    assert bh["p_adjusted"].to_numpy() == pytest.approx(expected, abs=1e-15)
    assert bh["correction"].to_list() == ["fdr_bh"] * 3


def test_filters_perturbations_and_val_rows(predictions):
    noisy = predictions.with_columns(
        perturbation=pl.lit("gaussian_noise(std=0.1)"), score=1 - pl.col("score")
    )
    val = predictions.with_columns(split=pl.lit("val"), score=pl.lit(0.5))
    plain = compare(predictions, method="bootstrap", n_boot=100)
    mixed = compare(pl.concat([predictions, noisy, val]), method="bootstrap", n_boot=100)
    assert mixed["estimate"][0] == pytest.approx(plain["estimate"][0], abs=1e-12)


def test_unpaired_and_ambiguous_inputs_are_rejected(predictions):
    dropped = predictions.filter(~((pl.col("model") == "b") & (pl.col("subject_id") == "sub-003")))
    with pytest.raises(AnalysisError, match="not evaluated on the same test samples"):
        compare(dropped, method="bootstrap", n_boot=50)
    two = pl.concat([predictions, predictions.with_columns(protocol=pl.lit("leave_one_site_out"))])
    with pytest.raises(AnalysisError, match="mixes protocols"):
        compare(two, method="bootstrap", n_boot=50)
    with pytest.raises(AnalysisError, match="method='anova'"):
        compare(predictions, method="anova")  # type: ignore[arg-type]
    with pytest.raises(AnalysisError, match="need at least two models"):
        compare(predictions, models=["a"])


def test_bootstrap_t_interval_schemes_and_strata(predictions):
    lv = ["site", "subject_id"]
    t = compare(predictions, metric="accuracy", levels=lv, method="bootstrap", n_boot=400)
    pct = compare(predictions, metric="accuracy", levels=lv, method="bootstrap", n_boot=400,
                  interval="percentile")  # fmt: skip
    two = compare(predictions, metric="accuracy", levels=lv, method="bootstrap", n_boot=400,
                  scheme="two_stage", interval="percentile")  # fmt: skip
    assert t["method"][0] == "paired cluster bootstrap, few-cluster t interval"
    assert pct["method"][0] == "paired cluster bootstrap, percentile interval"
    assert two["method"][0] == "paired two-stage bootstrap, percentile interval"
    r, rp = t.row(0, named=True), pct.row(0, named=True)
    assert r["estimate"] == rp["estimate"] == two["estimate"][0]
    g = 4  # sites: se = sd(d*) sqrt(G/(G-1)) on the same draws (Cameron, Gelbach & Miller 2008)
    assert r["se"] == pytest.approx(rp["se"] * np.sqrt(g / (g - 1)), rel=1e-10)
    # reference: R qt(0.975, 3) = 3.182446; p = 2 * pt(-|est|/se, 3)
    assert r["ci_high"] - r["estimate"] == pytest.approx(3.182446 * r["se"], rel=1e-6)
    from scipy import stats

    assert r["p_value"] == pytest.approx(2 * stats.t.sf(abs(r["estimate"]) / r["se"], 3), rel=1e-9)
    strat = compare(predictions, metric="accuracy", levels=["subject_id"], strata="site",
                    method="bootstrap", n_boot=400)  # fmt: skip
    assert strat["method"][0] == (
        "paired stratified cluster bootstrap (strata: site), few-cluster t interval"
    )
    with pytest.raises(AnalysisError, match="scheme='nested'"):
        compare(predictions, method="bootstrap", scheme="nested")  # type: ignore[arg-type]


def test_bootstrap_average_over_is_compare_estimand(predictions):
    """bootstrap(average_over=(outer_fold, seed)) per model and compare() share one estimand
    and one draw: the difference of the estimates is compare's estimate, and the sd of the
    paired replicate differences, times sqrt(G/(G-1)), is compare's se (Cameron et al. 2008)."""
    from raybench_analysis import bootstrap, bootstrap_replicates

    levels = ["site", "subject_id"]
    cells = ("outer_fold", "seed")
    out = compare(predictions, metric="auc", levels=levels, method="bootstrap", n_boot=200)
    per = bootstrap(predictions, metric="auc", levels=levels, by="model", n_boot=200,
                    average_over=cells)  # fmt: skip
    est = dict(per.select("model", "estimate").rows())
    assert est["a"] - est["b"] == pytest.approx(out["estimate"][0], abs=1e-12)
    reps = bootstrap_replicates(predictions, metric="auc", levels=levels, by="model", n_boot=200,
                                average_over=cells)  # fmt: skip
    diff = reps.filter(model="a")["value"].to_numpy() - reps.filter(model="b")["value"].to_numpy()
    diff = diff[np.isfinite(diff)]  # replicates with one class left out, as compare does
    n_sites = predictions["site"].n_unique()
    se = np.std(diff, ddof=1) * np.sqrt(n_sites / (n_sites - 1))
    assert out["se"][0] == pytest.approx(se, rel=1e-12)


def _two_one_class_sites() -> pl.DataFrame:
    """Issue 14, item 6: site 0 holds only negatives, site 1 only positives (two folds, 2 seeds)."""
    rng = np.random.default_rng(3)
    rows = []
    for site in (0, 1):
        for j in range(15):
            subject = f"{site}-{j}"
            for model, shift in (("a", 1.0), ("b", 0.3)):
                for seed in (0, 1):
                    rows.append(
                        {
                            "dataset": "d",
                            "model": model,
                            "outer_fold": j % 2,
                            "seed": seed,
                            "site": f"site{site}",
                            "subject_id": subject,
                            "sample_id": subject,
                            "y_true": float(site),
                            "score": float(shift * site + rng.normal()),
                        }
                    )
    return pl.DataFrame(rows)


def test_degenerate_resamples_warn_with_count_and_give_no_interval():
    data = _two_one_class_sites()
    with pytest.warns(UserWarning, match=r"\d+ of 200 replicates left a − b undefined") as rec:
        out = compare(data, metric="auc", levels=["site", "subject_id"], n_boot=200, seed=0)
    assert any("no interval or p-value is reported" in str(w.message) for w in rec)
    row = out.filter(pl.col("method").str.contains("bootstrap")).row(0, named=True)
    # only replicates that draw both sites are defined (about half of them): under the 90% rule
    assert 60 < row["n_resamples"] < 140
    assert np.isnan(row["se"]) and np.isnan(row["ci_low"]) and np.isnan(row["p_value"])
    assert np.isnan(row["p_adjusted"])
    assert np.isfinite(row["estimate"])  # the point estimate is still defined on the data
    # subjects as the top level: every draw keeps both classes, so nothing is dropped
    fine = compare(data, metric="auc", levels=["subject_id"], n_boot=200, method="bootstrap")
    assert fine["n_resamples"][0] == 200 and fine["se"][0] > 1e-3


def test_bootstrap_shares_the_defined_replicates_rule():
    from raybench_analysis import bootstrap

    data = _two_one_class_sites().filter(model="a", seed=0)
    with pytest.warns(UserWarning, match="no interval or p-value is reported"):
        out = bootstrap(data, metric="auc", levels=["site", "subject_id"], n_boot=200)
    assert np.isnan(out["se"][0]) and np.isnan(out["ci_low"][0])
    assert out["n_boot"][0] < 180


def _sites_with_equal_differences() -> pl.DataFrame:
    """Three sites whose a − b accuracy difference is the same (0.25) at each site."""
    rows = []
    for site in range(3):
        for subject in range(4):
            for model, correct in (("a", subject < 3), ("b", subject < 2)):
                rows.append(
                    {
                        "dataset": "d",
                        "model": model,
                        "outer_fold": 0,
                        "seed": 0,
                        "site": f"s{site}",
                        "subject_id": f"s{site}-{subject}",
                        "sample_id": f"s{site}-{subject}",
                        "y_true": 1.0,
                        "y_pred": 1.0 if correct else 0.0,
                    }
                )
    return pl.DataFrame(rows)


def test_a_point_bootstrap_distribution_gives_no_interval():
    # found in the quick start: three sites with equal per-site differences made every
    # cluster-bootstrap replicate equal, and the t interval [0.042, 0.042] claimed p = 3e-30
    data = _sites_with_equal_differences()
    with pytest.warns(UserWarning, match="bootstrap replicates equal the estimate"):
        out = compare(data, metric="accuracy", levels=["site", "subject_id"], n_boot=200,
                      method="bootstrap")  # fmt: skip
    row = out.row(0, named=True)
    assert row["estimate"] == pytest.approx(0.25)
    assert np.isnan(row["se"]) and np.isnan(row["ci_low"]) and np.isnan(row["p_value"])
    # subjects as the top level vary from draw to draw: an interval is reported
    fine = compare(data, metric="accuracy", levels=["subject_id"], n_boot=200, method="bootstrap")
    assert fine["se"][0] > 0.01 and fine["p_value"][0] < 1


def test_a_dataset_with_one_model_is_left_out_with_a_warning(predictions):
    alone = predictions.filter(model="a").with_columns(dataset=pl.lit("other"))
    both = pl.concat([predictions, alone])
    with pytest.warns(UserWarning, match=r"one model only.*'other'"):
        out = compare(both, metric="accuracy", method="corrected_ttest")
    # the dataset with two models is compared exactly as on its own
    ref = compare(predictions, metric="accuracy", method="corrected_ttest")
    assert out.equals(ref)
    with pytest.raises(AnalysisError, match="holds two models"):
        compare(alone, metric="accuracy", method="corrected_ttest")
    with pytest.raises(AnalysisError, match="at least two models"):  # named models must exist
        compare(both, metric="accuracy", models=["a", "b"], method="corrected_ttest")
