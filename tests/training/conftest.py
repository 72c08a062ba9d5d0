"""A tiny real cohort for the training tests: 16^3 NIfTI volumes written with nibabel."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import polars as pl
import pytest

from raybench.data.cohort import Cohort
from raybench.plan.spec import TrialSpec

SHAPE = (16, 16, 16)


def write_cohort(
    root: Path, n: int = 8, shape: tuple[int, int, int] = SHAPE, seed: int = 0
) -> Cohort:
    """``n`` subjects on 2 sites; AD subjects have a bright blob that is also their lesion mask."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    zz, yy, xx = np.meshgrid(*(np.arange(s) for s in shape), indexing="ij")
    brain = ((zz - shape[0] / 2) ** 2 + (yy - shape[1] / 2) ** 2 + (xx - shape[2] / 2) ** 2) < (
        shape[0] * 0.4
    ) ** 2
    for i in range(n):
        ad = i % 2 == 1
        img = brain * (1.0 + 0.1 * rng.standard_normal(shape))
        mask = np.zeros(shape, dtype=np.uint8)
        if ad:
            c = np.array(shape) // 2 + rng.integers(-2, 3, size=3)
            blob = ((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2) < 9
            img = img + 1.5 * blob
            mask[blob] = 1
        affine = np.eye(4)
        nib.save(nib.Nifti1Image(img.astype(np.float32), affine), root / f"sub-{i:02d}.nii.gz")
        nib.save(nib.Nifti1Image(mask, affine), root / f"sub-{i:02d}_mask.nii.gz")
        rows.append(
            {
                "sample_id": f"sub-{i:02d}_ses-1",
                "subject_id": f"sub-{i:02d}",
                "session_id": "ses-1",
                "scanner": f"scanner-{i % 2}",
                "site": f"site-{i % 2}",
                "image": str(root / f"sub-{i:02d}.nii.gz"),
                "mask": str(root / f"sub-{i:02d}_mask.nii.gz"),
                "diagnosis": "AD" if ad else "CN",
                "grade": ["a", "b", "c"][i % 3],
                "age": float(60 + 2 * i + (5 if ad else 0)),
            }
        )
    table = pl.DataFrame(rows)
    digest = hashlib.sha256()
    for row in rows:
        for key in ("image", "mask"):
            digest.update(Path(row[key]).read_bytes())
    return Cohort(name="tiny", table=table, fingerprint=digest.hexdigest())


@pytest.fixture(scope="session")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Cohort:
    return write_cohort(tmp_path_factory.mktemp("cohort"))


def make_spec(
    cohort: Cohort,
    *,
    task: dict[str, Any] | None = None,
    model: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
    evaluation: dict[str, Any] | None = None,
    plugins: dict[str, str] | None = None,
    stage: str = "refit",
    seed: int = 0,
    trial_id: str = "t0",
) -> TrialSpec:
    """A trial on the tiny cohort: 4 train, 2 val, 2 test subjects (balanced classes)."""
    ids = cohort.table["sample_id"].to_list()
    train, val, test = ids[:4], ids[4:6], ids[6:8]
    config = {
        "task": task or {"type": "classification", "label": "diagnosis", "positive": "AD"},
        "model": model or {"arch": "classifier", "params": {"channels": [4, 8], "strides": [2, 2]}},
        "training": {
            "epochs": 2,
            "batch_size": 2,
            "optimizer": "adam",
            "lr": 1e-3,
            "weight_decay": 0.0,
            "scheduler": "none",
            "early_stopping": None,
            "amp": True,
            "num_workers": 0,
            **(training or {}),
        },
        "evaluation": {"metrics": [], "selection_metric": None, "perturbations": []}
        | (evaluation or {}),
        "resources": {"cpu": 1, "gpu": 0},
        "plugins": plugins or {},
        "suite": "tiny-suite",
        "wandb": None,
    }
    return TrialSpec(
        trial_id=trial_id,
        stage=stage,  # type: ignore[arg-type]
        dataset=cohort.name,
        model="m",
        protocol="outer",
        outer_fold=0,
        inner_fold=None if stage == "refit" else 0,
        seed=seed,
        params={},
        candidates=(),
        config=config,
        train_ids=tuple(train),
        val_ids=tuple(val),
        test_ids=tuple(test) if stage == "refit" else (),
        config_hash="c" * 16,
        data_fingerprint=cohort.fingerprint,
    )


@pytest.fixture
def spec_of() -> Any:
    """The :func:`make_spec` factory (test modules cannot import conftest by name)."""
    return make_spec


@pytest.fixture
def cohort_of() -> Any:
    """The :func:`write_cohort` factory (a cohort of another size than the shared one)."""
    return write_cohort
