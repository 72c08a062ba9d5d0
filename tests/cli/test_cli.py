"""The thin CLI: one error boundary, --version/--debug, lazy imports, run = analyze, plugins.

Results directories are written by :func:`raybench_analysis.write_results_dir` from simulated
predictions (no training); ``raybench run`` is exercised with the runner replaced by one that
writes such a directory, so its closing tables can be compared with ``raybench analyze``'s.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from raybench_analysis import AnalysisError, simulate_predictions, write_results_dir
from typer.testing import CliRunner

from raybench.cli.main import app
from raybench.errors import DataError

ROOT = Path(__file__).resolve().parents[2]

SUITE = """
name: tiny
datasets:
  - name: synth
    source: synthetic
    params: {sites: 2, subjects: 16, shape: [8, 8, 8], effect: 1.0, seed: 0}
task: {type: classification, label: diagnosis, positive: AD}
models:
  - {name: cnn, arch: classifier}
training: {epochs: 1, batch_size: 4}
validation:
  outer: {strategy: group_kfold, k: 2}
seeds: [0]
evaluation: {metrics: [auc, accuracy]}
analysis: {n_boot: 150, alpha: 0.1, hierarchy: [site, subject_id]}
"""

PLUGIN_SUITE = SUITE.replace(
    "models:\n  - {name: cnn, arch: classifier}",
    'plugins: {mynet: "mypkg.nets:build"}\nmodels:\n  - {name: cnn, arch: mynet}',
)

runner = CliRunner()


def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    return runner.invoke(app, list(args), env=env)


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results directory of three simulated models with the suite above saved in it."""
    run = simulate_predictions(n_sites=4, subjects_per_site=8, n_seeds=2, n_folds=2, seed=1)
    root = write_results_dir(run, tmp_path_factory.mktemp("results") / "tiny")
    (root / "suite.yaml").write_text(SUITE)
    return root


def suite_file(tmp_path: Path, text: str = SUITE) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(text)
    return path


# ----------------------------------------------------------------------------- the root app


def test_help_imports_neither_ray_nor_torch() -> None:
    code = (
        "import sys\n"
        "from raybench.cli.main import app\n"
        "sys.argv = ['raybench', '--help']\n"
        "try:\n    app()\nexcept SystemExit:\n    pass\n"
        "print('LOADED', sorted(m for m in ('ray', 'torch', 'monai') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "Usage" in out.stdout
    assert "LOADED []" in out.stdout


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert re.fullmatch(r"raybench \S+, raybench-analysis \S+\n", result.stdout)


@pytest.fixture
def failing_command(monkeypatch: pytest.MonkeyPatch):
    """``raybench data check`` made to raise the error given to it."""
    import raybench.data

    def use(exc: Exception) -> None:
        def boom(*_a: Any, **_k: Any) -> None:
            raise exc

        monkeypatch.setattr(raybench.data, "check_cohort", boom)
        monkeypatch.setattr("raybench.data.manifest.read_manifest_table", lambda *a: None)

    return use


@pytest.mark.parametrize("exc", [DataError("bad [site] column"), AnalysisError("no subject_id")])
def test_error_boundary_prints_the_message_and_exits_2(failing_command, tmp_path, exc) -> None:
    failing_command(exc)
    result = invoke("data", "check", str(tmp_path / "m.tsv"))
    assert result.exit_code == 2
    assert result.stderr == f"error: {exc}\n"  # no traceback; rich markup not eaten
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_debug_flag_and_env_show_the_traceback(failing_command, tmp_path) -> None:
    failing_command(DataError("bad manifest"))
    for args, env in (
        (["--debug", "data", "check", str(tmp_path / "m.tsv")], None),
        (["data", "check", str(tmp_path / "m.tsv")], {"RAYBENCH_DEBUG": "1"}),
    ):
        result = invoke(*args, env=env)
        assert isinstance(result.exception, DataError), result.output


def test_a_bug_is_not_hidden(failing_command, tmp_path) -> None:
    failing_command(KeyError("x"))
    result = invoke("data", "check", str(tmp_path / "m.tsv"))
    assert isinstance(result.exception, KeyError)


# ----------------------------------------------------------------------------- analyze


def test_analyze_takes_its_settings_from_the_saved_suite(results_dir, tmp_path) -> None:
    result = invoke("analyze", str(results_dir), "--json", "--out", str(tmp_path / "a"))
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    s = summary["settings"]
    assert (s["n_boot"], s["alpha"], s["hierarchy"]) == (150, 0.1, ["site", "subject_id"])
    assert s["metrics"] == ["auc", "accuracy"] and s["metric"] == "auc"
    assert s["origin"] == {"metrics": "suite", "hierarchy": "suite", "alpha": "suite",
                           "n_boot": "suite"}  # fmt: skip
    for table in ("models", "comparisons", "ranking", "variance"):
        assert {r["metric"] for r in summary["tables"][table]} == {"auc", "accuracy"}, table
    assert json.loads((tmp_path / "a" / "summary.json").read_text()) == summary


def test_analyze_flags_override_the_suite(results_dir, tmp_path) -> None:
    result = invoke("analyze", str(results_dir), "--json", "--out", str(tmp_path / "a"),
                    "--n-boot", "50", "--metric", "brier", "--hierarchy", "subject_id")  # fmt: skip
    assert result.exit_code == 0, result.output
    s = json.loads(result.stdout)["settings"]
    assert (s["n_boot"], s["metrics"], s["hierarchy"], s["alpha"]) == (
        50, ["brier"], ["subject_id"], 0.1
    )  # fmt: skip


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--hierarchy", "site,subjectid", "did you mean 'subject_id'?"),
        ("--hierarchy", "foo", "unknown level 'foo'"),
        ("--hierarchy", "subject_id,site", "not outermost first; did you mean 'site,subject_id'"),
        ("--hierarchy", "site", "lacks 'subject_id'"),
        ("--metric", "mae", "'mae' does not fit a classification task"),
        ("--metric", "acuracy", "did you mean 'accuracy'?"),
        ("--alpha", "1.5", "between 0 and 1"),
    ],
)
def test_analyze_rejects_bad_overrides(results_dir, tmp_path, flag, value, message) -> None:
    result = invoke("analyze", str(results_dir), flag, value, "--out", str(tmp_path))
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "allowed:" in result.stderr or flag == "--alpha"


