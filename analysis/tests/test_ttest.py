"""Corrected resampled t-test: scipy when uncorrected, the formula by hand when corrected."""

from __future__ import annotations

import numpy as np
import pytest
from raybench_analysis import corrected_ttest
from raybench_analysis._frames import AnalysisError
from scipy import stats

DIFF = np.array([0.021, 0.034, -0.004, 0.041, 0.017, 0.012, 0.029, -0.008, 0.025, 0.019])


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_no_correction_is_scipy_one_sample(alternative):
    out = corrected_ttest(DIFF, n_train=90, n_test=0, alternative=alternative).row(0, named=True)
    # reference: scipy.stats.ttest_1samp(diff, 0, alternative=alternative)
    ref = stats.ttest_1samp(DIFF, 0.0, alternative=alternative)
    assert out["statistic"] == pytest.approx(ref.statistic, abs=1e-12)
    assert out["p_value"] == pytest.approx(ref.pvalue, rel=1e-12)
    assert out["df"] == ref.df
    ci = ref.confidence_interval(0.95) if alternative == "two-sided" else None
    if ci is not None:
        assert [out["ci_low"], out["ci_high"]] == pytest.approx([ci.low, ci.high], abs=1e-12)
    assert out["method"] == "one-sample t-test (no correction)"


def test_nadeau_bengio_by_hand():
    # 2 x 5-fold CV of 100 samples: n_test = 20, n_train = 80, J = 10, df = r*k - 1 = 9
    out = corrected_ttest(DIFF, n_train=80, n_test=20, repeats=2, folds=5).row(0, named=True)
    # reference: Nadeau & Bengio (2003) t = mean / sqrt((1/J + n2/n1) var), on J - 1 df
    se = np.sqrt((1 / 10 + 20 / 80) * DIFF.var(ddof=1))
    t = DIFF.mean() / se
    assert out["statistic"] == pytest.approx(t, abs=1e-12)
    assert out["df"] == 9
    assert out["p_value"] == pytest.approx(2 * stats.t.sf(abs(t), 9), rel=1e-12)
    half = stats.t.ppf(0.975, 9) * se
    assert [out["ci_low"], out["ci_high"]] == pytest.approx(
        [DIFF.mean() - half, DIFF.mean() + half], abs=1e-12
    )
    assert out["method"] == "corrected repeated k-fold t-test (Bouckaert & Frank 2004)"
    # the correction widens: the uncorrected test is more confident on the same numbers
    plain = corrected_ttest(DIFF, n_train=80, n_test=0)
    assert plain["p_value"][0] < out["p_value"]


def test_errors():
    with pytest.raises(AnalysisError, match="at least 2 splits"):
        corrected_ttest([0.1], n_train=10, n_test=2)
    with pytest.raises(AnalysisError, match="repeats=3 x folds=5"):
        corrected_ttest(DIFF, n_train=80, n_test=20, repeats=3, folds=5)
    with pytest.raises(AnalysisError, match="n_train=0"):
        corrected_ttest(DIFF, n_train=0, n_test=20)
    with pytest.raises(AnalysisError, match="alternative='bigger'"):
        corrected_ttest(DIFF, n_train=80, n_test=20, alternative="bigger")  # type: ignore[arg-type]
