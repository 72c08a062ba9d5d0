"""run_trial end to end on a tiny real cohort: every task, determinism, selection on validation."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from raybench.data.cohort import Cohort
from raybench.errors import DataError, SuiteError, TrialError
from raybench.store.schemas import SCHEMAS
from raybench.training import cache as cache_module
from raybench.training.trial import TrialContext, run_trial

NOISE = {
    "id": "gaussian_noise(std=0.1)",
    "type": "gaussian_noise",
    "severity": 0.1,
    "params": {"std": 0.1},
}
GAMMA = {"id": "gamma(gamma=1.5)", "type": "gamma", "severity": 1.5, "params": {"gamma": 1.5}}
UNET = {"arch": "unet", "params": {"channels": [4, 8, 16], "strides": [2, 2]}}

TASKS = {
    "binary": ({"type": "classification", "label": "diagnosis", "positive": "AD"}, None),
    "multiclass": ({"type": "classification", "label": "grade"}, None),
    "regression": ({"type": "regression", "label": "age"}, None),
    "segmentation": ({"type": "segmentation", "label": "mask"}, UNET),
}


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_task_runs_and_fills_the_contract(
    name: str, cohort: Cohort, spec_of: Any, tmp_path: Path
) -> None:
    task, model = TASKS[name]
    spec = spec_of(cohort, task=task, model=model, evaluation={"perturbations": [NOISE, GAMMA]})
    rows: list[dict] = []
    out = run_trial(spec, cohort, TrialContext(tmp_path, on_epoch=rows.append))
    for table_name in ("predictions", "epochs", "splits"):
        assert getattr(out, table_name).schema.equals(SCHEMAS[table_name])
    every = out.predictions.to_pylist()
    val = [p for p in every if p["split"] == "val"]  # the refit's validation samples, clean
    assert {p["sample_id"] for p in val} == set(spec.val_ids) and len(val) == 2
    assert {(p["perturbation"], p["variant"]) for p in val} == {("none", "raw")}
    preds = [p for p in every if p["split"] == "test"]
    assert len(every) == len(preds) + len(val)
    assert len(preds) == 2 * 3  # 2 test samples x (clean + 2 perturbations)
    assert {p["sample_id"] for p in preds} == set(spec.test_ids)
    assert {p["variant"] for p in preds} == {"raw"}
    assert [p["perturbation"] for p in preds] == ["none"] * 2 + [NOISE["id"]] * 2 + [
        GAMMA["id"]
    ] * 2
    assert out.epochs.num_rows == 2 * 2 and len(rows) == 2 and "val_loss" in rows[0]
    roles = {(r["sample_id"], r["role"]) for r in out.splits.to_pylist()}
    assert {s for s, r in roles if r == "test"} == set(spec.test_ids)
    assert {s for s, r in roles if r == "val"} == set(spec.val_ids)
    assert out.best_epoch in (0, 1) and out.val_score is not None
    assert (out.n_train, out.n_val, out.n_test) == (4, 2, 2) and out.device == "cpu"
    first = preds[0]
    if name == "binary":
        # positive class AD is index 1; sub-07 (odd) is AD
        truth = {p["sample_id"]: p["y_true"] for p in preds}
        assert truth == {"sub-06_ses-1": 0.0, "sub-07_ses-1": 1.0}
        assert first["score"] == pytest.approx(first["probs"][1]) and len(first["probs"]) == 2
    elif name == "multiclass":
        assert len(first["probs"]) == 3 and first["score"] is None
        assert sum(first["probs"]) == pytest.approx(1.0)
    elif name == "regression":
        # exact targets in original units (age of sub-06 = 72, sub-07 = 79)
        assert {p["y_true"] for p in preds} == {72.0, 79.0}
        assert 0 < first["y_pred"] < 200 and first["probs"] is None
    else:
        assert all(0.0 <= p["dice"] <= 1.0 for p in preds) and first["y_true"] is None


def test_two_runs_give_bit_identical_predictions(
    cohort: Cohort, spec_of: Any, tmp_path: Path
) -> None:
    spec = spec_of(cohort, evaluation={"perturbations": [NOISE]}, seed=3)
    a = run_trial(spec, cohort, TrialContext(tmp_path / "cache-a"))
    b = run_trial(spec, cohort, TrialContext(tmp_path / "cache-a"))  # cache hits
    c = run_trial(spec, cohort, TrialContext(tmp_path / "cache-c"))  # fresh cache
    assert a.predictions.equals(b.predictions) and a.predictions.equals(c.predictions)
    assert a.epochs.column("loss").equals(c.epochs.column("loss"))
    other_seed = run_trial(
        spec_of(cohort, evaluation={"perturbations": [NOISE]}, seed=4),
        cohort,
        TrialContext(tmp_path / "cache-a"),
    )
    assert not a.predictions.column("probs").equals(other_seed.predictions.column("probs"))


def test_selection_uses_validation_only(
    cohort: Cohort, spec_of: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded: list[str] = []
    original = cache_module.VolumeCache.load

    def spy(self, row):  # type: ignore[no-untyped-def]
        loaded.append(row["sample_id"])
        return original(self, row)

    monkeypatch.setattr(cache_module.VolumeCache, "load", spy)
    seen_at_epoch: list[int] = []
    spec = spec_of(
        cohort,
        training={"epochs": 6, "lr": 0.05, "early_stopping": {"patience": 1, "min_delta": 0.0}},
        evaluation={"selection_metric": "auc", "perturbations": [NOISE]},
    )
    out = run_trial(
        spec, cohort, TrialContext(tmp_path, on_epoch=lambda r: seen_at_epoch.append(len(loaded)))
    )
    during_training = set(loaded[: seen_at_epoch[-1]])
    assert during_training == set(spec.train_ids) | set(spec.val_ids)
    assert not during_training & set(spec.test_ids)
    after = loaded[seen_at_epoch[-1] :]
    n_test = len(after) - len(spec.val_ids)
    assert set(after[:n_test]) == set(spec.test_ids)  # the final evaluation of the test fold
    assert set(after[n_test:]) == set(spec.val_ids)  # then the refit's validation predictions
    epochs = out.epochs.to_pylist()
    last = max(r["epoch"] for r in epochs)
    assert last <= out.best_epoch + 1  # patience 1: stopped one epoch after the best at most
    val = {r["epoch"]: r["value"] for r in epochs if r["split"] == "val"}
    assert all(r["metric"] == "auc" for r in epochs if r["split"] == "val")
    assert out.val_score == val[out.best_epoch] == max(val.values())


def test_search_trial_scores_the_validation_ids(
    cohort: Cohort, spec_of: Any, tmp_path: Path
) -> None:
    spec = spec_of(cohort, stage="search", evaluation={"perturbations": [NOISE]})
    out = run_trial(spec, cohort, TrialContext(tmp_path))
    preds = out.predictions.to_pylist()
    assert {p["split"] for p in preds} == {"val"} and {p["perturbation"] for p in preds} == {"none"}
    assert {p["sample_id"] for p in preds} == set(spec.val_ids)
    assert out.n_test == 0 and out.val_score is not None


@pytest.fixture
def nan_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "rb_nan_net.py").write_text(
        textwrap.dedent(
            """
            import torch
            class NaNNet(torch.nn.Module):
                def __init__(self, out_channels):
                    super().__init__()
                    self.w = torch.nn.Parameter(torch.zeros(1))
                    self.out = out_channels
                def forward(self, x):
                    if self.training and torch.is_grad_enabled():
                        return torch.full((x.shape[0], self.out), float("nan")) * self.w
                    return torch.zeros(x.shape[0], self.out) + self.w
            def make(out_channels):
                return NaNNet(out_channels)
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("rb_nan_net", None)
    return "rb_nan_net:make"


