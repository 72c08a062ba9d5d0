"""Checks of a suite that involve more than one key (the schema checks each key alone).

:func:`check_suite_data` reads the suite as plain data (what the user wrote, defaults omitted) and
returns every problem it finds; it never imports plugins or touches the data. It is defensive: a
value of the wrong type is left to the schema's own error and skipped here, so both kinds of
problems are reported together.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from typing import Any

from raybench_analysis.vocabulary import (
    ARCHITECTURES,
    HIERARCHY_LEVELS,
    METRICS_BY_TASK,
    PERTURBATION_PARAMS,
    SAMPLE_UNIT,
    SEARCHABLE_TRAINING_KEYS,
    SELECTION_METRICS,
    SYNTHETIC_CLASSES,
    SYNTHETIC_LABELS,
    UNCERTAINTY_TASKS,
)

from raybench.suite.networks import DROPOUT_PARAMS, NETWORK_PARAMS, REFUSED_PARAMS, SET_BY_RAYBENCH
from raybench.suite.problems import PathT, Problem, choices, format_path, show, suggest

#: ``module.sub:callable`` (the callable may be dotted: ``module:Class.factory``).
PLUGIN_PATTERN = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")

#: Keys of a protocol that only some strategies use.
PROTOCOL_KEYS_BY_STRATEGY: dict[str, tuple[str, ...]] = {
    "group_kfold": ("k", "repeats"),
    "group_holdout": ("fraction",),
    "leave_one_site_out": (),
}

Check = Callable[[dict[str, Any]], Iterator[Problem]]
_CHECKS: list[Check] = []


def check(func: Check) -> Check:
    """Register a check (each yields the problems of one concern)."""
    _CHECKS.append(func)
    return func


def check_suite_data(data: Any) -> list[Problem]:
    """Every cross-key problem of a suite given as plain data (a mapping as read from YAML)."""
    if not isinstance(data, dict):
        return []
    return [p for func in _CHECKS for p in func(data)]


# --------------------------------------------------------------------------- helpers


def _get(data: Any, *keys: str | int) -> Any:
    for k in keys:
        if isinstance(data, dict):
            data = data.get(k)
        elif isinstance(data, list) and isinstance(k, int) and 0 <= k < len(data):
            data = data[k]
        else:
            return None
    return data


def _items(data: Any, key: str) -> list[tuple[int, Any]]:
    value = data.get(key) if isinstance(data, dict) else None
    return list(enumerate(value)) if isinstance(value, list) else []


def _task_type(data: dict[str, Any]) -> str | None:
    t = _get(data, "task", "type")
    return t if isinstance(t, str) and t in METRICS_BY_TASK else None


def _duplicates(
    values: list[tuple[PathT, Any]], what: str, render: Callable[[PathT], str]
) -> Iterator[Problem]:
    first: dict[Any, PathT] = {}
    for path, v in values:
        key = repr(v)
        if key in first:
            yield Problem(path, f"duplicate {what} (first at {render(first[key])})", found=show(v))
        else:
            first[key] = path


def _protocols(data: dict[str, Any]) -> Iterator[tuple[PathT, dict[str, Any]]]:
    for key in ("outer", "inner"):
        p = _get(data, "validation", key)
        if isinstance(p, dict):
            yield ("validation", key), p
    for i, p in _items(data.get("validation") or {}, "extra"):
        if isinstance(p, dict):
            yield ("validation", "extra", i), p


# --------------------------------------------------------------------------- the checks


@check
def unique_names(data: dict[str, Any]) -> Iterator[Problem]:
    """Dataset and model names name results; seeds and extra protocols must not repeat."""
    for key, what in (("datasets", "dataset name"), ("models", "model name")):
        names = [((key, i, "name"), _get(d, "name")) for i, d in _items(data, key)]
        yield from _duplicates([(p, n) for p, n in names if isinstance(n, str)], what, format_path)
    seeds = [(("seeds", i), s) for i, s in _items(data, "seeds") if isinstance(s, int)]
    yield from _duplicates(seeds, "seed", format_path)
    extra = [
        (("validation", "extra", i, "strategy"), _get(p, "strategy"))
        for i, p in _items(data.get("validation") or {}, "extra")
    ]
    yield from _duplicates(
        [(p, s) for p, s in extra if isinstance(s, str)], "extra protocol strategy", format_path
    )


@check
def plugins_and_architectures(data: dict[str, Any]) -> Iterator[Problem]:
    """Plugins look like ``module:callable``; each ``arch`` is known or a plugin."""
    plugins = data.get("plugins")
    plugins = plugins if isinstance(plugins, dict) else {}
    for name, spec in plugins.items():
        if isinstance(spec, str) and not PLUGIN_PATTERN.match(spec):
            yield Problem(
                ("plugins", name),
                "invalid plugin reference",
                found=show(spec),
                allowed="'module.path:callable' (imported only when a trial runs)",
            )
        if name in ARCHITECTURES:
            yield Problem(
                ("plugins", name),
                "plugin name shadows a built-in architecture; rename the plugin",
                found=show(name),
                anchor="key",
            )
    allowed = [*ARCHITECTURES, *(n for n in plugins if n not in ARCHITECTURES)]
    for i, model in _items(data, "models"):
        arch = _get(model, "arch")
        if isinstance(arch, str) and arch not in allowed:
            yield Problem(
                ("models", i, "arch"),
                "unknown architecture (declare your own network under plugins:)",
                found=show(arch),
                allowed=", ".join(allowed),
                suggestion=suggest(arch, allowed),
            )


@check
def network_arguments(data: dict[str, Any]) -> Iterator[Problem]:
    """A built-in network's ``params`` are arguments of its constructor (plugins are not checked).

    Searched values (lists) count by their key: ``params: {dropout: [0.0, 0.2]}`` is the argument
    ``dropout``. Without this check every trial of the model would fail at run time.
    """
    plugins = data.get("plugins") if isinstance(data.get("plugins"), dict) else {}
    for i, model in _items(data, "models"):
        arch, params = _get(model, "arch"), _get(model, "params")
        known = isinstance(arch, str) and arch in NETWORK_PARAMS and arch not in plugins
        if not known or not isinstance(params, dict):
            continue
        allowed = sorted(NETWORK_PARAMS[arch])
        for key in params:
            path = ("models", i, "params", key)
            if key in REFUSED_PARAMS:
                yield Problem(path, f"not supported: {REFUSED_PARAMS[key]}", anchor="key")
            elif key in SET_BY_RAYBENCH[arch]:
                yield Problem(
                    path,
                    f"{arch}'s {key} is set by raybench from the task and the data; remove it",
                    anchor="key",
                )
            elif key not in NETWORK_PARAMS[arch]:
                yield Problem(
                    path,
                    f"not an argument of the {arch} network",
                    found=show(key),
                    allowed=", ".join(allowed),
                    suggestion=suggest(key, allowed),
                    anchor="key",
                )


@check
def finite_network_arguments(data: dict[str, Any]) -> Iterator[Problem]:
    """Numbers in ``models[].params`` (typed by no schema) are finite, like every number."""
    for i, model in _items(data, "models"):
        params = _get(model, "params")
        for key, value in (params if isinstance(params, dict) else {}).items():
            for path, v in _leaves(("models", i, "params", key), value):
                if isinstance(v, float) and not math.isfinite(v):
                    yield Problem(
                        path,
                        "not a finite number (.inf, .nan, or a literal too large for a float)",
                        found=show(v),
                    )


def _leaves(path: PathT, value: Any) -> Iterator[tuple[PathT, Any]]:
    if isinstance(value, list):
        for j, v in enumerate(value):
            yield from _leaves((*path, j), v)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves((*path, k), v)
    else:
        yield path, value


@check
def task_classes(data: dict[str, Any]) -> Iterator[Problem]:
    """``positive``/``classes`` belong to classification; ``positive`` is one of ``classes``."""
    task = data.get("task")
    ttype = _task_type(data)
    if not isinstance(task, dict) or ttype is None:
        return
    classes = task.get("classes")
    positive = task.get("positive")
    if ttype != "classification":
        for key in ("positive", "classes"):
            if task.get(key) is not None:
                yield Problem(
                    ("task", key),
                    f"only classification tasks have {key}; remove it",
                    found=show(task[key]),
                    anchor="key",
                )
        return
    if isinstance(classes, list):
        yield from _duplicates(
            [(("task", "classes", i), c) for i, c in enumerate(classes)], "class", format_path
        )
        names = [c for c in classes if isinstance(c, str)]
        if isinstance(positive, str) and names and positive not in names:
            yield Problem(
                ("task", "positive"),
                "positive class is not one of task.classes",
                found=show(positive),
                allowed=choices(names),
                suggestion=suggest(positive, names),
            )


@check
def metrics_fit_task(data: dict[str, Any]) -> Iterator[Problem]:
    """Evaluation, selection and analysis metrics must be metrics of the task type."""
    ttype = _task_type(data)
    if ttype is None:
        return
    allowed = list(METRICS_BY_TASK[ttype])
    metrics = _items(data.get("evaluation") or {}, "metrics")
    for i, m in metrics:
        if isinstance(m, str) and m not in allowed:
            owner = next((t for t, ms in METRICS_BY_TASK.items() if m in ms), None)
            why = f"a {owner} metric" if owner else "not a metric"
            yield Problem(
                ("evaluation", "metrics", i),
                f"{why}, but task.type is {ttype}",
                found=show(m),
                allowed=choices(allowed),
                suggestion=suggest(m, allowed),
            )
    yield from _duplicates(
        [(("evaluation", "metrics", i), m) for i, m in metrics], "metric", format_path
    )
    selection = _get(data, "evaluation", "selection_metric")
    selectable = list(SELECTION_METRICS[ttype])
    if isinstance(selection, str) and selection not in selectable:
        yield Problem(
            ("evaluation", "selection_metric"),
            f"not a validation metric of a {ttype} task",
            found=show(selection),
            allowed=choices(selectable),
            suggestion=suggest(selection, selectable),
        )
    listed = [m for _, m in metrics if isinstance(m, str)] or allowed[:1]
    primary = _get(data, "analysis", "metric")
    if isinstance(primary, str) and primary not in listed:
        yield Problem(
            ("analysis", "metric"),
            "the primary metric must be one of evaluation.metrics",
            found=show(primary),
            allowed=choices(listed),
            suggestion=suggest(primary, listed),
        )


@check
def protocols(data: dict[str, Any]) -> Iterator[Problem]:
    """Keys a strategy does not use, and stratifications that cannot work."""
    ttype = _task_type(data)
    for path, proto in _protocols(data):
        strategy = proto.get("strategy")
        if isinstance(strategy, str) and strategy in PROTOCOL_KEYS_BY_STRATEGY:
            used = PROTOCOL_KEYS_BY_STRATEGY[strategy]
            for key in ("k", "repeats", "fraction"):
                if key in proto and key not in used:
                    users = [s for s, keys in PROTOCOL_KEYS_BY_STRATEGY.items() if key in keys]
                    yield Problem(
                        (*path, key),
                        f"{strategy} does not use {key} (only {choices(users)} does); remove it",
                        anchor="key",
                    )
        stratify = proto.get("stratify")
        stratify = [stratify] if isinstance(stratify, str) else stratify
        if not isinstance(stratify, list):
            continue
        yield from _duplicates(
            [((*path, "stratify", i), s) for i, s in enumerate(stratify)],
            "stratify column",
            format_path,
        )
        for i, col in enumerate(stratify):
            if col == "label" and ttype == "segmentation":
                yield Problem(
                    (*path, "stratify", i),
                    "a segmentation target (a mask) cannot be stratified on; use [] or [site]",
                    found=show(col),
                )
            if col == "site" and strategy == "leave_one_site_out":
                yield Problem(
                    (*path, "stratify", i),
                    "leave_one_site_out holds out whole sites: it cannot stratify on site",
                    found=show(col),
                )


def search_points(data: dict[str, Any]) -> tuple[int, list[tuple[PathT, list[Any]]]]:
    """The largest number of search points of one model, and every searched list with its path."""
    lists: list[tuple[PathT, list[Any]]] = []
    training = data.get("training")
    base = 1
    for key in SEARCHABLE_TRAINING_KEYS:
        v = _get(training, key)
        if isinstance(v, list):
            lists.append((("training", key), v))
            base *= max(len(v), 1)
    augment = _get(training, "augment")  # a list of pipelines (lists) is searched
    if isinstance(augment, list) and any(isinstance(v, list) for v in augment):
        lists.append((("training", "augment"), augment))
        base *= max(len(augment), 1)
    most = base
    for i, model in _items(data, "models"):
        params = _get(model, "params")
        n = base
        if isinstance(params, dict):
            for key, v in params.items():
                if isinstance(v, list):
                    lists.append((("models", i, "params", key), v))
                    n *= max(len(v), 1)
        most = max(most, n)
    return most, lists


@check
def search_space(data: dict[str, Any]) -> Iterator[Problem]:
    """Search lists are non-empty and distinct; searching needs an inner protocol."""
    points, lists = search_points(data)
    for path, values in lists:
        if not values:
            yield Problem(path, "an empty list searches nothing; give a value or a list of them")
        yield from _duplicates(
            [((*path, i), v) for i, v in enumerate(values)], "search candidate", format_path
        )
    validation = data.get("validation")
    no_inner = (
        isinstance(validation, dict) and "inner" in validation and validation["inner"] is None
    )
    if points > 1 and no_inner:
        yield Problem(
            ("validation", "inner"),
            f"the search space has {points} points but there is no inner protocol to choose among "
            "them without looking at the test fold; give validation.inner "
            "(e.g. {strategy: group_holdout, fraction: 0.2}) or search a single value",
            found="null",
        )
    if no_inner and isinstance(_get(data, "training", "early_stopping"), dict):
        yield Problem(
            ("training", "early_stopping"),
            "early stopping needs a validation split, and validation.inner is null",
            anchor="key",
        )


@check
def perturbations(data: dict[str, Any]) -> Iterator[Problem]:
    """Each perturbation carries exactly the parameter of its type; no two are identical."""
    seen: list[tuple[PathT, Any]] = []
    for i, pert in _items(data.get("evaluation") or {}, "perturbations"):
        if not isinstance(pert, dict) or not isinstance(pert.get("type"), str):
            continue
        if pert["type"] not in PERTURBATION_PARAMS:
            continue
        ptype = pert["type"]
        param = PERTURBATION_PARAMS[ptype]
        path = ("evaluation", "perturbations", i)
        for key, value in pert.items():
            if key in ("type", param) or value is None:
                continue
            if key in PERTURBATION_PARAMS.values():
                yield Problem(
                    (*path, key),
                    f"not a parameter of {ptype}",
                    found=show(key),
                    allowed=show(param),
                    suggestion=param,
                    anchor="key",
                )
        value = pert.get(param)
        if value is None:
            yield Problem(
                (*path, param), f"missing required key: {ptype} is parameterised by {param}"
            )
        elif isinstance(value, list) and not value:
            yield Problem((*path, param), "an empty list of severities; give at least one value")
        for j, v in enumerate(value if isinstance(value, list) else [value]):
            sub = (*path, param, j) if isinstance(value, list) else (*path, param)
            seen.append((sub, (ptype, v)))
    yield from _duplicates(seen, "perturbation", format_path)


def _dropout_values(model: Any) -> list[tuple[PathT, Any]] | None:
    """The dropout values of a built-in model's params with their paths (searched: each one);
    None for a plugin or an unknown architecture (not known before the network is built)."""
    arch, params = _get(model, "arch"), _get(model, "params")
    if not isinstance(arch, str) or arch not in NETWORK_PARAMS:
        return None
    params = params if isinstance(params, dict) else {}
    out: list[tuple[PathT, Any]] = []
    for key in DROPOUT_PARAMS:
        value = params.get(key)
        if isinstance(value, list):
            out += [((key, j), v) for j, v in enumerate(value)]
        elif key in params:
            out.append(((key,), value))
    return out


def _no_dropout(value: Any) -> bool:
    return value is None or (isinstance(value, int | float) and not value > 0)


@check
def uncertainty(data: dict[str, Any]) -> Iterator[Problem]:
    """``evaluation.uncertainty`` fits the task, calibration has validation samples to fit on, and
    MC dropout has a dropout layer in every (built-in) network."""
    unc = _get(data, "evaluation", "uncertainty")
    if not isinstance(unc, dict):
        return
    path: PathT = ("evaluation", "uncertainty")
    ttype = _task_type(data)
    for key, tasks in UNCERTAINTY_TASKS.items():
        if unc.get(key) not in (None, []) and ttype is not None and ttype not in tasks:
            yield Problem(
                (*path, key),
                f"{key} is for {choices(tasks)} tasks, and task.type is {ttype}",
                anchor="key",
            )
    calibration = unc.get("calibration")
    if isinstance(calibration, list):
        yield from _duplicates(
            [((*path, "calibration", i), c) for i, c in enumerate(calibration)],
            "calibration method",
            format_path,
        )
        validation = data.get("validation")
        if calibration and isinstance(validation, dict) and validation.get("inner", 0) is None:
            yield Problem(
                (*path, "calibration"),
                "calibration is fitted on each trial's validation samples, and validation.inner "
                "is null (no validation samples); give validation.inner (e.g. {strategy: "
                "group_holdout, fraction: 0.2}) or remove calibration",
                anchor="key",
            )
    if not isinstance(unc.get("mc_dropout"), dict):
        return
    models = _items(data, "models")
    dropouts = {i: _dropout_values(m) for i, m in models}
    with_dropout = [
        str(_get(m, "name"))
        for i, m in models
        if dropouts[i] is None or any(not _no_dropout(v) for _, v in dropouts[i] or ())
    ]
    have = f"models with one: {', '.join(with_dropout)}" if with_dropout else "no model has one"
    for i, model in models:
        values = dropouts[i]
        if values is None:
            continue
        name = show(_get(model, "name"))
        if not values or all(_no_dropout(v) for _, v in values):
            yield Problem(
                ("models", i),
                f"model {name} has no dropout layer, and evaluation.uncertainty.mc_dropout needs "
                f"one: give params.dropout > 0 (every built-in architecture accepts it); {have}",
            )
            continue
        for sub, v in values:
            if _no_dropout(v):
                yield Problem(
                    ("models", i, "params", *sub),
                    "evaluation.uncertainty.mc_dropout needs a dropout layer, and this candidate "
                    f"has none; search values > 0 only ({have})",
                    found=show(v),
                )


@check
def analysis_hierarchy(data: dict[str, Any]) -> Iterator[Problem]:
    """The hierarchy names distinct levels, outermost first, and includes the subject."""
    hierarchy = _get(data, "analysis", "hierarchy")
    if not isinstance(hierarchy, list):
        return
    levels = [h for h in hierarchy if isinstance(h, str) and h in HIERARCHY_LEVELS]
    path = ("analysis", "hierarchy")
    yield from _duplicates(
        [((*path, i), h) for i, h in enumerate(hierarchy) if isinstance(h, str)],
        "level",
        format_path,
    )
    if len(set(levels)) == len(levels) and levels != sorted(levels, key=HIERARCHY_LEVELS.index):
        yield Problem(
            path,
            "levels must go from the outermost to the innermost",
            found=show(hierarchy),
            allowed=show(sorted(levels, key=HIERARCHY_LEVELS.index)),
        )
    if len(levels) == len(hierarchy) and SAMPLE_UNIT not in levels:
        yield Problem(
            path,
            f"the hierarchy must include {SAMPLE_UNIT}: images of one subject are not independent",
            found=show(hierarchy),
        )


@check
def synthetic_datasets(data: dict[str, Any]) -> Iterator[Problem]:
    """The synthetic generator's columns, classes, sites and subjects fit the suite."""
    ttype = _task_type(data)
    synthetic = [(i, d) for i, d in _items(data, "datasets") if _get(d, "source") == "synthetic"]
    if not synthetic:
        return
    task = data.get("task") if isinstance(data.get("task"), dict) else {}
    label = task.get("label", "label")
    if ttype is not None and isinstance(label, str) and label not in SYNTHETIC_LABELS[ttype]:
        i = synthetic[0][0]
        allowed = list(SYNTHETIC_LABELS[ttype])
        yield Problem(
            ("task", "label"),
            f"synthetic dataset {show(_get(data, 'datasets', i, 'name'))} (datasets[{i}]) has no "
            f"{ttype} target column of that name",
            found=show(label),
            allowed=choices(allowed),
            suggestion=suggest(label, allowed) or allowed[0],
        )
    if ttype == "classification":
        for key in ("positive", "classes"):
            values = task.get(key)
            values = [values] if isinstance(values, str) else values
            if not isinstance(values, list):
                continue
            for j, c in enumerate(values):
                if isinstance(c, str) and c not in SYNTHETIC_CLASSES:
                    yield Problem(
                        ("task", key) if key == "positive" else ("task", key, j),
                        "not a class of the synthetic cohort",
                        found=show(c),
                        allowed=choices(SYNTHETIC_CLASSES),
                        suggestion=suggest(c, SYNTHETIC_CLASSES),
                    )
    for i, d in synthetic:
        params = d.get("params") if isinstance(d.get("params"), dict) else {}
        sites, subjects = params.get("sites", 4), params.get("subjects", 40)
        for path, proto in _protocols(data):
            strategy = proto.get("strategy")
            k = proto.get("k", 5)
            if strategy == "leave_one_site_out" and isinstance(sites, int) and sites < 2:
                yield Problem(
                    (*path, "strategy"),
                    f"leave_one_site_out needs at least 2 sites; datasets[{i}] has {sites}",
                    found=show(strategy),
                )
            if (
                path[1] == "outer"
                and strategy == "group_kfold"
                and isinstance(k, int)
                and isinstance(subjects, int)
                and k > subjects
            ):
                yield Problem(
                    (*path, "k"),
                    f"more folds than subjects in datasets[{i}] ({subjects} subjects)",
                    found=show(k),
                    allowed=f"<= {subjects}",
                )


