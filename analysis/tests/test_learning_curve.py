"""Learning curves, the inverse power law and the sampling variance of the training set."""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl
import pytest
from raybench_analysis import (
    AnalysisError,
    fit_learning_curve,
    fit_power_law,
    learning_curve,
    power_law,
    sampling_variance,
    simulate_learning_curve,
)
from scipy.optimize import minimize_scalar

# --------------------------------------------------------------------------- the law


def test_three_geometric_sizes_match_the_closed_form() -> None:
    # For n, 2n, 4n the law interpolates: d1 = y2 - y1, d2 = y3 - y2, 2^-c = d2 / d1,
    # b = d1 / (n^-c (1 - 2^-c)), a = y1 + b n^-c (solved by hand from y = a - b n^-c).
    n = np.array([25.0, 50.0, 100.0])
    y = np.array([0.70, 0.78, 0.82])
    d1, d2 = y[1] - y[0], y[2] - y[1]
    c = -np.log2(d2 / d1)
    b = d1 / (n[0] ** -c * (1 - 2**-c))
    a = y[0] + b * n[0] ** -c
    got = fit_power_law(n, y)
    np.testing.assert_allclose(got, (a, b, c), rtol=1e-6)


def test_weighted_fit_matches_a_profile_least_squares_reference() -> None:
    # Reference: for fixed c the weighted fit is linear in (a, b) (numpy lstsq); c minimises the
    # profiled residual sum of squares (scipy minimize_scalar, bounded). Same optimum as curve_fit.
    rng = np.random.default_rng(3)
    n = np.array([10.0, 20, 40, 80, 160, 320])
    sigma = np.array([0.04, 0.03, 0.02, 0.02, 0.01, 0.01])
    y = power_law(n, 0.88, 0.9, 0.55) + rng.normal(0, sigma)
    w = 1 / sigma**2

    def profile(c: float) -> tuple[float, float, float]:
        x = np.column_stack([np.ones_like(n), -(n**-c)])
        coef, *_ = np.linalg.lstsq(x * np.sqrt(w)[:, None], y * np.sqrt(w), rcond=None)
        return coef[0], coef[1], float(np.sum(w * (y - x @ coef) ** 2))

    best = minimize_scalar(lambda c: profile(c)[2], bounds=(1e-3, 10), method="bounded",
                           options={"xatol": 1e-10})  # fmt: skip
    a, b, _ = profile(best.x)
    np.testing.assert_allclose(fit_power_law(n, y, sigma), (a, b, best.x), rtol=1e-4)


def test_the_plateau_bound_holds_and_bad_input_is_refused() -> None:
    n = [10.0, 20.0, 40.0, 80.0]
    nearly_log = [0.60, 0.68, 0.76, 0.84]  # straight in log n: unbounded a runs off
    a, _, _ = fit_power_law(n, nearly_log, plateau=(0.0, 1.0))
    assert 0.84 < a <= 1.0
    with pytest.raises(AnalysisError, match="needs at least 3"):
        fit_power_law([10, 10, 20], [0.6, 0.61, 0.7])
    with pytest.raises(AnalysisError, match="sigma"):
        fit_power_law(n, nearly_log, sigma=[0.1, 0.0, 0.1, 0.1])


# --------------------------------------------------------------------------- known curve


@pytest.fixture(scope="module")
def fitted():
    preds = simulate_learning_curve(seed=0, subjects_per_site=60, site_sd=0.0)
    return preds, fit_learning_curve(preds, n_boot=150, levels=["site", "subject_id"])


def test_the_curve_rises_and_the_fit_follows_the_known_curve(fitted) -> None:
    preds, fit = fitted
    curve = fit.curve
    assert curve["n_train"].to_list() == [20.0, 40.0, 80.0, 160.0]
    assert curve["estimate"][-1] > curve["estimate"][0] + 0.1
    assert (curve["ci_low"] < curve["estimate"]).all()
    # truth: each size's population AUC, averaged over its trials (simulate_learning_curve)
    truth = (
        preds.unique("trial_id")
        .group_by("n_train_subjects")
        .agg(pl.col("true_auc").mean())
        .sort("n_train_subjects")
    )
    predicted = fit.predict(truth["n_train_subjects"].cast(pl.Float64).to_list())
    assert np.max(np.abs(predicted["estimate"].to_numpy() - truth["true_auc"].to_numpy())) < 0.05
    band = predicted.with_columns(truth=truth["true_auc"])
    assert band.filter((pl.col("ci_low") <= pl.col("truth")) & (pl.col("truth") <= pl.col(
        "ci_high") + 0.02)).height >= 3  # fmt: skip
    row = fit.params.row(0, named=True)
    assert row["a_ci_low"] <= row["a"] <= row["a_ci_high"] <= 1.0 and row["n_boot"] >= 140


