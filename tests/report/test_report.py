"""The HTML report: sections by data, numbers equal `raybench analyze` (and `explanations`), offline
in Chromium."""

from __future__ import annotations

import html
import json
import math
import re
import subprocess
import sys
import warnings
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import polars as pl
import pytest
import raybench_analysis as rba
from raybench_analysis.contract import polars_schema
from raybench_analysis.report import REFERENCES, write_report
from raybench_analysis.report.methods import METHODS
from typer.testing import CliRunner

from raybench.cli.main import app
from raybench.cli.report import report_after_run

N_BOOT = 200
N_BOOT_SMALL = 60  # the uncertainty and explanations sections: same numbers, fewer replicates
DOCS = Path(__file__).resolve().parents[2] / "docs"


class Tables(HTMLParser):
    """Rows of every ``<table data-table=...>``: {column: full value (data-value) or text}."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[dict[str, Any]]] = {}
        self._table: str | None = None
        self._row: dict[str, Any] | None = None
        self._cell: tuple[str, str | None] | None = None
        self._text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table" and a.get("data-table"):
            self._table = a["data-table"]
            self.tables.setdefault(self._table, [])
        elif tag == "tr" and self._table:
            self._row = {}
        elif tag == "td" and self._row is not None and a.get("data-col"):
            self._cell, self._text = (a["data-col"], a.get("data-value")), ""

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._text += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None and self._row is not None:
            col, value = self._cell
            self._row[col] = float(value) if value is not None else self._text
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table:
            if self._row:
                self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None


def parse_tables(html_text: str) -> dict[str, list[dict[str, Any]]]:
    parser = Tables()
    parser.feed(html_text)
    return parser.tables


def _same(a: Any, b: Any) -> bool:
    if a is None or (isinstance(a, float) and math.isnan(a)):
        return b is None or (isinstance(b, float) and math.isnan(b))
    return math.isclose(float(a), float(b), rel_tol=0, abs_tol=1e-12)


@pytest.fixture(scope="module")
def full_report(full_results: Path) -> Any:
    with warnings.catch_warnings():  # a figure that matplotlib cannot lay out fails the test
        warnings.simplefilter("error", UserWarning)
        return write_report(full_results, n_boot=N_BOOT)


def test_full_run_has_every_section_and_figure(full_report: Any) -> None:
    html_text = full_report.path.read_text()
    assert full_report.sections == [
        "provenance",
        "models",
        "comparisons",
        "sites",
        "variance",
        "calibration",
        "robustness",
        "training",
        "methods",
    ]
    for name in (
        "cd-diagram",
        "forest-models-synth",
        "forest-models-other",
        "reliability-synth",
        "robustness-synth",
        "training-synth",
        "variance-other",
        "sites-other",
    ):
        assert f'data-figure="{name}"' in html_text, name
    # every figure inline and also on disk as SVG and PNG, none empty
    n_inline = html_text.count("<figure ")
    assert len(full_report.figures) == 2 * n_inline
    for path in full_report.figures:
        assert path.parent == full_report.path.parent / "figures"
        assert path.stat().st_size > 1000, path
    assert {p.suffix for p in full_report.figures} == {".png", ".svg"}
    # provenance: the failed trial with its first error line, the run not yet complete, no leak
    failed = parse_tables(html_text)["failed"]
    assert [r["error"] for r in failed] == ["RuntimeError: CUDA out of memory"]
    assert "planned trials have not committed results yet" in html_text
    assert "No subject appears in two roles" in html_text
    assert "abc1234" in html_text and "synth-fp" in html_text and "2.13.0" in html_text
    assert "name: simulated" in html_text  # the saved suite
    # methods: every cited source is listed in full
    for key in ("demsar2006", "nadeau2003", "guo2017", "hendrycks2019", "maurer1995"):
        assert html.escape(REFERENCES[key]) in html_text, key


def test_report_loads_nothing_from_another_host(full_report: Any) -> None:
    html_text = full_report.path.read_text()
    assert not re.search(r"(?i)\b(?:https?|ftp):|//[a-z0-9.-]+\.[a-z]{2,}/", html_text)
    sources = re.findall(r'\b(?:src|href)="([^"]*)"', html_text)
    assert sources and all(s.startswith(("data:", "#")) for s in sources), set(sources)
    assert "<script" not in html_text and "<link" not in html_text and "@import" not in html_text


def test_numbers_equal_raybench_analyze_json(full_results: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    done = runner.invoke(
        app,
        [
            "analyze",
            str(full_results),
            "--n-boot",
            str(N_BOOT),
            "--json",
            "--out",
            str(tmp_path / "tables"),
        ],
    )
    assert done.exit_code == 0, done.output
    expected = json.loads(done.stdout)["tables"]
    out = tmp_path / "r" / "report.html"
    done = runner.invoke(
        app, ["report", str(full_results), "--n-boot", str(N_BOOT), "--out", str(out), "--json"]
    )
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["report"] == str(out)
    shown = parse_tables(out.read_text())
    keys = {
        "models": ("dataset", "metric", "model"),
        "calibration": ("dataset", "model"),
        "comparisons": ("dataset", "metric", "model_a", "model_b", "method"),
        "sites": ("dataset", "model", "site"),
        "variance": ("dataset", "model", "component"),
        "robustness": ("dataset", "model", "perturbation"),
        "operating_ranges": ("dataset", "model", "perturbation_type"),
        "ranking": ("dataset", "model"),
        "friedman": ("test",),
    }
    for name, key in keys.items():
        rows = {tuple(r[k] for k in key): r for r in expected[name]}
        assert len(shown[name]) == len(rows), name
        for row in shown[name]:
            ref = rows[tuple(row[k] for k in key)]
            numeric = [c for c, v in row.items() if isinstance(v, float)]
            assert numeric, name
            for col in numeric:
                assert _same(ref[col], row[col]), (name, col, ref[col], row[col])


def test_partial_run_one_model_no_perturbation_no_epochs(results_factory: Any, tmp_path: Path):
    root = results_factory(
        tmp_path / "small", models={"cnn": 1.0}, datasets=("synth",), epochs=False, failed=True
    )
    report = write_report(root, n_boot=N_BOOT)
    html_text = report.path.read_text()
    assert report.sections == [
        "provenance",
        "models",
        "sites",
        "variance",
        "calibration",
        "methods",
    ]
    for empty in ("comparisons", "robustness", "training", "cd-diagram"):
        assert f'id="{empty}"' not in html_text and f'data-figure="{empty}' not in html_text
    # no section without content, no table without rows
    assert not re.search(r"<h2>[^<]*</h2></section>", html_text)
    assert "<tbody></tbody>" not in html_text
    assert "only one model in the predictions" in html_text  # said, not silently dropped
    assert "CUDA out of memory" in html_text
    assert REFERENCES["nadeau2003"] not in html_text  # never cites a method not used


def test_bare_directory_without_provenance_files(results_factory: Any, tmp_path: Path):
    root = results_factory(
        tmp_path / "bare", datasets=("synth",), epochs=False, failed=False, provenance=False
    )
    report = write_report(root, tmp_path / "elsewhere" / "r.html", n_boot=50, figures_dir=False)
    assert report.figures == [] and not (tmp_path / "elsewhere" / "figures").exists()
    assert any("suite.yaml" in m for m in report.missing)
    assert "<figure " in report.path.read_text()  # inline figures all the same


def test_cli_refuses_a_directory_without_trials(tmp_path: Path) -> None:
    done = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert done.exit_code == 2
    assert "not a raybench results directory" in done.output


def test_run_ends_with_the_report_and_never_fails_on_it(
    full_results: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    suite = SimpleNamespace(
        analysis=SimpleNamespace(
            hierarchy=["site", "subject_id"], alpha=0.05, metric=None, n_boot=50
        )
    )
    report_after_run(str(full_results), suite)
    assert (full_results / "report" / "index.html").is_file()
    assert f"report: {full_results / 'report' / 'index.html'}" in capsys.readouterr().out
    report_after_run(str(tmp_path / "nothing"), suite)  # no results: a message, no exception
    assert "report unavailable" in capsys.readouterr().err


def test_method_citations_are_those_of_docs_statistics() -> None:
    docs = re.sub(r"\s+", " ", (DOCS / "statistics.md").read_text().replace("*", ""))
    for key, citation in REFERENCES.items():
        assert citation in docs, key
    cited = {k for m in METHODS for k in m.cites}
    assert cited <= set(REFERENCES)
    assert set(REFERENCES) <= cited  # no reference kept that no method cites


def test_renders_in_headless_chromium_offline(
    full_report: Any, chromium: Any, artifacts: Path
) -> None:
    screenshot = artifacts / "report-full.png"
    state = chromium.render(full_report.path, screenshot)
    assert state["errors"] == [], state["errors"]
    external = [u for u in state["requests"] if not u.startswith(("file:", "data:", "about:"))]
    assert external == [], external
    assert state["sections"] == full_report.sections
    assert len(state["figures"]) == len(full_report.figures) // 2
    for fig in state["figures"]:
        assert fig["complete"] and min(fig["natural"]) > 0 and min(fig["box"]) > 50, fig
    assert screenshot.stat().st_size > 50_000


ISOLATED = """
import sys

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("ray", "torch", "monai", "raybench", "wandb"):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked for this test)")

