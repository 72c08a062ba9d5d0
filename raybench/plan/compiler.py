"""The compiler: a suite and its cohorts -> a plan of stages of content-addressed trials.

:func:`compile_suite` is pure (no I/O, no randomness beyond the suite's split seed) and fast. It
expands datasets × models × protocols × outer folds × seeds × search points (× inner folds for the
search stage) into :class:`~raybench.plan.spec.TrialSpec` objects:

- ``search`` trials exist only for a model whose search space has more than one point: one per
  point × inner fold, trained on the inner training fold and scored on the inner validation fold;
- one ``refit`` trial per dataset × model × protocol × outer fold × seed: trained on the first inner
  fold's training part of the outer training fold (its validation part drives early stopping),
  evaluated on the outer test fold. When searched, its ``params`` is ``None``: the runner picks the
  best of ``candidates`` over the ``depends_on`` search trials and applies it with
  :func:`apply_point`.

Splits come from :mod:`raybench.splits` with one split seed per suite (``validation.seed``,
default 0), never from the model seeds: every seed sees the same folds, so seed variance and split
variance stay separate (Bouthillier et al. 2021). See docs/plan.md and docs/validation.md.
"""

from __future__ import annotations

import dataclasses
import itertools
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl
from raybench_analysis.vocabulary import (
    FINAL_PROTOCOL,
    PERTURBATION_PARAMS,
    SEARCHABLE_TRAINING_KEYS,
)

from raybench.data.cohort import Cohort
from raybench.data.preprocess import preprocess_config
from raybench.errors import DataError, RaybenchError, SuiteError
from raybench.plan.config import PerturbationLevel, TrialConfig, augment_pipelines
from raybench.plan.external import GENERATED_FOLD, external_fingerprints, generated_scopes
from raybench.plan.ids import config_digest, ids_digest, trial_id
from raybench.plan.search import ModelSpace, model_space
from raybench.plan.spec import Plan, Stage, TrialSpec
from raybench.resampling import Draw, resampler_from_suite, with_copies
from raybench.splits import (
    Fold,
    check_disjoint,
    check_no_leakage,
    protocol_seed,
    splitter_from_protocol,
    unit_map,
)

__all__ = [
    "apply_point",
    "base_config",
    "compile_suite",
    "expand_perturbations",
    "expand_search_space",
    "search_trial",
    "split_seed",
]

# --------------------------------------------------------------------------- search spaces

#: The search-point key of ``training.augment`` (a pipeline: a list of transforms).
AUGMENT_KEY = "augment"


def _values(value: Any, where: str) -> list[Any]:
    if isinstance(value, list):
        if not value:
            raise SuiteError(f"{where}: an empty list is not a search space; give >= 1 value.")
        return value
    return [value]


def _dimensions(model: Any, training: Any) -> list[tuple[str, list[Any]]]:
    dims = [
        (key, _values(getattr(training, key), f"training.{key}"))
        for key in SEARCHABLE_TRAINING_KEYS
    ]
    pipelines = augment_pipelines(getattr(training, "augment", None))
    if pipelines is not None:  # a dimension only when set: suites without it keep their ids
        dims.append((AUGMENT_KEY, pipelines))
    for name in sorted(model.params):
        dims.append(
            (f"model.{name}", _values(model.params[name], f"models[{model.name}].params.{name}"))
        )
    return dims


def expand_search_space(model: Any, training: Any) -> list[dict[str, Any]]:
    """The grid of search points of ``model`` under ``training`` (suite objects), in a fixed order.

    A point maps every searchable key to one value: ``epochs``, ``batch_size``, ``optimizer``,
    ``lr``, ``weight_decay`` and ``model.<param>`` for each model parameter; a list is a search
    dimension, a scalar a single value. A list-valued network argument is written as a list of
    lists (``channels: [[16, 32, 64]]``). A model without lists has exactly one point.

    >>> from raybench.suite.schema import Model, Training
    >>> pts = expand_search_space(Model(name="m", arch="resnet10", params={"dropout": [0.0, 0.2]}),
    ...                           Training(lr=[1e-3, 1e-4]))
    >>> len(pts), pts[0]["lr"], pts[0]["model.dropout"]
    (4, 0.001, 0.0)
    """
    dims = _dimensions(model, training)
    keys = [k for k, _ in dims]
    return [
        dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(v for _, v in dims))
    ]


