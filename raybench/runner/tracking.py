"""Weights & Biases: a run per trial worth opening, and one analysis run per suite; offline first.

The suite's ``tracking.wandb`` chooses the mode (``offline`` by default: no account or key needed,
``wandb sync <dir>`` uploads later; ``online``; ``disabled``); no ``tracking.wandb`` means no W&B.

- Trial runs are grouped by suite and stage (``group="<suite>/<stage>"``), named
  ``<model>/fold<k>/seed<s>`` (the suite's model name), tagged with the trial id, stage, dataset
  and model, and carry the trial id and resolved config in their config. They log the epochs as
  they come and end with a summary of what the trial is judged on: ``best_epoch``, ``val_score``
  and the test metrics of each perturbation (``test/<perturbation>/<metric>``), not the last
  epoch's values.
- The suite run (``job_type="analysis"``, one per ``raybench run``) holds the summary tables of
  :func:`raybench_analysis.summarize` as ``wandb.Table``, the report's figures as images, and the
  HTML report and the Parquet results as artifacts (referenced in place, or uploaded).

Configs are built from the plan and the analysis settings, never from the environment, and keys
that look like secrets are dropped at any depth, so no API key can reach a logged config.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shlex
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from raybench_analysis.contract import count_column

from raybench.plan.spec import TrialSpec

#: Keys never copied into a W&B config, at any depth (defence in depth: configs come from suites).
_SECRET_MARKERS = ("key", "token", "secret", "password", "credential")

_QUIET = {
    "console": "off",
    "x_disable_stats": True,
    "x_disable_machine_info": True,
    "disable_git": True,
    "save_code": False,
    "silent": True,
}


def wandb_settings(spec: TrialSpec) -> dict[str, Any] | None:
    """The trial's W&B settings (``project``, ``mode``, ``entity``) or None when W&B is off."""
    settings = spec.wandb
    if settings is None or settings.mode == "disabled":
        return None
    return dataclasses.asdict(settings)


def run_name(spec: TrialSpec) -> str:
    """``<model>/fold<k>/seed<s>`` (``fold<k>.<inner>`` for a search trial), readable in W&B."""
    fold = f"fold{spec.outer_fold}"
    if spec.inner_fold is not None:
        fold += f".{spec.inner_fold}"
    protocol = "" if spec.protocol in (None, "outer") else f"{spec.protocol}/"
    return f"{spec.model}/{protocol}{fold}/seed{spec.seed}"


def safe_config(spec: TrialSpec) -> dict[str, Any]:
    """The config logged to W&B: trial identity and resolved config, minus secret-like keys.

    ``model`` is the suite's model name (what W&B users filter on); the resolved architecture and
    its parameters are under ``model_config``.
    """
    config = {k: v for k, v in spec.config.items() if k not in ("wandb", "model")}
    if "model" in spec.config:
        config["model_config"] = spec.config["model"]
    identity = {
        "trial_id": spec.trial_id,
        "stage": spec.stage,
        "dataset": spec.dataset,
        "model": spec.model,
        "protocol": spec.protocol,
        "outer_fold": spec.outer_fold,
        "inner_fold": spec.inner_fold,
        "seed": spec.seed,
        "params": spec.params,
    }
    return scrub({**config, **identity})


def scrub(value: Any) -> Any:
    """``value`` with every mapping key that looks like a secret removed, at any depth."""
    if isinstance(value, dict):
        return {
            k: scrub(v)
            for k, v in value.items()
            if not any(m in str(k).lower() for m in _SECRET_MARKERS)
        }
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    return value


