"""Checks of ``validation.external`` and ``validation.final`` (registered with the other checks).

External datasets are declared among ``datasets`` like any other and named in
``validation.external``; every other dataset is a *development* dataset (trained, selected and
cross-validated on). A generated dataset named there is scored by fold 0's models of its ``from``
dataset, which must therefore be a development dataset. These checks need only the suite; the
data-level audit (no subject or image of an external dataset in development) runs at compile time
(:func:`raybench.plan.external.external_fingerprints` and
:func:`~raybench.plan.external.generated_scopes`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from raybench.suite.checks import _get, _items, check
from raybench.suite.problems import Problem, choices, show, suggest


def _source(dataset: dict[str, Any]) -> str:
    """What a dataset reads, without its name (two equal sources are the same data)."""
    return repr(sorted((k, repr(v)) for k, v in dataset.items() if k != "name"))


@check
def external_datasets(data: dict[str, Any]) -> Iterator[Problem]:
    """External names are declared datasets, listed once, leave a development dataset, and are
    not a development dataset under another name; ``final`` needs an external dataset."""
    validation = data.get("validation")
    if not isinstance(validation, dict):
        return
    declared = {
        d["name"]: d for _, d in _items(data, "datasets") if isinstance(_get(d, "name"), str)
    }
    external = [(i, n) for i, n in _items(validation, "external") if isinstance(n, str)]
    seen: dict[str, int] = {}
    for i, name in external:
        path = ("validation", "external", i)
        if name in seen:
            yield Problem(path, f"duplicate external dataset (first at index {seen[name]})")
            continue
        seen[name] = i
        if declared and name not in declared:
            yield Problem(
                path,
                "not a dataset of the suite; declare it under datasets",
                found=show(name),
                allowed=choices(sorted(declared)),
                suggestion=suggest(name, sorted(declared)),
            )
    development = [n for n in declared if n not in seen]
    if seen and declared and not development:
        yield Problem(
            ("validation", "external"),
            "every dataset is external: keep at least one development dataset (trained and "
            "cross-validated on) out of validation.external",
            found=show(sorted(seen)),
        )
    sources = {_source(declared[n]): n for n in development}
    for i, name in external:
        same = sources.get(_source(declared[name])) if name in declared else None
        if same is not None:
            yield Problem(
                ("validation", "external", i),
                f"external dataset {name!r} reads the same data as development dataset "
                f"{same!r}: an external dataset must be other subjects",
                found=show(name),
            )
    for i, name in external:
        origin = _get(declared.get(name, {}), "params", "from")
        if declared.get(name, {}).get("source") == "generated" and origin in seen:
            yield Problem(
                ("validation", "external", i),
                f"generated dataset {name!r} is scored by the models trained on its `from` "
                f"dataset {origin!r}, which is external too: keep {origin!r} a development "
                "dataset (docs/generated.md)",
                found=show(name),
            )
    if validation.get("final") is True and not seen:
        yield Problem(
            ("validation", "final"),
            "the final refit (on the whole development dataset) is evaluated on external "
            "datasets only: name them in validation.external, or remove final",
            found=show(True),
        )