def test_subjects_needed_answers_and_warns_when_it_extrapolates(fitted) -> None:
    _, fit = fitted
    p = fit.params.row(0, named=True)
    inside = float(power_law(100.0, p["a"], p["b"], p["c"]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # within the data: no warning
        near = fit.subjects_needed(inside).row(0, named=True)
    assert near["n_needed"] == pytest.approx(100.0, rel=1e-6)
    assert near["ci_low"] <= near["n_needed"] <= near["ci_high"] and not near["extrapolated"]
    far_target = float(power_law(1000.0, p["a"], p["b"], p["c"]))
    with pytest.warns(UserWarning, match=r"6\.\dx the largest training set observed \(160\)"):
        far = fit.subjects_needed(far_target).row(0, named=True)
    assert far["extrapolated"] and far["n_needed"] == pytest.approx(1000.0, rel=1e-6)
    with pytest.warns(UserWarning, match="never"):
        never = fit.subjects_needed(p["a"] + 0.005).row(0, named=True)
    assert np.isinf(never["n_needed"])


def test_bootstrap_draws_at_fraction_one_replace_the_whole_fold() -> None:
    preds = simulate_learning_curve(seed=2, fractions=(0.25, 0.5, 1.0), repeats=2)
    whole = preds.filter(pl.col("train_fraction") == 1.0)
    as_bootstrap = pl.concat([preds, whole.with_columns(
        train_resample=pl.lit(0, pl.Int64), n_train_subjects=pl.lit(150),
        trial_id=pl.col("trial_id") + "-boot")])  # fmt: skip
    curve = learning_curve(as_bootstrap, n_boot=50)
    assert curve.filter(pl.col("train_fraction") == 1.0)["n_train"].to_list() == [150.0]
    with pytest.raises(AnalysisError, match="train_fraction"):
        learning_curve(preds.drop("train_fraction"), n_boot=50)


# --------------------------------------------------------------------------- sampling variance


def test_sampling_variance_shrinks_with_more_training_subjects() -> None:
    # truth: draw SD 0.2 / sqrt(n): variance 0.0025 at n = 16, 0.000625 at n = 64
    preds = simulate_learning_curve(seed=0, fractions=(0.1, 0.4), repeats=8, site_sd=0.0)
    sv = sampling_variance(preds).filter(pl.col("component") == "train_sample")
    small, large = sv["variance"].to_list()
    assert small > 2 * large
    assert sv["ci_low"][0] <= 0.0025 <= sv["ci_high"][0]
    assert sv["n_train"].to_list() == [16.0, 64.0] and sv["n_draws"].to_list() == [8, 8]


@pytest.mark.filterwarnings("ignore:The MLE may be on the boundary")
def test_sampling_variance_matches_reml_of_a_balanced_nested_design() -> None:
    # Reference: statsmodels MixedLM, REML, fold as fixed effect and a random intercept per
    # (fold, draw): for a balanced design its estimates equal the expected-mean-squares ones.
    smf = pytest.importorskip("statsmodels.formula.api")
    rng = np.random.default_rng(7)
    folds, draws, seeds = 4, 5, 3
    rows = []
    for f in range(folds):
        for d in range(draws):
            delta = rng.normal(0, 0.03)
            for s in range(seeds):
                rows.append((f, d, s, 0.8 + 0.02 * f + delta + rng.normal(0, 0.01)))
    y = pl.DataFrame(rows, schema=["outer_fold", "train_resample", "seed", "score"], orient="row")
    from raybench_analysis.sampling import _components

    got = {c[0]: c[1] for c in _components(y["outer_fold"].to_numpy(),
           y["train_resample"].to_numpy(), y["score"].to_numpy(), 0.05)}  # fmt: skip
    data = y.with_columns(g=pl.format("{}-{}", "outer_fold", "train_resample")).to_pandas()
    fit = smf.mixedlm("score ~ C(outer_fold)", data, groups="g").fit(reml=True)
    assert got["train_sample"] == pytest.approx(float(fit.cov_re.iloc[0, 0]), rel=1e-4)
    assert got["seed"] == pytest.approx(float(fit.scale), rel=1e-4)


def test_sampling_variance_needs_draws() -> None:
    preds = simulate_learning_curve(seed=0, fractions=(0.5, 1.0), repeats=1)
    assert sampling_variance(preds).height == 0  # one draw per fold: nothing to compare
    with pytest.raises(AnalysisError, match="train_resample is null"):
        sampling_variance(preds.filter(pl.col("train_fraction") == 1.0))


def test_summarize_adds_the_curve_and_keeps_the_main_tables_on_the_whole_fold() -> None:
    from raybench_analysis import summarize

    preds = simulate_learning_curve(seed=1, fractions=(0.25, 0.5, 1.0), repeats=2)
    trials = preds.unique("trial_id").select(
        "trial_id", "dataset", "model", "outer_fold", "seed", stage=pl.lit("refit"),
        status=pl.lit("completed"),
    )  # fmt: skip
    summary = summarize({"trials": trials, "predictions": preds}, n_boot=100,
                        hierarchy=["subject_id"])  # fmt: skip
    assert {"learning_curve", "learning_curve_fit", "sampling_variance"} <= set(summary)
    assert not [n for n in summary.missing if "predictions file" in n]  # draws have theirs
    whole = preds.filter(pl.col("train_resample").is_null()).height
    assert summary["models"]["n_obs"].to_list() == [whole]
    assert summary["learning_curve"].height == 3
    plain = summarize({"predictions": preds.filter(pl.col("train_resample").is_null())},
                      n_boot=100, hierarchy=["subject_id"])  # fmt: skip
    assert "learning_curve" not in plain


def test_the_report_section_shows_only_with_draws() -> None:
    from raybench_analysis import summarize
    from raybench_analysis.report.figures import model_colors
    from raybench_analysis.report.learning import learning_section

    preds = simulate_learning_curve(seed=1, fractions=(0.25, 0.5, 1.0), repeats=2)
    summary = summarize({"predictions": preds}, n_boot=50, hierarchy=["subject_id"])
    drawn: list[str] = []
    section = learning_section(summary, lambda fig, name, caption: drawn.append(name) or name,
                               model_colors(["net"]))  # fmt: skip
    assert section is not None and drawn == ["learning-curve-sim"]
    assert "train_sample" in section.body and "power law" in section.body
    plain = summarize({"predictions": preds.filter(pl.col("train_resample").is_null())},
                      n_boot=50, hierarchy=["subject_id"])  # fmt: skip
    assert learning_section(plain, lambda *a: "", {}) is None
