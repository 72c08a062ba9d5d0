"""The one path from a suite file to a compiled plan, shared by ``validate``, ``plan`` and ``run``.

:func:`prepare` loads and validates the suite, says which plugins it will import and run (a suite
that names plugins is code) or refuses it under ``--no-plugins``, loads its cohorts (generating
synthetic data only when asked) and compiles the plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from raybench.errors import SuiteError

if TYPE_CHECKING:
    from raybench.data.cohort import Cohort
    from raybench.plan.spec import Plan
    from raybench.suite import Suite

#: Where synthetic cohorts go when ``--data-root`` is not given.
DEFAULT_DATA_ROOT = Path(".raybench-data")


@dataclass(frozen=True)
class Prepared:
    """A suite ready to run: the suite, its path, cohorts, compiled plan and plugins line."""

    suite: Suite
    suite_path: Path
    cohorts: dict[str, Cohort]
    plan: Plan
    plugins: str | None


def data_root(given: Path | None) -> Path:
    """``--data-root`` as an absolute path, default ``./.raybench-data``."""
    return (given if given is not None else DEFAULT_DATA_ROOT).resolve()


def plugins_line(suite: Suite) -> str | None:
    """``"this suite imports and runs: name -> module:callable, ..."``; None without plugins."""
    if not suite.plugins:
        return None
    named = ", ".join(f"{name} -> {target}" for name, target in sorted(suite.plugins.items()))
    return f"this suite imports and runs: {named}"


def check_plugins(suite: Suite, suite_path: Path, no_plugins: bool) -> str | None:
    """:func:`plugins_line`, or :class:`SuiteError` (exit 2) when ``no_plugins`` and it has some."""
    line = plugins_line(suite)
    if line is not None and no_plugins:
        raise SuiteError(
            f"{suite_path}: refused (--no-plugins): {line}. A plugin is code that runs with your "
            "permissions on every worker; read it, then run without --no-plugins if you trust it."
        )
    return line


def load_suite_checked(suite_path: Path, no_plugins: bool = False) -> tuple[Suite, str | None]:
    """The validated suite and its :func:`plugins_line`, refused under ``no_plugins``."""
    from raybench.suite import load_suite

    suite = load_suite(suite_path)
    return suite, check_plugins(suite, suite_path, no_plugins)


def prepare(
    suite_path: Path,
    root: Path | None = None,
    *,
    materialize: bool = False,
    no_plugins: bool = False,
) -> Prepared:
    """Load the suite (checking its plugins) and its cohorts, and compile the plan.

    ``materialize=False`` writes nothing (synthetic cohorts are described, not generated);
    ``run`` passes True to generate them under ``root`` (``--data-root``).
    """
    from raybench.data import load_cohort
    from raybench.plan import compile_suite
    from raybench.suite import suite_dir

    suite, line = load_suite_checked(suite_path, no_plugins)
    base = suite_dir(suite_path)
    where = data_root(root)
    cohorts = {}
    for ds in sorted(suite.datasets, key=lambda d: d.source == "generated"):  # sources first
        cohorts[ds.name] = load_cohort(
            ds, base, where, materialize=materialize, suite=suite, cohorts=cohorts
        )
    cohorts = {ds.name: cohorts[ds.name] for ds in suite.datasets}
    return Prepared(suite, Path(suite_path), cohorts, compile_suite(suite, cohorts), line)