@check
def resources(data: dict[str, Any]) -> Iterator[Problem]:
    """Ray accepts fractional GPUs below 1 only; above 1 they must be whole numbers."""
    gpu = _get(data, "resources", "gpu")
    number = isinstance(gpu, int | float) and not isinstance(gpu, bool)
    if number and gpu > 1 and not math.isclose(gpu, round(gpu)):
        yield Problem(
            ("resources", "gpu"),
            "Ray allows fractions of a GPU only below 1",
            found=show(gpu),
            allowed="a fraction in (0, 1] or a whole number",
        )


@check
def explanations(data: dict[str, Any]) -> Iterator[Problem]:
    """Attribution methods need a class or value score, are not repeated, and fit their windows."""
    evaluation = data.get("evaluation") or {}
    items = [(i, m) for i, m in _items(evaluation, "explanations") if isinstance(m, dict)]
    if items and _task_type(data) == "segmentation":
        yield Problem(
            ("evaluation", "explanations"),
            "attribution methods explain one class or value score per image; a segmentation "
            "network has one per voxel",
            found="task.type 'segmentation'",
            allowed="classification or regression",
        )
    for i, method in items:
        window, stride = method.get("window"), method.get("stride")
        if isinstance(window, int) and isinstance(stride, int) and stride > window:
            yield Problem(
                ("evaluation", "explanations", i, "stride"),
                f"a stride larger than the window ({window}) leaves voxels never occluded",
                found=show(stride),
            )
    yield from _duplicates(
        [(("evaluation", "explanations", i), m) for i, m in items],
        "explanation method",
        format_path,
    )