def test_analyze_rejects_a_non_results_directory(tmp_path) -> None:
    result = invoke("analyze", str(tmp_path))
    assert result.exit_code == 2
    assert "not a raybench results directory" in result.stderr


def test_summarize_without_arguments_uses_the_saved_suite(results_dir) -> None:
    from raybench_analysis import summarize

    s = summarize(results_dir)
    assert (s.settings["n_boot"], s.settings["alpha"]) == (150, 0.1)
    assert s.settings["metrics"] == ["auc", "accuracy"]


# ----------------------------------------------------------------------------- run = analyze


@pytest.fixture
def fake_runner(monkeypatch: pytest.MonkeyPatch):
    """Replace the Ray runner by one that writes a simulated results directory (no training)."""
    import raybench.runner
    from raybench.runner.options import RunSummary

    run = simulate_predictions(n_sites=4, subjects_per_site=8, n_seeds=2, n_folds=2, seed=1)

    def run_plan(plan: Any, cohorts: Any, store: Any, options: Any) -> RunSummary:
        root = write_results_dir(run, store.root)
        for name, data in options.files.items():
            (root / name).write_bytes(data)
        ids = tuple(run.trials["trial_id"].to_list())
        return RunSummary(str(root), ids, {}, (), 0.1)

    monkeypatch.setattr(raybench.runner, "run_plan", run_plan)


def _tables(output: str) -> str:
    """The closing tables of an output: from the settings line to "tables written"."""
    start = output.index("metrics auc (primary)")
    return output[start : output.index("tables written", start)]


def test_run_and_analyze_print_identical_tables(fake_runner, tmp_path) -> None:
    results = tmp_path / "results"
    ran = invoke("run", str(suite_file(tmp_path)), "--results", str(results),
                 "--data-root", str(tmp_path / "data"))  # fmt: skip
    assert ran.exit_code == 0, ran.output
    saved = pl.read_parquet(results / "analysis" / "models.parquet")
    assert set(saved["metric"]) == {"auc", "accuracy"}
    analyzed = invoke("analyze", str(results), "--out", str(tmp_path / "again"))
    assert analyzed.exit_code == 0, analyzed.output
    assert _tables(ran.stdout) == _tables(analyzed.stdout)
    assert pl.read_parquet(tmp_path / "again" / "models.parquet").equals(saved)
    tables = _tables(ran.stdout)
    assert "pairwise comparisons (a − b) (primary): paired cluster bootstrap" in tables
    assert tables.count("(primary):") == 1


# ----------------------------------------------------------------------------- closing tables


def test_closing_tables_say_what_they_count_once(results_dir, tmp_path) -> None:
    result = invoke("analyze", str(results_dir), "--out", str(tmp_path), "--metric", "auc")
    out = result.stdout
    assert result.exit_code == 0, out
    for header in ("sites", "subjects", "predictions"):
        assert header in out
    captions = [line.strip() for line in out.splitlines() if line.startswith("method:")]
    assert len(captions) == len(set(captions))  # no repeated method footnote
    assert "sd 95%" not in out and "sd 90%" in out  # alpha 0.1 of the saved suite


def test_variance_intervals_on_the_sd_scale_and_possible(results_dir) -> None:
    from raybench_analysis import summarize

    variance = summarize(results_dir, metric="auc")["variance"]
    assert (variance["sd_ci_low"] >= 0).all() and (variance["sd_ci_high"] <= 0.5).all()
    inside = variance.filter(pl.col("ci_high") <= 0.25)
    assert (inside["sd_ci_high"] == inside["ci_high"].sqrt()).all()


