"""The ``search:`` section of a suite: sampled and adaptive search spaces, and early stopping.

Without a ``search:`` section a list where a scalar is expected is a grid dimension (as before).
With one, the suite names its algorithm, its budget and its distributions::

    search:
      algorithm: random            # grid | random | tpe
      num_samples: 8               # points per search (random, tpe)
      space:
        lr: {loguniform: [1.0e-5, 1.0e-2]}
        weight_decay: {uniform: [0.0, 1.0e-3]}
        model.dropout: {quniform: [0.0, 0.5, 0.1]}
      scheduler: {type: asha, grace_period: 1, reduction_factor: 3}

A key of ``space`` is a searchable training key (``lr``, ``batch_size``, ...) or ``model.<param>``
(a network argument of every model); its value is one distribution of
:data:`~raybench_analysis.vocabulary.SEARCH_DISTRIBUTIONS`. Lists elsewhere in the suite stay
search dimensions and count as ``choice``. :class:`Distribution` is the parsed form the compiler
samples from; :func:`search_problems` (registered with the suite checks) reports every mistake at
its key, so the loader can say ``file:line:col``. See docs/search.md.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from pydantic import TypeAdapter, ValidationError
from raybench_analysis.vocabulary import (
    SEARCH_ALGORITHMS,
    SEARCH_DISTRIBUTIONS,
    SEARCHABLE_TRAINING_KEYS,
    SELECTION_METRICS,
)

from raybench.suite.checks import check
from raybench.suite.networks import NETWORK_PARAMS
from raybench.suite.problems import PathT, Problem, choices, show, suggest

__all__ = ["Distribution", "parse_distribution", "search_problems"]

_SCALARS = (type(None), bool, int, float, str)


# --------------------------------------------------------------------------- distributions


@dataclass(frozen=True)
class Distribution:
    """One search dimension: ``kind`` (a name of ``SEARCH_DISTRIBUTIONS``) and its arguments.

    :meth:`sample` draws one value with a NumPy generator: ``loguniform`` is uniform in log space,
    ``quniform`` is uniform rounded to a multiple of ``q`` (an integer when every argument is),
    ``randint`` is an integer in ``[low, high)`` and ``choice`` one of ``args`` with equal
    probability (Bergstra & Bengio 2012, "Random search for hyper-parameter optimization", JMLR
    13:281-305, for why random beats a grid of the same size).

    >>> d = Distribution("quniform", (0, 10, 5))
    >>> sorted({d.sample(np.random.default_rng(s)) for s in range(20)})
    [0, 5, 10]
    """

    kind: str
    args: tuple[Any, ...]

    @property
    def finite(self) -> bool:
        """True when the distribution has finitely many values (``choice``)."""
        return self.kind == "choice"

    def sample(self, rng: np.random.Generator) -> Any:
        """One value drawn from ``rng``."""
        a = self.args
        if self.kind == "choice":
            return a[int(rng.integers(len(a)))]
        if self.kind == "randint":
            return int(rng.integers(int(a[0]), int(a[1])))
        if self.kind == "loguniform":
            return float(math.exp(rng.uniform(math.log(a[0]), math.log(a[1]))))
        value = float(rng.uniform(a[0], a[1]))
        if self.kind == "uniform":
            return value
        low, high, q = a
        steps = round((value - low) / q)
        steps = min(steps, math.floor((high - low) / q + 1e-9))
        out = low + steps * q
        if all(isinstance(x, int) and not isinstance(x, bool) for x in a):
            return int(out)
        return float(round(out, 12))

    def to_tune(self) -> Any:
        """The Ray Tune sample domain of this distribution (what ``OptunaSearch`` converts)."""
        from ray import tune

        a = self.args
        if self.kind == "choice":
            return tune.choice(list(a))
        if self.kind == "randint":
            return tune.randint(int(a[0]), int(a[1]))
        if self.kind == "loguniform":
            return tune.loguniform(float(a[0]), float(a[1]))
        if self.kind == "uniform":
            return tune.uniform(float(a[0]), float(a[1]))
        if all(isinstance(x, int) and not isinstance(x, bool) for x in a):
            return tune.qrandint(int(a[0]), int(a[1]), int(a[2]))
        return tune.quniform(float(a[0]), float(a[1]), float(a[2]))


def parse_distribution(spec: Mapping[str, Any]) -> Distribution:
    """The :class:`Distribution` of a checked ``space`` entry such as ``{loguniform: [a, b]}``."""
    ((kind, args),) = spec.items()
    return Distribution(kind, tuple(args))


# --------------------------------------------------------------------------- checks

_KEYS = (*SEARCHABLE_TRAINING_KEYS, "model.<param>")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _argument_problems(path: PathT, kind: str, args: list[Any]) -> Iterator[Problem]:
    """Arity and bounds of one distribution's arguments (``path`` ends with the distribution)."""
    arity = SEARCH_DISTRIBUTIONS[kind]
    if arity is None:
        if not args:
            yield Problem(path, "choice needs at least one value", found=show(args))
        seen: dict[str, int] = {}
        for i, value in enumerate(args):
            if repr(value) in seen:
                yield Problem(
                    (*path, i), f"duplicate choice (first at [{seen[repr(value)]}])", show(value)
                )
            seen.setdefault(repr(value), i)
        return
    shape = {2: "[low, high]", 3: "[low, high, q]"}[arity]
    if len(args) != arity:
        yield Problem(path, f"{kind} takes {shape}", found=show(args), allowed=shape)
        return
    bad = [i for i, v in enumerate(args) if not _number(v)]
    for i in bad:
        yield Problem((*path, i), f"{kind} arguments are finite numbers", found=show(args[i]))
    if bad:
        return
    low, high = args[0], args[1]
    if kind == "randint":
        for i, v in enumerate(args):
            if not isinstance(v, int):
                yield Problem((*path, i), "randint bounds are integers", found=show(v))
    if not low < high:
        yield Problem(
            path, f"{kind} needs low < high", found=show(args), allowed=f"{shape} with low < high"
        )
    elif kind == "loguniform" and low <= 0:
        yield Problem((*path, 0), "loguniform needs low > 0", found=show(low), allowed="> 0")
    elif kind == "quniform" and not 0 < args[2] <= high - low:
        yield Problem(
            (*path, 2),
            "quniform's step q must be > 0 and at most high - low",
            found=show(args[2]),
            allowed=f"(0, {high - low:g}]",
        )


