"""bayes_hierarchical: the hierarchical Bayesian correlated t-test (Corani et al. 2017).

baycomp's reference needs Stan (pystan builds a C++ model), which this environment cannot run, so
the sampler is checked by what the model implies: with one dataset and many folds the dataset's
posterior is the correlated t-test's (``bayes_ttest``, itself equal to baycomp's
``CorrelatedTTest`` to 1e-12); identical models with a wide rope give "equivalent"; a clear
difference gives "a better" (and "b better" for a loss); the chains agree (split R-hat).
"""

from __future__ import annotations

import numpy as np
import pytest
from raybench_analysis._frames import AnalysisError
from raybench_analysis.bayes import NEXT_DATASET, _split_rhat, bayes_hierarchical, bayes_ttest

FAST = {"n_samples": 300, "warmup": 200}


def _scores(shift: float, q: int = 5, n: int = 10, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    b = rng.uniform(0.7, 0.9, (q, 1)) + rng.normal(0.0, 0.01, (q, n))
    return b + shift + rng.normal(0.0, 0.01, (q, n)), b


def test_identical_models_with_a_wide_rope_are_equivalent() -> None:
    a, b = _scores(0.0)
    out = bayes_hierarchical(a, b, rope=0.05, **FAST)
    assert out["dataset"].to_list() == ["0", "1", "2", "3", "4", NEXT_DATASET]
    assert out["p_equivalent"].min() > 0.9
    assert out["rhat"].max() < 1.05


def test_a_clear_difference_is_detected_in_both_directions() -> None:
    a, b = _scores(0.05)
    out = bayes_hierarchical(a, b, rope=0.01, **FAST)
    assert out["p_a_better"].min() > 0.95
    assert abs(out["estimate"][-1] - 0.05) < 0.01
    loss = bayes_hierarchical(a, b, rope=0.01, higher_is_better=False, **FAST)
    assert loss["p_b_better"].min() > 0.95
    total = out.select(p=out["p_a_better"] + out["p_equivalent"] + out["p_b_better"])["p"]
    assert np.allclose(total, 1.0)


def test_one_dataset_with_many_folds_agrees_with_the_correlated_t_test() -> None:
    # 10 x 10-fold cross-validation; the dataset-level posterior is the correlated t-test's
    rng = np.random.default_rng(3)
    b = rng.normal(0.8, 0.02, 100)
    a = b + 0.008 + rng.normal(0.0, 0.02, 100)
    out = bayes_hierarchical(a[None, :], b[None, :], rope=0.01, runs=10, **FAST)
    ref = bayes_ttest(a, b, rope=0.01, runs=10)
    for col in ("p_a_better", "p_equivalent", "p_b_better"):
        assert abs(out[col][0] - ref[col][0]) < 0.05, col
    assert abs(out["estimate"][0] - ref["estimate"][0]) < 0.1 * ref["scale"][0] + 1e-4


def test_seeded_and_refuses_bad_input() -> None:
    a, b = _scores(0.02, q=3)
    one = bayes_hierarchical(a, b, seed=7, **FAST)
    assert one.equals(bayes_hierarchical(a, b, seed=7, **FAST))
    with pytest.raises(AnalysisError, match="2-D"):
        bayes_hierarchical(a[0], b[0])
    with pytest.raises(AnalysisError, match="constant"):
        bayes_hierarchical(b + 0.01, b)
    with pytest.raises(AnalysisError, match="runs"):
        bayes_hierarchical(a, b, runs=3)


def test_split_rhat_flags_chains_that_disagree() -> None:
    rng = np.random.default_rng(0)
    same = rng.normal(size=(4, 500))
    assert _split_rhat(same) < 1.01
    apart = same + np.arange(4)[:, None]
    assert _split_rhat(apart) > 1.5
