"""Speed of raybench_analysis.bootstrap and memory of lazy loading; prints JSON.

1. Hierarchical bootstrap (site > subject_id) of accuracy per model over 1,000,000 predictions
   (5 models, 20 sites, 2,000 subjects, 100 predictions per subject and model), 2,000
   replicates, against a straightforward pandas loop that resamples sites, then subjects within
   each drawn site, concatenates the drawn rows and computes accuracy, replicate by replicate.
   The loop is timed on a few replicates and extrapolated linearly to 2,000 (stated in the JSON).
2. Peak resident memory of a fresh process that loads a 10,000,000-row predictions table
   (20 Parquet files in the results layout) with ``raybench_analysis.load`` and aggregates
   accuracy per model and site lazily.

Run: ``.venv/bin/python benchmarks/bootstrap_speed.py [--rows 1000000] [--loop-reps 3]
[--lazy-rows 10000000]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
from raybench_analysis import bootstrap


def make_predictions(
    rows: int, models: int = 5, sites: int = 20, subjects: int = 2000, seed: int = 0
) -> pl.DataFrame:
    """``rows`` predictions: every model predicts every subject rows/(models*subjects) times."""
    rng = np.random.default_rng(seed)
    per_model = rows // models
    subject = np.arange(per_model) % subjects
    frames = []
    for m in range(models):
        y = (subject % 2).astype(np.float64)
        correct = rng.random(per_model) < 0.7 + 0.02 * m + 0.05 * rng.normal(size=subjects)[subject]
        frames.append(
            pl.DataFrame(
                {
                    "model": np.full(per_model, f"model-{m}"),
                    "site": np.char.add("site-", (subject % sites).astype(str)),
                    "subject_id": np.char.add("sub-", subject.astype(str)),
                    "y_true": y,
                    "y_pred": np.where(correct, y, 1 - y),
                    "score": rng.random(per_model),  # incompressible, like real scores
                }
            )
        )
    return pl.concat(frames)


def pandas_loop(frame: pl.DataFrame, reps: int, seed: int = 0) -> tuple[float, float, list[float]]:
    """Wall and CPU seconds per replicate (all models) of the straightforward pandas loop."""
    pdf = frame.to_pandas()
    rng = np.random.default_rng(seed)
    prepared = []
    for model, part in pdf.groupby("model"):  # grouping once is not counted per replicate
        by_subject = {k: g for k, g in part.groupby("subject_id")}
        subjects_of = {s: g["subject_id"].unique() for s, g in part.groupby("site")}
        prepared.append((model, by_subject, subjects_of))
    import pandas as pd

    values = []
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(reps):
        for _model, by_subject, subjects_of in prepared:
            sites = list(subjects_of)
            pieces = []
            for site in rng.choice(sites, size=len(sites), replace=True):
                members = subjects_of[site]
                for subj in rng.choice(members, size=len(members), replace=True):
                    pieces.append(by_subject[subj])
            sample = pd.concat(pieces)
            values.append(float((sample["y_true"] == sample["y_pred"]).mean()))
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return wall / reps, cpu / reps, values


LAZY_CHILD = """
import json, sys, time

def peak_mb():  # VmHWM: high-water RSS of this process image (ru_maxrss survives fork+exec)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

import polars as pl
from raybench_analysis import load
base = peak_mb()
t = time.perf_counter()
res = load(sys.argv[1])
out = (res.predictions.group_by("model", "site")
       .agg(accuracy=(pl.col("y_true") == pl.col("y_pred")).mean(),
            mean_score=pl.col("score").mean(), n=pl.len())
       .collect())
print(json.dumps({"seconds": time.perf_counter() - t, "groups": out.height,
                  "rows": int(out["n"].sum()), "peak_rss_mb": peak_mb(),
                  "rss_after_imports_mb": base}))
"""


def lazy_memory(rows: int, files: int = 20) -> dict:
    """Write ``rows`` predictions as ``files`` committed trials; measure a fresh lazy reader."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "trials").mkdir()
        (root / "predictions").mkdir()
        per = rows // files
        for i in range(files):
            tid = f"trial-{i:03d}"
            part = make_predictions(per, models=1, seed=i).with_columns(
                trial_id=pl.lit(tid), model=pl.lit(f"model-{i % 5}")
            )
            part.write_parquet(root / "predictions" / f"{tid}.parquet")
            pl.DataFrame({"trial_id": [tid], "status": ["completed"]}).write_parquet(
                root / "trials" / f"{tid}.parquet"
            )
        size = sum(f.stat().st_size for f in (root / "predictions").iterdir())
        done = subprocess.run(
            [sys.executable, "-c", LAZY_CHILD, str(root)],
            check=True,
            capture_output=True,
            text=True,
        )
        out = json.loads(done.stdout)
        out["parquet_mb"] = size / 2**20
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--n-boot", type=int, default=2000)
    parser.add_argument("--loop-reps", type=int, default=3)
    parser.add_argument("--lazy-rows", type=int, default=10_000_000)
    args = parser.parse_args()

    frame = make_predictions(args.rows)
    start, cpu = time.perf_counter(), time.process_time()
    out = bootstrap(
        frame,
        metric="accuracy",
        levels=["site", "subject_id"],
        by="model",
        n_boot=args.n_boot,
        seed=0,
    )
    ours, ours_cpu = time.perf_counter() - start, time.process_time() - cpu
    per_rep, per_rep_cpu, loop_values = pandas_loop(frame, args.loop_reps)
    loop_total = per_rep * args.n_boot
    result = {
        "rows": frame.height,
        "models": frame["model"].n_unique(),
        "sites": frame["site"].n_unique(),
        "subjects": frame["subject_id"].n_unique(),
        "n_boot": args.n_boot,
        "levels": "site>subject_id",
        "metric": "accuracy",
        "raybench_seconds": ours,
        "raybench_cpu_seconds": ours_cpu,
        "pandas_loop_seconds_per_replicate": per_rep,
        "pandas_loop_replicates_timed": args.loop_reps,
        "pandas_loop_cpu_seconds_per_replicate": per_rep_cpu,
        "pandas_loop_seconds_extrapolated": loop_total,
        "extrapolation": f"linear: {args.loop_reps} replicates timed, x {args.n_boot}",
        "speedup": loop_total / ours,
        "speedup_cpu": per_rep_cpu * args.n_boot / ours_cpu,
        "load_average_1min": os.getloadavg()[0],
        "cpu_count": os.cpu_count(),
        "raybench_se": out["se"].to_list(),
        "pandas_loop_first_values": loop_values[:5],
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
    }
    if args.lazy_rows:
        result["lazy_load_aggregate"] = lazy_memory(args.lazy_rows)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
