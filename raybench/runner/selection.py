"""Refit selection: choose each refit's search point from its finished search trials.

A refit compiled with ``params=None`` names its search trials in ``depends_on`` and the points
they tried in ``candidates``. Once the search stage is committed, the runner reads the search
trials' ``val_score`` from the store's ``trials`` table (the inner validation score at the best
epoch: model selection never sees the outer test fold), averages it per candidate over the inner
folds and picks the best mean, in the direction of the selection metric
(:attr:`raybench.plan.config.TrialConfig.selection`, the one each trial chose its best epoch
with) — the nested cross-validation of Varma & Simon (2006), "Bias in error estimation when using
cross-validation for model selection", BMC Bioinformatics 7:91. Ties keep the candidate listed
first, so the choice is deterministic.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from raybench.errors import TrialError
from raybench.plan.spec import TrialSpec


class SelectionError(TrialError):
    """No search trial of a refit finished, so no point can be chosen."""


def _key(point: Mapping[str, Any] | None) -> str:
    return json.dumps(point or {}, sort_keys=True, default=str)


def choose_point(
    refit: TrialSpec,
    search_specs: Mapping[str, TrialSpec],
    scores: Mapping[str, float | None],
) -> dict[str, Any]:
    """The candidate with the best mean validation score over ``refit.depends_on``.

    ``scores`` maps completed search trial ids to their ``val_score``; missing, null and non-finite
    scores are ignored. Raises :class:`SelectionError` when no candidate has a score.
    """
    sums: dict[str, list[float]] = {}
    for dep in refit.depends_on:
        score = scores.get(dep)
        spec = search_specs.get(dep)
        if spec is None or score is None or not math.isfinite(score):
            continue
        sums.setdefault(_key(spec.params), []).append(float(score))
    sign = 1.0 if refit.settings.selection.higher_is_better else -1.0
    best: tuple[float, dict[str, Any]] | None = None
    for cand in refit.candidates:
        vals = sums.get(_key(cand))
        if not vals:
            continue
        mean = sign * sum(vals) / len(vals)
        if best is None or mean > best[0]:
            best = (mean, dict(cand))
    if best is None:
        raise SelectionError(
            f"refit {refit.trial_id} ({refit.dataset}/{refit.model}, {refit.protocol} fold "
            f"{refit.outer_fold}, seed {refit.seed}): none of its {len(refit.depends_on)} search "
            "trials completed with a finite val_score, so no search point can be chosen; see the "
            "failed search trials with `raybench status`, fix them and run again"
        )
    return best[1]


def resolve_refit(refit: TrialSpec, point: Mapping[str, Any]) -> TrialSpec:
    """The refit with ``point`` applied to its config (``raybench.plan.apply_point``)."""
    from raybench.plan import apply_point, config_digest

    config = apply_point(refit.config, dict(point))
    return dataclasses.replace(
        refit, params=dict(point), config=config, config_hash=config_digest(config)
    )


def resolve_refits(
    refits: Iterable[TrialSpec],
    search_specs: Mapping[str, TrialSpec],
    scores: Mapping[str, float | None],
) -> tuple[list[TrialSpec], dict[str, SelectionError]]:
    """Resolve every refit that needs a choice; return (ready specs, errors by refit id)."""
    ready: list[TrialSpec] = []
    errors: dict[str, SelectionError] = {}
    for spec in refits:
        if spec.params is not None or not spec.depends_on:
            ready.append(spec)
            continue
        try:
            ready.append(resolve_refit(spec, choose_point(spec, search_specs, scores)))
        except SelectionError as exc:
            errors[spec.trial_id] = exc
    return ready, errors