sys.meta_path.insert(0, Block())
from raybench_analysis.report import write_report

report = write_report(sys.argv[1], sys.argv[2], n_boot=20, figures_dir=False)
print(len(report.sections))
"""


def test_report_needs_neither_ray_nor_torch(full_results: Path, tmp_path: Path) -> None:
    """Analysts without Ray, torch or raybench get the report from the analysis package."""
    done = subprocess.run(
        [sys.executable, "-c", ISOLATED, str(full_results), str(tmp_path / "r.html")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.strip()) == 9


# --- uncertainty and explanations (issue 11, sections 6 and 8) ----------------------------------


def _write_uncertainty_results(root: Path) -> Path:
    """Two models with raw and temperature-scaled (``calibrated``) predictions, val and test."""
    parts = [
        rba.simulate_uncertainty(
            n_sites=3, subjects_per_site=10, n_seeds=2, n_folds=2, model=m, seed=i
        )
        for i, m in enumerate(("cnn", "vit"))
    ]
    raw = pl.concat(parts)
    preds = pl.concat(
        [raw, rba.apply_temperature(raw, rba.fit_temperature(raw))], how="diagonal_relaxed"
    )
    for table in ("trials", "predictions"):
        (root / table).mkdir(parents=True, exist_ok=True)
    trials = preds.select("trial_id", "dataset", "model", "protocol", "outer_fold", "seed").unique(
        "trial_id", maintain_order=True
    )
    for (tid,), part in preds.group_by("trial_id"):
        part.write_parquet(root / "predictions" / f"{tid}.parquet")
        trials.filter(pl.col("trial_id") == tid).with_columns(
            stage=pl.lit("refit"), status=pl.lit("completed"), task=pl.lit("classification")
        ).write_parquet(root / "trials" / f"{tid}.parquet")
    return root


def _write_slices(path: Path) -> None:
    """A kept sample's slices as the trials write them: image, mask and two maps, per axis."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.outer(np.hanning(12), np.hanning(12))
    mask = (image > 0.6).astype(float)
    arrays = {"centre": np.array([6, 6, 6])}
    for a in "xyz":
        arrays |= {f"image_{a}": image, f"mask_{a}": mask, f"map_gradcam_{a}": image * mask,
                   f"map_saliency_{a}": image.T}  # fmt: skip
    np.savez(path, **arrays)


