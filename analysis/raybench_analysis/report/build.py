"""Build the report: summary tables and provenance -> figures -> one self-contained HTML file."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from raybench_analysis.combine import combine
from raybench_analysis.friedman import friedman
from raybench_analysis.io import Results
from raybench_analysis.metrics import get_metric
from raybench_analysis.report import figures as F
from raybench_analysis.report.external import external_section, feature_shift_section
from raybench_analysis.report.html import Section, escape, figure, notes, page, table
from raybench_analysis.report.learning import learning_section
from raybench_analysis.report.methods import methods_paragraphs, references_for
from raybench_analysis.report.provenance import Provenance, merge_provenance, read_provenance
from raybench_analysis.selective import risk_coverage
from raybench_analysis.summarize import Summary, read_results, summarize

__all__ = ["Report", "write_report"]


@dataclass(frozen=True)
class Report:
    """What :func:`write_report` wrote.

    ``path`` is the HTML file, ``figures`` the PNG and SVG files beside it, ``sections`` the
    anchors of the sections shown, ``missing`` the notes on what the run lacks, ``seconds`` the
    time taken (summary included when it was computed here).
    """

    path: Path
    figures: list[Path]
    sections: list[str]
    missing: list[str] = field(default_factory=list)
    seconds: float = 0.0


class _Figures:
    """Renders figures once: SVG for the page, SVG and PNG files for papers and slides."""

    def __init__(self, folder: Path | None, dpi: int) -> None:
        self.folder, self.dpi, self.files = folder, dpi, []
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)

    def __call__(self, fig: Any, name: str, caption: str) -> str:
        svg, png = F.render(fig, dpi=self.dpi)
        if self.folder is not None:
            for ext, data in (("svg", svg), ("png", png)):
                path = self.folder / f"{name}.{ext}"
                path.write_bytes(data)
                self.files.append(path)
        return figure(svg, caption, name, width_px=int(110 * fig.get_figwidth()))


def _slug(*parts: Any) -> str:
    text = "-".join(str(p) for p in parts if p is not None and p != "")
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)


def _by_dataset(frame: pl.DataFrame) -> list[tuple[str | None, pl.DataFrame]]:
    """Parts of ``frame`` per dataset and, when it holds several, per metric, with a label."""
    keys = [c for c in ("dataset", "metric") if c in frame.columns and frame[c].n_unique() > 1]
    if not keys:
        name = frame["dataset"][0] if "dataset" in frame.columns and frame.height else None
        return [(name, frame)]
    return [
        (" / ".join(str(k) for k in key), part)
        for key, part in frame.group_by(keys, maintain_order=True)
    ]


def _metric(part: pl.DataFrame, default: Any) -> str:
    """The metric of a part of a summary table (its ``metric`` column), else ``default``."""
    return str(part["metric"][0]) if "metric" in part.columns and part.height else str(default)


def _heading(dataset: str | None, several: bool) -> str:
    return f"<h3>{escape(dataset)}</h3>" if several and dataset is not None else ""


def _confidence(alpha: float) -> str:
    return f"{100 * (1 - alpha):g}%"


# --- sections ------------------------------------------------------------------------------------


def _provenance(prov: Provenance, summary: Summary) -> Section:
    s = summary.settings
    parts = _sources(summary)
    parts.append("<h3>Analysis settings</h3>")
    settings = {
        k: s.get(k)
        for k in (
            "metric",
            "hierarchy",
            "alpha",
            "n_boot",
            "seed",
            "correction",
            "scheme",
            "interval",
            "average_over",
        )
    }
    settings["hierarchy"] = " > ".join(s.get("hierarchy") or []) or "none (images i.i.d.)"
    settings["average_over"] = ", ".join(s.get("average_over") or []) or "none"
    parts.append(
        '<table data-table="settings"><tbody>'
        + "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in settings.items())
        + "</tbody></table>"
    )
    if prov.stages.height:
        parts.append("<h3>Plan and trials</h3>")
        parts.append(
            table(
                prov.stages,
                [
                    ("source_dir", "results"),
                    ("stage", "stage"),
                    ("planned", "planned"),
                    ("committed", "committed"),
                    ("completed", "completed"),
                    ("failed", "failed"),
                ],
                name="stages",
            )
        )
    if prov.failed.height:
        parts.append(f'<h3 class="bad">Failed trials ({prov.failed.height})</h3>')
        parts.append(
            table(
                prov.failed,
                [
                    ("source_dir", "results"),
                    ("trial_id", "trial"),
                    ("stage", "stage"),
                    ("dataset", "dataset"),
                    ("model", "model"),
                    ("outer_fold", "fold"),
                    ("seed", "seed"),
                    ("attempts", "attempts"),
                    ("error", "error"),
                ],
                name="failed",
            )
        )
    parts.append("<h3>Leakage audit</h3>")
    if prov.leakage is None:
        parts.append("<p>No splits table: the audit could not run.</p>")
    elif prov.leakage.height == 0:
        parts.append(
            f'<p class="good">No subject appears in two roles (train / val / test) in '
            f"any of the {prov.n_audited} audited trials.</p>"
        )
    else:
        parts.append(
            f'<p class="bad">{prov.leakage.height} (trial, subject) pairs cross a split: '
            "these results are not valid.</p>"
        )
        parts.append(
            table(
                prov.leakage.head(50),
                [
                    ("source_dir", "results"),
                    ("trial_id", "trial"),
                    ("subject_id", "subject"),
                    ("roles", "roles"),
                    ("n_samples", "images"),
                ],
                name="leakage",
            )
        )
    if prov.versions.height:
        parts.append("<h3>Versions</h3>")
        parts.append(
            table(
                prov.versions,
                [
                    ("source_dir", "results"),
                    ("package", "package"),
                    ("version", "version"),
                    ("trials", "trials"),
                ],
                name="versions",
            )
        )
    if prov.identity.height:
        parts.append("<h3>Configurations and data</h3>")
        parts.append(
            table(
                prov.identity,
                [
                    ("source_dir", "results"),
                    ("dataset", "dataset"),
                    ("model", "model"),
                    ("config_hashes", "config hashes"),
                    ("data_fingerprints", "data fingerprint"),
                    ("git_commits", "git commit"),
                ],
                name="identity",
            )
        )
    if prov.suite_yaml is not None:
        parts.append(
            "<details><summary>The suite as run (suite.yaml)</summary>"
            f"<pre>{escape(prov.suite_yaml)}</pre></details>"
        )
    missing = [*prov.missing, *summary.missing]
    if missing:
        parts.append("<h3>Missing or not computed</h3>" + notes(missing))
    return Section("provenance", "Provenance", "".join(parts))


def _sources(summary: Summary) -> list[str]:
    """The results directories of a combined analysis, and the models renamed to tell apart."""
    sources = summary.settings.get("sources")
    if not sources:
        return []
    frame = pl.DataFrame({"source_dir": list(sources), "path": list(sources.values())})
    parts = [
        "<h3>Results directories</h3>",
        table(frame, [("source_dir", "label"), ("path", "directory")], name="sources"),
    ]
    renamed = summary.settings.get("renamed") or []
    if renamed:
        parts.append(
            "<p>Models named alike in several directories are shown as label:model: "
            + escape(", ".join(f"{r['model']} → {r['renamed_to']}" for r in renamed))
            + ".</p>"
        )
    return parts


def _models(summary: Summary, draw: _Figures, colors: dict[str, str]) -> Section | None:
    if "models" not in summary:
        return None
    s = summary.settings
    conf = _confidence(s["alpha"])
    parts = [
        f"<p>{escape(s['metric'])} of each model with its {conf} hierarchical interval "
        f"(resampling {escape(' > '.join(s.get('hierarchy') or []) or 'images')}).</p>"
    ]
    cols = [
        ("dataset", "dataset"),
        ("model", "model"),
        ("source_dir", "results"),
        ("metric", "metric"),
        ("estimate", "estimate"),
        ("ci_low", "ci low"),
        ("ci_high", "ci high"),
        ("se", "se"),
        ("n_site", "sites"),
        ("n_subject_id", "subjects"),
        ("n_obs", "images"),
    ]
    tables = [("models", summary["models"], s["metric"])]
    if "calibration" in summary:
        tables.append(("calibration", summary["calibration"], "ECE (lower is better)"))
    for name, frame, label in tables:
        groups = _by_dataset(frame)
        for dataset, part in groups:
            parts.append(_heading(dataset, len(groups) > 1) if name == "models" else "")
            if name == "calibration":
                parts.append(
                    f"<h3>Calibration{' — ' + escape(dataset) if len(groups) > 1 else ''}</h3>"
                )
            parts.append(table(part, cols, name=name))
            fig = F.forest_plot(
                part,
                xlabel=f"{_metric(part, label) if name == 'models' else label} ({conf} CI)",
                colors=colors,
            )
            parts.append(
                draw(
                    fig,
                    _slug("forest", name, dataset),
                    f"Forest plot: {label} per model with {conf} intervals"
                    + (f", dataset {dataset}" if dataset else ""),
                )
            )
    return Section("models", "Models", "".join(parts))


def _unpaired(summary: Summary) -> bool:
    """True when some comparison was unpaired (test subjects differ)."""
    if "comparisons" not in summary or "pairing" not in summary["comparisons"].columns:
        return False
    return bool((summary["comparisons"]["pairing"] == "unpaired").any())


def _cliques(summary: Summary) -> tuple[float, list[tuple[float, float]]] | None:
    """Critical difference and CD-diagram bars, from the same per-dataset estimates."""
    models = summary["models"]
    higher = get_metric(str(summary.settings["metric"])).higher_is_better
    res = friedman(
        models, higher_is_better=higher, alpha=summary.settings["alpha"], value_col="estimate"
    )
    bars = [
        (float(p["rank_low"].min()), float(p["rank_high"].max()))
        for _, p in res.cliques.group_by("clique", maintain_order=True)
        if p.height > 1
    ]
    return res.critical_difference, bars


def _comparisons(summary: Summary, draw: _Figures) -> Section | None:
    if "comparisons" not in summary and "friedman" not in summary:
        return None
    s = summary.settings
    parts: list[str] = []
    unpaired = _unpaired(summary)
    if "comparisons" in summary:
        how = (
            "paired on the same test subjects where two models were tested on them, and "
            "<strong>unpaired</strong> (difference of independent hierarchical bootstraps, "
            "column pairing) where their test subjects differ"
            if unpaired
            else "paired on the same test subjects"
        )
        parts.append(
            f"<p>Differences (model a − model b) of {escape(s['metric'])}, {how}; p-values "
            f"adjusted with {escape(s['correction'])}; filled markers: adjusted p &lt; α.</p>"
        )
        cols = [
            ("dataset", "dataset"),
            ("model_a", "a"),
            ("model_b", "b"),
            ("pairing", "pairing"),
            ("metric", "metric"),
            ("estimate", "difference"),
            ("ci_low", "ci low"),
            ("ci_high", "ci high"),
            ("p_value", "p"),
            ("p_adjusted", "p adjusted"),
            ("method", "method"),
        ]
        groups = _by_dataset(summary["comparisons"])
        for dataset, part in groups:
            parts.append(_heading(dataset, len(groups) > 1))
            parts.append(table(part, cols, name="comparisons"))
            fig = F.difference_plot(
                part, xlabel=f"difference in {_metric(part, s['metric'])}", alpha=s["alpha"]
            )
            parts.append(
                draw(
                    fig,
                    _slug("differences", dataset),
                    f"{'Differences' if unpaired else 'Paired differences'} with "
                    f"{_confidence(s['alpha'])} intervals"
                    + (f", dataset {dataset}" if dataset else ""),
                )
            )
    if "ranking" in summary:
        parts.append("<h3>Ranking stability</h3>")
        rank_cols = [
            ("dataset", "dataset"),
            ("model", "model"),
            ("rank", "rank"),
            ("mean_rank", "mean rank"),
            ("rank_ci_low", "rank low"),
            ("rank_ci_high", "rank high"),
            ("p_rank_1", "P(first)"),
        ]
        parts.append(table(summary["ranking"], rank_cols, name="ranking"))
    if "friedman" in summary:
        parts.append("<h3>Across datasets (Friedman, Nemenyi)</h3>")
        parts.append(
            table(
                summary["friedman"],
                [
                    ("test", "test"),
                    ("statistic", "statistic"),
                    ("df1", "df1"),
                    ("df2", "df2"),
                    ("p_value", "p"),
                    ("critical_difference", "CD"),
                    ("n_datasets", "datasets"),
                ],
                name="friedman",
            )
        )
        cd = _cliques(summary)
        if cd is not None and "friedman_ranks" in summary:
            fig = F.cd_diagram(summary["friedman_ranks"], cd[0], cd[1])
            parts.append(
                draw(
                    fig,
                    "cd-diagram",
                    "Critical-difference diagram (Demšar 2006): mean "
                    "ranks over datasets (1 = best); models joined by a bar do not "
                    "differ significantly (Nemenyi)",
                )
            )
    return Section("comparisons", "Comparisons", "".join(parts))


def _sites(summary: Summary, draw: _Figures, colors: dict[str, str]) -> Section | None:
    if "sites" not in summary:
        return None
    s = summary.settings
    parts = [
        f"<p>{escape(s['metric'])} at each site, resampling the levels below the site: where "
        "does a model fail?</p>"
    ]
    cols = [
        ("dataset", "dataset"),
        ("site", "site"),
        ("model", "model"),
        ("estimate", "estimate"),
        ("ci_low", "ci low"),
        ("ci_high", "ci high"),
        ("n_subject_id", "subjects"),
        ("n_obs", "images"),
    ]
    groups = _by_dataset(summary["sites"])
    for dataset, part in groups:
        parts.append(_heading(dataset, len(groups) > 1))
        parts.append(table(part.sort("site", "model"), cols, name="sites"))
        fig = F.site_plot(
            part,
            xlabel=f"{_metric(part, s['metric'])} ({_confidence(s['alpha'])} CI)",
            colors=colors,
        )
        parts.append(draw(fig, _slug("sites", dataset), "Per-site scores with intervals"))
    return Section("sites", "Per site", "".join(parts))


def _variance_words(frame: pl.DataFrame) -> str:
    parts = frame.filter(pl.col("component") != "total")
    if parts.height == 0:
        return ""
    mean = parts.group_by("component").agg(pl.col("share").mean()).sort("share", descending=True)
    top, share = mean.row(0)
    advice = {
        "seed": "more seeds per split reduce it",
        "split": "more outer splits (folds or repeats) reduce it; more seeds do not",
        "test_sample": "more test subjects (or more splits) reduce it; more seeds do not",
    }.get(top, "")
    return (
        f"<p>On average {100 * share:.0f}% of the variance of a trial's score comes from the "
        f"{escape(top.replace('_', ' '))} part: {escape(advice)}. To size a study that must "
        "detect a given difference, use <code>raybench_analysis.sample_size(components, "
        "delta=...)</code> on these components (docs/statistics.md).</p>"
    )


def _variance(summary: Summary, draw: _Figures) -> Section | None:
    if "variance" not in summary:
        return None
    frame = summary["variance"]
    parts = [
        "<p>Where the spread of a single trial's score comes from (seed, data split, finite "
        "test sample): a statement about the training procedure (Bouthillier et al. "
        "2021).</p>",
        _variance_words(frame),
    ]
    cols = [
        ("dataset", "dataset"),
        ("model", "model"),
        ("component", "component"),
        ("variance", "variance"),
        ("sd", "sd"),
        ("share", "share"),
        ("ci_low", "var ci low"),
        ("ci_high", "var ci high"),
    ]
    groups = _by_dataset(frame)
    for dataset, part in groups:
        parts.append(_heading(dataset, len(groups) > 1))
        parts.append(table(part, cols, name="variance"))
        parts.append(
            draw(
                F.variance_plot(part),
                _slug("variance", dataset),
                "Standard deviation of a trial's score due to each variance component",
            )
        )
    return Section("variance", "Variance components", "".join(parts))


def _calibration(summary: Summary, draw: _Figures, colors: dict[str, str]) -> Section | None:
    if "reliability" not in summary:
        return None
    frame = summary["reliability"]
    parts = [
        "<p>Reliability diagrams: observed frequency of the positive class against the mean "
        "predicted probability in each bin (the dashed line is perfect calibration), with "
        "the number of test images per bin underneath; seeds and folds pooled.</p>"
    ]
    cols = [
        ("dataset", "dataset"),
        ("model", "model"),
        ("bin_low", "bin low"),
        ("bin_high", "bin high"),
        ("n", "n"),
        ("mean_conf", "mean predicted"),
        ("frac", "observed"),
        ("gap", "gap"),
    ]
    groups = _by_dataset(frame)
    for dataset, part in groups:
        parts.append(_heading(dataset, len(groups) > 1))
        parts.append(
            draw(
                F.reliability_diagram(part, colors=colors),
                _slug("reliability", dataset),
                "Reliability diagrams with bin counts",
            )
        )
        parts.append(
            "<details><summary>Reliability bins</summary>"
            + table(part, cols, name="reliability")
            + "</details>"
        )
    return Section("calibration", "Calibration", "".join(parts))


def _robustness(summary: Summary, draw: _Figures, colors: dict[str, str]) -> Section | None:
    if "robustness" not in summary:
        return None
    s = summary.settings
    frame = summary["robustness"]
    parts = [
        f"<p>Change of {escape(s['metric'])} when the test images are perturbed, against the "
        "perturbation's severity, on the same images of the same trained models, with "
        f"{_confidence(s['alpha'])} paired intervals.</p>"
    ]
    cols = [
        ("dataset", "dataset"),
        ("model", "model"),
        ("perturbation", "perturbation"),
        ("clean", "clean"),
        ("perturbed", "perturbed"),
        ("estimate", "change"),
        ("ci_low", "ci low"),
        ("ci_high", "ci high"),
        ("p_value", "p"),
    ]
    groups = _by_dataset(frame)
    for dataset, part in groups:
        parts.append(_heading(dataset, len(groups) > 1))
        parts.append(table(part, cols, name="robustness"))
        fig = F.robustness_plot(
            part, ylabel=f"change in {_metric(part, s['metric'])}", colors=colors
        )
        parts.append(
            draw(fig, _slug("robustness", dataset), "Metric change against perturbation severity")
        )
    if "operating_ranges" in summary:
        ranges = summary["operating_ranges"]
        parts.append(
            "<h3>Operating ranges</h3><p>Per model and perturbation type, the severities over "
            f"which {escape(s['metric'])} is shown to stay within {ranges['tolerance'][0]:g} of "
            "its clean value (one-sided bounds tested from the least severe upward, family-wise "
            f"error rate {s['alpha']:g}); <em>censored</em>: every tested severity passed.</p>"
        )
        cols = [("dataset", "dataset"), ("model", "model"), ("perturbation_type", "type")]
        cols += [("range_low", "from"), ("range_high", "to"), ("tested_low", "tested from")]
        cols += [("tested_high", "tested to"), ("censored_high", "censored")]
        parts.append(table(ranges, cols, name="operating_ranges"))
    return Section("robustness", "Robustness", "".join(parts))


_UNCERTAINTY_COLS = [
    ("dataset", "dataset"),
    ("model", "model"),
    ("variant", "variant"),
    ("site", "site"),
    ("quantity", "quantity"),
    ("uncertainty", "uncertainty"),
    ("coverage", "coverage"),
    ("target", "target"),
    ("estimate", "estimate"),
    ("ci_low", "ci low"),
    ("ci_high", "ci high"),
    ("n_obs", "images"),
]


def _test_rows(results: Results) -> pl.DataFrame:
    """Unperturbed test predictions of every variant: the rows the uncertainty tables read."""
    frame = results.predictions
    names = frame.collect_schema().names()
    for col, value in (("split", "test"), ("perturbation", "none")):
        if col in names:
            frame = frame.filter(pl.col(col) == value)
    return frame.collect()


def _uncertainty(summary: Summary, results: Results, draw: _Figures) -> Section | None:
    tables = [
        (name, title)
        for name, title in (
            ("uncertainty_calibration", "Calibration of each variant"),
            ("selective", "Selective prediction"),
            ("conformal", "Conformal coverage"),
        )
        if name in summary
    ]
    if not tables:
        return None
    conf = _confidence(summary.settings["alpha"])
    parts = [
        "<p>The uncertainty variants the trials recorded (<code>raw</code>: the network's own "
        "probabilities; others as configured in <code>evaluation.uncertainty</code>), on the "
        f"unperturbed test images, with {conf} hierarchical intervals: calibration (ECE, Brier, "
        "slope, intercept), selective prediction (risk at fixed coverages, AURC) and the "
        "coverage of conformal sets calibrated on each trial's validation images "
        "(docs/uncertainty.md).</p>"
    ]
    for name, title in tables:
        parts.append(f"<h3>{escape(title)}</h3>")
        parts.append(table(summary[name], _UNCERTAINTY_COLS, name=name))
    if "selective" in summary:
        curves = risk_coverage(_test_rows(results), by=["dataset", "model", "variant"])
        for (dataset, model), part in curves.group_by(["dataset", "model"], maintain_order=True):
            parts.append(
                draw(
                    F.risk_coverage_plot(part),
                    _slug("risk-coverage", dataset, model),
                    f"Risk–coverage curves of {model} on {dataset}: error rate of the images "
                    "kept when the most uncertain are set aside, averaged over seeds and folds",
                )
            )
    return Section("uncertainty", "Uncertainty", "".join(parts))


#: Kept samples drawn in the report's map gallery, per model.
GALLERY_SAMPLES = 2


def _explanations(summary: Summary, results: Results, draw: _Figures) -> Section | None:
    """Explanation scores, the model-randomisation check and a gallery of kept maps."""
    if "explanations" not in summary:
        return None
    s = summary.settings
    estimates = summary["explanations"]
    parts = [
        "<p>Localisation, weakly supervised segmentation (Dice, HD95 in mm: maps thresholded at "
        "the fraction of their maximum chosen on each trial's validation images), faithfulness "
        "and stability of the attribution maps, per model and attribution method: the mean over "
        "explained test images of each trained model, averaged over seeds and folds, with "
        f"{_confidence(s['alpha'])} hierarchical intervals; see docs/explanations.md.</p>",
        table(
            estimates,
            [
                ("dataset", "dataset"),
                ("model", "model"),
                ("method", "attribution"),
                ("perturbation", "perturbation"),
                ("metric", "metric"),
                ("higher_is_better", "higher is better"),
                ("estimate", "estimate"),
                ("ci_low", "ci low"),
                ("ci_high", "ci high"),
                ("n_obs", "samples"),
                ("n_undefined", "undefined"),
            ],
            name="explanations",
        ),
    ]
    if "randomisation" in summary:
        check = summary["randomisation"]
        failing = check.filter(pl.col("status") == "fails")
        flagged = sorted({f"{r['method']} ({r['model']})" for r in failing.iter_rows(named=True)})
        parts.append("<h3>Model-randomisation check (Adebayo et al. 2018)</h3>")
        parts.append(
            "<p>Rank correlation between the maps of each trained network and of a copy with "
            "every weight re-initialised; a method whose maps stay correlated (interval at or "
            "above the threshold) explains the image, not the network, and <strong>fails"
            "</strong>. "
            + (
                f"Failing: <strong>{escape(', '.join(flagged))}</strong>.</p>"
                if flagged
                else "No method fails.</p>"
            )
        )
        columns = [("dataset", "dataset"), ("model", "model"), ("method", "attribution"),
                   ("estimate", "spearman"), ("ci_low", "ci low"), ("ci_high", "ci high"),
                   ("threshold", "threshold"), ("status", "status")]  # fmt: skip
        parts.append(table(check, columns, name="randomisation"))
    parts += _gallery(results, draw)
    return Section("explanations", "Explanations", "".join(parts))


def _gallery(results: Results, draw: _Figures) -> list[str]:
    """Kept maps over their images: the first trial of each dataset × model, lesions first.

    Only for local results (the slices are read from the results directory).
    """
    root = str(results.root)
    frame = results.explanations.collect()
    if "slices_path" not in frame.columns or ("://" in root and not root.startswith("file://")):
        return []
    kept = frame.filter(pl.col("slices_path").is_not_null())
    if kept.height == 0:
        return []
    # images with a lesion first: the others have notes on their empty ground-truth mask
    lesion = kept.group_by("trial_id", "sample_id").agg(
        pl.col("note").str.contains("ground-truth mask").any().fill_null(False).alias("_empty")
    )
    keys = [c for c in ("dataset", "model") if c in kept.columns]
    kept = kept.join(lesion, on=["trial_id", "sample_id"]).sort(
        *keys, "outer_fold", "seed", "trial_id", "_empty", "sample_id"
    )
    parts = ["<h3>Attribution maps</h3>"]
    for key, rows in kept.group_by(keys, maintain_order=True):
        name = "/".join(str(k) for k in key) if kept.n_unique(keys) > 1 else str(key[-1])
        trial = rows["trial_id"][0]
        rows = rows.filter(pl.col("trial_id") == trial)
        samples = rows["sample_id"].unique(maintain_order=True).to_list()[:GALLERY_SAMPLES]
        for sample in samples:
            sample_rows = rows.filter(pl.col("sample_id") == sample)
            path = Path(root.removeprefix("file://")) / sample_rows["slices_path"][0]
            if not path.is_file():
                continue
            with np.load(path) as arrays:
                slices = {k: arrays[k] for k in arrays.files}
            methods = [m for m in sample_rows["method"].unique(maintain_order=True)
                       if f"map_{m}_x" in slices]  # fmt: skip
            parts.append(
                draw(
                    F.map_gallery(slices, methods),
                    _slug("maps", *key, trial, sample),
                    f"{name}, trial {trial} (fold {sample_rows['outer_fold'][0]}, seed "
                    f"{sample_rows['seed'][0]}), test image {sample}: each method's map (positive "
                    "part, scaled to its maximum) over the image, the lesion mask outlined in cyan",
                )
            )
    return parts if len(parts) > 1 else []


def _curves(results: Results, trials: pl.DataFrame) -> pl.DataFrame | None:
    """Median and quartiles over refit trials of each curve, per (dataset, model, epoch)."""
    keep = [c for c in ("trial_id", "dataset", "model", "stage") if c in trials.columns]
    trials = trials.select(keep)
    if "stage" in trials.columns and (trials["stage"] == "refit").any():
        trials = trials.filter(pl.col("stage") == "refit")
    frame = results.epochs.join(trials.lazy(), on="trial_id", how="inner").collect()
    if frame.height == 0:
        return None
    loss = frame.filter(pl.col("loss").is_not_null()).with_columns(
        curve=pl.format("{} loss", pl.col("split")), y=pl.col("loss")
    )
    metric = frame.filter(pl.col("value").is_not_null() & pl.col("metric").is_not_null())
    metric = metric.with_columns(
        curve=pl.format("{} {}", pl.col("split"), pl.col("metric")), y=pl.col("value")
    )
    keys = [c for c in ("dataset", "model") if c in frame.columns]
    long = pl.concat([loss, metric], how="diagonal_relaxed").filter(pl.col("y").is_finite())
    return (
        long.group_by([*keys, "curve", "epoch"])
        .agg(
            median=pl.col("y").median(),
            q25=pl.col("y").quantile(0.25, "linear"),
            q75=pl.col("y").quantile(0.75, "linear"),
            n=pl.len(),
        )
        .sort([*keys, "curve", "epoch"])
    )


def _training(
    results: Results, trials: pl.DataFrame, draw: _Figures, colors: dict[str, str]
) -> Section | None:
    curves = _curves(results, trials)
    if curves is None or curves.height == 0:
        return None
    parts = [
        "<p>Learning curves of the refit trials from the <code>epochs</code> table: median "
        "over trials (folds and seeds) per model, with the interquartile band.</p>"
    ]
    groups = _by_dataset(curves)
    for dataset, part in groups:
        parts.append(_heading(dataset, len(groups) > 1))
        parts.append(
            draw(
                F.training_curves(part, colors=colors),
                _slug("training", dataset),
                "Training curves: median and interquartile range over trials",
            )
        )
    return Section("training", "Training curves", "".join(parts))


def _methods(summary: Summary) -> Section | None:
    shown = [*summary.tables, *(["combined"] if summary.settings.get("sources") else [])]
    paragraphs = methods_paragraphs(shown, summary.settings)
    if not paragraphs:
        return None
    body = "".join(f"<p><strong>{escape(t)}.</strong> {escape(p)}</p>" for t, p in paragraphs)
    refs = references_for(shown)
    body += (
        '<h3>References</h3><ol class="refs">'
        + "".join(f"<li>{escape(r)}</li>" for r in refs)
        + "</ol>"
    )
    return Section("methods", "Methods", body)


# --- entry point ---------------------------------------------------------------------------------


def write_report(
    results: str | Path | Results | list[str | Path],
    out: str | Path | None = None,
    *,
    summary: Summary | None = None,
    labels: list[str] | None = None,
    figures_dir: str | Path | bool | None = None,
    dpi: int = 200,
    **summarize_kwargs: Any,
) -> Report:
    """Write the self-contained HTML report of a results directory; return what was written.

    Parameters
    ----------
    results:
        A results directory (local path or pyarrow URI) or the object of
        :func:`raybench_analysis.load`; or a list of them, reported as one combined analysis
        (:func:`raybench_analysis.combine.combine`, ``labels`` naming them).
    out:
        The HTML file; default ``<results>/report/index.html`` (required for remote results;
        with several directories, ``<first>/report/combined/index.html``).
    summary:
        The :func:`raybench_analysis.summarize` result to show; computed here with
        ``summarize_kwargs`` when None. Passing the one ``raybench analyze`` printed guarantees
        the same numbers.
    figures_dir:
        Where each figure is also written as PNG and SVG; default ``figures/`` beside the HTML;
        ``False`` writes none.
    dpi:
        Resolution of the PNG files.

    Returns
    -------
    Report
        The HTML path, the figure files, the sections shown, the missing notes, the seconds taken.

    Notes
    -----
    Sections appear only when their data exists: provenance, models (with calibration), comparisons
    (with ranking and the critical-difference diagram across datasets), per site, variance
    components, calibration (reliability diagrams), robustness, uncertainty variants (with
    risk–coverage curves), explanations, training curves, methods with citations. The page loads
    nothing from another host.
    """
    start = time.perf_counter()
    several = None
    if isinstance(results, list | tuple):
        several = combine([read_results(r) if isinstance(r, str | Path) else r for r in results],
                          labels)  # fmt: skip
        root, loaded = str(next(iter(several.sources.values()))), several.results
    elif isinstance(results, str | Path):
        root = str(results)
        loaded = read_results(results)
    else:
        root, loaded = results.root, results
    if out is None:
        if "://" in root and not root.startswith("file://"):
            raise ValueError(
                f"write_report: results={root!r} is remote; give out= a local HTML path."
            )
        folder = Path(root.removeprefix("file://")) / "report"
        out = (folder / "combined" if several else folder) / "index.html"
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if summary is None:
        source = list(several.parts.values()) if several else loaded
        summary = summarize(source, labels=labels, **summarize_kwargs)
    if figures_dir is None or figures_dir is True:
        folder: Path | None = out.parent / "figures"
    else:
        folder = None if figures_dir is False else Path(figures_dir)
    draw = _Figures(folder, dpi)
    if several is not None:
        parts = {label: read_provenance(res) for label, res in several.parts.items()}
        prov = merge_provenance(parts, loaded.trials.collect())
        root = loaded.root
    else:
        prov = read_provenance(loaded)
    trials = prov.trials
    models = sorted(trials["model"].drop_nulls().unique()) if "model" in trials.columns else []
    colors = F.model_colors(models)
    builders: list[Callable[[], Section | None]] = [
        lambda: _provenance(prov, summary),
        lambda: _models(summary, draw, colors),
        lambda: _comparisons(summary, draw),
        lambda: _sites(summary, draw, colors),
        lambda: _variance(summary, draw),
        lambda: _calibration(summary, draw, colors),
        lambda: _robustness(summary, draw, colors),
        lambda: external_section(summary),
        lambda: feature_shift_section(summary),
        lambda: _uncertainty(summary, loaded, draw),
        lambda: _explanations(summary, loaded, draw),
        lambda: learning_section(summary, draw, colors),
        lambda: _training(loaded, trials, draw, colors),
        lambda: _methods(summary),
    ]
    sections = [s for s in (b() for b in builders) if s is not None]
    suite = _suite_name(trials, root)
    n_done = prov.stages["completed"].sum() if prov.stages.height else 0
    n_failed = prov.stages["failed"].sum() if prov.stages.height else 0
    subtitle = [
        f"results: {root}",
        f"{n_done} completed and {n_failed} failed trials; metric {summary.settings.get('metric')}"
        f", alpha {summary.settings.get('alpha')}",
        f"written {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} by raybench_analysis",
    ]
    out.write_text(page(f"raybench report — {suite}", subtitle, sections), encoding="utf-8")
    return Report(
        path=out,
        figures=draw.files,
        sections=[s.anchor for s in sections],
        missing=[*prov.missing, *summary.missing],
        seconds=time.perf_counter() - start,
    )


def _suite_name(trials: pl.DataFrame, root: str) -> str:
    names = trials["suite"].drop_nulls().unique() if "suite" in trials.columns else pl.Series([])
    if names.len():
        return ", ".join(sorted(names.to_list()))
    return Path(root.rstrip("/")).name or root
