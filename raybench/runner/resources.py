"""Can the cluster ever run the plan? Trial resources against node shapes, before anything starts.

Ray Tune places each trial on **one** node (a single-bundle placement group), so a trial fits
when some node — alive now, or one an autoscaling cluster may add (its node types with a
non-zero maximum, when Ray exposes the autoscaler's config) — has at least each resource the
trial asks for. A trial that fits nowhere would wait forever: :func:`check_schedulable` turns
that into a :class:`~raybench.runner.cluster.ClusterError` (exit 2) saying what was asked, what
exists and how to run anyway. ``--gpus N`` (:func:`override_gpus`) replaces the suite's GPU
share of every trial, e.g. ``--gpus 0`` for a CPU-only try; the override is recorded in the
trials table's ``resources_override`` column.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence

from raybench.plan.spec import Plan, TrialSpec
from raybench.runner.cluster import ClusterError

#: Tune's resource names (the suite's ``resources`` keys) -> Ray's.
_RAY_NAMES = {"cpu": "CPU", "gpu": "GPU"}
_IGNORED = ("node:", "accelerator_type:", "object_store_memory")


def ray_name(name: str) -> str:
    """Ray's name of a trial resource (``cpu`` -> ``CPU``; ``memory`` and custom names as is)."""
    return _RAY_NAMES.get(name, name)


def override_gpus(plan: Plan, gpus: float | None) -> Plan:
    """``plan`` with every trial's ``resources.gpu`` set to ``gpus`` (None: unchanged).

    Trial ids do not change (a resumed run finds its committed trials); each overridden spec's
    config carries ``resources_override`` (``{"gpu": [suite value, run value]}``) for the trials
    table.
    """
    if gpus is None:
        return plan

    def one(spec: TrialSpec) -> TrialSpec:
        before = spec.resources.gpu
        resources = {**spec.config["resources"], "gpu": float(gpus)}
        config = {**spec.config, "resources": resources}
        config["resources_override"] = {"gpu": [before, float(gpus)]}
        return dataclasses.replace(spec, config=config)

    return dataclasses.replace(
        plan, stages=tuple((stage, tuple(one(s) for s in specs)) for stage, specs in plan.stages)
    )


def override_column(spec: TrialSpec) -> str | None:
    """The ``resources_override`` value of a trial's row: JSON of what the run overrode, or None."""
    override = spec.config.get("resources_override")
    return json.dumps(override, sort_keys=True) if override else None


def node_shapes() -> tuple[list[dict[str, float]], list[dict[str, float]]]:
    """Resources of the alive nodes, and of the node types an autoscaler may add (maybe none)."""
    import ray

    alive = [
        {k: float(v) for k, v in (node.get("Resources") or {}).items()}
        for node in ray.nodes()
        if node.get("Alive")
    ]
    return alive, _autoscaling_shapes()


def _autoscaling_shapes() -> list[dict[str, float]]:
    """Node types of the autoscaler's config with a non-zero maximum (Ray's private state API)."""
    try:
        from ray._private.state import state

        config = state.get_cluster_config()
    except Exception:  # no autoscaler, or a Ray without this API: only alive nodes count
        return []
    if config is None:
        return []
    return [
        {k: float(v) for k, v in group.resources.items()}
        for group in config.node_group_configs
        if group.max_count != 0
    ]


def _fits(need: Mapping[str, float], shape: Mapping[str, float]) -> bool:
    return all(amount <= shape.get(ray_name(name), 0.0) + 1e-9 for name, amount in need.items())


def _show(resources: Mapping[str, float], *, ray_names: bool = False) -> str:
    items = []
    for name, amount in sorted(resources.items()):
        if ray_names and name.startswith(_IGNORED):
            continue
        label = name if ray_names else ray_name(name)
        value = f"{amount / 1e9:.1f} GB" if label == "memory" else f"{amount:g}"
        items.append(f"{value} {label}")
    return ", ".join(items) or "nothing"


def _hint(need: Mapping[str, float]) -> str:
    hints = []
    if need.get("gpu", 0) > 0:
        hints.append(
            "to try on CPUs anyway add `--gpus 0` (it overrides the suite's resources.gpu; the "
            "trials table records the override in its resources_override column)"
        )
    if need.get("cpu", 0) > 1:
        hints.append("lower resources.cpu in the suite, or give the local Ray more with --num-cpus")
    hints.append("or run on a cluster that has them (--address)")
    return "; ".join(hints)


def check_schedulable(
    needs: Mapping[str, Mapping[str, float]],
    alive: Sequence[Mapping[str, float]],
    scalable: Iterable[Mapping[str, float]] = (),
) -> None:
    """Raise :class:`ClusterError` when a trial of ``needs`` (trial id -> resources) fits no node.

    >>> check_schedulable({"t1": {"cpu": 1, "gpu": 0.5}}, [{"CPU": 2.0}])
    Traceback (most recent call last):
    ...
    raybench.runner.cluster.ClusterError: 1 trial(s) can never start: each asks for 1 CPU, ...
    """
    shapes = [*alive, *scalable]
    stuck: dict[tuple[tuple[str, float], ...], list[str]] = {}
    for trial_id, need in needs.items():
        if not any(_fits(need, shape) for shape in shapes):
            stuck.setdefault(tuple(sorted(need.items())), []).append(trial_id)
    if not stuck:
        return
    lines = []
    for key, ids in stuck.items():
        need = dict(key)
        lines.append(
            f"{len(ids)} trial(s) can never start: each asks for {_show(need)} on one node "
            f"(e.g. {ids[0]}), and no node of this cluster has that; {_hint(need)}."
        )
    nodes = "; ".join(f"node {i + 1}: {_show(s, ray_names=True)}" for i, s in enumerate(alive))
    lines.append(f"The cluster has {nodes or 'no alive node'}")
    scalable = list(scalable)
    if scalable:
        kinds = "; ".join(_show(s, ray_names=True) for s in scalable)
        lines[-1] += f", and its autoscaler can add nodes of: {kinds}"
    raise ClusterError("\n".join(lines) + ".")


def schedulable_or_raise(needs: Mapping[str, Mapping[str, float]]) -> None:
    """:func:`check_schedulable` against the connected Ray's nodes and autoscaler config."""
    alive, scalable = node_shapes()
    check_schedulable(needs, alive, scalable)