def _write_explanations(root: Path) -> pl.DataFrame:
    """A small explanations table (docs/results.md) over the test samples of each trial."""
    preds = pl.read_parquet(root / "predictions" / "*.parquet").filter(
        (pl.col("split") == "test") & (pl.col("perturbation") == "none")
    )
    rng = np.random.default_rng(3)
    rows = []
    kept: set[str] = set()  # the first sample of each trial keeps its slices (a gallery figure)
    for sample in preds.select(
        "trial_id", "dataset", "model", "protocol", "outer_fold", "seed", "sample_id",
        "subject_id", "session_id", "scanner", "site",
    ).iter_rows(named=True):  # fmt: skip
        slices = None
        if sample["trial_id"] not in kept:
            kept.add(sample["trial_id"])
            slices = f"maps/{sample['trial_id']}/{sample['sample_id']}_slices.npz"
            _write_slices(root / slices)
        # randomised maps: gradcam changes (passes), saliency keeps its map (fails)
        for method, shift, rho in (("gradcam", 0.1, 0.05), ("saliency", 0.0, 0.9)):
            for metric in ("pointing_game", "deletion_auc", "randomisation_spearman"):
                center = rho if metric == "randomisation_spearman" else 0.5 + shift
                rows.append(
                    sample
                    | {
                        "method": method,
                        "target": "AD",
                        "perturbation": "none",
                        "metric": metric,
                        "note": None,
                        "value": float(center + 0.05 * rng.standard_normal()),
                        "threshold": None,
                        "map_path": None,
                        "slices_path": slices,
                    }
                )
    table = pl.DataFrame(rows).select(
        [pl.col(c).cast(t) for c, t in polars_schema("explanations").items()]
    )
    (root / "explanations").mkdir()
    for (tid,), part in table.group_by("trial_id"):
        part.write_parquet(root / "explanations" / f"{tid}.parquet")
    return table


