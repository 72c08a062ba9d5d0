"""``nnunet``: nnU-Net v2 cross-validation results -> per-case Dice per label.

nnU-Net v2 (``nnunetv2``, checked against 2.x source: ``nnunetv2/evaluation/
evaluate_predictions.py`` and ``nnUNetTrainer.perform_actual_validation``) writes, per trained
configuration, ``<Dataset>/<trainer>__<plans>__<configuration>/fold_<k>/validation/summary.json``
after training fold ``k``: ``metric_per_case`` lists, per validation case, its
``prediction_file``, ``reference_file`` and ``metrics`` keyed by label (or region, ``"(1, 2)"``)
with ``Dice``, ``IoU``, ``TP``, ``FP``, ``FN``, ``TN``, ``n_pred``, ``n_ref``. The trainer folder
also holds ``dataset.json`` (label names, file ending) and ``plans.json``.

Mapping: the SOURCE is a trainer folder (with ``fold_<k>/``) or a dataset folder holding several;
each ``trainer__plans__configuration`` is a model, ``fold_<k>`` its ``outer_fold`` (seed 0: nnU-Net
trains one model per fold), and each label a dataset ``<dataset>/<label name>``, so that
``raybench analyze`` gives one table per label. A case is a sample whose ``dice`` is the label's
Dice; its subject, session, site and scanner come from ``--participants`` (by ``case_id``; else the
case is its own subject). The validation fold is nnU-Net's held-out fold, stored with split
``test``. ``splits_final.json`` (nnU-Net writes it in the preprocessed folder: copy it into the
source or pass ``splits=``) gives the train role of each fold, so the leakage check runs at the
subject level: nnU-Net splits cases, and two cases of one patient in train and validation of one
fold is leakage.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import polars as pl

from raybench.importers.base import (
    FILE,
    LINE,
    ImportedTrial,
    ImportSource,
    JoinNotes,
    Participants,
    SourceError,
    constant_params,
    hash_files,
    located,
)

__all__ = ["read_nnunet"]

_FOLD = re.compile(r"^fold_(\d+)$")
_ENDINGS = (".nii.gz", ".nii", ".nrrd", ".mha", ".png", ".tif", ".tiff", ".bmp")


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise located(path, None, None, f"unreadable JSON ({exc})") from None


def _trainer_folders(root: Path) -> list[Path]:
    def has_folds(p: Path) -> bool:
        return any(_FOLD.match(c.name) and c.is_dir() for c in p.iterdir())

    if not root.is_dir():
        raise SourceError(f"{root}: no such folder (give an nnU-Net trainer or dataset folder)")
    if has_folds(root):
        return [root]
    found = sorted(c for c in root.iterdir() if c.is_dir() and "__" in c.name and has_folds(c))
    if not found:
        raise SourceError(
            f"{root}: neither a trainer folder (with fold_<k>/validation/summary.json) nor a "
            "dataset folder holding <trainer>__<plans>__<configuration> folders"
        )
    return found


def _case_id(path: str, ending: str | None) -> str:
    name = Path(path).name
    for end in (ending, *_ENDINGS):
        if end and name.endswith(end):
            return name[: -len(end)]
    return name


def _label_names(dataset_json: dict[str, Any] | None) -> dict[str, str]:
    """summary.json label key (``"1"``, ``"(1, 2)"``) -> name from dataset.json ``labels``."""
    names: dict[str, str] = {}
    for name, value in (dataset_json or {}).get("labels", {}).items():
        if isinstance(value, list | tuple):
            key = str(tuple(int(v) for v in value)) if len(value) > 1 else str(int(value[0]))
        else:
            key = str(int(value))
        names[key] = name
    return names


def _find_splits(folder: Path, given: Path | None) -> Path | None:
    if given is not None:
        if not given.is_file():
            raise SourceError(f"--splits {given}: no such file")
        return given
    for candidate in (folder / "splits_final.json", folder.parent / "splits_final.json"):
        if candidate.is_file():
            return candidate
    return None


def _split_rows(path: Path, fold: int) -> pl.DataFrame:
    splits = _load_json(path)
    if not isinstance(splits, list) or fold >= len(splits) or not isinstance(splits[fold], dict):
        raise located(path, None, None, f"no fold {fold} (a list of {{train, val}} per fold)")
    rows = []
    for role, key in (("train", "train"), ("test", "val")):
        for case in splits[fold].get(key, []):
            rows.append({"sample_id": str(case), "role": role, FILE: f"{path} fold {fold}"})
    frame = pl.DataFrame(rows, schema={"sample_id": pl.String, "role": pl.String, FILE: pl.String})
    return frame.with_columns(pl.lit(None, pl.Int64).alias(LINE))


def _cases(summary_path: Path, ending: str | None) -> list[dict[str, Any]]:
    summary = _load_json(summary_path)
    cases = summary.get("metric_per_case") if isinstance(summary, dict) else None
    if not isinstance(cases, list):
        raise located(summary_path, None, "metric_per_case", "missing: not an nnU-Net summary")
    rows = []
    for i, case in enumerate(cases):
        where = f"metric_per_case[{i}]"
        file = case.get("prediction_file") or case.get("reference_file")
        if not file:
            raise located(summary_path, None, where, "no prediction_file or reference_file")
        for label, metrics in (case.get("metrics") or {}).items():
            if "Dice" not in metrics:
                raise located(summary_path, None, f"{where}.metrics.{label}", "no 'Dice'")
            dice = metrics["Dice"]
            dice = None if dice is None or (isinstance(dice, float) and math.isnan(dice)) else dice
            rows.append(
                {
                    "sample_id": _case_id(file, ending),
                    "label": str(label),
                    "dice": None if dice is None else float(dice),
                    FILE: f"{summary_path} {where}.metrics.{label}",
                    LINE: None,
                }
            )
    return rows


def read_nnunet(
    path: str | Path,
    *,
    participants: Participants | None = None,
    name: str | None = None,
    dataset: str | None = None,
    splits: str | Path | None = None,
) -> ImportSource:
    """Read an nnU-Net v2 trainer or dataset folder into trials (see the module doc)."""
    root = Path(path)
    folders = _trainer_folders(root)
    notes: list[str] = []
    joins = JoinNotes(participants)
    trials: list[ImportedTrial] = []
    for folder in folders:
        dataset_json_path = folder / "dataset.json"
        dataset_json = _load_json(dataset_json_path) if dataset_json_path.is_file() else None
        plans_path = folder / "plans.json"
        plans = _load_json(plans_path) if plans_path.is_file() else {}
        ending = (dataset_json or {}).get("file_ending")
        names = _label_names(dataset_json)
        parts = folder.name.split("__")
        trainer, plans_name, config = [*parts, "", "", ""][:3]
        model = folder.name
        if name is not None:
            model = name if len(folders) == 1 else f"{name}:{folder.name}"
        base = dataset or folder.parent.name or "nnunet"
        conf = (plans.get("configurations") or {}).get(config, {}) if plans else {}
        params = constant_params(
            {
                "trainer": trainer,
                "plans": plans_name,
                "configuration": config,
                "batch_size": conf.get("batch_size"),
                "patch_size": conf.get("patch_size"),
                "spacing": conf.get("spacing"),
            }
        )
        split_file = _find_splits(folder, Path(splits) if splits is not None else None)
        if split_file is None:
            notes.append(
                f"{folder.name}: no splits_final.json in the source (nnU-Net keeps it in "
                "nnUNet_preprocessed/<Dataset>/): training cases unknown, leakage not checked"
            )
        folds = sorted((int(m.group(1)), c) for c in folder.iterdir() if (m := _FOLD.match(c.name)))
        for fold, fold_dir in folds:
            summary_path = fold_dir / "validation" / "summary.json"
            if not summary_path.is_file():
                notes.append(f"{fold_dir}: no validation/summary.json (fold not finished?)")
                continue
            rows = _cases(summary_path, ending)
            frame = pl.DataFrame(
                rows,
                schema={
                    "sample_id": pl.String,
                    "label": pl.String,
                    "dice": pl.Float64,
                    FILE: pl.String,
                    LINE: pl.Int64,
                },
            )
            frame = frame.with_columns(subject_id=pl.col("sample_id"))
            frame = joins.join(frame, _join_key(participants), "case")
            undefined = frame.filter(pl.col("dice").is_null())
            if undefined.height:
                notes.append(
                    f"{folder.name} fold {fold}: {undefined.height} (case, label) pair(s) with "
                    "Dice NaN (empty reference and prediction) left out, as nnU-Net's mean does"
                )
            files = [summary_path, *(p for p in (dataset_json_path, plans_path) if p.is_file())]
            role_rows = None
            if split_file is not None:
                role_rows = _split_rows(split_file, fold)
                files.append(split_file)
                role_rows = _roles_with_subjects(role_rows, joins)
                tested = role_rows.filter(pl.col("role") == "test")
                extra = frame.join(tested, on="sample_id", how="anti")
                if extra.height:
                    case = extra.row(0, named=True)
                    raise located(
                        summary_path,
                        None,
                        "metric_per_case",
                        f"case {case['sample_id']!r} is not in the validation cases of fold {fold} "
                        f"of {split_file}: the summary and the split file disagree",
                    )
            hashed = hash_files(files, root)
            for label, part in frame.filter(pl.col("dice").is_not_null()).group_by(
                "label", maintain_order=True
            ):
                label_name = names.get(str(label[0]), f"label-{label[0]}")
                trials.append(
                    ImportedTrial(
                        model=model,
                        dataset=f"{base}/{label_name}",
                        task="segmentation",
                        outer_fold=fold,
                        seed=0,
                        params={**params, "label": str(label[0])},
                        predictions=part.with_columns(
                            split=pl.lit("test"),
                            perturbation=pl.lit("none"),
                            perturbation_type=pl.lit("none"),
                        ),
                        files=hashed,
                        splits=role_rows,
                        key={"label": str(label[0])},
                        columns={"dice": "Dice", "subject_id": "case (prediction_file)"},
                    )
                )
    notes.extend(joins.notes())
    mapping = {"_dataset": dataset, "_name": name, "_splits": str(splits) if splits else None}
    return ImportSource("nnunet", root.resolve(), trials, mapping, None, notes)


def _join_key(participants: Participants | None) -> str:
    """Join cases on ``case_id``/``sample_id`` when the table has it, else on the subject id."""
    if participants is not None and "sample_id" in participants.frame.columns:
        return "sample_id"
    return "subject_id"


def _roles_with_subjects(roles: pl.DataFrame, joins: JoinNotes) -> pl.DataFrame:
    """The split file's rows with each case's subject (and site), from participants when given."""
    frame = roles.with_columns(subject_id=pl.col("sample_id"))
    frame = joins.join(frame, _join_key(joins.participants), "case")
    for column in ("session_id", "site"):
        if column not in frame.columns:
            frame = frame.with_columns(pl.lit(None, pl.String).alias(column))
    return frame.select("sample_id", "subject_id", "session_id", "site", "role", FILE, LINE)
