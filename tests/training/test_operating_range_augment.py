"""Known truth (issue 10 §4): operating ranges shrink for a model trained without augmentation."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import raybench_analysis as rba

from raybench.training.trial import TrialContext, run_trial

pytestmark = pytest.mark.slow

SEVERITIES = (0.5, 1.0, 2.0)


def test_bias_field_augmentation_widens_the_bias_field_operating_range(
    cohort_of: Any, spec_of: Any, tmp_path: Path
) -> None:
    # one small CNN trained on the same 32 subjects, with and without a bias-field augmentation,
    # evaluated on 124 test subjects under bias fields of growing coefficient (CPU: bit-identical)
    cohort = cohort_of(tmp_path / "c", n=160)
    ids = cohort.table["sample_id"].to_list()
    levels = [
        {"id": f"bias_field(coeff={c})", "type": "bias_field", "severity": c,
         "params": {"coeff": c}}
        for c in SEVERITIES
    ]  # fmt: skip
    frames = []
    for name, augment in (
        ("plain", None),
        ("augmented", [{"type": "bias_field", "params": {"prob": 1.0, "coeff": 3.0}}]),
    ):
        training = {"epochs": 15, "batch_size": 4, "amp": False, "augment": augment}
        spec = spec_of(cohort, training=training, evaluation={"perturbations": levels})
        spec = dataclasses.replace(
            spec, model=name, train_ids=tuple(ids[:32]), val_ids=tuple(ids[32:36]),
            test_ids=tuple(ids[36:]),
        )  # fmt: skip
        out = run_trial(spec, cohort, TrialContext(cache_dir=tmp_path / "cache"))
        frames.append(pl.from_arrow(out.predictions).filter(pl.col("split") == "test"))
    found = rba.operating_range(
        pl.concat(frames), tolerance=0.05, metric="accuracy", levels=("subject_id",), n_boot=500
    )
    reach = dict(found.ranges.select("model", "range_high").iter_rows())
    assert reach["augmented"] > reach["plain"] > 0, reach
    curve = found.curve.filter(pl.col("severity") == 1.0)
    delta = dict(curve.select("model", "delta").iter_rows())
    assert delta["augmented"] > delta["plain"]