def trial_test_metrics(predictions: Any, metrics: list[str]) -> dict[str, float]:
    """``{"test/<perturbation>/<metric>": value}`` of one trial's test predictions.

    ``predictions`` is the trial's ``predictions`` table (pyarrow or polars); metrics that the
    predictions cannot give (e.g. AUC with one class) are left out rather than logged as NaN.
    """
    import polars as pl
    from raybench_analysis._frames import AnalysisError
    from raybench_analysis.contract import raw_rows
    from raybench_analysis.metrics import metric_by

    frame = predictions if isinstance(predictions, pl.DataFrame) else pl.from_arrow(predictions)
    if "split" in frame.columns:
        frame = frame.filter(pl.col("split") == "test")
    frame = raw_rows(frame)  # the network's own predictions, not its uncertainty variants
    if frame.height == 0:
        return {}
    if "perturbation" not in frame.columns:
        frame = frame.with_columns(perturbation=pl.lit("none"))
    out: dict[str, float] = {}
    for name in metrics:
        try:
            values = metric_by(frame, name, by="perturbation")
        except (AnalysisError, ValueError):
            continue
        for row in values.iter_rows(named=True):
            value = row["estimate"]
            if value is not None and math.isfinite(value):
                out[f"test/{row['perturbation']}/{name}"] = float(value)
    return out


#: ``trials`` columns left out of a trial run's summary: the identity is in the run's config
#: (:func:`safe_config`), a traceback belongs to the logs, and the row counts are bookkeeping.
_NOT_SUMMARISED = frozenset(
    {"suite", "dataset", "model", "stage", "protocol", "outer_fold", "inner_fold", "seed"}
    | {"params", "traceback", "started_at", "finished_at"}
)


def trial_summary(row: Mapping[str, Any]) -> dict[str, Any]:
    """The W&B summary of a committed ``trials`` row: every outcome column that has a value.

    Read from the row rather than from a list of names, so a column the contract gains (training
    resampling, AMP and cuDNN settings, the saved model's hash, ``pruned``) reaches W&B without a
    change here; row counts of the other tables (``rows_*``) are left out.
    """
    return {
        key: value
        for key, value in row.items()
        if value is not None
        and key not in _NOT_SUMMARISED
        and not key.startswith(count_column(""))
        and isinstance(value, str | int | float | bool)
    }


class TrialRun:
    """The W&B run of one trial: call it with an epoch row; :meth:`log_result` at the end."""

    def __init__(self, run: Any, spec: TrialSpec) -> None:
        self.run, self.spec = run, spec
        self.epochs: dict[int, dict[str, float]] = {}

    def __call__(self, row: dict[str, Any]) -> None:
        """Log one epoch's numbers (``epoch`` is the step)."""
        data = {
            k: float(v)
            for k, v in row.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and k != "epoch"
        }
        epoch = row.get("epoch")
        if isinstance(epoch, int):
            self.epochs[epoch] = data
        self.run.log(data, step=int(epoch) if isinstance(epoch, int) else None)

    def log_result(self, tables: Mapping[str, Any]) -> None:
        """Summarise the trial: ``best_epoch``, ``val_score``, test metrics per perturbation.

        The per-epoch values in the summary (losses, learning rate) are set to those of
        ``best_epoch``, the epoch whose model was evaluated, rather than W&B's default, the last.
        """
        summary: dict[str, Any] = {"trial_id": self.spec.trial_id}
        trials = tables.get("trials")
        if trials is not None and trials.num_rows:
            row = trials.slice(0, 1).to_pylist()[0]
            summary |= trial_summary(row)
            # the epoch curves' summary values are those of the selected epoch, not the last
            summary |= self.epochs.get(row.get("best_epoch"), {})
        metrics = list(self.spec.settings.evaluation.metrics)
        if tables.get("predictions") is not None and metrics:
            summary |= trial_test_metrics(tables["predictions"], metrics)
        self.run.summary.update(summary)


def _init(settings: Mapping[str, Any], wandb_dir: Path, **kwargs: Any) -> Any:
    import wandb

    wandb_dir = Path(wandb_dir)
    wandb_dir.mkdir(parents=True, exist_ok=True)
    mode = settings["mode"]
    os.environ["WANDB_MODE"] = mode
    os.environ.setdefault("WANDB_SILENT", "true")
    return wandb.init(
        project=settings["project"],
        entity=settings.get("entity"),
        dir=str(wandb_dir),
        mode=mode,
        reinit="create_new",
        settings=wandb.Settings(**_QUIET),
        **kwargs,
    )