def apply_point(config: Mapping[str, Any], point: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of trial ``config`` with the search ``point`` applied (``config`` is not changed).

    Keys are flat: ``lr``, ``batch_size``, ``optimizer``, ``weight_decay``, ``epochs`` set
    ``config["training"]``; ``model.<param>`` sets ``config["model"]["params"][<param>]``.

    >>> cfg = {"training": {"lr": None}, "model": {"arch": "resnet10", "params": {}}}
    >>> apply_point(cfg, {"lr": 0.01, "model.dropout": 0.2})["model"]["params"]
    {'dropout': 0.2}
    >>> cfg["training"]["lr"] is None
    True
    """
    training = dict(config.get("training", {}))
    model = dict(config.get("model", {}))
    params = dict(model.get("params", {}))
    for key, value in point.items():
        if key in SEARCHABLE_TRAINING_KEYS or key == AUGMENT_KEY:
            training[key] = value
        elif key.startswith("model.") and len(key) > len("model."):
            params[key[len("model.") :]] = value
        else:
            raise SuiteError(
                f"search point key {key!r} is unknown; allowed: "
                f"{', '.join(SEARCHABLE_TRAINING_KEYS)}, {AUGMENT_KEY}, model.<param>."
            )
    model["params"] = params
    out = dict(config)
    out["training"] = training
    out["model"] = model
    return out


# --------------------------------------------------------------------------- config


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        text = repr(value)
        return text[:-2] if text.endswith(".0") else text
    return str(value)


def expand_perturbations(perturbations: Sequence[Any]) -> list[PerturbationLevel]:
    """One level per perturbation value, with a readable id such as ``gaussian_noise(std=0.1)``.

    >>> from raybench.suite.schema import Perturbation
    >>> [p.id for p in expand_perturbations([Perturbation(type="gaussian_noise",
    ...                                                  std=[0.05, 0.1])])]
    ['gaussian_noise(std=0.05)', 'gaussian_noise(std=0.1)']
    """
    out: list[PerturbationLevel] = []
    for i, pert in enumerate(perturbations):
        fields = pert.model_dump(exclude={"type"}, exclude_none=True)
        names = list(fields)
        grids = [_values(fields[n], f"evaluation.perturbations[{i}].{n}") for n in names]
        for combo in itertools.product(*grids):
            params = dict(zip(names, combo, strict=True))
            inner = ",".join(f"{n}={_format_value(v)}" for n, v in params.items())
            main = PERTURBATION_PARAMS.get(pert.type)
            severity = params.get(main) if main in params else next(iter(params.values()), None)
            out.append(
                PerturbationLevel(
                    id=f"{pert.type}({inner})",
                    type=pert.type,
                    severity=None if severity is None else float(severity),
                    params=params,
                )
            )
    ids = [p.id for p in out]
    dupes = sorted({x for x in ids if ids.count(x) > 1})
    if dupes:
        raise SuiteError(f"evaluation.perturbations: {dupes} listed twice; list each level once.")
    return out


def _classes(task: Any, table: pl.DataFrame, dataset: str) -> list[str] | None:
    if task.type != "classification":
        return None
    if task.classes:
        return list(task.classes)
    found = sorted({str(v) for v in table.get_column(task.label).drop_nulls().to_list()})
    if task.positive is not None and task.positive in found:
        found = [c for c in found if c != task.positive] + [task.positive]
    if len(found) < 2:
        raise DataError(
            f"dataset {dataset!r}: column {task.label!r} holds {len(found)} class(es) {found}; "
            "classification needs at least 2. Check task.label or the dataset."
        )
    return found


def base_config(
    suite: Any,
    model: Any,
    classes: list[str] | None,
    dataset: Any = None,
    space: ModelSpace | None = None,
) -> dict[str, Any]:
    """The trial config of ``model`` (:class:`~raybench.plan.config.TrialConfig` as a dict).

    Keys that are searched for this model are ``None`` until :func:`apply_point` sets them; keys
    with a single value hold it. ``dataset`` (a suite dataset) gives the preprocessing: the
    suite's ``preprocess`` overridden by the dataset's. ``space`` is the model's search (default:
    the grid of its lists); its ``settings`` become the config's ``search`` entry (docs/search.md).
    """
    space = space or _model_space(suite, model)
    searched = set(space.searched_keys) if space.searched else set()
    single = {k: None if k in searched else v for k, v in space.dims.items()}
    prefix = "model."
    config = TrialConfig.from_suite(
        suite,
        model,
        classes,
        params={k[len(prefix) :]: v for k, v in single.items() if k.startswith(prefix)},
        searchable={k: v for k, v in single.items() if not k.startswith(prefix)},
        perturbations=expand_perturbations(suite.evaluation.perturbations),
        preprocess=preprocess_config(
            getattr(suite, "preprocess", None), getattr(dataset, "preprocess", None)
        ),
    )
    if space.settings is not None:
        config = dataclasses.replace(config, search=space.settings)
    return config.to_dict()


def _model_space(suite: Any, model: Any) -> ModelSpace:
    return model_space(suite, _dimensions(model, suite.training))


# --------------------------------------------------------------------------- splits


def split_seed(suite: Any) -> int:
    """The suite's split seed, ``validation.seed`` (default 0).

    It is independent of ``seeds`` (the model seeds), so that every model seed is trained and
    tested on the same folds.
    """
    return int(suite.validation.seed)


def _protocols(suite: Any) -> list[tuple[str, Any]]:
    protocols: list[tuple[str, Any]] = [("outer", suite.validation.outer)]
    seen: dict[str, int] = {}
    for i, p in enumerate(suite.validation.extra):
        if p.strategy in seen:
            raise SuiteError(
                f"validation.extra[{i}]: strategy {p.strategy!r} is already used by "
                f"validation.extra[{seen[p.strategy]}]; results name an extra protocol by its "
                "strategy, so each strategy may appear once in validation.extra."
            )
        seen[p.strategy] = i
        protocols.append((p.strategy, p))
    if suite.validation.final:  # the whole development dataset, no test fold (see _splits)
        protocols.append((FINAL_PROTOCOL, None))
    return protocols


def _where(dataset: str, protocol: str) -> str:
    if protocol == "outer":
        return f"dataset {dataset!r}, validation.outer"
    if protocol == FINAL_PROTOCOL:
        return f"dataset {dataset!r}, validation.final"
    return f"dataset {dataset!r}, validation.extra ({protocol})"


def _located(exc: RaybenchError, where: str) -> RaybenchError:
    return type(exc)(f"{where}: {exc}")


class _Split:
    """An outer fold with its inner folds and the digests of each role's membership.

    ``train`` is the training pool (the outer training fold, or a draw of it with bootstrap
    copies); ``fraction``/``resample`` place a draw (None without resampling; ``resample`` None
    for the whole fold); ``n_subjects`` counts the refit's training subjects, copies included.
    """

    __slots__ = (
        "fraction",
        "inner",
        "inner_digests",
        "n_subjects",
        "outer",
        "refit_digests",
        "refit_roles",
        "resample",
    )

    def __init__(
        self,
        outer: Fold,
        inner: list[Fold],
        train: tuple[str, ...],
        subject_of: Mapping[str, str],
        fraction: float | None = None,
        resample: int | None = None,
    ) -> None:
        self.outer = outer
        self.inner = inner
        self.fraction = fraction
        self.resample = resample
        self.inner_digests = [(ids_digest(f.train_ids), ids_digest(f.test_ids)) for f in inner]
        if inner:
            self.refit_roles = (inner[0].train_ids, inner[0].test_ids, outer.test_ids)
            train_d, val_d = self.inner_digests[0]
        else:
            self.refit_roles = (train, (), outer.test_ids)
            train_d, val_d = ids_digest(train), ids_digest(())
        self.refit_digests = (train_d, val_d, ids_digest(outer.test_ids))
        images = Counter(subject_of[sid] for sid in self.refit_roles[0])  # copies included
        distinct = Counter(subject_of[sid] for sid in set(self.refit_roles[0]))
        self.n_subjects = sum(images[k] // distinct[k] for k in images)


def _splits(
    suite: Any, dataset: str, name: str, protocol: Any, table: pl.DataFrame, seed: int
) -> list[_Split]:
    task = suite.task
    where = _where(dataset, name)
    if protocol is None:  # validation.final: train on everything, evaluated externally only
        outer_folds = [Fold(FINAL_PROTOCOL, 0, tuple(sorted(table["sample_id"].to_list())), ())]
    else:
        outer_splitter = splitter_from_protocol(protocol, task, protocol_seed(seed, name))
        outer_folds = outer_splitter.split(table)
        check_no_leakage(outer_folds, table, "subject_id")
        if protocol.strategy == "leave_one_site_out":
            check_no_leakage(outer_folds, table, "site")
    unit_of = unit_map(table, "subject_id")
    resampler = resampler_from_suite(suite, protocol, protocol_seed(seed, name, "resample"))
    out = []
    for fold in outer_folds:
        fold_table = table.filter(pl.col("sample_id").is_in(list(fold.train_ids)))
        inner_seed = protocol_seed(seed, name, fold.index, "inner")
        inner = _inner(suite, fold_table, inner_seed, f"{where} fold {fold.name!r}")
        whole = None if resampler is None else 1.0
        out.append(_Split(fold, inner, fold.train_ids, unit_of, whole))
        if resampler is None:
            continue
        try:
            draws = resampler.draws(fold_table)  # seeded per fold: its own stream
        except RaybenchError as exc:
            raise _located(
                exc, f"{where} fold {fold.name!r}, validation.train_resampling"
            ) from None
        for draw in draws:
            out.append(_drawn_split(suite, table, fold, draw, unit_of, (seed, name), where))
    for sp in out:
        for f in sp.inner:
            check_disjoint(
                {"train": f.train_ids, "val": f.test_ids, "test": sp.outer.test_ids},
                table,
                where=f"{where} fold {sp.outer.name!r}, inner fold {f.name!r}",
                unit_of=unit_of,
            )
        check_disjoint(
            {"train": sp.refit_roles[0], "test": sp.outer.test_ids},
            table,
            where=f"{where} fold {sp.outer.name!r}",
            unit_of=unit_of,
        )
    return out


def _inner(suite: Any, pool: pl.DataFrame, seed: int, where: str) -> list[Fold]:
    """The inner folds of the training ``pool`` (one row per image), errors located at ``where``."""
    if suite.validation.inner is None:
        return []
    splitter = splitter_from_protocol(suite.validation.inner, suite.task, seed)
    inner_where = f"{where}, validation.inner"
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            inner = splitter.split(pool)
    except RaybenchError as exc:
        raise _located(exc, inner_where) from None
    for w in caught:  # say where a degenerate inner split is
        warnings.warn(f"{inner_where}: {w.message}", w.category, stacklevel=5)
    return inner


def _drawn_split(
    suite: Any,
    table: pl.DataFrame,
    fold: Fold,
    draw: Draw,
    unit_of: Mapping[str, str],
    seed_parts: tuple[int, str],
    where: str,
) -> _Split:
    """The split of one draw of ``fold``'s training subjects.

    The inner folds are made on the draw's distinct subjects (a subject's copies never cross a
    split); each training side then gets the bootstrap copies, the validation side each subject
    once (it only scores; copies would count a subject twice in model selection).
    """
    pool = table.filter(pl.col("subject_id").cast(pl.String).is_in(list(draw.copies)))
    label = f"{where} fold {fold.name!r}, draw fraction={draw.fraction} #{draw.repeat}"
    inner_seed = protocol_seed(*seed_parts, fold.index, "inner", draw.fraction, draw.repeat)
    inner = [
        Fold(f.name, f.index, with_copies(f.train_ids, draw.copies, unit_of), f.test_ids)
        for f in _inner(suite, pool, inner_seed, label)
    ]
    return _Split(fold, inner, draw.train_ids, unit_of, draw.fraction, draw.repeat)


# --------------------------------------------------------------------------- compile


def compile_suite(suite: Any, cohorts: Mapping[str, Cohort]) -> Plan:
    """Compile ``suite`` (a :class:`raybench.suite.schema.Suite`) into a :class:`Plan`.

    ``cohorts`` maps each dataset name of the suite to its loaded :class:`Cohort` (images need not
    exist: only the table and fingerprint are read). Raises :class:`SuiteError` for inconsistent
    settings, :class:`DataError` when a cohort cannot be split as asked, :class:`LeakageError` if a
    split ever puts a subject on both sides.

    The steps: the search space of each model (:func:`_search_spaces`); per dataset, its cohort
    table, classes and folds (:func:`_dataset_splits`); per model, its configs (:class:`_Configs`);
    then one refit per protocol × outer fold × seed, preceded by its search trials
    (:func:`_fold_trials`), collected without duplicates (:class:`_Trials`).
    """
    seed0 = split_seed(suite)
    protocols = _protocols(suite)
    spaces = _search_spaces(suite)
    trials = _Trials()
    meta_folds: dict[str, dict[str, list[dict[str, Any]]]] = {}
    external = external_fingerprints(suite, cohorts)
    fold_test_ids: dict[str, tuple[str, ...]] = {}
    for ds in suite.datasets:
        if ds.name in external:  # never trained on: evaluated by the saved refit models
            continue
        table, fp = _cohort_table(suite, ds.name, cohorts)
        classes = _classes(suite.task, table, ds.name)
        split_sets = _dataset_splits(suite, ds.name, protocols, table, seed0)
        meta_folds[ds.name] = _fold_meta(split_sets)
        fold_test_ids[ds.name] = next(
            (sp.outer.test_ids for sp in split_sets[0][1] if sp.outer.index == GENERATED_FOLD), ()
        )  # validation.outer's fold 0: what a generated dataset's samples are compared with
        for model, space in spaces:
            configs = _Configs.of(suite, model, space, classes, ds)
            for pname, splits in split_sets:
                for sp in splits:
                    for seed in suite.seeds:
                        slot = _Slot(
                            ds.name, model.name, pname, sp.outer.index, seed, fp,
                            sp.fraction, sp.resample, sp.n_subjects,
                        )  # fmt: skip
                        for spec in _fold_trials(slot, sp, configs):
                            trials.add(spec)
    trials.warn_coincident()
    plan = _plan(suite, cohorts, trials, seed0, meta_folds)
    if external:
        plan.meta["external"] = external
        scopes = generated_scopes(suite, cohorts, fold_test_ids)
        if scopes:  # generated datasets: scored by fold 0's models of their `from` dataset only
            plan.meta["external_scope"] = scopes
    if suite.search is not None:  # for the search budget of `raybench plan` (docs/search.md)
        plan.meta["search_algorithm"] = suite.search.algorithm
        plan.meta["search_scheduler"] = (
            suite.search.scheduler.type if suite.search.scheduler else None
        )
        plan.meta["search_points"] = {
            f"{ds.name}/{model.name}": len(space.points) or space.num_samples
            for ds in suite.datasets
            for model, space in spaces
        }
    return plan


# --------------------------------------------------------------------------- compile steps


def _search_spaces(suite: Any) -> list[tuple[Any, ModelSpace]]:
    """Each model with its search (:mod:`raybench.plan.search`); a search without an inner
    protocol is an error."""
    spaces = []
    for model in suite.models:
        space = _model_space(suite, model)
        if space.searched and suite.validation.inner is None:
            raise SuiteError(
                f"models[{model.name}]: {len(space.points) or space.num_samples} search points "
                f"({', '.join(space.searched_keys)}) but validation.inner is "
                "not set; a search needs an inner protocol so that the test fold is never used "
                "for selection. Add validation.inner (e.g. {strategy: group_holdout})."
            )
        spaces.append((model, space))
    return spaces


def _cohort_table(
    suite: Any, dataset: str, cohorts: Mapping[str, Cohort]
) -> tuple[pl.DataFrame, str]:
    """The table and fingerprint of ``dataset``'s cohort, which must hold the task's label."""
    if dataset not in cohorts:
        raise DataError(
            f"dataset {dataset!r} has no cohort (got {sorted(cohorts)}); load every dataset "
            "of the suite before compiling."
        )
    cohort = cohorts[dataset]
    if suite.task.label not in cohort.table.columns:
        raise DataError(
            f"dataset {dataset!r}: task.label={suite.task.label!r} is not a column of the "
            f"cohort (columns: {cohort.table.columns}). Set task.label to the target column."
        )
    return cohort.table, cohort.fingerprint


def _dataset_splits(
    suite: Any, dataset: str, protocols: list[tuple[str, Any]], table: pl.DataFrame, seed: int
) -> list[tuple[str, list[_Split]]]:
    """The folds of every protocol of ``dataset``, errors located at the protocol."""
    split_sets = []
    for pname, protocol in protocols:
        where = _where(dataset, pname)
        try:
            split_sets.append((pname, _splits(suite, dataset, pname, protocol, table, seed)))
        except RaybenchError as exc:
            if str(exc).startswith(where):
                raise
            raise _located(exc, where) from None
    return split_sets


def _fold_meta(split_sets: list[tuple[str, list[_Split]]]) -> dict[str, list[dict[str, Any]]]:
    """Fold names and sizes per protocol, for ``Plan.meta``."""
    return {
        pname: [
            {
                "name": s.outer.name,
                "index": s.outer.index,
                "n_train": len(s.refit_roles[0]),
                "n_val": len(s.refit_roles[1]),
                "n_test": len(s.refit_roles[2]),
                "inner": len(s.inner),
            }
            for s in splits
            if s.resample is None
        ]
        for pname, splits in split_sets
    }


@dataclass(frozen=True)
class _Configs:
    """The configs of one model on one dataset: the base and one per search point, hashed."""

    points: list[dict[str, Any]]
    base: dict[str, Any]
    base_hash: str
    configs: list[dict[str, Any]]
    hashes: list[str]
    adaptive: bool = False

    @property
    def searched(self) -> bool:
        return self.adaptive or len(self.points) > 1

    @classmethod
    def of(
        cls,
        suite: Any,
        model: Any,
        space: ModelSpace,
        classes: list[str] | None,
        dataset: Any = None,
    ) -> _Configs:
        base = base_config(suite, model, classes, dataset, space)
        configs = [apply_point(base, p) for p in space.points]
        hashes = [config_digest(c) for c in configs]
        return cls(space.points, base, config_digest(base), configs, hashes, space.adaptive)


@dataclass(frozen=True)
class _Slot:
    """Where a trial sits in the plan: dataset, model, protocol, outer fold, seed (and data)."""

    dataset: str
    model: str
    protocol: str
    outer_fold: int
    seed: int
    fingerprint: str
    fraction: float | None = None
    resample: int | None = None
    n_subjects: int | None = None


def _make_trial(
    slot: _Slot,
    stage: Stage,
    *,
    inner_fold: int | None,
    params: dict[str, Any] | None,
    candidates: tuple[dict[str, Any], ...],
    config: tuple[dict[str, Any], str],
    roles: tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]],
    digests: tuple[str, str, str],
    depends_on: tuple[str, ...] = (),
) -> TrialSpec:
    """The one TrialSpec factory: the trial id is computed from the same inputs it stores.

    ``config`` is (config dict, its digest); ``roles`` the (train, val, test) sample ids and
    ``digests`` their :func:`ids_digest`.
    """
    cfg, config_hash = config
    train, val, test = digests
    tid = trial_id(
        stage=stage,
        config_hash=config_hash,
        data_fingerprint=slot.fingerprint,
        train=train,
        val=val,
        test=test,
        seed=slot.seed,
        depends_on=depends_on,
    )
    return TrialSpec(
        trial_id=tid,
        stage=stage,
        dataset=slot.dataset,
        model=slot.model,
        protocol=slot.protocol,
        outer_fold=slot.outer_fold,
        inner_fold=inner_fold,
        seed=slot.seed,
        params=params,
        candidates=candidates,
        config=cfg,
        train_ids=roles[0],
        val_ids=roles[1],
        test_ids=roles[2],
        depends_on=depends_on,
        config_hash=config_hash,
        data_fingerprint=slot.fingerprint,
        train_fraction=slot.fraction,
        train_resample=slot.resample,
        n_train_subjects=slot.n_subjects,
    )


def _fold_trials(slot: _Slot, sp: _Split, c: _Configs) -> list[TrialSpec]:
    """The search trials (points × inner folds, when searched) and then the refit of one slot."""
    search = []
    if c.adaptive:  # tpe: one template per inner fold; the runner asks Optuna for the points
        for inner, (tr, va) in zip(sp.inner, sp.inner_digests, strict=True):
            search.append(
                _make_trial(
                    slot,
                    "search",
                    inner_fold=inner.index,
                    params=None,
                    candidates=(),
                    config=(c.base, c.base_hash),
                    roles=(inner.train_ids, inner.test_ids, ()),
                    digests=(tr, va, _EMPTY),
                )
            )
    elif c.searched:
        for point, cfg, ch in zip(c.points, c.configs, c.hashes, strict=True):
            for inner, (tr, va) in zip(sp.inner, sp.inner_digests, strict=True):
                search.append(
                    _make_trial(
                        slot,
                        "search",
                        inner_fold=inner.index,
                        params=point,
                        candidates=(),
                        config=(cfg, ch),
                        roles=(inner.train_ids, inner.test_ids, ()),
                        digests=(tr, va, _EMPTY),
                    )
                )
    refit = _make_trial(
        slot,
        "refit",
        inner_fold=None,
        params=None if c.searched else c.points[0],
        candidates=tuple(c.points) if c.searched else (),
        config=(c.base, c.base_hash) if c.searched else (c.configs[0], c.hashes[0]),
        roles=sp.refit_roles,
        digests=sp.refit_digests,
        depends_on=tuple(t.trial_id for t in search),
    )
    return [*search, refit]


_EMPTY = ids_digest(())


def search_trial(template: TrialSpec, point: dict[str, Any]) -> TrialSpec:
    """The search trial of ``point`` on ``template``'s inner fold (a ``tpe`` point at run time).

    Its id is the hash of (template, point): the same as the compiler would give the trial had
    the point been planned (:func:`_make_trial` over the template's config with ``point`` applied
    and the template's roles).
    """
    config = apply_point(template.config, point)
    slot = _Slot(
        template.dataset,
        template.model,
        template.protocol,
        template.outer_fold,
        template.seed,
        template.data_fingerprint,
    )
    return _make_trial(
        slot,
        "search",
        inner_fold=template.inner_fold,
        params=dict(point),
        candidates=(),
        config=(config, config_digest(config)),
        roles=(template.train_ids, template.val_ids, template.test_ids),
        digests=(
            ids_digest(template.train_ids),
            ids_digest(template.val_ids),
            ids_digest(template.test_ids),
        ),
    )


@dataclass
class _Trials:
    """The trials of the plan by stage, each id once (see :meth:`add`)."""

    search: list[TrialSpec] = field(default_factory=list)
    refit: list[TrialSpec] = field(default_factory=list)
    seen: dict[str, TrialSpec] = field(default_factory=dict)
    coincident: list[tuple[TrialSpec, TrialSpec]] = field(default_factory=list)

    def add(self, spec: TrialSpec) -> None:
        """Append ``spec`` unless an earlier trial has its id.

        Same dataset and model: the folds coincide (two repeats drew the same fold): the trial
        runs once and is recorded in ``coincident``. Otherwise two entries of the suite are
        duplicates, an error.
        """
        other = self.seen.setdefault(spec.trial_id, spec)
        if other is spec:
            (self.search if spec.stage == "search" else self.refit).append(spec)
        elif (other.dataset, other.model) == (spec.dataset, spec.model):
            self.coincident.append((other, spec))
        else:
            raise SuiteError(
                f"trials {_describe(other)} and {_describe(spec)} would compute the same result "
                f"(trial id {spec.trial_id}): they have the same config, data, split and seed. "
                "Remove the duplicate model or dataset from the suite."
            )

    def warn_coincident(self) -> None:
        """Say, once, that some folds were drawn twice and their trials planned once."""
        if not self.coincident:
            return
        first_kept, first_dropped = self.coincident[0]
        warnings.warn(
            f"{len(self.coincident)} trial(s) coincide with earlier trials of the same dataset "
            f"and model: the same folds were drawn twice (e.g. by two repeats on a small cohort), "
            f"so each is planned once; first: {_describe(first_dropped)} is "
            f"{_describe(first_kept)}. Use fewer repeats or more subjects.",
            UserWarning,
            stacklevel=3,
        )


def _plan(
    suite: Any,
    cohorts: Mapping[str, Cohort],
    trials: _Trials,
    seed0: int,
    meta_folds: dict[str, dict[str, list[dict[str, Any]]]],
) -> Plan:
    """The plan: the search stage (if any) then the refit stage, with its metadata."""
    stages: list[tuple[Stage, tuple[TrialSpec, ...]]] = []
    if trials.search:
        stages.append(("search", tuple(trials.search)))
    stages.append(("refit", tuple(trials.refit)))
    meta = {
        "split_seed": seed0,
        "seeds": list(suite.seeds),
        "data_fingerprints": {ds.name: cohorts[ds.name].fingerprint for ds in suite.datasets},
        "folds": meta_folds,
        "counts": {"search": len(trials.search), "refit": len(trials.refit)},
        "coincident": [
            {"trial_id": b.trial_id, "kept": _describe(a), "dropped": _describe(b)}
            for a, b in trials.coincident
        ],
    }
    return Plan(suite_name=suite.name, stages=tuple(stages), meta=meta)


def _describe(t: TrialSpec) -> str:
    return (
        f"({t.stage}: dataset={t.dataset}, model={t.model}, protocol={t.protocol}, "
        f"outer_fold={t.outer_fold}, inner_fold={t.inner_fold}, seed={t.seed})"
    )
