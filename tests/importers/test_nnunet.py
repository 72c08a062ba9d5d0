"""``nnunet`` imports of the nnU-Net v2 results fixture (format of nnunetv2's summary.json)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import polars as pl
import pytest
from raybench_analysis import load

from raybench.errors import LeakageError, ResultsError
from raybench.importers import SourceError, import_results

FIXTURES = Path(__file__).parent / "fixtures" / "nnunet"
DATASET = FIXTURES / "Dataset042_Toy"
PARTICIPANTS = FIXTURES / "participants.tsv"
FULLRES = DATASET / "nnUNetTrainer__nnUNetPlans__3d_fullres"


@pytest.fixture()
def dataset(tmp_path: Path) -> Path:
    return Path(shutil.copytree(DATASET, tmp_path / "Dataset042_Toy"))


def test_folds_labels_and_cases(tmp_path: Path) -> None:
    report = import_results("nnunet", DATASET, tmp_path / "out", participants=PARTICIPANTS)
    assert report.leakage.startswith("passed")
    assert report.hierarchy == ["site", "subject_id"]
    assert any("Dice NaN" in n for n in report.notes)
    res = load(tmp_path / "out")
    trials = res.trials.collect()
    # 2 configurations x 2 folds x 2 labels
    assert trials.height == 8
    assert set(trials["dataset"]) == {"Dataset042_Toy/edema", "Dataset042_Toy/tumor"}
    assert set(trials["task"]) == {"segmentation"} and set(trials["source_format"]) == {"nnunet"}
    assert json.loads(trials["params"][0])["trainer"] == "nnUNetTrainer"
    preds = res.predictions.collect()
    summary = json.loads((FULLRES / "fold_1" / "validation" / "summary.json").read_text())
    case = summary["metric_per_case"][0]
    row = preds.filter(
        (pl.col("model") == "nnUNetTrainer__nnUNetPlans__3d_fullres")
        & (pl.col("dataset") == "Dataset042_Toy/tumor")
        & (pl.col("sample_id") == "Toy_004")
    ).row(0, named=True)
    assert row["dice"] == case["metrics"]["2"]["Dice"]
    assert (row["subject_id"], row["session_id"], row["site"]) == ("sub-03", "ses-1", "site-B")
    assert row["outer_fold"] == 1 and row["split"] == "test"
    nan_cases = sum(
        math.isnan(c["metrics"][k]["Dice"])
        for fold in (0, 1)
        for d in DATASET.glob("*/")
        if (d / f"fold_{fold}").is_dir()
        for c in json.loads((d / f"fold_{fold}/validation/summary.json").read_text())[
            "metric_per_case"
        ]
        for k in c["metrics"]
    )
    assert preds.height == 2 * 2 * 8 - nan_cases  # configs x labels x cases, NaN left out
    roles = res.splits.collect().filter(pl.col("trial_id") == row["trial_id"])
    assert sorted(set(roles["role"])) == ["test", "train"] and roles.height == 8


def test_two_cases_of_one_patient_across_train_and_validation_is_leakage(
    tmp_path: Path,
) -> None:
    # Toy_000 validates fold 0 while Toy_004 trains it: make them one patient
    table = pl.read_csv(PARTICIPANTS, separator="\t")
    table = table.with_columns(
        participant_id=pl.when(pl.col("case_id") == "Toy_004")
        .then(pl.lit("sub-01"))
        .otherwise(pl.col("participant_id"))
    )
    table.write_csv(tmp_path / "participants.tsv", separator="\t")
    with pytest.raises(LeakageError, match=r"subject 'sub-01' is in both test and train.*fold 0"):
        import_results(
            "nnunet", FULLRES, tmp_path / "out", participants=tmp_path / "participants.tsv"
        )
    # (without participants each case is its own subject: no leakage can be seen)


def test_summary_disagreeing_with_split_file_is_located(dataset: Path, tmp_path: Path) -> None:
    splits = json.loads((dataset / "splits_final.json").read_text())
    splits[0]["val"].remove("Toy_002")
    splits[0]["train"].append("Toy_002")
    (dataset / "splits_final.json").write_text(json.dumps(splits))
    error = r"summary.json: column 'metric_per_case': case 'Toy_002' is not in the validation"
    with pytest.raises(SourceError, match=error):
        import_results("nnunet", dataset / FULLRES.name, tmp_path / "out")


def test_without_split_file_leakage_is_not_checkable(dataset: Path, tmp_path: Path) -> None:
    (dataset / "splits_final.json").unlink()
    report = import_results("nnunet", dataset, tmp_path / "out", name="nn")
    assert report.leakage.startswith("not checkable")
    assert report.models == [
        "nn:nnUNetTrainer__nnUNetPlans__2d",
        "nn:nnUNetTrainer__nnUNetPlans__3d_fullres",
    ]
    assert report.hierarchy == ["subject_id"]


def test_a_changed_participants_table_is_a_changed_import(tmp_path: Path) -> None:
    table = tmp_path / "participants.tsv"
    shutil.copy(PARTICIPANTS, table)
    import_results("nnunet", FULLRES, tmp_path / "out", participants=table)
    table.write_text(table.read_text().replace("site-B", "site-C"))
    with pytest.raises(ResultsError, match="the mapping or options changed"):
        import_results("nnunet", FULLRES, tmp_path / "out", participants=table)
    report = import_results("nnunet", FULLRES, tmp_path / "out", participants=table, replace=True)
    assert report.removed == report.committed == 4
    assert "site-C" in set(load(tmp_path / "out").predictions.collect()["site"])