@contextmanager
def trial_run(spec: TrialSpec, wandb_dir: Path | None) -> Iterator[TrialRun | None]:
    """Open the trial's W&B run; yield its :class:`TrialRun` (an epoch logger), or None.

    None when W&B is off. The run is finished (and its offline files flushed) when the block
    ends, with exit code 1 if the trial raised.
    """
    settings = wandb_settings(spec)
    if settings is None or wandb_dir is None:
        yield None
        return
    run = _init(
        settings,
        Path(wandb_dir),
        group=f"{spec.settings.suite}/{spec.stage}",
        job_type=spec.stage,
        name=run_name(spec),
        tags=[spec.trial_id, spec.stage, spec.dataset, spec.model],
        config=safe_config(spec),
    )
    exit_code = 0
    try:
        yield TrialRun(run, spec)
    except BaseException:
        exit_code = 1
        raise
    finally:
        run.finish(exit_code=exit_code)


def _table(frame: Any) -> Any:
    """A ``wandb.Table`` of a polars frame (lists and other objects as text)."""
    import wandb

    rows = [
        [v if v is None or isinstance(v, bool | int | float | str) else str(v) for v in row]
        for row in frame.iter_rows()
    ]
    return wandb.Table(columns=list(frame.columns), data=rows)


def log_suite_run(
    suite: str,
    settings: Mapping[str, Any],
    wandb_dir: Path,
    summary: Any,
    *,
    report: Any = None,
    results_dir: str | None = None,
    artifacts: Literal["reference", "upload"] = "reference",
) -> Path | None:
    """Write the suite-level W&B run (``job_type="analysis"``); return its local run directory.

    ``summary`` is the :class:`raybench_analysis.Summary` (each table becomes a ``wandb.Table``
    ``tables/<name>``, the ``models`` estimates go in the run summary as
    ``<dataset>/<model>/<metric>``), ``report`` the :class:`raybench_analysis.report.Report`
    (figures as images ``figures/<name>``, the HTML and figure files as a ``report`` artifact),
    ``results_dir`` the local results (its Parquet tables as a ``results`` artifact, referenced
    in place with ``artifacts="reference"`` or copied into the artifact with ``"upload"``).
    Returns None when ``settings`` turn W&B off.
    """
    if not settings or settings["mode"] == "disabled":
        return None
    import wandb

    config = scrub({"suite": suite, "analysis": dict(summary.settings)})
    run = _init(
        settings,
        wandb_dir,
        group=suite,
        job_type="analysis",
        name=f"{suite}/analysis",
        tags=[suite, "analysis"],
        config=config,
    )
    try:
        run.log({f"tables/{name}": _table(frame) for name, frame in summary.items()})
        if "models" in summary:
            for row in summary["models"].iter_rows(named=True):
                key = "/".join(str(row[c]) for c in ("dataset", "model", "metric") if c in row)
                run.summary[key] = row["estimate"]
        run.summary["missing"] = list(summary.missing)
        if report is not None:
            pngs = [p for p in report.figures if p.suffix == ".png"]
            run.log({f"figures/{p.stem}": wandb.Image(str(p)) for p in pngs})
            art = wandb.Artifact(f"{suite}-report", type="report")
            art.add_file(str(report.path), name="index.html")
            for path in report.figures:
                art.add_file(str(path), name=f"figures/{path.name}")
            run.log_artifact(art)
        if results_dir is not None and "://" not in results_dir:
            art = wandb.Artifact(f"{suite}-results", type="results")
            root = Path(results_dir)
            for table in ("trials", "predictions", "epochs", "splits"):
                if not (root / table).is_dir():
                    continue
                if artifacts == "upload":
                    art.add_dir(str(root / table), name=table)
                else:
                    art.add_reference((root / table).resolve().as_uri(), name=table)
            run.log_artifact(art)
    finally:
        run.finish()
    return Path(run.dir).parent


def sync_command(wandb_dir: Path) -> str:
    """The command that uploads the offline runs written under ``wandb_dir``."""
    return f"wandb sync {shlex.quote(str(Path(wandb_dir) / 'wandb'))}/offline-run-*"
