"""The analysis settings of a run: the saved suite's choices, overridden and checked in one place.

``raybench run`` copies its suite into the results directory as ``suite.yaml``. The analysis of
that directory (``raybench run``'s closing tables, ``raybench analyze`` and
:func:`raybench_analysis.summarize`) takes its metrics, hierarchy, ``alpha`` and ``n_boot`` from
that copy, so the three give the same numbers; explicit arguments override them and are checked
as the suite's keys are (known words of :mod:`raybench_analysis.vocabulary`, levels outermost
first, the sample unit present, metrics that fit the task), with a "did you mean" on a typo.
This module reads the YAML itself: an analyst without raybench gets the same settings.

>>> s = resolve_settings({}, "classification", hierarchy=["site", "subject_id"])
>>> s.metrics, s.hierarchy, s.alpha, s.n_boot
(('auc',), ('site', 'subject_id'), 0.05, 2000)
>>> resolve_settings({}, "classification", hierarchy=["site", "subjectid"])
Traceback (most recent call last):
...
raybench_analysis._frames.AnalysisError: hierarchy: unknown level 'subjectid'; did you mean 'subject_id'? allowed: site, scanner, subject_id, session_id (outermost first)
"""  # noqa: E501

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raybench_analysis._frames import AnalysisError
from raybench_analysis.io import join_uri, read_text
from raybench_analysis.vocabulary import (
    DEFAULT_ALPHA,
    DEFAULT_HIERARCHY,
    DEFAULT_N_BOOT,
    HIERARCHY_LEVELS,
    METRICS_BY_TASK,
    SAMPLE_UNIT,
    TASK_TYPES,
    default_metric,
)

__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_N_BOOT",
    "SUITE_FILE",
    "AnalysisSettings",
    "read_saved_suite",
    "resolve_settings",
]

#: The copy of the suite that ``raybench run`` writes into its results directory.
SUITE_FILE = "suite.yaml"


@dataclass(frozen=True)
class AnalysisSettings:
    """What an analysis computes: the task, its metrics (primary first), hierarchy, alpha, n_boot.

    ``origin`` says, per setting, where its value came from: ``"argument"`` (an override),
    ``"suite"`` (the saved suite) or ``"default"``.
    """

    task: str
    metrics: tuple[str, ...]
    hierarchy: tuple[str, ...]
    alpha: float
    n_boot: int
    origin: dict[str, str] = field(default_factory=dict)

    @property
    def metric(self) -> str:
        """The primary metric: the first of :attr:`metrics`."""
        return self.metrics[0]


def read_saved_suite(results_dir: str | Path) -> dict[str, Any]:
    """The analysis-relevant keys of ``results_dir/suite.yaml``: what the run was asked to report.

    Returns a dict with those of ``task`` (the task type), ``metrics`` (``analysis.metric`` first,
    then ``evaluation.metrics``), ``hierarchy``, ``alpha`` and ``n_boot`` that the suite sets;
    ``{}`` when the directory has no saved suite (e.g. tables written by another tool). A saved
    suite that is not readable YAML raises :class:`AnalysisError` naming the file.
    """
    text = read_text(str(results_dir), SUITE_FILE)
    if text is None:
        return {}
    import yaml

    path = join_uri(str(results_dir), SUITE_FILE)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise AnalysisError(f"{path}: the saved suite is not readable YAML ({exc})") from None
    if not isinstance(data, dict):
        raise AnalysisError(f"{path}: the saved suite is not a mapping of suite keys")
    task = _mapping(data.get("task")).get("type")
    analysis = _mapping(data.get("analysis"))
    evaluation = _mapping(data.get("evaluation"))
    listed = evaluation.get("metrics")
    listed = [str(x) for x in listed] if isinstance(listed, list) else []
    primary = analysis.get("metric")
    metrics = [str(primary)] if primary else []
    metrics += [m for m in listed if m not in metrics]
    out: dict[str, Any] = {"task": task, "metrics": metrics or None}
    out |= {"hierarchy": analysis.get("hierarchy")}
    out |= {k: _number(analysis.get(k)) for k in ("alpha", "n_boot")}
    return {k: v for k, v in out.items() if v is not None}


