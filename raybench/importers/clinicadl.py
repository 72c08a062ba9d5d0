"""``clinicadl``: a ClinicaDL MAPS folder -> trials, predictions, splits and epochs.

Layout read (ClinicaDL 1.x MAPS, checked against 1.6.1's ``MapsManager``; older MAPS with
``fold-<i>`` folders are read the same way)::

    <maps>/maps.json                                  training parameters (network_task, mode,
                                                      label, label_code, selection_metrics, ...)
    <maps>/environment.txt                            pip freeze (gives the ClinicaDL version)
    <maps>/groups/train/split-<i>/data.tsv            who was trained on in split i
    <maps>/groups/validation/split-<i>/data.tsv       who selected the model of split i
    <maps>/groups/<data_group>/data.tsv               other data groups (test sets)
    <maps>/split-<i>/training_logs/training.tsv       per-epoch train/valid metrics
    <maps>/split-<i>/best-<metric>/<data_group>/<data_group>_image_level_prediction.tsv
    <maps>/split-<i>/best-<metric>/<data_group>/<data_group>_<mode>_level_prediction.tsv

In ``slice``, ``patch`` and ``roi`` modes ClinicaDL 1.6.1 writes the image-level file without
``participant_id``/``session_id`` (its soft-voting result loses them: seen in a MAPS that 1.6.1
wrote, tests/importers/fixtures/clinicadl/maps_shepplogan/); the ``<mode>``-level file is then
read instead when it holds one row per image (one slice, patch or ROI), and refused when it holds
several (ClinicaDL's weighted soft voting is not redone here).

Mapping: split ``i`` -> ``outer_fold`` (seed from ``maps.json``); each ``best-<metric>`` -> a model
``<name>:best-<metric>`` (``name``: the MAPS folder's name unless given); each data group -> one
trial per (split, selection) with ``dataset`` = the group's name, except ``validation`` (the data
the epoch was selected on), which keeps the MAPS's dataset name and split ``val`` unless
``validation_as_test``; ``train`` predictions are not imported. The splits table of each trial
holds the train and validation rows of its split and the test group's rows, so the leakage check
proves from the MAPS's own files that no subject crossed them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import polars as pl
from raybench_analysis.vocabulary import LOWER_IS_BETTER

from raybench.importers.base import (
    FILE,
    LINE,
    ImportedTrial,
    ImportSource,
    JoinNotes,
    Participants,
    SourceError,
    cast_number,
    constant_params,
    did_you_mean,
    hash_files,
    located,
    read_delimited,
)

__all__ = ["read_maps"]

#: The data groups ClinicaDL writes per split, in role order (train, then validation).
GROUPS = ("train", "validation")
_SPLIT = re.compile(r"^(split|fold)-(\d+)$")
_TASKS = {"classification": "classification", "regression": "regression"}
#: maps.json keys copied into the trial params (training hyper-parameters, not paths).
_PARAMS = (
    "architecture", "dropout", "mode", "network_task", "label", "loss", "optimizer",
    "learning_rate", "weight_decay", "epochs", "batch_size", "patience", "tolerance",
    "accumulation_steps", "data_augmentation", "normalize", "sampler", "baseline", "seed",
    "deterministic", "n_splits", "selection_threshold", "transfer_path", "diagnoses",
)  # fmt: skip


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise SourceError(f"{path}: missing; is {path.parent} a ClinicaDL MAPS folder?")
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise located(path, None, None, f"unreadable JSON ({exc})") from None
    if not isinstance(content, dict):
        raise located(path, None, None, "not a JSON object")
    return content


def _tool_version(maps: Path) -> str | None:
    env = maps / "environment.txt"
    if not env.is_file():
        return None
    for line in env.read_text(errors="replace").splitlines():
        if line.lower().startswith("clinicadl=="):
            return line.split("==", 1)[1].strip()
    return None


def _read_group(path: Path, role: str) -> pl.DataFrame:
    """A ``data.tsv`` of a data group as split rows (its unnamed index column ignored)."""
    frame = read_delimited(path)
    for column in ("participant_id", "session_id"):
        if column not in frame.columns:
            raise located(
                path, 1, None, f"no {column!r} column" + did_you_mean(column, frame.columns[:-2])
            )
    return frame.select(
        pl.concat_str("participant_id", "session_id", separator="_").alias("sample_id"),
        pl.col("participant_id").alias("subject_id"),
        "session_id",
        pl.lit(None, pl.String).alias("site"),
        pl.lit(role).alias("role"),
        FILE,
        LINE,
    )


def _epochs(path: Path, metric: str) -> tuple[pl.DataFrame | None, int | None, float | None]:
    """(epochs rows, best epoch, its validation value) of ``training.tsv`` for ``metric``."""
    if not path.is_file():
        return None, None, None
    frame = read_delimited(path)
    needed = ["epoch", "time", "loss_train", "loss_valid", f"{metric}_valid"]
    if any(c not in frame.columns for c in needed):
        return None, None, None
    for column in needed:
        frame = cast_number(frame, column, column)
    last = frame.group_by("epoch", maintain_order=True).last().sort("epoch")
    seconds = pl.col("time").diff().fill_null(pl.col("time"))
    train = last.select(
        pl.col("epoch").cast(pl.Int64),
        pl.lit("train").alias("split"),
        pl.col("loss_train").alias("loss"),
        seconds.alias("seconds"),
    )
    val = last.select(
        pl.col("epoch").cast(pl.Int64),
        pl.lit("val").alias("split"),
        pl.col("loss_valid").alias("loss"),
        pl.lit(metric).alias("metric"),
        pl.col(f"{metric}_valid").alias("value"),
        seconds.alias("seconds"),
    )
    values = last.get_column(f"{metric}_valid")
    best = values.arg_min() if metric.lower() in LOWER_IS_BETTER else values.arg_max()
    if best is None:
        return None, None, None
    epochs = pl.concat([train, val], how="diagonal_relaxed").sort("epoch", "split")
    return epochs, int(last["epoch"][best]), float(values[best])


def _prediction_file(group_dir: Path, group: str, mode: str) -> Path | None:
    """The per-image predictions of a data group: the image-level file, or the mode-level one.

    ClinicaDL 1.6.1 writes the image level of ``slice``/``patch``/``roi`` modes without ids; its
    ``<mode>``-level file has them and is used when it holds one row per image.
    """
    image = group_dir / f"{group}_image_level_prediction.tsv"
    if not image.is_file():
        return None
    if "participant_id" in read_delimited(image).columns:
        return image
    level = group_dir / f"{group}_{mode}_level_prediction.tsv"
    if mode == "image" or not level.is_file():
        return image  # _predictions names the missing column
    rows = read_delimited(level)
    ids = [c for c in ("participant_id", "session_id") if c in rows.columns]
    if len(ids) == 2 and rows.select(ids).is_duplicated().any():
        raise located(
            image,
            1,
            None,
            f"no 'participant_id' column (ClinicaDL 1.6.1 drops the ids of {mode}-mode image "
            f"predictions) and {level.name} has several {mode}s per image, whose soft voting "
            "the import does not redo; export one row per image (e.g. `clinicadl predict` in "
            "image mode) or use the table format",
        )
    return level


def _predictions(
    path: Path, task: str, label_code: dict[str, int], positive: str | None
) -> pl.DataFrame:
    """An ``<group>_image_level_prediction.tsv`` as contract prediction rows (checked)."""
    frame = read_delimited(path)
    needed = ["participant_id", "session_id", "true_label", "predicted_label"]
    for column in needed:
        if column not in frame.columns:
            raise located(
                path, 1, None, f"no {column!r} column" + did_you_mean(column, frame.columns[:-2])
            )
    for column in ("true_label", "predicted_label"):
        frame = cast_number(frame, column, column)
    out = frame.select(
        pl.concat_str("participant_id", "session_id", separator="_").alias("sample_id"),
        pl.col("participant_id").alias("subject_id"),
        "session_id",
        FILE,
        LINE,
    )
    if task == "regression":
        return out.with_columns(y_true=frame["true_label"], y_pred=frame["predicted_label"])
    codes = sorted(float(v) for v in label_code.values())
    for column in ("true_label", "predicted_label"):
        bad = ~frame[column].is_in(codes) & frame[column].is_not_null()
        if bad.any():
            i = int(bad.arg_max() or 0)
            raise located(
                path,
                int(frame[LINE][i]),
                column,
                f"unknown label {frame[column][i]!r}; maps.json label_code is {label_code}",
            )
    proba = sorted(
        (c for c in frame.columns if re.fullmatch(r"proba\d+", c)), key=lambda c: int(c[5:])
    )
    if len(proba) != len(codes):
        raise located(
            path,
            1,
            None,
            f"{len(proba)} proba<i> column(s) for {len(codes)} classes of label_code {label_code}",
        )
    for column in proba:
        frame = cast_number(frame, column, column)
    probs = pl.concat_list(frame.select(proba).to_series(i) for i in range(len(proba)))
    out = out.with_columns(
        y_true=frame["true_label"],
        y_pred=frame["predicted_label"],
        probs=frame.select(probs.alias("p")).to_series(),
    )
    if len(codes) != 2:
        return out
    pos = label_code[positive] if positive is not None else 1
    flip = pos == 0
    score = frame[f"proba{pos}"]
    out = out.with_columns(score=score)
    if flip:  # the positive class is code 0: index it 1, as a raybench classification does
        out = out.with_columns(
            y_true=1 - pl.col("y_true"),
            y_pred=1 - pl.col("y_pred"),
            probs=pl.col("probs").list.reverse(),
        )
    return out


def _split_rows(roles: list[pl.DataFrame], joins: JoinNotes) -> pl.DataFrame | None:
    """The split rows of one trial (train, validation, test lists), sites joined when known."""
    if not roles:
        return None
    rows = pl.concat(roles, how="vertical_relaxed")
    rows = joins.join(rows, "subject_id", "subject")
    return rows.select("sample_id", "subject_id", "session_id", "site", "role", FILE, LINE)


def read_maps(
    path: str | Path,
    *,
    participants: Participants | None = None,
    name: str | None = None,
    dataset: str | None = None,
    positive: str | None = None,
    validation_as_test: bool = False,
) -> ImportSource:
    """Read a ClinicaDL MAPS folder into trials (see the module doc).

    ``positive``: the class whose probability is the ``score`` of a binary task (default: the
    class of code 1 in ``label_code``); ``dataset``: the name of the training data (default: the
    CAPS folder's name in ``maps.json``).
    """
    maps = Path(path)
    if not maps.is_dir():
        raise SourceError(f"{maps}: no such folder (give a ClinicaDL MAPS folder)")
    params_path = maps / "maps.json"
    parameters = _read_json(params_path)
    raw_task = parameters.get("network_task", "classification")
    if raw_task not in _TASKS:
        raise located(
            params_path,
            None,
            "network_task",
            f"{raw_task!r} cannot be imported (only {sorted(_TASKS)}: raybench has no "
            "reconstruction task)",
        )
    task = _TASKS[raw_task]
    label_code = {str(k): int(v) for k, v in (parameters.get("label_code") or {}).items()}
    if task == "classification" and not label_code:
        raise located(params_path, None, "label_code", "missing: the classes cannot be named")
    if positive is not None and positive not in label_code:
        raise SourceError(
            f"--positive {positive!r} is not a class of {params_path}'s label_code"
            + did_you_mean(positive, label_code)
        )
    base_name = name or maps.name
    train_name = dataset or Path(str(parameters.get("caps_directory") or maps.name)).name
    seed = parameters.get("seed")
    seed = int(seed) if isinstance(seed, int | float) else 0
    params = constant_params({k: parameters[k] for k in _PARAMS if k in parameters})
    if task == "classification":
        params["label_code"] = json.dumps(label_code, sort_keys=True)
    if task == "classification" and len(label_code) == 2:
        params["positive"] = positive or next(k for k, v in label_code.items() if v == 1)
    notes: list[str] = []
    joins = JoinNotes(participants)
    splits = sorted(
        (int(m.group(2)), child)
        for child in maps.iterdir()
        if (m := _SPLIT.match(child.name)) and child.is_dir()
    )
    if not splits:
        raise SourceError(f"{maps}: no split-<i> folder: no trained model in this MAPS")
    trials: list[ImportedTrial] = []
    group_files = {}
    for fold, split_dir in splits:
        word = split_dir.name.split("-")[0]
        roles = []
        for group, role in zip(GROUPS, ("train", "val"), strict=True):
            data = maps / "groups" / group / f"{word}-{fold}" / "data.tsv"
            if data.is_file():
                roles.append(_read_group(data, role))
                group_files[(group, fold)] = data
        if not roles:
            notes.append(
                f"{split_dir.name}: no groups/train|validation/{split_dir.name}/data.tsv: "
                "training subjects unknown, leakage not checked"
            )
        for best in sorted(
            p for p in split_dir.iterdir() if p.name.startswith("best-") and p.is_dir()
        ):
            metric = best.name[len("best-") :]
            epochs, best_epoch, val_score = _epochs(
                split_dir / "training_logs" / "training.tsv", metric
            )
            for group_dir in sorted(p for p in best.iterdir() if p.is_dir()):
                group = group_dir.name
                if group == "train":
                    continue
                pred_path = _prediction_file(group_dir, group, str(parameters.get("mode")))
                if pred_path is None:
                    notes.append(f"{group_dir}: no {group}_image_level_prediction.tsv; skipped")
                    continue
                preds = _predictions(pred_path, task, label_code, positive)
                if preds.height == 0:
                    notes.append(f"{pred_path}: no rows; group skipped")
                    continue
                is_val = group == "validation"
                split_value = "test" if (not is_val or validation_as_test) else "val"
                preds = preds.with_columns(
                    split=pl.lit(split_value),
                    perturbation=pl.lit("none"),
                    perturbation_type=pl.lit("none"),
                )
                preds = joins.join(preds, "subject_id", "subject")
                files = [params_path, pred_path, *(group_files.get((g, fold)) for g in GROUPS)]
                trial_roles = list(roles)
                if is_val and validation_as_test:
                    as_test = pl.col("role").replace("val", "test")
                    trial_roles = [r.with_columns(role=as_test) for r in roles]
                if not is_val:
                    data = maps / "groups" / group / "data.tsv"
                    if data.is_file():
                        trial_roles.append(_read_group(data, "test"))
                        files.append(data)
                    else:
                        notes.append(f"{data}: missing; the test group's own list is not checked")
                split_rows = _split_rows(trial_roles, joins)
                if split_rows is not None:
                    listed = split_rows.filter(pl.col("role") != "train")
                    missing = preds.join(listed, on="sample_id", how="anti")
                    if missing.height:
                        notes.append(
                            f"{pred_path}: {missing.height} prediction(s) not listed in the "
                            f"group's data.tsv, e.g. {missing['sample_id'][0]}"
                        )
                epochs_path = split_dir / "training_logs" / "training.tsv"
                if epochs is not None:
                    files.append(epochs_path)
                trials.append(
                    ImportedTrial(
                        model=f"{base_name}:{best.name}",
                        dataset=train_name if is_val else group,
                        task=task,
                        outer_fold=fold,
                        seed=seed,
                        params={**params, "selection_metric": metric, "data_group": group},
                        predictions=preds,
                        files=hash_files([f for f in files if f is not None], maps),
                        splits=split_rows,
                        epochs=epochs,
                        key={"data_group": group},
                        columns={
                            "subject_id": "participant_id",
                            "score": "proba<positive>",
                            "probs": "proba<i>",
                            "y_true": "true_label",
                        },
                        best_epoch=best_epoch,
                        val_score=val_score,
                    )
                )
    notes.extend(joins.notes())
    mapping = {
        "_name": name,
        "_dataset": dataset,
        "_positive": positive,
        "_validation_as_test": validation_as_test,
    }
    if not validation_as_test and all(t.predictions["split"][0] == "val" for t in trials):
        notes.append(
            "only the validation group was found: its predictions are imported with split 'val' "
            "(the epoch was selected on them), which raybench analyze does not score; import "
            "with --validation-as-test to analyse them anyway (optimistic), or run "
            "`clinicadl predict` on a test group first"
        )
    return ImportSource("clinicadl", maps.resolve(), trials, mapping, _tool_version(maps), notes)
