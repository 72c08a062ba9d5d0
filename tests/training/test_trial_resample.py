"""A trial of a bootstrap draw: copies are trained on, recorded, and pass the leakage audit."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pyarrow as pa
from raybench_analysis import check_leakage

from raybench.data.cohort import Cohort
from raybench.store import collect_provenance, trial_row
from raybench.training.trial import TrialContext, run_trial


def test_a_bootstrap_draw_trains_on_copies_and_records_its_draw(
    cohort: Cohort, spec_of: Any, tmp_path: Path
) -> None:
    base = spec_of(cohort, training={"epochs": 1})
    copied = base.train_ids[0]
    spec = dataclasses.replace(
        base,
        train_ids=tuple(sorted((*base.train_ids[:3], copied))),  # subject 0 drawn twice
        train_fraction=1.0,
        train_resample=2,
        n_train_subjects=4,
    )
    out = run_trial(spec, cohort, TrialContext(tmp_path))
    assert out.n_train == 4
    splits = out.splits.to_pylist()
    assert [r["role"] for r in splits if r["sample_id"] == copied] == ["train", "train"]
    assert check_leakage(pa.Table.from_pylist(splits)).height == 0
    preds = out.predictions.to_pylist()
    assert {(p["train_fraction"], p["train_resample"], p["n_train_subjects"]) for p in preds} == {
        (1.0, 2, 4)
    }
    row = trial_row(spec, out, collect_provenance()).to_pylist()[0]
    assert (row["train_fraction"], row["train_resample"], row["n_train_subjects"]) == (1.0, 2, 4)
    assert len(splits) == 4 + 2 + 2  # train rows counted once per copy
