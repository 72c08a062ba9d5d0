"""Time to write the HTML report of a results directory; prints JSON.

Two simulated runs (``raybench_analysis.simulate_predictions``, written in the results layout with
an ``epochs`` table, as a real run leaves them):

1. quick-start sized: 3 sites x 12 subjects, 2 models, 3 outer folds x 2 seeds (12 trials), one
   perturbation, 4 epochs: the report ``raybench run suites/quickstart.yaml`` ends with.
2. large: 5 models x 20 folds x 100 seeds = 10,000 trials (200 subjects at 10 sites, 2 sessions).

Each is timed end to end as ``raybench report`` does it (open the directory, ``summarize`` with
1,000 bootstrap replicates, figures, HTML, PNG and SVG files), and the rendering alone (figures,
HTML and files from a summary already computed) is reported beside it. The large run is timed
twice: as a run leaves it (one Parquet file per trial and table: 40,000 files) and after
``raybench compact`` (a few batch files; docs/scale.md), with the compaction's own time.

Run: ``.venv/bin/python -m benchmarks.report_speed [--seeds 100] [--folds 20] [--n-boot 1000]
[--no-files]`` (``--no-files``: the large run compacted only).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import polars as pl
from raybench_analysis import load, summarize
from raybench_analysis.report import write_report
from raybench_analysis.simulate import simulate_predictions, write_results_dir

from raybench.store import ResultStore


def make_run(
    root: Path,
    *,
    models: int,
    sites: int,
    subjects_per_site: int,
    folds: int,
    seeds: int,
    sessions: int,
    epochs: int,
) -> int:
    """Write a simulated results directory with an epochs table; return its number of trials."""
    run = simulate_predictions(
        models={f"model_{i}": 1.0 + 0.2 * i for i in range(models)},
        n_sites=sites,
        subjects_per_site=subjects_per_site,
        sessions=sessions,
        n_folds=folds,
        n_seeds=seeds,
        perturbations={"gaussian_noise": [0.1]},
        seed=0,
    )
    write_results_dir(run, root)
    (root / "epochs").mkdir(exist_ok=True)
    ids = run.trials["trial_id"].to_list()
    base = pl.DataFrame({"epoch": list(range(epochs))}).join(
        pl.DataFrame({"split": ["train", "val"]}), how="cross"
    )
    for i, tid in enumerate(ids):
        base.with_columns(
            trial_id=pl.lit(tid),
            loss=1.0 / (1 + pl.col("epoch")) + 0.01 * (i % 7),
            metric=pl.when(pl.col("split") == "val").then(pl.lit("auc")),
            value=pl.when(pl.col("split") == "val").then(0.6 + 0.05 * pl.col("epoch")),
            lr=pl.lit(1e-3),
            seconds=pl.lit(0.1),
        ).write_parquet(root / "epochs" / f"{tid}.parquet")
    return len(ids)


def time_report(root: Path, n_boot: int) -> dict[str, float | int]:
    start = time.perf_counter()
    report = write_report(root, n_boot=n_boot)
    total = time.perf_counter() - start
    summary = summarize(load(root), n_boot=n_boot)
    start = time.perf_counter()
    write_report(root, root / "again" / "index.html", summary=summary)
    render = time.perf_counter() - start
    return {
        "seconds": round(total, 2),
        "render_seconds": round(render, 2),
        "summarize_seconds": round(total - render, 2),
        "figures": len(report.figures) // 2,
        "html_bytes": report.path.stat().st_size,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--folds", type=int, default=20)
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--no-files", action="store_true", help="large run: compacted only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        quick = Path(tmp) / "quick"
        n_quick = make_run(
            quick, models=2, sites=3, subjects_per_site=12, folds=3, seeds=2, sessions=1, epochs=4
        )
        large = Path(tmp) / "large"
        n_large = make_run(
            large,
            models=5,
            sites=10,
            subjects_per_site=20,
            folds=args.folds,
            seeds=args.seeds,
            sessions=2,
            epochs=4,
        )
        files = None if args.no_files else time_report(large, args.n_boot)
        start = time.perf_counter()
        ResultStore(str(large)).compact()
        compact_seconds = round(time.perf_counter() - start, 2)
        result = {
            "benchmark": "report_speed",
            "n_boot": args.n_boot,
            "quickstart": {"trials": n_quick, **time_report(quick, args.n_boot)},
            "large": {"trials": n_large},
            "target": "quick start in seconds; 10,000 trials under 60 s",
            "machine_load": round(os.getloadavg()[0], 1),
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        }
        result["large"] |= {
            "per_trial_files": files,
            "compact_seconds": compact_seconds,
            "compacted": time_report(large, args.n_boot),
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