@pytest.fixture(scope="module")
def uncertainty_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_uncertainty_results(tmp_path_factory.mktemp("uncertainty"))


def test_uncertainty_section_has_the_numbers_of_summarize(uncertainty_root: Path) -> None:
    summary = rba.summarize(rba.load(uncertainty_root), n_boot=N_BOOT_SMALL)
    report = write_report(uncertainty_root, summary=summary)
    html_text = report.path.read_text()
    assert "uncertainty" in report.sections and "explanations" not in report.sections
    tables = parse_tables(html_text)
    for name in ("uncertainty_calibration", "selective", "conformal"):
        expected = summary[name]
        shown = tables[name]
        assert len(shown) == expected.height > 0, name
        for row, ref in zip(shown, expected.iter_rows(named=True), strict=True):
            assert row["variant"] == ref["variant"] and row["model"] == ref["model"]
            for col in ("estimate", "ci_low", "ci_high"):
                assert _same(row[col], ref[col]), (name, col)
    assert {r["variant"] for r in tables["selective"]} == {"raw", "calibrated"}
    for model in ("cnn", "vit"):  # a risk–coverage figure per model, inline and on disk
        name = f"risk-coverage-synth-{model}"
        assert f'data-figure="{name}"' in html_text
        assert (report.path.parent / "figures" / f"{name}.svg").stat().st_size > 1000


def test_explanations_section_has_the_numbers_of_explanations(
    results_factory: Any, tmp_path: Path
) -> None:
    root = results_factory(tmp_path / "explained", epochs=False, failed=False)  # 2 datasets
    table = _write_explanations(root)
    report = write_report(root, n_boot=N_BOOT_SMALL)
    assert "explanations" in report.sections and "uncertainty" not in report.sections
    expected = rba.explanations(
        table, levels=["site", "subject_id"], n_boot=N_BOOT_SMALL, seed=0, alpha=0.05
    )
    html_text = report.path.read_text()
    shown = parse_tables(html_text)["explanations"]
    assert len(shown) == expected.height == 2 * 3 * 2 * 3  # datasets x models x methods x metrics
    for row, ref in zip(shown, expected.iter_rows(named=True), strict=True):
        assert (row["model"], row["method"], row["metric"]) == (
            ref["model"], ref["method"], ref["metric"],
        )  # fmt: skip
        for col in ("estimate", "ci_low", "ci_high"):
            assert _same(row[col], ref[col]), col
    assert {r["method"] for r in shown} == {"gradcam", "saliency"}
    # the randomisation check flags the method whose maps survive randomised weights
    check = parse_tables(html_text)["randomisation"]
    assert {(r["method"], r["status"]) for r in check} == {("gradcam", "passes"),
                                                           ("saliency", "fails")}  # fmt: skip
    assert "Failing: <strong>saliency (" in html_text
    # gallery figures per dataset x model (two cohorts share the model names): the first
    # trial's kept samples over their images
    figures = [f.name for f in report.figures if f.name.startswith("maps-")]
    assert {tuple(f.split("-")[1:3]) for f in figures} == {
        (d, m) for d in ("synth", "other") for m in ("cnn", "resnet", "vit")
    }
    assert all(f.endswith((".svg", ".png")) for f in figures)


def test_plain_results_have_neither_section(results_factory: Any, tmp_path: Path) -> None:
    root = results_factory(
        tmp_path / "plain", models={"cnn": 1.0}, datasets=("synth",), epochs=False, failed=False
    )
    report = write_report(root, n_boot=N_BOOT_SMALL, figures_dir=False)
    html_text = report.path.read_text()
    for absent in ("uncertainty", "explanations"):
        assert absent not in report.sections
        assert f'id="{absent}"' not in html_text and f'data-table="{absent}' not in html_text
    assert "risk-coverage" not in html_text