def test_rank_shares_sum_to_one_with_ties() -> None:
    from raybench_analysis import ranking_stability

    run = simulate_predictions(models={"a": 1.0, "b": 1.0, "c": 1.0}, n_sites=2,
                               subjects_per_site=4, n_seeds=1, n_folds=2, seed=3)  # fmt: skip
    tied = run.predictions.with_columns(score=pl.col("score").round(1))  # many exact ties
    out = ranking_stability(tied, "accuracy", levels=["subject_id"], n_boot=200)
    shares = out.select(pl.col("^p_rank_.*$")).to_numpy()
    assert shares.sum(axis=0) == pytest.approx([1.0] * 3)  # each rank shared out once
    assert shares.sum(axis=1) == pytest.approx([1.0] * 3)  # each model has some rank


def test_json_missing_lists_every_failed_trial(tmp_path) -> None:
    from raybench_analysis import summarize

    run = simulate_predictions(n_sites=3, subjects_per_site=6, n_seeds=3, n_folds=5, seed=2)
    failed = run.trials["trial_id"].to_list()[:12]
    trials = run.trials.with_columns(
        status=pl.when(pl.col("trial_id").is_in(failed)).then(pl.lit("failed"))
        .otherwise(pl.col("status"))
    )  # fmt: skip
    s = summarize({"trials": trials, "predictions": run.predictions}, n_boot=20)
    noted = [n for n in s.to_dict()["missing"] if n.startswith("trial ")]
    assert len(noted) == 12


# ----------------------------------------------------------------------------- README


def test_readme_example_reproduces_the_cli(tmp_path) -> None:
    run = simulate_predictions(n_sites=4, subjects_per_site=8, n_seeds=2, n_folds=2, seed=1)
    root = write_results_dir(run, tmp_path / "results" / "quickstart")
    result = invoke("analyze", str(root), "--json")
    assert result.exit_code == 0, result.output
    cli = json.loads(result.stdout)["tables"]

    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```python\n(.*?)```", readme, re.S)
    assert block is not None
    code = block.group(1).replace('"results/quickstart"', repr(str(root)))
    values = _run_block(code)
    boot, comp = values[-2], values[-1]
    for row in boot.iter_rows(named=True):
        ref = next(r for r in cli["models"] if r["model"] == row["model"])
        for key in ("estimate", "ci_low", "ci_high", "se"):
            assert row[key] == pytest.approx(ref[key], abs=1e-12), (row["model"], key)
    for row in comp.iter_rows(named=True):
        ref = next(r for r in cli["comparisons"] if (r["model_a"], r["model_b"], r["method"])
                   == (row["model_a"], row["model_b"], row["method"]))  # fmt: skip
        for key in ("estimate", "ci_low", "ci_high", "p_value"):
            assert row[key] == pytest.approx(ref[key], abs=1e-12), (row["model_a"], key)


def _run_block(code: str) -> list[Any]:
    """Execute a fenced Python block; return the values of its bare expression statements."""
    namespace: dict[str, Any] = {}
    values = []
    for node in ast.parse(code).body:
        if isinstance(node, ast.Expr):
            values.append(eval(compile(ast.Expression(node.value), "README", "eval"), namespace))
        else:
            exec(compile(ast.Module([node], []), "README", "exec"), namespace)
    return values


# ----------------------------------------------------------------------------- plugins


def test_validate_names_the_plugins_a_suite_runs(tmp_path) -> None:
    path = suite_file(tmp_path, PLUGIN_SUITE)
    result = invoke("validate", str(path), "--no-data")
    assert result.exit_code == 0, result.output
    assert "this suite imports and runs: mynet -> mypkg.nets:build" in result.stdout
    as_json = invoke("validate", str(path), "--no-data", "--json")
    assert json.loads(as_json.stdout)["summary"]["plugins"] == {"mynet": "mypkg.nets:build"}
    plain = invoke("validate", str(suite_file(tmp_path)), "--no-data")
    assert "imports and runs" not in plain.stdout


@pytest.mark.parametrize("command", ["validate", "plan", "run"])
def test_no_plugins_refuses_a_suite_with_plugins(tmp_path, command) -> None:
    path = suite_file(tmp_path, PLUGIN_SUITE)
    result = invoke(*_args(command, path, tmp_path), "--no-plugins")
    assert result.exit_code == 2, result.output
    assert "refused (--no-plugins)" in result.stderr
    assert "mynet -> mypkg.nets:build" in result.stderr
    assert not (tmp_path / "d").exists() and not (tmp_path / "r").exists()


def _args(command: str, path: Path, tmp_path: Path) -> list[str]:
    if command == "validate":
        return [command, str(path), "--no-data"]
    extra = ["--results", str(tmp_path / "r")] if command == "run" else []
    return [command, str(path), "--data-root", str(tmp_path / "d"), *extra]
