"""Metrics against the shared reference values, scipy and hand computations."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from raybench_analysis import metrics as M
from raybench_analysis._frames import AnalysisError
from scipy import stats

TOL = 1e-12


def test_balanced_accuracy_reference(load_expected):
    ref = load_expected("classification_metrics.json")["balanced_accuracy"]
    # reference: sklearn.metrics.balanced_accuracy_score(y_true, y_pred) = 0.625
    assert M.balanced_accuracy(ref["y_true"], ref["y_pred"]) == pytest.approx(ref["value"], abs=TOL)
    # reference: balanced_accuracy_score(..., adjusted=True) = 0.25
    adjusted = M.balanced_accuracy(ref["y_true"], ref["y_pred"], adjusted=True)
    assert adjusted == pytest.approx(ref["adjusted"], abs=TOL)
    three = ref["three_class"]
    # reference: recalls 2/4, 2/3, 3/5 -> mean 0.588888...
    value = M.balanced_accuracy(three["y_true"], three["y_pred"])
    assert value == pytest.approx(three["value"], abs=TOL)


@pytest.fixture(scope="module")
def calibration(reference_dir):
    return pl.read_csv(reference_dir / "calibration_toy.csv")


@pytest.mark.parametrize(
    ("convention", "ece_key", "mce_key", "bins_key"),
    [
        ("top_label", "ECE_top_label_Guo2017", "MCE_top_label", "bins_top_label"),
        (
            "positive_class",
            "ECE_positive_class_reliability",
            "MCE_positive_class",
            "bins_positive_class",
        ),
    ],
)
def test_ece_reference(calibration, load_expected, convention, ece_key, mce_key, bins_key):
    ref = load_expected("classification_metrics.json")["calibration"]
    y, p = calibration["label"], calibration["p_positive"]
    # reference: Guo et al. 2017 ECE by definition, 10 equal-width right-closed bins
    value = M.ece(y, p, n_bins=10, convention=convention)
    assert value == pytest.approx(ref[ece_key], abs=TOL)
    bins = M.calibration_bins(y, p, n_bins=10, convention=convention)
    # reference: per-bin n, mean confidence and observed frequency, bin by bin
    expected = ref[bins_key]
    assert bins.height == len(expected)
    for row, exp in zip(bins.iter_rows(named=True), expected, strict=True):
        assert [row["bin_low"], row["bin_high"]] == pytest.approx(exp["bin"], abs=TOL)
        assert row["n"] == exp["n"]
        assert row["mean_conf"] == pytest.approx(exp["mean_conf"], abs=TOL)
        assert row["frac"] == pytest.approx(exp["frac"], abs=TOL)
    # reference: MCE = max |frac - conf| over non-empty bins
    assert bins["gap"].abs().max() == pytest.approx(ref[mce_key], abs=TOL)


def test_brier_and_log_loss_reference(calibration, load_expected):
    ref = load_expected("classification_metrics.json")["calibration"]
    y, p = calibration["label"], calibration["p_positive"]
    # reference: sklearn.metrics.brier_score_loss(y, p)
    assert M.brier(y, p) == pytest.approx(ref["brier"], abs=TOL)
    # reference: sklearn.metrics.log_loss(y, p)
    assert M.log_loss(y, p) == pytest.approx(ref["log_loss"], abs=TOL)
    probs = np.column_stack([1 - p.to_numpy(), p.to_numpy()])
    # the multi-class form on [1-p, p] is the same log-loss, and twice the binary Brier
    assert M.log_loss(y, probs=probs) == pytest.approx(ref["log_loss"], abs=TOL)
    assert M.brier(y, probs=probs) == pytest.approx(2 * ref["brier"], abs=TOL)
    # top-label ECE from probs equals the binary top-label ECE
    assert M.ece(y, probs=probs) == pytest.approx(ref["ECE_top_label_Guo2017"], abs=TOL)


def test_auc_against_pROC_and_mann_whitney(reference_dir, load_expected):
    data = pl.read_csv(reference_dir / "asah.csv")
    ref = load_expected("delong_asah_pROC.json")
    y = data["outcome01"].to_numpy()
    for marker in ("s100b", "wfns", "ndka"):
        s = data[marker].to_numpy()
        # reference: R pROC::auc(aSAH$outcome, aSAH[[marker]]) (wfns has many ties)
        assert M.auc(y, s) == pytest.approx(ref["single"][marker]["auc"], abs=1e-9)
        # reference: scipy.stats.mannwhitneyu(pos, neg).statistic / (n1 * n0)
        u = stats.mannwhitneyu(s[y == 1], s[y == 0]).statistic
        assert M.auc(y, s) == pytest.approx(u / ((y == 1).sum() * (y == 0).sum()), abs=TOL)


def test_binary_counts_by_hand():
    y = [1, 1, 1, 0, 0, 0, 0]
    pred = [1, 1, 0, 1, 0, 0, 0]  # TP=2 FN=1 FP=1 TN=3
    assert M.sensitivity(y, pred) == pytest.approx(2 / 3, abs=TOL)
    assert M.specificity(y, pred) == pytest.approx(3 / 4, abs=TOL)
    assert M.f1(y, pred) == pytest.approx(4 / 6, abs=TOL)
    assert M.accuracy(y, pred) == pytest.approx(5 / 7, abs=TOL)
    # binary MCC is the Pearson correlation of the two 0/1 vectors
    assert M.mcc(y, pred) == pytest.approx(np.corrcoef(y, pred)[0, 1], abs=TOL)
    # positive=0 swaps the roles: sensitivity of class 0 is the specificity above
    assert M.sensitivity(y, pred, positive=0) == pytest.approx(3 / 4, abs=TOL)


def test_multiclass_mcc_matches_gorodkin_covariance_form():
    rng = np.random.default_rng(3)
    y, pred = rng.integers(0, 3, 60), rng.integers(0, 3, 60)
    pred[:30] = y[:30]
    # reference: Gorodkin (2004) eq. 2, cov(X, Y) / sqrt(cov(X, X) cov(Y, Y)) on one-hot matrices
    x, z = np.eye(3)[y], np.eye(3)[pred]
    xc, zc = x - x.mean(0), z - z.mean(0)
    expected = (xc * zc).sum() / np.sqrt((xc * xc).sum() * (zc * zc).sum())
    assert M.mcc(y, pred) == pytest.approx(expected, abs=TOL)
    assert M.mcc([0, 1, 0, 1], [1, 1, 1, 1]) == 0.0  # constant prediction: scikit-learn's 0
    assert np.isnan(M.mcc([1, 1, 1], [1, 0, 1]))  # one true class: undefined


def test_regression_and_dice_by_definition():
    y, pred = np.array([1.0, 2.0, 4.0, 7.0]), np.array([1.5, 1.0, 4.0, 9.0])
    e = pred - y
    assert M.mae(y, pred) == pytest.approx(np.abs(e).mean(), abs=TOL)
    assert M.rmse(y, pred) == pytest.approx(np.sqrt((e**2).mean()), abs=TOL)
    r2 = 1 - (e**2).sum() / ((y - y.mean()) ** 2).sum()
    assert M.r2(y, pred) == pytest.approx(r2, abs=TOL)
    a = np.zeros((4, 4, 4), bool)
    b = np.zeros((4, 4, 4), bool)
    a[:2], b[1:3] = True, True  # |A| = |B| = 32, overlap 16
    assert M.dice(a, b) == pytest.approx(0.5, abs=TOL)
    assert M.dice(np.zeros(3), np.zeros(3)) == 1.0


def test_metric_by_groups(predictions):
    out = M.metric_by(predictions, "auc", by=["model", "outer_fold"])
    assert out.columns == ["model", "outer_fold", "metric", "estimate", "n_obs"]
    assert out.height == 2 * 3
    part = predictions.filter(model="a", outer_fold=1)
    assert out.filter(model="a", outer_fold=1)["estimate"][0] == pytest.approx(
        M.auc(part["y_true"], part["score"]), abs=TOL
    )
    ece = M.metric_by(predictions, "ece", by="model", n_bins=15)
    assert ece["metric"][0] == "ece(n_bins=15, convention=top_label, bins=equal-width (lo, hi])"


@pytest.mark.parametrize(
    "name",
    [
        "auc",
        "accuracy",
        "balanced_accuracy",
        "sensitivity",
        "specificity",
        "f1",
        "mcc",
        "brier",
        "log_loss",
        "ece",
    ],
)
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_weights_equal_repeating_rows(name, data):
    """The bootstrap's weighted form equals the metric on rows repeated by their weights."""
    n = data.draw(st.integers(6, 30))
    seed = data.draw(st.integers(0, 10_000))
    rng = np.random.default_rng(seed)
    y = np.r_[0.0, 1.0, rng.integers(0, 2, n - 2)]
    score = np.round(rng.random(n), 1)  # ties on purpose
    frame = pl.DataFrame({"y_true": y, "score": score, "y_pred": (score >= 0.5) * 1.0})
    w = rng.integers(0, 4, n)
    w[:2] = 1  # keep both classes
    metric = M.get_metric(name)
    weighted = metric.evaluate(frame, w[None, :].astype(float))[0]
    repeated = metric.evaluate(frame[np.repeat(np.arange(n), w)])[0]
    assert weighted == pytest.approx(repeated, abs=1e-10, nan_ok=True)