def _extremes(kind: str, args: list[Any]) -> list[tuple[int, Any]]:
    """(argument index, value) of the values a distribution can reach at its ends."""
    if kind == "choice":
        return list(enumerate(args))
    if kind == "randint":
        return [(0, args[0]), (1, args[1] - 1)]
    return [(0, args[0]), (1, args[1])]


#: The scalar type of each searchable training key (``Annotated[float, Field(gt=0, ...)]``, ...),
#: registered by :mod:`raybench.suite.schema`, which imports this module (so this one cannot
#: import it).
TRAINING_TYPES: dict[str, Any] = {}


def _training_value_problems(
    path: PathT, key: str, kind: str, args: list[Any]
) -> Iterator[Problem]:
    """Each reachable end of the distribution must be a valid value of ``training.<key>``."""
    scalar = TRAINING_TYPES[key]
    base = typing.get_args(scalar)[0] if typing.get_origin(scalar) is Annotated else scalar
    if base is not float and kind in ("uniform", "loguniform"):
        yield Problem(
            path,
            f"training.{key} takes {getattr(base, '__name__', 'fixed')} values, {kind} draws reals",
            found=show(kind),
            allowed="randint, quniform with integer arguments, or choice",
            anchor="key",
        )
        return
    adapter = TypeAdapter(scalar)
    for i, value in _extremes(kind, args):
        try:
            adapter.validate_python(value, strict=True)
        except ValidationError as exc:
            yield Problem(
                (*path, i),
                f"not a valid training.{key}: {exc.errors()[0]['msg']}",
                found=show(value),
            )


def _listed(data: dict[str, Any], key: str) -> str | None:
    """Where ``key`` is already a grid list in the suite (``training.lr``, ``models[0]...``)."""
    if key.startswith("model."):
        for i, model in enumerate(data.get("models") or []):
            params = model.get("params") if isinstance(model, dict) else None
            if isinstance(params, dict) and isinstance(params.get(key[6:]), list):
                return f"models[{i}].params.{key[6:]}"
        return None
    training = data.get("training")
    if isinstance(training, dict) and isinstance(training.get(key), list):
        return f"training.{key}"
    return None


def _network_problems(data: dict[str, Any], path: PathT, param: str) -> Iterator[Problem]:
    """A searched ``model.<param>`` must be an argument of every built-in network of the suite."""
    plugins = data.get("plugins") if isinstance(data.get("plugins"), dict) else {}
    for i, model in enumerate(data.get("models") or []):
        arch = model.get("arch") if isinstance(model, dict) else None
        builtin = isinstance(arch, str) and arch in NETWORK_PARAMS and arch not in plugins
        if builtin and param not in NETWORK_PARAMS[arch]:
            yield Problem(
                path,
                f"models[{i}] ({arch}) has no argument {param!r}: every model of the suite "
                "is searched over the space; put models with other arguments in another suite",
                found=show(f"model.{param}"),
                allowed=", ".join(f"model.{p}" for p in sorted(NETWORK_PARAMS[arch])),
                anchor="key",
            )


