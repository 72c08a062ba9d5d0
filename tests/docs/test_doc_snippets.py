"""Every fenced ``python`` block of README.md and docs/ runs, so the documentation cannot drift.

The blocks of one page run in order in one namespace (a page's later blocks build on its earlier
ones), in a scratch working directory that holds what the pages refer to: the repository's
``suites/`` and two results directories written from simulated predictions,
``results/quickstart`` and ``results/ad-vs-cn`` (``raybench_analysis.write_results_dir``). Pages
whose blocks train networks or start Ray run the smoke suite (``suites/smoke.yaml``) for real and
are marked slow.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)

#: Pages whose snippets train a network or start Ray (real work: slow).
HEAVY = {"docs/running.md", "docs/training.md", "docs/uncertainty.md"}


def _blocks(page: Path) -> list[str]:
    return FENCE.findall(page.read_text(encoding="utf-8"))


def _rel(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


SNIPPET_PAGES = [p for p in PAGES if _blocks(p)]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working directory with ``suites/`` and the results directories the pages load."""
    from raybench_analysis import simulate_predictions, write_results_dir

    work = tmp_path_factory.mktemp("docs")
    (work / "suites").symlink_to(ROOT / "suites")
    models = {"densenet": 1.5, "resnet": 1.2, "vit": 1.0}  # the names the pages use
    run = simulate_predictions(models=models, n_sites=4, subjects_per_site=8, n_seeds=2, n_folds=3)
    for name in ("quickstart", "ad-vs-cn"):
        write_results_dir(run, work / "results" / name)
    return work


def test_every_page_with_code_is_collected() -> None:
    # the README and the statistics pages have snippets: a broken fence pattern would skip all
    names = {_rel(p) for p in SNIPPET_PAGES}
    assert {"README.md", "docs/statistics.md", "docs/plan.md", "docs/running.md"} <= names


@pytest.mark.parametrize(
    "page",
    [
        pytest.param(p, id=_rel(p), marks=[pytest.mark.slow] if _rel(p) in HEAVY else [])
        for p in SNIPPET_PAGES
    ],
)
def test_snippets_run(page: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("RAY_AUTH_MODE", os.environ.get("RAY_AUTH_MODE", "disabled"))
    namespace: dict[str, object] = {"__name__": f"doc:{_rel(page)}"}
    for i, code in enumerate(_blocks(page)):
        exec(compile(code, f"{_rel(page)} (python block {i + 1})", "exec"), namespace)
