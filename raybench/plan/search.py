"""The search of each model: its dimensions, its points (grid, random) and its budget.

:func:`model_space` reads a model's search from the suite. Without a ``search:`` section, or with
``algorithm: grid``, the points are every combination of the listed values (lists and ``choice``
distributions). With ``algorithm: random`` the points are drawn here, at compile time: the value of
dimension ``key`` in point ``i`` comes from a NumPy generator seeded with
``protocol_seed(split_seed, "search", key, i)``, so the points are a pure function of the suite
(trial ids stay content hashes and a resumed run finds its trials), adding a dimension leaves the
others' values unchanged, and raising ``num_samples`` keeps the first points (their finished trials
are reused). Points drawn twice from a discrete space are kept once. With ``algorithm: tpe`` there
are no points at compile time: the runner asks Optuna for them (:mod:`raybench.runner.search`) and
the compiler plans one *template* search trial per inner fold (``params=None``).

:func:`search_budget` counts the search trials of a plan: points × inner folds × outer folds ×
seeds for each dataset and model (``raybench plan`` prints it). See docs/search.md.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from raybench_analysis.vocabulary import SELECTION_METRICS

from raybench.plan.spec import Plan, TrialSpec
from raybench.splits import protocol_seed
from raybench.suite.search import Distribution, parse_distribution

__all__ = ["ModelSpace", "is_template", "model_space", "search_budget", "search_settings"]


@dataclass(frozen=True)
class ModelSpace:
    """The search of one model.

    ``dims`` maps every searchable key to its single value or its :class:`Distribution`;
    ``points`` are the planned points (each a value for every key; empty for ``tpe``);
    ``settings`` is the ``search`` entry of the trial configs (``None`` when the search has no
    scheduler and is planned in full at compile time, so that its ids are those of a grid).
    """

    algorithm: str
    dims: dict[str, Any]
    points: list[dict[str, Any]]
    num_samples: int | None = None
    settings: dict[str, Any] | None = None
    searched_keys: tuple[str, ...] = field(default=())

    @property
    def adaptive(self) -> bool:
        """True when the points are chosen at run time (``tpe``)."""
        return self.algorithm == "tpe"

    @property
    def searched(self) -> bool:
        """True when the model has search trials: several points, or an adaptive search."""
        return self.adaptive or len(self.points) > 1


def _point_seed(split_seed: int, key: str, index: int) -> int:
    return protocol_seed(split_seed, "search", key, index)


def _grid(dims: dict[str, Any]) -> list[dict[str, Any]]:
    keys = list(dims)
    values = [d.args if isinstance(d, Distribution) else (d,) for d in dims.values()]
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values)]


def _random(dims: dict[str, Any], n: int, split_seed: int) -> list[dict[str, Any]]:
    points: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i in range(n):
        point = {
            k: d.sample(np.random.default_rng(_point_seed(split_seed, k, i)))
            if isinstance(d, Distribution)
            else d
            for k, d in dims.items()
        }
        key = repr(sorted(point.items()))
        if key not in seen:
            seen.add(key)
            points.append(point)
    return points


def _max_epochs(dims: dict[str, Any]) -> int:
    epochs = dims["epochs"]
    if not isinstance(epochs, Distribution):
        return int(epochs)
    if epochs.kind == "randint":
        return int(epochs.args[1]) - 1
    if epochs.kind == "quniform":
        return int(epochs.args[1])
    return int(max(epochs.args))


def search_settings(suite: Any, dims: dict[str, Any]) -> dict[str, Any] | None:
    """The ``search`` entry of trial configs: what a search trial's result depends on beyond its
    point (the scheduler that may stop it; for ``tpe`` also the space and budget that chose it).

    ``None`` for a grid or random search without a scheduler: its trials are fully planned, so
    their ids are exactly those of the same points written as lists.
    """
    search = suite.search
    if search is None or (search.algorithm != "tpe" and search.scheduler is None):
        return None
    out: dict[str, Any] = {"algorithm": search.algorithm}
    if search.algorithm == "tpe":
        out["num_samples"] = search.num_samples
        out["space"] = {
            k: {d.kind: list(d.args)} for k, d in dims.items() if isinstance(d, Distribution)
        }
    sched = search.scheduler
    if sched is not None:
        metric = sched.metric or suite.evaluation.selection_metric
        out["scheduler"] = {
            "type": sched.type,
            "metric": metric or SELECTION_METRICS[suite.task.type][0],
            "grace_period": sched.grace_period,
            "reduction_factor": sched.reduction_factor,
            "max_t": sched.max_t or _max_epochs(dims),
        }
    return out


def model_space(suite: Any, dims: Sequence[tuple[str, list[Any]]]) -> ModelSpace:
    """The search of a model whose listed values are ``dims`` (key, values), under ``suite``.

    ``dims`` holds every searchable key (a single value is a one-element list); the suite's
    ``search.space`` replaces or adds dimensions. The seed of random points is the suite's split
    seed (``validation.seed``).
    """
    search = suite.search
    merged: dict[str, Any] = {
        k: v[0] if len(v) == 1 else Distribution("choice", tuple(v)) for k, v in dims
    }
    if search is not None:
        for key, spec in search.space.items():
            merged[key] = parse_distribution(spec)
    searched = tuple(k for k, d in merged.items() if isinstance(d, Distribution))
    algorithm = "grid" if search is None else search.algorithm
    if algorithm == "grid":
        points = _grid(merged)
    elif algorithm == "random":
        points = _random(merged, int(search.num_samples), int(suite.validation.seed))
    else:
        points = []
    return ModelSpace(
        algorithm=algorithm,
        dims=merged,
        points=points,
        num_samples=None if search is None else search.num_samples,
        settings=search_settings(suite, merged),
        searched_keys=searched,
    )


def is_template(spec: TrialSpec) -> bool:
    """True for a ``tpe`` template: a search trial whose point the runner asks Optuna for."""
    return spec.stage == "search" and spec.params is None


def search_budget(plan: Plan) -> list[dict[str, Any]]:
    """Search trials per dataset and model: points × inner folds × outer folds × seeds.

    One dict per searched dataset and model: ``dataset``, ``model``, ``algorithm``, ``points``
    (per outer fold and seed), ``inner``, ``outer`` (outer folds over all protocols), ``seeds``
    and ``trials`` (their product: an upper bound for ``tpe``, whose points are chosen while it
    runs, and for a scheduler, which stops some trials early).
    """
    search = dict(plan.stages).get("search", ())
    refits = Counter((t.dataset, t.model) for t in dict(plan.stages).get("refit", ()))
    seeds = len(plan.meta.get("seeds", [])) or 1
    points_of: dict[tuple[str, str], int] = plan.meta.get("search_points", {})
    rows = []
    adaptive = {(t.dataset, t.model) for t in search if is_template(t)}
    for (ds, model), n in Counter((t.dataset, t.model) for t in search).items():
        slots = refits[(ds, model)] or 1
        outer = slots // seeds
        per_slot = n // slots  # points x inner folds; tpe: one template per inner fold
        points = points_of.get(f"{ds}/{model}", 1)
        inner = per_slot if (ds, model) in adaptive else per_slot // max(points, 1)
        rows.append(
            {
                "dataset": ds,
                "model": model,
                "algorithm": plan.meta.get("search_algorithm", "grid"),
                "points": points,
                "inner": inner,
                "outer": outer,
                "seeds": seeds,
                "trials": points * inner * outer * seeds,
            }
        )
    return rows
