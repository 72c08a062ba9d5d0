"""One suite per results directory: refuse to pool another suite's trials without a word.

A run saves its suite file as ``suite.yaml`` in the results directory. Before a new run writes
there, :func:`check_suite` compares the new suite with the saved one, by the sha256 of the file's
bytes, and applies the first rule that holds (docs/results.md):

1. *new directory*: no saved suite and no trial file: nothing to protect.
2. *same suite*: the saved suite has the same content hash: a resume.
3. *only adds trials*: the suite changed, but every trial with a file in the directory
   (committed, failed or damaged) is still in the new plan, so nothing of another experiment is
   pooled: e.g. a model, a seed or a search point was added, or only comments changed.
4. *allowed change*: the caller passed ``allow_change`` (``raybench run --allow-suite-change``):
   the trials the new plan does not list stay and are pooled by ``status`` and ``analyze``.

Otherwise :class:`~raybench.errors.ResultsError` says which trials would be pooled and how to
proceed. Trial ids are content hashes of everything that determines a result, so "the same trial"
means the same experiment.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from raybench.errors import ResultsError
from raybench.store.reader import predict_entry_ids

if TYPE_CHECKING:
    from raybench.store.writer import ResultStore

__all__ = ["SuiteCheck", "check_suite", "suite_hash"]


@dataclass(frozen=True)
class SuiteCheck:
    """The rule that let a run into a results directory, and a sentence saying so."""

    rule: Literal["new", "same", "adds_trials", "allowed"]
    message: str

    @property
    def changed(self) -> bool:
        """True when the suite differs from the saved one (worth telling the user)."""
        return self.rule in ("adds_trials", "allowed")


def suite_hash(suite_yaml: bytes) -> str:
    """sha256 (hex) of a suite file's bytes: the identity of the suite a directory was run with."""
    return hashlib.sha256(suite_yaml).hexdigest()


def check_suite(
    store: ResultStore, suite_yaml: bytes, planned: Iterable[str], *, allow_change: bool = False
) -> SuiteCheck:
    """Apply the rules above; return the rule that let the run in.

    Raises :class:`ResultsError` when the saved suite differs, some of the directory's trials are
    not in ``planned`` and ``allow_change`` is false.
    """
    saved = store.read_file("suite.yaml")
    inv = store.inventory()
    present = set(inv.statuses) | set(inv.damaged)
    present -= predict_entry_ids(store.fs, store.root, local=store.local, inv=inv)
    if saved is None and not present:
        return SuiteCheck("new", "new results directory")
    new_hash = suite_hash(suite_yaml)
    if saved is not None and suite_hash(saved) == new_hash:
        return SuiteCheck("same", "same suite as the one saved in the results directory")
    old = f"sha256 {suite_hash(saved)[:12]}" if saved is not None else "no saved suite.yaml"
    changed = (
        f"the suite differs from the one this directory was run with ({old}, now {new_hash[:12]})"
    )
    foreign = sorted(present - set(planned))
    if not foreign:
        return SuiteCheck(
            "adds_trials",
            f"{changed}, but it only adds trials: every trial already here is in the new plan",
        )
    if allow_change:
        return SuiteCheck(
            "allowed",
            f"{changed} and {len(foreign)} trial(s) here are not in the new plan; allowed by "
            "--allow-suite-change: `status` and `analyze` will pool them with the new trials",
        )
    raise ResultsError(
        f"results directory {store.uri!r} was written by another suite: {changed}, and "
        f"{len(foreign)} trial(s) here are not in the new plan (e.g. {foreign[0]}), so the two "
        "suites' results would be pooled. Pass another --results directory, or "
        "--allow-suite-change to pool them on purpose. (A suite that only adds trials, keeping "
        "every trial already here, is accepted without the flag.)"
    )
