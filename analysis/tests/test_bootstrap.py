"""Hierarchical bootstrap: draws, agreement with the slow loop, analytic SEs, coverage sanity."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import polars as pl
import pytest
from raybench_analysis import bootstrap, bootstrap_replicates
from raybench_analysis._frames import AnalysisError
from raybench_analysis.bootstrap import build_hierarchy, draw_counts, interval_from_replicates
from raybench_analysis.metrics import accuracy, auc
from scipy import stats


def test_draw_counts_cluster_keeps_lower_levels_whole():
    frame = pl.DataFrame(
        {"site": ["s1", "s1", "s1", "s2", "s2"], "subject_id": ["a", "b", "c", "d", "e"]}
    )
    h = build_hierarchy(frame, ["site", "subject_id"])
    counts = next(draw_counts(h, 4000, np.random.default_rng(0)))  # default scheme="cluster"
    # every subject of a site is drawn exactly as often as its site
    assert np.all(counts[:, :3] == counts[:, [0]]) and np.all(counts[:, 3:] == counts[:, [3]])
    assert np.all(counts[:, 0] + counts[:, 3] == 2)  # two sites drawn per replicate
    assert counts.mean(0) == pytest.approx(np.ones(5), abs=0.06)


def test_draw_counts_two_stage_structure():
    # two sites: s1 with 3 subjects, s2 with 2; a drawn site copy redraws all its subjects
    frame = pl.DataFrame(
        {"site": ["s1", "s1", "s1", "s2", "s2"], "subject_id": ["a", "b", "c", "d", "e"]}
    )
    h = build_hierarchy(frame, ["site", "subject_id"])
    assert h.sizes == (2, 5)
    assert h.parents[0].tolist() == [0, 0, 0, 1, 1]
    counts = next(draw_counts(h, 4000, np.random.default_rng(0), scheme="two_stage"))
    assert np.any(counts[:, 0] != counts[:, 1])  # subjects redrawn within the site
    per_site = np.column_stack([counts[:, :3].sum(1), counts[:, 3:].sum(1)])
    # subjects drawn per site are multiples of the site's size (c copies x m subjects)
    assert np.all(per_site[:, 0] % 3 == 0) and np.all(per_site[:, 1] % 2 == 0)
    # two sites drawn per replicate
    assert np.all(per_site[:, 0] // 3 + per_site[:, 1] // 2 == 2)
    # every unit is drawn once per replicate on average (unbiased resampling)
    assert counts.mean(0) == pytest.approx(np.ones(5), abs=0.06)


def test_reused_subject_id_across_sites_warns_and_splits_units():
    frame = pl.DataFrame({"site": ["x", "y"], "subject_id": ["a", "a"]})
    with pytest.warns(UserWarning, match="more than one 'site'"):
        h = build_hierarchy(frame, ["site", "subject_id"])
    assert h.n_units == 2


@pytest.mark.filterwarnings("ignore:.*replicates left auc undefined")
@pytest.mark.parametrize("levels", [[], ["subject_id"], ["site", "subject_id"]])
def test_vectorised_equals_loop_over_replicates(predictions, levels):
    """Same draws: the matrix form and a per-replicate callable give identical replicates."""
    data = predictions.filter(model="a", seed=0)
    fast = bootstrap_replicates(data, metric="auc", levels=levels, n_boot=60, seed=5)
    slow = bootstrap_replicates(
        data,
        metric=lambda f: auc(f["y_true"], f["score"]),
        levels=levels,
        n_boot=60,
        seed=5,
    )
    expected = slow["value"].to_numpy()
    assert fast["value"].to_numpy() == pytest.approx(expected, abs=1e-12, nan_ok=True)
    fast = bootstrap_replicates(data, metric="accuracy", levels=levels, n_boot=60, seed=5)
    slow = bootstrap_replicates(
        data, metric=lambda f: accuracy(f["y_true"], f["y_pred"]), levels=levels, n_boot=60, seed=5
    )
    expected = slow["value"].to_numpy()
    assert fast["value"].to_numpy() == pytest.approx(expected, abs=1e-12, nan_ok=True)


def test_iid_se_matches_analytic():
    rng = np.random.default_rng(1)
    x = rng.normal(size=400)
    pct = bootstrap({"x": x}, value="x", levels=[], n_boot=4000, seed=0, interval="percentile")
    # reference: the bootstrap SE of a mean is sd(x, ddof=0) / sqrt(n) (Efron & Tibshirani 1993)
    assert pct["se"][0] == pytest.approx(x.std() / np.sqrt(len(x)), rel=0.05)
    assert pct["method"][0] == "iid bootstrap, percentile interval"
    out = bootstrap({"x": x}, value="x", levels=[], n_boot=4000, seed=0)
    # reference: the t interval's se is corrected by sqrt(n/(n-1)): sd(x, ddof=1) / sqrt(n)
    assert out["se"][0] == pytest.approx(x.std(ddof=1) / np.sqrt(len(x)), rel=0.05)
    assert out["estimate"][0] == pytest.approx(x.mean(), abs=1e-12)
    assert out["method"][0] == "iid bootstrap, t interval"
    assert out["unit"][0] == "observation" and out["df"][0] == len(x) - 1


def test_cluster_se_matches_analytic_and_naive_is_too_small():
    rng = np.random.default_rng(2)
    n_subj, per = 60, 5
    subj = np.repeat(np.arange(n_subj), per)
    x = rng.normal(0, 1, n_subj)[subj] + rng.normal(0, 0.3, n_subj * per)
    frame = pl.DataFrame({"subject_id": subj.astype(str), "x": x})
    out = bootstrap(frame, value="x", levels=["subject_id"], n_boot=4000, seed=0)
    means = x.reshape(n_subj, per).mean(1)
    # reference: with equal cluster sizes the cluster bootstrap SE is sd0(cluster means)/sqrt(J),
    # times sqrt(J/(J-1)) for the t interval: sd(cluster means, ddof=1) / sqrt(J)
    assert out["se"][0] == pytest.approx(means.std(ddof=1) / np.sqrt(n_subj), rel=0.06)
    assert out["n_subject_id"][0] == n_subj and out["n_obs"][0] == n_subj * per
    naive = bootstrap(frame, value="x", levels=[], n_boot=2000, seed=0)
    assert naive["se"][0] < 0.6 * out["se"][0]  # images as independent: far too confident


@pytest.mark.filterwarnings("ignore:.*replicates left auc undefined")  # a one-class site
def test_same_seed_same_numbers_and_by_groups(predictions):
    pooled = {"levels": ["site", "subject_id"], "by": "model", "average_over": None}
    a = bootstrap(predictions, metric="auc", n_boot=200, **pooled)
    b = bootstrap(predictions, metric="auc", n_boot=200, **pooled)
    assert a.equals(b)
    c = bootstrap(predictions, metric="auc", n_boot=200, seed=1, **pooled)
    assert not a["ci_low"].equals(c["ci_low"])
    assert a.columns == [
        "model",
        "metric",
        "estimate",
        "se",
        "ci_low",
        "ci_high",
        "df",
        "n_site",
        "n_subject_id",
        "n_obs",
        "n_boot",
        "method",
        "unit",
    ]
    assert a["unit"].to_list() == ["site>subject_id"] * 2
    assert a["method"][0] == "cluster bootstrap, few-cluster t interval"
    assert a["df"].to_list() == [3.0, 3.0]
    assert a["n_site"].to_list() == [4, 4] and a["n_subject_id"].to_list() == [40, 40]
    for row in a.iter_rows(named=True):
        assert row["ci_low"] < row["estimate"] < row["ci_high"]


def test_pandas_input_and_metric_settings(predictions):
    out = bootstrap(predictions.to_pandas(), metric="ece", n_bins=5, n_boot=50)
    assert isinstance(out, pl.DataFrame)
    assert out["metric"][0].startswith("ece(n_bins=5")
    assert isinstance(predictions.to_pandas(), pd.DataFrame)


def _clustered(rng: np.random.Generator, sites: int, subjects: int, per: int) -> pl.DataFrame:
    site = np.repeat(np.arange(sites), subjects * per)
    subj = np.repeat(np.arange(sites * subjects), per)
    x = (
        rng.normal(0, 1.0, sites)[site]
        + rng.normal(0, 1.0, sites * subjects)[subj]
        + rng.normal(0, 0.5, len(subj))
    )
    return pl.DataFrame({"site": site.astype(str), "subject_id": subj.astype(str), "x": x})


def test_t_interval_formula(predictions):
    """ci = estimate ± t_{G-1} · sd* · sqrt(G/(G-1)) from the replicates (the documented form)."""
    data = predictions.filter(model="a")
    levels = ["site", "subject_id"]
    out = bootstrap(data, metric="accuracy", levels=levels, n_boot=300, seed=3,
                    average_over=None).row(0, named=True)  # fmt: skip
    reps = bootstrap_replicates(data, metric="accuracy", levels=levels, n_boot=300, seed=3)
    g = 4  # sites
    se = reps["value"].std() * np.sqrt(g / (g - 1))
    # reference: scipy.stats.t.ppf(0.975, df=3) (R: qt(0.975, 3) = 3.182446)
    half = stats.t.ppf(0.975, g - 1) * se
    assert out["se"] == pytest.approx(se, rel=1e-10)
    assert out["ci_low"] == pytest.approx(out["estimate"] - half, rel=1e-10)
    assert out["ci_high"] == pytest.approx(out["estimate"] + half, rel=1e-10)
    assert stats.t.ppf(0.975, 3) == pytest.approx(3.182446, abs=1e-6)
    # p of "value = 0" is the t tail: 2 P(T_3 >= |est|/se)
    r = interval_from_replicates(out["estimate"], reps["value"].to_numpy(), g)
    assert r["p_value"] == pytest.approx(2 * stats.t.sf(out["estimate"] / se, 3), rel=1e-10)
    # t_bc: the same half-width around the bias-corrected estimate 2·est − mean(θ*)
    # (Efron & Tibshirani 1993, §10.6)
    bc = bootstrap(data, metric="accuracy", levels=levels, n_boot=300, seed=3, interval="t_bc",
                   average_over=None)  # fmt: skip
    centre = 2 * out["estimate"] - reps["value"].mean()
    assert bc["ci_low"][0] == pytest.approx(centre - half, rel=1e-10)
    assert bc["ci_high"][0] == pytest.approx(centre + half, rel=1e-10)
    assert bc["estimate"][0] == out["estimate"]
    assert bc["method"][0] == "cluster bootstrap, bias-corrected few-cluster t interval"


def test_two_stage_se_matches_analytic_and_exceeds_cluster():
    """The literal two-stage scheme adds the within-site variance a second time."""
    rng = np.random.default_rng(4)
    sites, subjects, per = 12, 10, 2
    frame = _clustered(rng, sites, subjects, per)
    lv = ["site", "subject_id"]
    two = bootstrap(frame, value="x", levels=lv, n_boot=6000, scheme="two_stage",
                    interval="percentile")  # fmt: skip
    one = bootstrap(frame, value="x", levels=lv, n_boot=6000, interval="percentile")
    subj_means = frame.group_by("site", "subject_id").agg(pl.col("x").mean())
    site = subj_means.group_by("site").agg(m=pl.col("x").mean(), v=pl.col("x").var(ddof=0))
    # reference (balanced design; Davison & Hinkley 1997, §3.8): cluster bootstrap variance
    # sd0(site means)^2 / G; two-stage adds mean_g(var0 of subject means in g) / (m G)
    v_cluster = site["m"].var(ddof=0) / sites
    v_two = v_cluster + site["v"].mean() / (subjects * sites)
    assert one["se"][0] == pytest.approx(np.sqrt(v_cluster), rel=0.06)
    assert two["se"][0] == pytest.approx(np.sqrt(v_two), rel=0.06)
    assert two["method"][0] == "two-stage bootstrap, percentile interval"
    assert two["se"][0] > one["se"][0]


def test_strata_resample_within_site():
    """strata='site': subjects drawn within each site, each site keeps its subject count."""
    rng = np.random.default_rng(5)
    frame = _clustered(rng, 3, 8, 1).filter(~pl.col("subject_id").is_in(["0", "1"]))  # 6, 8, 8
    h = build_hierarchy(frame, ["subject_id"], ["site"])
    counts = next(draw_counts(h, 500, np.random.default_rng(0)))
    per_site = frame.sort("subject_id").unique("subject_id", maintain_order=True)["site"]
    for s, n in (("0", 6), ("1", 8), ("2", 8)):
        assert np.all(counts[:, (per_site == s).to_numpy()].sum(1) == n)
    out = bootstrap(frame, value="x", levels=["subject_id"], strata="site", n_boot=6000)
    # reference (stratified bootstrap, Davison & Hinkley 1997 §3.2): Var = Σ_h (n_h/n)^2 s0_h^2/n_h
    # times n/(n - H) for the t interval, df = n - H
    g = frame.group_by("site").agg(n=pl.len(), v=pl.col("x").var(ddof=0))
    n = frame.height
    var = float(((g["n"] / n) ** 2 * g["v"] / g["n"]).sum()) * n / (n - 3)
    assert out["se"][0] == pytest.approx(np.sqrt(var), rel=0.06)
    assert out["df"][0] == n - 3
    assert out["method"][0] == "stratified cluster bootstrap (strata: site), few-cluster t interval"
    with pytest.raises(AnalysisError, match="more than one stratum"):
        build_hierarchy(frame, ["site"], ["subject_id"])


def test_few_cluster_t_covers_where_percentile_does_not():
    """6 sites: the few-cluster t interval covers ~95%, the site percentile interval less."""
    rng = np.random.default_rng(8)
    hits_t = hits_p = 0
    n_sim = 200
    for _ in range(n_sim):
        frame = _clustered(rng, 6, 4, 1)
        seed = int(rng.integers(1e9))
        t = bootstrap(frame, value="x", levels=["site", "subject_id"], n_boot=300, seed=seed)
        p = bootstrap(frame, value="x", levels=["site", "subject_id"], n_boot=300, seed=seed,
                      interval="percentile")  # fmt: skip
        hits_t += t["ci_low"][0] <= 0.0 <= t["ci_high"][0]
        hits_p += p["ci_low"][0] <= 0.0 <= p["ci_high"][0]
    # reference: t_{G-1} intervals for a mean of G normal cluster means are exact (95%);
    # binomial(200, 0.95) lies in 0.90-0.99 with probability > 0.99. The percentile interval of
    # 6 clusters has about Φ-based 1 - 2Φ(-1.96·sqrt(5/6)) ≈ 0.926 minus the t tails: ~0.87.
    assert 0.90 <= hits_t / n_sim <= 0.99
    assert hits_p < hits_t


def test_coverage_sanity_iid():
    """95% t intervals of a normal mean cover the truth about 95% of the time."""
    rng = np.random.default_rng(7)
    hits = 0
    for _ in range(150):
        x = rng.normal(1.0, 1.0, 60)
        out = bootstrap({"x": x}, value="x", levels=[], n_boot=400, seed=int(rng.integers(1e9)))
        hits += out["ci_low"][0] <= 1.0 <= out["ci_high"][0]
    # binomial(150, 0.95): 0.88-0.99 holds with probability > 0.99
    assert 0.88 <= hits / 150 <= 0.995


def test_errors_are_clear(predictions):
    with pytest.raises(AnalysisError, match="exactly one of value="):
        bootstrap(predictions, value="loss", metric="auc")
    with pytest.raises(AnalysisError, match=r"scheme='bogus'.*'cluster'"):
        bootstrap(predictions, value="loss", scheme="bogus")  # type: ignore[arg-type]
    with pytest.raises(AnalysisError, match=r"interval='bca'.*'percentile'"):
        bootstrap(predictions, value="loss", interval="bca")  # type: ignore[arg-type]
    with pytest.raises(AnalysisError, match=r"missing column\(s\) \['hospital'\]"):
        bootstrap(predictions, value="loss", levels=["hospital"])
    with pytest.raises(AnalysisError, match="n_boot=1"):
        bootstrap(predictions, value="loss", n_boot=1)
    with pytest.raises(AnalysisError, match="null value"):
        bootstrap(pl.DataFrame({"subject_id": ["a", None], "x": [1.0, 2.0]}), value="x")
    with pytest.raises(AnalysisError, match="value='site'"):
        bootstrap(predictions, value="site")


def _cell_mean(frame: pl.DataFrame, fn) -> float:
    """Metric per (outer_fold, seed) cell, mean over seeds within fold, then over folds."""
    folds = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all cells undefined: NaN
        for fold in sorted(frame["outer_fold"].unique()):
            f = frame.filter(outer_fold=fold)
            folds.append(np.nanmean([fn(f.filter(seed=s)) for s in sorted(f["seed"].unique())]))
        return float(np.nanmean(folds))


@pytest.mark.parametrize("metric", ["auc", "accuracy"])
def test_average_over_fold_seed_cells_equals_loop(predictions, metric):
    """average_over: per-cell metric on the same draws, seeds then folds averaged."""
    fn = {
        "auc": lambda f: auc(f["y_true"], f["score"]) if f["y_true"].n_unique() == 2 else np.nan,
        "accuracy": lambda f: accuracy(f["y_true"], f["y_pred"]),
    }[metric]
    data = predictions.filter(model="a")
    cells = ("outer_fold", "seed")
    out = bootstrap(data, metric=metric, levels=["site", "subject_id"], n_boot=50, seed=3,
                    average_over=cells)  # fmt: skip
    # by hand: Forman & Scholz (2010) per-fold averaging, seeds averaged first (as compare())
    assert out["estimate"][0] == pytest.approx(_cell_mean(data, fn), abs=1e-12)
    assert out.select("n_outer_fold", "n_seed", "n_site").row(0) == (3, 2, 4)
    assert out["method"][0].endswith("averaged over seed, then outer_fold")
    fast = bootstrap_replicates(data, metric=metric, levels=["site", "subject_id"], n_boot=50,
                                seed=3, average_over=cells)  # fmt: skip
    # the slow path: the callable sees each replicate's resampled rows (one draw of the sites
    # shared by every cell) and scores the cells itself
    slow = bootstrap_replicates(data, metric=lambda f: _cell_mean(f, fn),
                                levels=["site", "subject_id"], n_boot=50, seed=3)  # fmt: skip
    expected = slow["value"].to_numpy()
    assert fast["value"].to_numpy() == pytest.approx(expected, abs=1e-12, nan_ok=True)
    pooled = bootstrap(data, metric=metric, levels=["site", "subject_id"], n_boot=50, seed=3,
                       average_over=None)  # fmt: skip
    assert pooled["estimate"][0] != pytest.approx(out["estimate"][0], abs=1e-9)  # not pooled


def test_average_over_identical_cells_is_one_cell(predictions):
    """Cells with identical rows give the one-cell numbers: every cell sees the same draws."""
    one = predictions.filter(model="a", seed=0)
    copies = pl.concat([one, one.with_columns(seed=pl.lit(1, dtype=one["seed"].dtype))])
    a = bootstrap(one, metric="auc", n_boot=80, seed=2, average_over=["outer_fold"])
    b = bootstrap(copies, metric="auc", n_boot=80, seed=2, average_over=["outer_fold", "seed"])
    assert b.select("estimate", "se", "ci_low", "ci_high").row(0) == pytest.approx(
        a.select("estimate", "se", "ci_low", "ci_high").row(0), abs=1e-12
    )
    # levels=[]: sample_id is the unit, so a sample is drawn once for both seeds
    a = bootstrap(one, metric="accuracy", levels=[], n_boot=80, average_over="outer_fold")
    b = bootstrap(
        copies, metric="accuracy", levels=[], n_boot=80, average_over=["outer_fold", "seed"]
    )
    assert b["se"][0] == pytest.approx(a["se"][0], abs=1e-12) and b["unit"][0] == "sample_id"


def test_average_over_errors(predictions):
    with pytest.raises(AnalysisError, match="average_over"):
        bootstrap(predictions, metric="auc", average_over=["fold"])
    bad = predictions.with_columns(seed=pl.when(pl.col("seed") == 0).then(None).otherwise(1))
    with pytest.raises(AnalysisError, match="null"):
        bootstrap(bad, metric="auc", average_over=["outer_fold", "seed"])
    with pytest.raises(AnalysisError, match="resampling level"):
        bootstrap(predictions, metric="auc", levels=["outer_fold"], average_over="outer_fold")


def test_t_interval_is_clipped_to_the_metric_range():
    # Three sites, near-perfect separation: estimate ± t_{2, .975}·se (t = 4.30) would pass AUC = 1.
    rng = np.random.default_rng(3)
    rows = []
    for site, quality in (("s1", 4.0), ("s2", 0.5), ("s3", 4.0)):
        for i in range(20):
            y = i % 2
            rows.append(
                {"site": site, "subject_id": f"{site}-{i}", "y_true": y,
                 "score": float(y * quality + rng.normal())}
            )  # fmt: skip
    data = pl.DataFrame(rows)
    out = bootstrap(data, metric="auc", levels=["site", "subject_id"], n_boot=400, seed=1)
    row = out.row(0, named=True)
    unclipped = row["estimate"] + stats.t.ppf(0.975, 2) * row["se"]
    assert unclipped > 1.0  # the case really reaches past the range ...
    assert row["ci_high"] == 1.0  # ... and the reported interval does not
    assert 0.0 <= row["ci_low"] < row["estimate"]
    assert row["method"].endswith("interval clipped to the metric's range")
    # the mean of a plain value column has no known range: never clipped
    plain = bootstrap(data, value="score", levels=["site"], n_boot=200, seed=1).row(0, named=True)
    assert "clipped" not in plain["method"]
