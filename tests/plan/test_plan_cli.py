"""`raybench plan`: the shipped suites compile; --json counts equal the product of the factors."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from raybench.cli.main import app
from raybench.plan import expand_search_space
from raybench.suite import load_suite

ROOT = Path(__file__).resolve().parents[2]
SUITES = sorted((ROOT / "suites").glob("*.yaml"))
SYNTHETIC = [p for p in SUITES if "source: manifest" not in p.read_text()]
runner = CliRunner()


def expected_counts(suite) -> Counter:
    """The product of the factors, computed from the suite alone."""

    def folds(p, sites):
        return sites if p.strategy == "leave_one_site_out" else p.k * p.repeats

    inner = suite.validation.inner
    n_inner = 0 if inner is None else (inner.k if inner.strategy == "group_kfold" else 1)
    draws = suite.validation.train_resampling  # the whole fold + its draws of training subjects
    pools = 1 + (
        0
        if draws is None
        else draws.repeats * sum(f < 1.0 or draws.scheme == "bootstrap" for f in draws.fractions)
    )
    counts: Counter = Counter()
    for ds in suite.datasets:
        if ds.name in suite.validation.external:  # scored by the refits, never trained on
            continue
        sites = ds.params.sites
        n_folds = pools * sum(
            folds(p, sites) for p in [suite.validation.outer, *suite.validation.extra]
        )
        for model in suite.models:
            points = len(expand_search_space(model, suite.training))
            if suite.search is not None and suite.search.algorithm == "random":
                points = suite.search.num_samples  # continuous dimensions: no point drawn twice
            counts["refit"] += n_folds * len(suite.seeds)
            if points > 1:
                counts["search"] += n_folds * len(suite.seeds) * points * n_inner
    return counts


@pytest.mark.parametrize("path", SYNTHETIC, ids=[p.stem for p in SYNTHETIC])
def test_shipped_suites_plan_as_many_trials_as_the_product_of_the_factors(path, tmp_path):
    data_root = tmp_path / "data"
    result = runner.invoke(app, ["plan", str(path), "--json", "--data-root", str(data_root)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert Counter(r["stage"] for r in rows) == expected_counts(load_suite(path))
    keys = {
        "trial_id",
        "stage",
        "dataset",
        "model",
        "protocol",
        "outer_fold",
        "inner_fold",
        "seed",
        "params",
        "depends_on",
    }
    assert all(set(r) == keys for r in rows)
    assert len({r["trial_id"] for r in rows}) == len(rows)
    ids = {r["trial_id"] for r in rows}
    assert all(set(r["depends_on"]) <= ids for r in rows)
    assert not data_root.exists(), "plan must not write anything"


def test_quickstart_is_small_and_the_table_shows_counts_and_resources(tmp_path):
    result = runner.invoke(
        app, ["plan", str(ROOT / "suites/quickstart.yaml"), "--data-root", str(tmp_path / "d")]
    )
    assert result.exit_code == 0, result.output
    assert "total trials: 12" in result.stdout
    assert "12 CPU-trials, 0 GPU-trials" in result.stdout
    assert "synth / outer: 3 outer folds" in result.stdout
    assert "training-set draws" not in result.stdout


def test_a_learning_curve_suite_shows_its_draws(tmp_path):
    suite = str(ROOT / "suites/learning_curve.yaml")
    result = runner.invoke(app, ["plan", suite, "--data-root", str(tmp_path / "d")])
    assert result.exit_code == 0, result.output
    assert "total trials: 42" in result.stdout
    assert "training-set draws: 18 (fractions 0.25, 0.5)" in result.stdout


def test_manifest_example_with_data_made_as_its_comment_says(tmp_path):
    suite_dir = tmp_path / "suites"
    suite_dir.mkdir()
    shutil.copy(ROOT / "suites/manifest_example.yaml", suite_dir)
    made = runner.invoke(
        app,
        [
            "data",
            "synth",
            str(tmp_path / "data/example"),
            "--sites",
            "3",
            "--scanners-per-site",
            "1",
            "--subjects",
            "12",
            "--sessions",
            "2",
            "--shape",
            "16",
            "16",
            "16",
            "--effect",
            "1.0",
            "--seed",
            "5",
        ],
    )
    assert made.exit_code == 0, made.output
    result = runner.invoke(app, ["plan", str(suite_dir / "manifest_example.yaml"), "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 3 * 2  # 3 outer folds x 2 seeds, one model, no search


def test_an_unsplittable_suite_exits_2_with_a_located_message(tmp_path):
    suite = tmp_path / "tiny.yaml"
    suite.write_text(
        "name: tiny\n"
        "datasets: [{name: s, source: synthetic, params: {subjects: 6, sites: 2}}]\n"
        "task: {type: classification, label: diagnosis}\n"
        "models: [{name: m, arch: classifier}]\n"
        "validation:\n"
        "  outer: {strategy: group_kfold, k: 2, stratify: []}\n"
        "  inner: {strategy: group_kfold, k: 5, stratify: []}\n"
    )
    result = runner.invoke(app, ["plan", str(suite), "--data-root", str(tmp_path / "d")])
    assert result.exit_code == 2
    assert "dataset 's', validation.outer fold 'fold0', validation.inner: group_kfold: k=5" in (
        " ".join(result.output.split())
    )


@pytest.mark.parametrize("path", SYNTHETIC, ids=[p.stem for p in SYNTHETIC])
def test_shipped_suites_networks_build_and_run_on_their_volumes(path, tmp_path):
    """Every model of every shipped suite builds with its params; the quick start's and the
    segmentation's (shape-sensitive U-Net) also run a forward pass on their volume shape."""
    torch = pytest.importorskip("torch")
    from raybench.data import load_cohort
    from raybench.plan import apply_point, compile_suite
    from raybench.training.models import build_network

    suite = load_suite(path)
    shape = tuple(suite.datasets[0].params.shape)
    cohorts: dict = {}
    for d in sorted(suite.datasets, key=lambda d: d.source == "generated"):  # sources first
        cohorts[d.name] = load_cohort(
            d, path.parent, tmp_path, materialize=False, suite=suite, cohorts=cohorts
        )
    seen = set()
    for t in compile_suite(suite, cohorts).trials:
        config = apply_point(t.config, t.candidates[0]) if t.params is None else t.config
        model = config["model"]
        if (t.model, repr(model)) in seen:
            continue
        seen.add((t.model, repr(model)))
        task = config["task"]
        n = (
            len(task["classes"])
            if task["classes"]
            else (2 if task["type"] == "segmentation" else 1)
        )
        net = build_network(model["arch"], model["params"], task["type"], n, spatial_size=shape)
        if path.stem in ("quickstart", "segmentation"):
            net.eval()
            with torch.no_grad():
                out = net(torch.zeros(1, 1, *shape))
            assert out.shape[:2] == (1, n)
