"""Known-truth study: a network trained with a shortcut localises the lesion worse (prints JSON).

Two synthetic cohorts share every image but one thing: in the second, a bright marker sits in a
corner of the field of view, outside the head, in 90% of the AD images and 10% of the CN ones
(``params.shortcut``; docs/synthetic.md). The same small CNN (``arch: classifier``, the quick
start's) is trained on each with the same split and seeds, through
:func:`raybench.training.trial.run_trial` as a refit trial, and its test images are explained
(``gradient``, ``integrated_gradients``, ``gradcam``) and scored against the lesion masks.

Reported per cohort and method, over seeds (mean of the per-trial means over the test images with
a lesion): test AUC, localisation AUROC, relevance mass accuracy, Dice of the weakly supervised
segmentation, and the randomisation check's rank correlation. Expected: the shortcut network
reaches a similar or better AUC while its maps move towards the corner, so its localisation and
Dice fall. This needs training (minutes on one core), so the unit tests check the cheap invariants
instead (tests/data/test_shortcut.py: a hand-built network on the marker).

This study uses raybench itself (training, generator), unlike the statistics studies here; run
``python -m analysis.validation.explanation_shortcut [--seeds 0 1] [--epochs 10]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl


def _trial(cohort: Any, seed: int, epochs: int, name: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One refit trial on a fixed subject split; its predictions and explanations."""
    from raybench.plan.spec import TrialSpec
    from raybench.training.trial import TrialContext, run_trial

    ids = cohort.table.sort("subject_id")["sample_id"].to_list()
    n = len(ids)
    train, val, test = ids[: n * 6 // 10], ids[n * 6 // 10 : n * 3 // 4], ids[n * 3 // 4 :]
    methods = [
        {"method": "gradient", "params": {}},
        {"method": "integrated_gradients", "params": {"steps": 16}},
        {"method": "gradcam", "params": {"layer": "auto"}},
    ]
    training = {"epochs": epochs, "batch_size": 8, "optimizer": "adam", "lr": 1e-3,
                "weight_decay": 0.0, "scheduler": "none", "early_stopping": None, "amp": False,
                "num_workers": 0}  # fmt: skip
    explain = {"methods": methods, "samples": len(test), "save_maps": 0,
               "threshold_samples": len(val), "stability": False}  # fmt: skip
    config = {
        "task": {"type": "classification", "label": "diagnosis", "positive": "AD"},
        "model": {"arch": "classifier", "params": {}},
        "training": training,
        "evaluation": {
            "metrics": [],
            "selection_metric": None,
            "perturbations": [],
            "explain": explain,
        },
        "resources": {"cpu": 1, "gpu": 0},
        "plugins": {},
        "suite": "explanation-shortcut",
        "wandb": None,
    }
    spec = TrialSpec(
        trial_id=f"{name}-{seed}", stage="refit", dataset=name, model="cnn", protocol="outer",
        outer_fold=0, inner_fold=None, seed=seed, params={}, candidates=(), config=config,
        train_ids=tuple(train), val_ids=tuple(val), test_ids=tuple(test),
        config_hash="s" * 16, data_fingerprint=cohort.fingerprint,
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as cache:
        out = run_trial(spec, cohort, TrialContext(cache))
    if out.explanations is None:
        raise RuntimeError("the refit trial explained nothing")
    return pl.from_arrow(out.predictions), pl.from_arrow(out.explanations)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the study; print and return its JSON report."""
    from raybench_analysis import auc

    from raybench.data import load_cohort
    from raybench.suite.schema import Shortcut, SyntheticDataset, SyntheticParams

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--subjects", type=int, default=48)
    parser.add_argument("--shape", type=int, default=24)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    base = SyntheticParams(sites=2, subjects=args.subjects, shape=(args.shape,) * 3, effect=1.0)
    marked = base.model_copy(update={"shortcut": Shortcut(ad_rate=0.9, cn_rate=0.1, strength=3.0)})
    report: dict[str, Any] = {"study": "explanation_shortcut", "seeds": args.seeds,
                              "epochs": args.epochs, "subjects": args.subjects,
                              "shape": args.shape, "cohorts": {}}  # fmt: skip
    with tempfile.TemporaryDirectory() as root:
        for name, params in (("clean", base), ("shortcut", marked)):
            dataset = SyntheticDataset(name=name, source="synthetic", params=params)
            cohort = load_cohort(dataset, Path(root), Path(root))
            rows: dict[str, list[float]] = {}
            for seed in args.seeds:
                preds, expl = _trial(cohort, seed, args.epochs, name)
                clean = (pl.col("split") == "test") & (pl.col("perturbation") == "none")
                test = preds.filter(clean)
                rows.setdefault("auc", []).append(auc(test["y_true"], test["score"]))
                finite = expl.filter(pl.col("value").is_finite())
                for (method, metric), part in finite.group_by("method", "metric"):
                    if metric in ("auroc", "mass_accuracy", "dice", "randomisation_spearman"):
                        rows.setdefault(f"{method}/{metric}", []).append(part["value"].mean())
            means = {k: round(float(np.mean(v)), 3) for k, v in sorted(rows.items())}
            report["cohorts"][name] = means
    report["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
