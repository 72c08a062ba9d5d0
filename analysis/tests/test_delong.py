"""DeLong's paired test against R pROC 1.18.0 on the aSAH data."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from raybench_analysis import delong, delong_auc
from raybench_analysis._frames import AnalysisError


@pytest.fixture(scope="module")
def asah(reference_dir):
    return pl.read_csv(reference_dir / "asah.csv")


def test_single_auc_variance_and_ci(asah, load_expected):
    ref = load_expected("delong_asah_pROC.json")
    tol = ref["tolerances"]
    for marker, exp in ref["single"].items():
        out = delong_auc(asah["outcome01"], asah[marker])
        # reference: pROC::auc(aSAH$outcome, aSAH[[marker]])
        assert out["estimate"][0] == pytest.approx(exp["auc"], abs=tol["auc_abs"])
        # reference: pROC::var(roc(...), method = "delong")
        assert out["var"][0] == pytest.approx(exp["var_delong"], rel=1e-9)
        # reference: pROC::ci.auc(roc(...), method = "delong")
        assert [out["ci_low"][0], out["ci_high"][0]] == pytest.approx(exp["ci95_delong"], abs=1e-9)
        assert (out["n_pos"][0], out["n_neg"][0]) == (41, 72)


def test_paired_tests(asah, load_expected):
    ref = load_expected("delong_asah_pROC.json")
    tol = ref["tolerances"]
    for case in ref["paired_tests"]:
        out = delong(asah["outcome01"], asah[case["a"]], asah[case["b"]]).row(0, named=True)
        # reference: pROC::roc.test(roc_a, roc_b, method = "delong", paired = TRUE)
        assert out["auc_a"] == pytest.approx(case["auc_a"], abs=tol["auc_abs"])
        assert out["auc_b"] == pytest.approx(case["auc_b"], abs=tol["auc_abs"])
        assert out["statistic"] == pytest.approx(case["Z"], abs=tol["Z_abs"])
        assert out["p_value"] == pytest.approx(case["p_two_sided"], rel=tol["p_rel"])
        assert out["cov"] == pytest.approx(case["cov_delong"], rel=1e-9)
        assert [out["ci_low"], out["ci_high"]] == pytest.approx(case["ci95_diff"], abs=1e-9)
        assert out["estimate"] == pytest.approx(out["auc_a"] - out["auc_b"], abs=1e-15)


def test_antisymmetry_and_identical_scores(asah):
    ab = delong(asah["outcome01"], asah["s100b"], asah["ndka"])
    ba = delong(asah["outcome01"], asah["ndka"], asah["s100b"])
    assert ab["statistic"][0] == pytest.approx(-ba["statistic"][0], abs=1e-12)
    assert ab["p_value"][0] == pytest.approx(ba["p_value"][0], abs=1e-12)
    same = delong(asah["outcome01"], asah["wfns"], asah["wfns"])
    assert same["estimate"][0] == 0.0 and same["p_value"][0] == 1.0


def test_bad_labels():
    with pytest.raises(AnalysisError, match="binary labels"):
        delong([0, 1, 2, 1], [0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4])
    with pytest.raises(AnalysisError, match="at least 2 of each"):
        delong([0, 0, 0, 1], np.arange(4.0), np.arange(4.0))
    with pytest.raises(AnalysisError, match="same length"):
        delong([0, 0, 1, 1], np.arange(4.0), np.arange(3.0))
