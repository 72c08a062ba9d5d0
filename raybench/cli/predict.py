"""``raybench predict RESULTS --dataset NAME``: a finished run's saved models on new data.

The dataset is one declared in the run's saved suite (``RESULTS/suite.yaml``; its relative paths
are read from the current directory), in a suite given with ``--suite`` (paths relative to that
file), or a manifest given with ``--manifest`` (named ``NAME``). Nothing is retrained: each saved
refit model (``training.save_model: best``) is checked against its recorded sha256 and evaluated
through Ray; entries already committed are skipped. See docs/predict.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from raybench.cli.common import (
    CacheDirOption,
    DataRootOption,
    JsonFlag,
    NoPluginsFlag,
    console,
    say,
)
from raybench.cli.prepare import check_plugins
from raybench.cli.prepare import data_root as resolve_data_root
from raybench.cli.run import AddressOption, NumCpusOption
from raybench.errors import DataError, ResultsError

if TYPE_CHECKING:
    from raybench.data.cohort import Cohort
    from raybench.store import ResultStore


def _cohort(
    store: ResultStore,
    name: str,
    suite_path: Path | None,
    manifest: Path | None,
    root: Path,
    no_plugins: bool,
) -> Cohort:
    """The cohort of ``--dataset NAME`` from ``--manifest``, ``--suite`` or the saved suite."""
    from raybench.data import load_cohort
    from raybench.suite import load_suite, parse_suite, suite_dir
    from raybench.suite.schema import ManifestDataset

    if manifest is not None:
        spec = ManifestDataset(name=name, source="manifest", path=str(manifest.resolve()))
        return load_cohort(spec, Path.cwd(), root)
    if suite_path is not None:
        suite, base = load_suite(suite_path), suite_dir(suite_path)
        where = str(suite_path)
    else:
        text = store.read_file("suite.yaml")
        if text is None:
            raise ResultsError(
                f"{store.uri}: no suite.yaml (not a raybench run); give the dataset with "
                "--suite or --manifest"
            )
        where = f"{store.uri}/suite.yaml"
        suite, base = parse_suite(text.decode(), where), Path.cwd()
    check_plugins(suite, Path(where), no_plugins)
    names = [ds.name for ds in suite.datasets]
    if name not in names:
        raise DataError(
            f"--dataset {name!r} is not a dataset of {where} (datasets: {names}); declare it "
            "there, or give --suite or --manifest"
        )
    return load_cohort(suite.datasets[names.index(name)], base, root)


def predict(
    results: Annotated[str, typer.Argument(help="Results directory or URI of a finished run.")],
    dataset: Annotated[str, typer.Option("--dataset", help="Name of the dataset to predict.")],
    suite: Annotated[
        Path | None,
        typer.Option("--suite", exists=True, dir_okay=False, help="Suite declaring the dataset."),
    ] = None,
    manifest: Annotated[
        Path | None,
        typer.Option(
            "--manifest", exists=True, dir_okay=False, help="Manifest (TSV/CSV) of the dataset."
        ),
    ] = None,
    perturbations: Annotated[
        bool,
        typer.Option(
            "--perturbations", help="Also predict under the run's evaluation perturbations."
        ),
    ] = False,
    address: AddressOption = None,
    num_cpus: NumCpusOption = None,
    gpu: Annotated[
        float, typer.Option("--gpu", min=0.0, help="GPUs per prediction task (default 0).")
    ] = 0.0,
    data_root: DataRootOption = None,
    cache_dir: CacheDirOption = None,
    no_plugins: NoPluginsFlag = False,
    json_: JsonFlag = False,
) -> None:
    """Evaluate the saved models of a finished run on DATASET; append its predictions."""
    from raybench.runner.predict import PredictOptions, predict_results
    from raybench.store import ResultStore

    if suite is not None and manifest is not None:
        raise DataError("--suite and --manifest both give the dataset; give one of them")
    store = ResultStore(results)
    root = resolve_data_root(data_root)
    cohort = _cohort(store, dataset, suite, manifest, root, no_plugins)
    options = PredictOptions(
        address=address,
        num_cpus=num_cpus,
        gpu=gpu,
        perturbations=perturbations,
        cache_dir=cache_dir,
    )
    summary = predict_results(store, cohort, options)
    if json_:
        print(
            json.dumps(
                {
                    "results": summary.results,
                    "dataset": summary.dataset,
                    "completed": len(summary.completed),
                    "failed": summary.failed,
                    "skipped": len(summary.skipped),
                    "seconds": summary.seconds,
                }
            )
        )
    else:
        console.print(
            f"{dataset}: {len(summary.completed)} model(s) predicted, {len(summary.failed)} "
            f"failed, {len(summary.skipped)} already done, in {summary.seconds:.1f} s",
            highlight=False,
        )
        for entry, error in summary.failed.items():
            say(f"  failed {entry}: {error}")
        say(f"results: {summary.results} (split = external, dataset = {dataset})")
    if summary.failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the ``predict`` command to the root ``app``."""
    app.command("predict")(predict)