@check
def generated_datasets(data: dict[str, Any]) -> Iterator[Problem]:
    """A generated dataset's ``from`` names another dataset of the suite, which is not generated."""
    datasets = [(i, d) for i, d in _items(data, "datasets") if isinstance(d, dict)]
    sources = {d["name"]: d.get("source") for _, d in datasets if isinstance(d.get("name"), str)}
    real = sorted(n for n, s in sources.items() if isinstance(n, str) and s != "generated")
    for i, d in datasets:
        origin = _get(d, "params", "from")
        if d.get("source") != "generated" or not isinstance(origin, str):
            continue
        path = ("datasets", i, "params", "from")
        if origin == d.get("name"):
            yield Problem(path, "a generated dataset cannot be fitted to itself",
                          found=show(origin), allowed=choices(real))  # fmt: skip
        elif origin not in sources:
            yield Problem(path, "not a dataset of this suite", found=show(origin),
                          allowed=choices(real), suggestion=suggest(origin, real))  # fmt: skip
        elif sources[origin] == "generated":
            yield Problem(path, "names another generated dataset; fit to real data",
                          found=show(origin), allowed=choices(real))  # fmt: skip


@check
def class_balancing(data: dict[str, Any]) -> Iterator[Problem]:
    """``training.class_weights`` and ``training.sampler`` count classes: classification only."""
    ttype = _task_type(data)
    if ttype is None or ttype == "classification":
        return
    for key in ("class_weights", "sampler"):
        if _get(data, "training", key) is not None:
            yield Problem(
                ("training", key),
                f"{key} balances classes, and task.type is {ttype}; remove it",
                anchor="key",
            )