def _number(value: Any) -> Any:
    """``1e-2`` is a number in the suite's YAML 1.2 but a string to PyYAML's 1.1 rules."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _did_you_mean(word: str, allowed: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, allowed, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def check_hierarchy(levels: Sequence[str]) -> tuple[str, ...]:
    """``levels`` if they are known, outermost first, distinct and contain the sample unit.

    The rules of the suite's ``analysis.hierarchy``: levels of
    :data:`~raybench_analysis.vocabulary.HIERARCHY_LEVELS` in that order, with
    :data:`~raybench_analysis.vocabulary.SAMPLE_UNIT` (resampling images as if independent
    would understate every interval). Raises :class:`AnalysisError` with the allowed values.
    """
    allowed = f"allowed: {', '.join(HIERARCHY_LEVELS)} (outermost first)"
    if isinstance(levels, str) or not all(isinstance(x, str) for x in levels):
        raise AnalysisError(f"hierarchy: {levels!r} is not a list of level names; {allowed}")
    for level in levels:
        if level not in HIERARCHY_LEVELS:
            hint = _did_you_mean(level, HIERARCHY_LEVELS)
            raise AnalysisError(f"hierarchy: unknown level {level!r}{hint} {allowed}")
    if len(set(levels)) != len(levels):
        raise AnalysisError(f"hierarchy: {list(levels)} names a level twice; {allowed}")
    ordered = sorted(levels, key=HIERARCHY_LEVELS.index)
    if list(levels) != ordered:
        raise AnalysisError(
            f"hierarchy: {list(levels)} is not outermost first; did you mean "
            f"{','.join(ordered)!r}? {allowed}"
        )
    if SAMPLE_UNIT not in levels:
        raise AnalysisError(
            f"hierarchy: {list(levels)} lacks {SAMPLE_UNIT!r}, the independent unit of a sample "
            f"(without it images are resampled as if independent); add it, e.g. "
            f"{','.join(sorted({*levels, SAMPLE_UNIT}, key=HIERARCHY_LEVELS.index))!r}; {allowed}"
        )
    return tuple(levels)


def check_metrics(metrics: Sequence[str], task: str) -> tuple[str, ...]:
    """``metrics`` (distinct, order kept) if each fits ``task``; else :class:`AnalysisError`."""
    allowed = METRICS_BY_TASK[task]
    if isinstance(metrics, str) or not metrics:
        raise AnalysisError(f"metric: {metrics!r} names no metric; allowed: {', '.join(allowed)}")
    for name in metrics:
        if name not in allowed:
            hint = _did_you_mean(str(name), allowed)
            raise AnalysisError(
                f"metric: {name!r} does not fit a {task} task{hint} allowed: {', '.join(allowed)}"
            )
    return tuple(dict.fromkeys(metrics))


def _check_alpha(alpha: Any) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 < alpha < 1:
        raise AnalysisError(f"alpha: {alpha!r} must be a number between 0 and 1 (e.g. 0.05)")
    return float(alpha)


def _check_n_boot(n_boot: Any) -> int:
    ok = isinstance(n_boot, int) and not isinstance(n_boot, bool)
    if not ok and isinstance(n_boot, float) and math.isfinite(n_boot) and n_boot.is_integer():
        n_boot, ok = int(n_boot), True
    if not ok or n_boot < 2:
        raise AnalysisError(
            f"n_boot: {n_boot!r} must be an integer of at least 2 (1000 or more is usual)"
        )
    return int(n_boot)


def resolve_settings(
    saved: Mapping[str, Any],
    task: str,
    *,
    metric: str | Sequence[str] | None = None,
    hierarchy: Sequence[str] | None = None,
    alpha: float | None = None,
    n_boot: int | None = None,
) -> AnalysisSettings:
    """The settings of an analysis: each argument given overrides the saved suite's value.

    Parameters
    ----------
    saved:
        The saved suite's keys (:func:`read_saved_suite`; ``{}`` for none).
    task:
        The task type inferred from the results; the saved suite's ``task.type`` wins.
    metric:
        One metric name or a list (the first is primary); default the suite's ``analysis.metric``
        then ``evaluation.metrics``, else the task's default metric.
    hierarchy, alpha, n_boot:
        Overrides of ``analysis.hierarchy`` (default ``site, subject_id``), ``analysis.alpha``
        (0.05) and ``analysis.n_boot`` (2000).

    Every value, given or saved, is checked: see :func:`check_hierarchy` and
    :func:`check_metrics`. Raises :class:`AnalysisError` on the first bad value.
    """
    task = str(saved.get("task", task))
    if task not in TASK_TYPES:
        raise AnalysisError(f"task: {task!r} is unknown{_did_you_mean(task, TASK_TYPES)} "
                            f"allowed: {', '.join(TASK_TYPES)}")  # fmt: skip
    origin: dict[str, str] = {}

    def pick(name: str, given: Any, default: Any) -> Any:
        if given is not None:
            origin[name] = "argument"
            return given
        origin[name] = "suite" if name in saved else "default"
        return saved.get(name, default)

    metrics = pick("metrics", [metric] if isinstance(metric, str) else metric, None)
    metrics = check_metrics(metrics or [default_metric(task)], task)
    levels = check_hierarchy(pick("hierarchy", hierarchy, list(DEFAULT_HIERARCHY)))
    return AnalysisSettings(
        task=task,
        metrics=metrics,
        hierarchy=levels,
        alpha=_check_alpha(pick("alpha", alpha, DEFAULT_ALPHA)),
        n_boot=_check_n_boot(pick("n_boot", n_boot, DEFAULT_N_BOOT)),
        origin=origin,
    )
