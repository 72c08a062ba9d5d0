"""Trial specifications: the unit of work that the runner schedules.

A :class:`TrialSpec` holds everything a worker needs to train and evaluate one model on one split
with one seed, and nothing that does not change the result. Its ``trial_id`` is a content hash of
those inputs (see :mod:`raybench.plan.ids`), so the same suite gives the same ids on any machine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from raybench.plan.config import ResourcesConfig, TrialConfig, WandbConfig

Stage = Literal["search", "refit"]


@dataclass(frozen=True)
class TrialSpec:
    """One trial of the plan.

    ``stage="search"``: one search point trained on an inner training fold and scored on its inner
    validation fold (``test_ids`` empty). ``stage="refit"``: the search point chosen from the
    ``depends_on`` search trials (or the single point when nothing is searched) trained on the outer
    training fold and evaluated on the outer test fold, clean and under each perturbation.
    ``params`` is the search point (flat keys such as ``"lr"`` or ``"model.dropout"``); it is
    ``None`` for a refit whose point is chosen at run time from ``candidates``. ``config`` is the
    plain dict of :meth:`TrialConfig.to_dict <raybench.plan.config.TrialConfig.to_dict>` (what the
    id hashes and ``plan.json`` holds); :attr:`settings` is its typed view.

    With ``validation.train_resampling``: ``train_fraction`` is the fraction of the outer
    training fold's subjects drawn and ``train_resample`` the draw's index (None: the whole fold,
    not a draw); both are None without the axis. ``n_train_subjects`` counts the subjects of the
    train role, bootstrap copies included. None of the three enters the id: the sample ids do.
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
    train_fraction: float | None = None
    train_resample: int | None = None
    n_train_subjects: int | None = None

    @property
    def settings(self) -> TrialConfig:
        """The typed trial config (:class:`~raybench.plan.config.TrialConfig`) of ``config``.

        Parsed on each access (``config`` is the source of truth); read it once per use.
        """
        return TrialConfig.from_dict(self.config)

    @property
    def resources(self) -> ResourcesConfig:
        """The trial's Ray resources, read from ``config["resources"]`` alone.

        The runner schedules with it, so the config of a custom trial function needs no other key.
        """
        return ResourcesConfig.from_dict(self.config.get("resources") or {})

    @property
    def wandb(self) -> WandbConfig | None:
        """The trial's W&B settings, read from ``config["wandb"]`` alone (None: no W&B)."""
        return WandbConfig.from_dict(self.config.get("wandb"))

    def summary(self) -> dict[str, Any]:
        """The trial's place in the plan, as ``raybench plan --json`` prints it (JSON-able)."""
        return {
            "trial_id": self.trial_id,
            "stage": self.stage,
            "dataset": self.dataset,
            "model": self.model,
            "protocol": self.protocol,
            "outer_fold": self.outer_fold,
            "inner_fold": self.inner_fold,
            "seed": self.seed,
            "params": self.params,
            "depends_on": list(self.depends_on),
        }

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain JSON-able values (tuples become lists)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        for key in ("candidates", "train_ids", "val_ids", "test_ids", "depends_on"):
            out[key] = list(out[key])
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialSpec:
        """Inverse of :meth:`to_dict`."""
        kwargs = dict(data)
        for key in ("candidates", "train_ids", "val_ids", "test_ids", "depends_on"):
            kwargs[key] = tuple(kwargs.get(key, ()))
        return cls(**kwargs)


@dataclass(frozen=True)
class Plan:
    """The compiled suite: trials grouped in stages that run one after the other."""

    suite_name: str
    stages: tuple[tuple[Stage, tuple[TrialSpec, ...]], ...]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def trials(self) -> tuple[TrialSpec, ...]:
        return tuple(t for _, trials in self.stages for t in trials)

    def to_dict(self) -> dict[str, Any]:
        """The plan as plain JSON-able values (what ``plan.json`` in a results directory holds)."""
        return {
            "suite_name": self.suite_name,
            "meta": self.meta,
            "stages": [
                {"stage": stage, "trials": [t.to_dict() for t in trials]}
                for stage, trials in self.stages
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        """Inverse of :meth:`to_dict`."""
        stages = tuple(
            (s["stage"], tuple(TrialSpec.from_dict(t) for t in s["trials"])) for s in data["stages"]
        )
        return cls(suite_name=data["suite_name"], stages=stages, meta=dict(data.get("meta", {})))


def plan_json(plan: Plan) -> bytes:
    """The compiled plan as ``raybench run`` writes it to ``plan.json`` in the results directory.

    ``{"suite", "meta", "stages": [{"stage", "trials": [TrialSpec.summary(), ...]}]}``, keys
    sorted: what ``raybench status`` reads to count planned and pending trials.
    """
    doc = {
        "suite": plan.suite_name,
        "meta": plan.meta,
        "stages": [
            {"stage": stage, "trials": [t.summary() for t in trials]}
            for stage, trials in plan.stages
        ],
    }
    return json.dumps(doc, indent=1, sort_keys=True, default=str).encode()
