"""mixed() on 50,000 rows (sparse path, lme4's algorithm without statsmodels) against lme4.

Data: 20 sites × 100 subjects × 25 observations (as benchmarks/mixed_speed.py). Reference:
R 4.2.2, lme4 1.1.31, lmerTest 3.1.3, ``lmer(y ~ model + (1 | site/subject), d)``.
"""

from __future__ import annotations

import importlib

import numpy as np
import polars as pl
import pytest
from raybench_analysis.mixed import mixed
from raybench_analysis.satterthwaite import Block, CrossProducts

mixed_module = importlib.import_module("raybench_analysis.mixed")  # the package exports mixed()


def _data(sites: int = 20, subjects: int = 100, obs: int = 25) -> pl.DataFrame:
    rng = np.random.default_rng(0)
    n = sites * subjects * obs
    site = np.repeat(np.arange(sites), subjects * obs)
    subject = np.repeat(np.arange(sites * subjects), obs)
    model = np.tile(np.array(["a", "b", "c", "d", "e"]), n // 5)
    y = (
        0.5
        + 0.2 * (model == "b")
        + rng.normal(0, 0.5, sites)[site]
        + rng.normal(0, 1.0, sites * subjects)[subject]
        + rng.normal(0, 1.0, n)
    )
    return pl.DataFrame(
        {
            "site": np.char.add("s", site.astype(str)),
            "subject": np.char.add("p", subject.astype(str)),
            "model": model,
            "y": y,
        }
    )


def test_fifty_thousand_rows_match_lme4():
    fit = mixed("y ~ model + (1 | site/subject)", _data())
    # fixef(m)
    fixef = [0.37369948837348, 0.22424745013287, -0.01646598381728, 0.00631602447402]
    assert fit.fixed["estimate"].to_numpy()[:4] == pytest.approx(fixef, rel=1e-8)
    # as.data.frame(VarCorr(m))$sdcor: site, subject:site, residual
    sds = fit.random["sd"].to_numpy()
    assert sds == pytest.approx([0.422613580387, 0.995196031833, 1.001639530705], rel=5e-6)
    # summary(lmerTest::lmer(...))$coefficients[, "df"]
    assert fit.fixed["df"][0] == pytest.approx(19.3242402668, rel=5e-5)
    assert fit.fixed["df"][1] == pytest.approx(47995.9997005475, rel=1e-6)
    # REMLcrit(m)
    assert fit.deviance == pytest.approx(148632.912696379, abs=1e-5)
    assert fit.converged and fit.warnings == []


def test_direct_path_equals_statsmodels_path(monkeypatch):
    data = _data(sites=10, subjects=6, obs=8)  # 480 rows: statsmodels, unless forced
    via_statsmodels = mixed("y ~ model + (1 | site/subject)", data)
    monkeypatch.setattr(mixed_module, "DIRECT_ROWS", 0)
    direct = mixed("y ~ model + (1 | site/subject)", data)
    assert direct.statsmodels_result is None and via_statsmodels.statsmodels_result is not None
    assert direct.fixed["estimate"].to_numpy() == pytest.approx(
        via_statsmodels.fixed["estimate"].to_numpy(), rel=1e-5
    )
    # the direct fit is at least as good an optimum as statsmodels' (refined) one
    assert direct.loglik >= via_statsmodels.loglik - 1e-9
    assert direct.random["sd"].to_numpy() == pytest.approx(
        via_statsmodels.random["sd"].to_numpy(), rel=1e-4
    )
    assert direct.loglik == pytest.approx(via_statsmodels.loglik, abs=1e-6)


def test_sparse_and_dense_deviance_agree(monkeypatch):
    from raybench_analysis import satterthwaite

    rng = np.random.default_rng(1)
    n = 600
    site, subject = rng.integers(0, 5, n), rng.integers(0, 60, n)
    blocks = [
        Block("site", ("(Intercept)",), site, 5, np.ones((n, 1))),
        Block("subject", ("(Intercept)",), subject, 60, np.ones((n, 1))),
    ]
    x = np.column_stack([np.ones(n), rng.normal(size=n)])
    cp = CrossProducts.build(rng.normal(size=n), x, blocks)
    theta = np.array([0.7, 1.3])
    dense = cp.evaluate(theta, None, True)
    monkeypatch.setattr(satterthwaite, "SPARSE_Q", 0)
    sparse = cp.evaluate(theta, None, True)
    assert sparse["deviance"] == pytest.approx(dense["deviance"], rel=1e-12)
    assert sparse["beta"] == pytest.approx(dense["beta"], rel=1e-10)
    assert sparse["vcov"] == pytest.approx(dense["vcov"], rel=1e-10)
