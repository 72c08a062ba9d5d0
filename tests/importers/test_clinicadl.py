"""``clinicadl`` imports of the MAPS fixture (layout of ClinicaDL 1.6.1, see fixtures/README.md)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from raybench_analysis import load

from raybench.errors import LeakageError
from raybench.importers import SourceError, import_results, read_source

FIXTURES = Path(__file__).parent / "fixtures" / "clinicadl"
MAPS = FIXTURES / "maps_toy"
PARTICIPANTS = FIXTURES / "participants.tsv"


@pytest.fixture()
def maps(tmp_path: Path) -> Path:
    """A writable copy of the MAPS fixture."""
    return Path(shutil.copytree(MAPS, tmp_path / "maps_toy"))


def test_maps_becomes_one_trial_per_split_selection_and_group(tmp_path: Path) -> None:
    report = import_results("clinicadl", MAPS, tmp_path / "out", participants=PARTICIPANTS)
    assert report.leakage.startswith("passed")
    assert report.models == ["maps_toy:best-BA", "maps_toy:best-loss"]
    # one OASIS subject is missing from participants.tsv: said, not fatal
    assert any("sub-OASIS003" in n and "found no row" in n for n in report.notes)
    res = load(tmp_path / "out")
    trials = res.trials.collect()
    # 2 splits x 2 selection metrics x 2 data groups (validation, test-OASIS; train is skipped)
    assert trials.height == 8
    assert sorted(set(trials["outer_fold"])) == [0, 1] and set(trials["seed"]) == {0}
    assert set(trials["dataset"]) == {"caps", "test-OASIS"}  # validation: the CAPS's name
    assert set(trials["source_tool_version"]) == {"1.6.1"}
    params = json.loads(trials.filter(pl.col("model") == "maps_toy:best-BA")["params"][0])
    assert params["learning_rate"] == 0.0001 and params["selection_metric"] == "BA"
    assert params["positive"] == "CN"  # label_code {AD: 0, CN: 1}: code 1 by default
    preds = res.predictions.collect()
    assert set(preds.filter(pl.col("dataset") == "caps")["split"]) == {"val"}
    assert set(preds.filter(pl.col("dataset") == "test-OASIS")["split"]) == {"test"}
    row = preds.filter(pl.col("sample_id") == "sub-ADNI000_ses-M006").row(0, named=True)
    assert row["site"] == "site-0" and row["scanner"] == "scanner-0"
    splits = res.splits.collect()
    roles = splits.group_by("trial_id").agg(pl.col("role").unique().sort())
    assert {tuple(r) for r in roles["role"]} == {("train", "val"), ("test", "train", "val")}
    epochs = res.epochs.collect()
    assert set(epochs["split"]) == {"train", "val"} and epochs["epoch"].max() == 4


def test_positive_class_scores_its_own_probability(tmp_path: Path) -> None:
    source = read_source("clinicadl", MAPS, options={"positive": "AD"})
    trial = next(t for t in source.trials if t.dataset == "test-OASIS")
    raw = pl.read_csv(
        MAPS / "split-0" / "best-BA" / "test-OASIS" / "test-OASIS_image_level_prediction.tsv",
        separator="\t",
    )
    assert trial.predictions["score"].to_list() == raw["proba0"].to_list()  # AD is code 0
    assert trial.predictions["y_true"].to_list() == (1 - raw["true_label"]).cast(float).to_list()


def test_best_epoch_follows_the_selection_metric() -> None:
    source = read_source("clinicadl", MAPS)
    log = pl.read_csv(MAPS / "split-0" / "training_logs" / "training.tsv", separator="\t")
    by_metric = {t.params["selection_metric"]: t for t in source.trials if t.outer_fold == 0}
    assert by_metric["loss"].best_epoch == log["loss_valid"].arg_min()
    assert by_metric["BA"].best_epoch == log["BA_valid"].arg_max()
    assert by_metric["BA"].val_score == log["BA_valid"].max()


def test_subject_in_train_and_validation_is_leakage(maps: Path, tmp_path: Path) -> None:
    validation = maps / "groups" / "validation" / "split-0" / "data.tsv"
    lines = validation.read_text().splitlines()
    # sub-ADNI006 trains split 0 (groups/train/split-0): list it in split 0's validation too
    lines.append("99\tsub-ADNI006\tses-M000\tsingle\tCN")
    validation.write_text("\n".join(lines) + "\n")
    with pytest.raises(LeakageError, match=r"'sub-ADNI006' is in both train and val.*fold 0.*"
                                           r"validation/split-0/data.tsv line 12"):  # fmt: skip
        import_results("clinicadl", maps, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unknown_label_code_is_located(maps: Path, tmp_path: Path) -> None:
    path = maps / "split-1" / "best-loss" / "validation" / "validation_image_level_prediction.tsv"
    lines = path.read_text().splitlines()
    cells = lines[3].split("\t")
    cells[3] = "2"
    lines[3] = "\t".join(cells)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(SourceError, match=r"validation_image_level_prediction.tsv: line 4, "
                                          r"column 'true_label': unknown label 2.0"):  # fmt: skip
        import_results("clinicadl", maps, tmp_path / "out")


def test_validation_only_maps_and_validation_as_test(maps: Path, tmp_path: Path) -> None:
    for split in ("split-0", "split-1"):
        for best in ("best-loss", "best-BA"):
            shutil.rmtree(maps / split / best / "test-OASIS")
    report = import_results("clinicadl", maps, tmp_path / "val")
    assert any("only the validation group" in n for n in report.notes)
    assert set(load(tmp_path / "val").predictions.collect()["split"]) == {"val"}
    report = import_results(
        "clinicadl", maps, tmp_path / "test", options={"validation_as_test": True}
    )
    res = load(tmp_path / "test")
    assert set(res.predictions.collect()["split"]) == {"test"}
    assert set(res.splits.collect()["role"]) == {"train", "test"}


def test_reconstruction_maps_is_refused(maps: Path, tmp_path: Path) -> None:
    params = json.loads((maps / "maps.json").read_text())
    params["network_task"] = "reconstruction"
    (maps / "maps.json").write_text(json.dumps(params))
    with pytest.raises(SourceError, match=r"maps.json: column 'network_task': 'reconstruction'"):
        import_results("clinicadl", maps, tmp_path / "out")


# A MAPS written by ClinicaDL 1.6.1 itself (fixtures/README.md: generate shepplogan, train).
REAL = FIXTURES / "maps_shepplogan"


def test_a_maps_written_by_clinicadl_1_6_1(tmp_path: Path) -> None:
    report = import_results(
        "clinicadl", REAL, tmp_path / "out", options={"validation_as_test": True}
    )
    assert (report.trials, report.models) == (2, ["maps_shepplogan:best-loss"])
    assert report.leakage.startswith("passed") and report.hierarchy == ["subject_id"]
    preds = load(tmp_path / "out").predictions.collect().sort("outer_fold", "sample_id")
    # slice mode: the image-level file has no ids; the slice-level file (one slice per image)
    slices = pl.concat(
        pl.read_csv(REAL / f"split-{k}/best-loss/validation/validation_slice_level_prediction.tsv",
                    separator="\t").with_columns(outer_fold=pl.lit(k))
        for k in (0, 1)
    ).sort("outer_fold", "participant_id")  # fmt: skip
    assert preds["subject_id"].to_list() == slices["participant_id"].to_list()
    assert preds["score"].to_list() == slices["proba1"].to_list()
    assert preds["y_true"].to_list() == slices["true_label"].cast(pl.Float64).to_list()
    assert preds.group_by("outer_fold").len().sort("outer_fold")["len"].to_list() == [10, 10]


def test_several_slices_per_image_are_refused(tmp_path: Path) -> None:
    maps = Path(shutil.copytree(REAL, tmp_path / "maps"))
    level = maps / "split-0/best-loss/validation/validation_slice_level_prediction.tsv"
    lines = level.read_text().splitlines()
    level.write_text("\n".join([*lines, lines[1]]) + "\n")  # a second slice of one image
    with pytest.raises(SourceError, match="several slices per image, whose soft voting"):
        import_results("clinicadl", maps, tmp_path / "out", options={"validation_as_test": True})