def test_nan_loss_from_a_plugin_stops_the_trial(
    cohort: Cohort, spec_of: Any, tmp_path: Path, nan_plugin: str
) -> None:
    spec = spec_of(cohort, model={"arch": "nan", "params": {}}, plugins={"nan": nan_plugin})
    with pytest.raises(TrialError, match=r"non-finite loss at epoch 0, batch 0"):
        run_trial(spec, cohort, TrialContext(tmp_path))


def test_exploding_learning_rate_stops_the_trial(
    cohort: Cohort, spec_of: Any, tmp_path: Path
) -> None:
    spec = spec_of(cohort, training={"lr": 1e30, "optimizer": "sgd", "epochs": 3})
    with pytest.raises(TrialError, match=r"non-finite loss at epoch \d+, batch \d+"):
        run_trial(spec, cohort, TrialContext(tmp_path))


def test_bad_selection_metric_is_a_suite_error(
    cohort: Cohort, spec_of: Any, tmp_path: Path
) -> None:
    spec = spec_of(cohort, evaluation={"selection_metric": "dice"})
    with pytest.raises(SuiteError, match="selection_metric='dice'"):
        run_trial(spec, cohort, TrialContext(tmp_path))


def test_a_refit_whose_search_point_was_not_applied_is_refused(
    cohort: Cohort, spec_of: Any, tmp_path: Path
) -> None:
    spec = spec_of(cohort, training={"lr": None, "epochs": None})
    with pytest.raises(SuiteError, match=r"training keys \['epochs', 'lr'\] are searched"):
        run_trial(spec, cohort, TrialContext(tmp_path))


def test_dataloader_workers_do_not_change_predictions(
    cohort: Cohort, spec_of: Any, tmp_path: Path
) -> None:
    inline = run_trial(spec_of(cohort, seed=5), cohort, TrialContext(tmp_path))
    spec = spec_of(cohort, seed=5, training={"num_workers": 2})
    workers = run_trial(spec, cohort, TrialContext(tmp_path))
    assert inline.predictions.equals(workers.predictions)


def test_label_outside_the_declared_classes_is_a_data_error(
    cohort: Cohort, spec_of: Any, tmp_path: Path
) -> None:
    task = {"type": "classification", "label": "diagnosis", "classes": ["CN", "MCI"]}
    with pytest.raises(DataError, match=r"sample_id='sub-01_ses-1'.*label 'AD' is not one of"):
        run_trial(spec_of(cohort, task=task), cohort, TrialContext(tmp_path))