def test_bad_input_messages():
    with pytest.raises(AnalysisError, match="metric='aucc' is unknown"):
        M.get_metric("aucc")
    with pytest.raises(AnalysisError, match="not a probability"):
        M.brier([0, 1], [0.2, 1.3])
    with pytest.raises(AnalysisError, match="position 1"):
        M.auc([0, 1], [0.2, float("nan")])
    with pytest.raises(AnalysisError, match="same length"):
        M.accuracy([0, 1, 1], [0, 1])
    with pytest.raises(AnalysisError, match="convention='bins'"):
        M.ece([0, 1], [0.2, 0.8], convention="bins")  # type: ignore[arg-type]
    frame = pl.DataFrame({"y_true": [0.0, 1.0], "score": [0.1, None]})
    with pytest.raises(AnalysisError, match="null at row 1"):
        M.metric_by(frame, "auc")
    with pytest.raises(AnalysisError, match=r"missing column\(s\) \['y_pred'\]"):
        M.metric_by(frame, "accuracy")


@pytest.mark.parametrize("decimals", [1, None])  # many ties (general path), none (fast path)
def test_weighted_auc_cells_equals_weighted_auc_per_cell_with_ties_and_empty_cells(decimals):
    rng = np.random.default_rng(3)
    n, n_units, n_cells = 300, 40, 12
    y = rng.integers(0, 2, n).astype(float)
    score = rng.random(n) if decimals is None else np.round(rng.random(n), decimals)
    cell = rng.integers(0, n_cells - 1, n)  # the last cell has no rows
    cell[:3], y[:3] = n_cells - 2, 1.0  # a cell of positives only
    y[cell == n_cells - 2] = 1.0
    unit = rng.integers(0, n_units, n)
    counts = rng.multinomial(n_units, [1 / n_units] * n_units, size=50).astype(float)
    batched = M.weighted_auc_cells(y, score, cell, unit, counts.T.copy(), n_cells)
    assert batched.shape == (50, n_cells)
    for c in range(n_cells):
        rows = cell == c
        if not rows.any():
            assert np.isnan(batched[:, c]).all()
            continue
        expected = M.weighted_auc(y[rows], score[rows], counts[:, unit[rows]])
        np.testing.assert_allclose(batched[:, c], expected, rtol=1e-12, equal_nan=True)