def _space_problems(data: dict[str, Any], algorithm: str | None, space: dict) -> Iterator[Problem]:
    for key, spec in space.items():
        path: PathT = ("search", "space", key)
        is_param = isinstance(key, str) and key.startswith("model.") and len(key) > len("model.")
        if key not in SEARCHABLE_TRAINING_KEYS and not is_param:
            yield Problem(
                path,
                "not a searchable key",
                found=show(key),
                allowed=", ".join(_KEYS),
                suggestion=suggest(key, list(SEARCHABLE_TRAINING_KEYS)),
                anchor="key",
            )
            continue
        if not isinstance(spec, dict):
            continue  # the schema's own error
        if len(spec) != 1:
            yield Problem(
                path,
                "a distribution is one entry such as {loguniform: [1.0e-5, 1.0e-2]}",
                found=show(spec),
                allowed=", ".join(SEARCH_DISTRIBUTIONS),
            )
            continue
        ((kind, args),) = spec.items()
        dpath: PathT = (*path, kind)
        if kind not in SEARCH_DISTRIBUTIONS:
            yield Problem(
                dpath,
                "unknown distribution",
                found=show(kind),
                allowed=", ".join(SEARCH_DISTRIBUTIONS),
                suggestion=suggest(kind, list(SEARCH_DISTRIBUTIONS)),
                anchor="key",
            )
            continue
        if not isinstance(args, list):
            continue
        found = list(_argument_problems(dpath, kind, args))
        yield from found
        if not found and not is_param:
            yield from _training_value_problems(dpath, key, kind, args)
        if is_param:
            yield from _network_problems(data, path, key[len("model.") :])
        where = _listed(data, key)
        if where is not None:
            yield Problem(
                path,
                f"{where} is already a list (a grid dimension); search a key in one place",
                anchor="key",
            )
        if algorithm == "grid" and kind != "choice":
            yield Problem(
                dpath,
                "a grid needs finite choices",
                found=show(kind),
                allowed="choice (or algorithm: random or tpe)",
                anchor="key",
            )
        if algorithm == "tpe" and kind == "choice":
            for i, v in enumerate(args):
                if not isinstance(v, _SCALARS):
                    yield Problem(
                        (*dpath, i),
                        "tpe (Optuna) chooses among scalars only",
                        found=show(v),
                        allowed="numbers, strings, booleans or null",
                    )


def _epochs_max(data: dict[str, Any]) -> int | None:
    """The largest ``training.epochs`` of the suite (a list's or the space's), if readable."""
    spec = ((data.get("search") or {}).get("space") or {}).get("epochs")
    if isinstance(spec, dict) and len(spec) == 1:
        ((kind, args),) = spec.items()
        if isinstance(args, list) and args and all(_number(a) for a in args):
            return int(max(args[:2]) - (1 if kind == "randint" else 0))
    epochs = (data.get("training") or {}).get("epochs", 10)
    values = epochs if isinstance(epochs, list) else [epochs]
    ints = [v for v in values if isinstance(v, int) and not isinstance(v, bool)]
    return max(ints) if ints else None


def _scheduler_problems(data: dict[str, Any], sched: dict[str, Any]) -> Iterator[Problem]:
    path: PathT = ("search", "scheduler")
    task = (data.get("task") or {}).get("type")
    metric = sched.get("metric")
    allowed = SELECTION_METRICS.get(task) if isinstance(task, str) else None
    if isinstance(metric, str) and allowed is not None and metric not in allowed:
        yield Problem(
            (*path, "metric"),
            "not a validation metric of this task",
            found=show(metric),
            allowed=choices(list(allowed)),
            suggestion=suggest(metric, list(allowed)),
        )
    grace = sched.get("grace_period", 1)
    max_t = sched.get("max_t")
    limit = max_t if isinstance(max_t, int) else _epochs_max(data)
    if isinstance(grace, int) and isinstance(limit, int) and grace > limit:
        yield Problem(
            (*path, "grace_period"),
            f"every trial would end before its first rung (max_t or epochs = {limit})",
            found=show(grace),
            allowed=f"<= {limit}",
        )


@check
def search_problems(data: dict[str, Any]) -> Iterator[Problem]:
    """The ``search:`` section: keys, distributions, bounds, budget, inner protocol, scheduler."""
    search = data.get("search")
    if not isinstance(search, dict):
        return
    algorithm = search.get("algorithm", "grid")
    algorithm = algorithm if algorithm in SEARCH_ALGORITHMS else None
    space = search.get("space") if isinstance(search.get("space"), dict) else {}
    yield from _space_problems(data, algorithm, space)
    if algorithm == "grid" and "num_samples" in search:
        yield Problem(
            ("search", "num_samples"),
            "a grid runs all its combinations; remove num_samples or use algorithm: random or tpe",
            anchor="key",
        )
    if algorithm in ("random", "tpe") and search.get("num_samples") is None:
        yield Problem(
            ("search", "algorithm"),
            f"algorithm {algorithm!r} needs search.num_samples (points per search)",
            found=show(algorithm),
        )
    validation = data.get("validation")
    if isinstance(validation, dict) and "inner" in validation and validation["inner"] is None:
        yield Problem(
            ("validation", "inner"),
            "a search: section needs an inner protocol, so that points are chosen without the "
            "test fold; give validation.inner (e.g. {strategy: group_holdout})",
            found="null",
        )
    if isinstance(search.get("scheduler"), dict):
        yield from _scheduler_problems(data, search["scheduler"])


def searched_values(values: Sequence[Any]) -> Distribution:
    """A grid list (``lr: [1e-3, 3e-4]``) as the ``choice`` it is in a ``search:`` section."""
    return Distribution("choice", tuple(values))
