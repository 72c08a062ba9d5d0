"""bayes_ttest against baycomp 1.0.3 (Benavoli et al.'s reference implementation).

baycomp's ``CorrelatedTTest.probs(x, y, rope, runs)`` works on ``y − x`` and returns
``(P(x better), P(equivalent), P(y better))``; it is called with ``x = b, y = a`` below. The
numbers are fixed here so the check runs without baycomp; when baycomp is installed the test
also recomputes them.
"""

from __future__ import annotations

import numpy as np
import pytest
from raybench_analysis._frames import AnalysisError
from raybench_analysis.bayes import bayes_ttest

A = [0.81, 0.84, 0.79, 0.86, 0.83, 0.80, 0.85, 0.82, 0.84, 0.83]
B = [0.78, 0.80, 0.79, 0.81, 0.80, 0.77, 0.82, 0.80, 0.79, 0.81]
# 3 × 10-fold cross-validation scores
X = [0.8, 0.806, 0.7945, 0.7822, 0.7909, 0.7802, 0.8012, 0.8268, 0.7902, 0.7876, 0.8098, 0.8071,
     0.8021, 0.7814, 0.7994, 0.8139, 0.7731, 0.7908, 0.762, 0.7742, 0.7632, 0.7953, 0.7747,
     0.8054, 0.8031, 0.7963, 0.7497, 0.7892, 0.799, 0.8023]  # fmt: skip
Y = [0.7887, 0.8052, 0.7887, 0.7781, 0.8055, 0.7761, 0.8049, 0.8396, 0.7883, 0.7905, 0.8149,
     0.8118, 0.7939, 0.7862, 0.817, 0.8024, 0.7857, 0.796, 0.7596, 0.7982, 0.7748, 0.7873,
     0.7794, 0.8152, 0.8052, 0.8071, 0.753, 0.7999, 0.8174, 0.7995]  # fmt: skip
CASES = [
    # CorrelatedTTest.probs(np.array(B), np.array(A), rope=0.01)
    (A, B, 0.01, 1, (0.00012341309528009355, 0.008392696832216773, 0.9914838900725031)),
    # CorrelatedTTest.probs(np.array(X), np.array(Y), rope=0.005, runs=3)
    (Y, X, 0.005, 3, (0.0073384155676994274, 0.6111905821698423, 0.3814710022624582)),
]


@pytest.mark.parametrize(("a", "b", "rope", "runs", "expected"), CASES)
def test_matches_baycomp(a, b, rope, runs, expected):
    out = bayes_ttest(a, b, rope=rope, runs=runs).row(0, named=True)
    got = (out["p_b_better"], out["p_equivalent"], out["p_a_better"])
    assert got == pytest.approx(expected, abs=1e-12)
    baycomp = pytest.importorskip("baycomp")
    again = baycomp.CorrelatedTTest.probs(np.array(b), np.array(a), rope=rope, runs=runs)
    assert got == pytest.approx(tuple(float(v) for v in again), abs=1e-12)


def test_no_rope_and_direction():
    # CorrelatedTTest.probs(np.array(X), np.array(Y), rope=0, runs=3) = (0.1307046..., 0.8692953...)
    out = bayes_ttest(Y, X, rope=0.0, runs=3).row(0, named=True)
    assert out["p_a_better"] == pytest.approx(0.8692953754072299, abs=1e-12)
    assert out["p_equivalent"] == pytest.approx(0.0, abs=1e-12)
    loss = bayes_ttest(Y, X, rope=0.0, runs=3, higher_is_better=False).row(0, named=True)
    assert loss["p_a_better"] == pytest.approx(out["p_b_better"], abs=1e-15)
    # the correlation from n_test/n_train equals the k-fold default when they match k = 10
    sizes = bayes_ttest(Y, X, rope=0.0, n_train=900, n_test=100).row(0, named=True)
    assert sizes["scale"] == pytest.approx(out["scale"], rel=1e-12)


def test_bad_inputs():
    with pytest.raises(AnalysisError, match="same length"):
        bayes_ttest([0.1, 0.2], [0.1])
    with pytest.raises(AnalysisError, match="runs"):
        bayes_ttest(X, Y, runs=7)
    with pytest.raises(AnalysisError, match="rope"):
        bayes_ttest(X, Y, rope=-1.0)
