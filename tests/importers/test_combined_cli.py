"""``raybench analyze A B`` and ``raybench report A B``: a run beside imported results.

The second directory is made cheaply: the run's own predictions exported to a flat table and
imported back (same subjects, same folds: paired, differences exactly 0), or another simulated
cohort imported from a table (other subjects: unpaired).
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from raybench_analysis import load
from raybench_analysis.simulate import simulate_predictions, write_results_dir
from typer.testing import CliRunner

from raybench.cli.main import app
from raybench.importers import import_results

runner = CliRunner()


def _import_flat(predictions: pl.DataFrame, flat: Path, out: Path) -> Path:
    predictions.drop("trial_id").write_parquet(flat)
    import_results("table", flat, out)
    return out


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("combined")
    run = simulate_predictions(n_sites=3, subjects_per_site=6, n_seeds=1, n_folds=2, seed=7,
                               models={"cnn": 1.5, "vit": 1.0})  # fmt: skip
    ours = write_results_dir(run, root / "raybench")
    (ours / "suite.yaml").write_text("analysis: {hierarchy: [site, subject_id], n_boot: 100}\n")
    again = _import_flat(load(ours).predictions.collect(), root / "flat.parquet", root / "again")
    lab = simulate_predictions(n_sites=3, subjects_per_site=6, n_seeds=1, n_folds=3, seed=8,
                               models={"cnn": 1.2})  # fmt: skip
    other = lab.predictions.with_columns(
        pl.col("sample_id") + "-lab", pl.col("subject_id") + "-lab"
    )
    lab_dir = _import_flat(other, root / "lab.parquet", root / "lab")
    return {"ours": ours, "again": again, "lab": lab_dir}


def test_a_run_and_its_reimport_pair_with_zero_differences(dirs: dict[str, Path]) -> None:
    out = dirs["ours"].parent / "out-again"
    result = runner.invoke(
        app, ["analyze", str(dirs["ours"]), str(dirs["again"]), "--json", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["settings"]["sources"] == {
        "raybench": str(dirs["ours"]),
        "again": str(dirs["again"]),
    }
    assert doc["settings"]["n_boot"] == 100  # the first directory's saved suite
    rows = [r for r in doc["tables"]["comparisons"] if "bootstrap" in r["method"]]
    twins = [r for r in rows if r["model_a"].split(":")[1] == r["model_b"].split(":")[1]]
    assert {(r["model_a"], r["model_b"]) for r in twins} == {
        ("again:cnn", "raybench:cnn"), ("again:vit", "raybench:vit")
    }  # fmt: skip
    for r in twins:
        assert (r["pairing"], r["estimate"], r["ci_low"], r["ci_high"]) == ("same folds", 0, 0, 0)
    models = {r["model"]: r["estimate"] for r in doc["tables"]["models"]}
    assert models["again:cnn"] == models["raybench:cnn"]
    assert (out / "comparisons.parquet").is_file()


def test_different_subjects_are_compared_unpaired_and_said_so(dirs: dict[str, Path]) -> None:
    result = runner.invoke(
        app, ["analyze", str(dirs["ours"]), str(dirs["lab"]), "--labels", "ours,lab"]
    )
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert "results ours: " in text and "results lab: " in text
    assert "unpaired: difference of independent cluster bootstraps (test subjects differ)" in text
    assert "paired comparison refused" in text
    assert "lab:cnn" in text and "ours:cnn" in text
    written = dirs["ours"] / "analysis" / "combined" / "summary.json"
    doc = json.loads(written.read_text())
    pairs = {(r["model_a"], r["model_b"]): r["pairing"] for r in doc["tables"]["comparisons"]}
    assert pairs[("lab:cnn", "ours:cnn")] == "unpaired"
    assert pairs[("ours:cnn", "vit")] == "same folds"


def test_report_of_two_directories(dirs: dict[str, Path]) -> None:
    html = dirs["ours"].parent / "report" / "index.html"
    result = runner.invoke(
        app, ["report", str(dirs["ours"]), str(dirs["lab"]), "--out", str(html), "--json"]
    )
    assert result.exit_code == 0, result.output
    page = html.read_text()
    assert 'data-table="sources"' in page
    assert "Comparisons across results directories" in page
    assert "<strong>unpaired</strong>" in page and "Satterthwaite, F. E. (1946)" in page
