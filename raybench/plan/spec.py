"""Trial specifications: the unit of work that the runner schedules.

A :class:`TrialSpec` holds everything a worker needs to train and evaluate one model on one split
with one seed, and nothing that does not change the result. Its ``trial_id`` is a content hash of
those inputs (see :mod:`raybench.plan.ids`), so the same suite gives the same ids on any machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Stage = Literal["search", "refit"]


@dataclass(frozen=True)
class TrialSpec:
    """One trial of the plan.

    ``stage="search"``: one search point trained on an inner training fold and scored on its inner
    validation fold (``test_ids`` empty). ``stage="refit"``: the search point chosen from the
    ``depends_on`` search trials (or the single point when nothing is searched) trained on the outer
    training fold and evaluated on the outer test fold, clean and under each perturbation.
    ``params`` is the search point (flat keys such as ``"lr"`` or ``"model.dropout"``); it is
    ``None`` for a refit whose point is chosen at run time from ``candidates``.
    """

    trial_id: str
    stage: Stage
    dataset: str
    model: str
    protocol: str
    outer_fold: int
    inner_fold: int | None
    seed: int
    params: dict[str, Any] | None
    candidates: tuple[dict[str, Any], ...]
    config: dict[str, Any]
    train_ids: tuple[str, ...]
    val_ids: tuple[str, ...]
    test_ids: tuple[str, ...]
    depends_on: tuple[str, ...] = ()
    config_hash: str = ""
    data_fingerprint: str = ""


@dataclass(frozen=True)
class Plan:
    """The compiled suite: trials grouped in stages that run one after the other."""

    suite_name: str
    stages: tuple[tuple[Stage, tuple[TrialSpec, ...]], ...]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def trials(self) -> tuple[TrialSpec, ...]:
        return tuple(t for _, trials in self.stages for t in trials)
