"""The analysis package imports and works with Ray, torch, MONAI (and raybench) unimportable."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import sys

    BLOCKED = ("ray", "torch", "monai", "raybench")

    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r} (blocked for this test)")
            return None

    sys.meta_path.insert(0, Block())
    for name in list(sys.modules):
        if name.split(".")[0] in BLOCKED:
            del sys.modules[name]

    import numpy as np
    import polars as pl
    import raybench_analysis as rba

    rng = np.random.default_rng(0)
    n = 200
    frame = pl.DataFrame({
        "site": [f"s{i % 4}" for i in range(n)],
        "subject_id": [f"p{i % 50}" for i in range(n)],
        "y_true": (np.arange(n) % 2).astype(float),
        "score": rng.random(n),
    })
    out = rba.bootstrap(frame, metric="auc", levels=["site", "subject_id"], n_boot=100)
    assert out["n_boot"][0] > 0, out
    loaded = [m for m in sys.modules if m.split(".")[0] in BLOCKED]
    assert not loaded, loaded
    assert issubclass(rba.AnalysisError, ValueError)
    print("ok", out["unit"][0])
    """
)


def test_import_without_ray_torch_monai():
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok site>subject_id"


NO_RAYBENCH = textwrap.dedent(
    """
    import sys, tempfile
    from pathlib import Path

    BLOCKED = ("ray", "torch", "monai")

    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r} (blocked for this test)")
            return None

    sys.meta_path.insert(0, Block())
    import importlib.util
    assert importlib.util.find_spec("raybench") is not None  # installed, so importable
    import polars as pl
    import raybench_analysis as rba
    from raybench_analysis import contract

    root = Path(tempfile.mkdtemp())
    (root / "trials").mkdir()
    pl.DataFrame({"trial_id": ["t1"], "status": ["completed"]}).write_parquet(
        root / "trials" / "t1.parquet")
    res = rba.load(root)
    assert res.committed == ("t1",) and rba.check_leakage(res).height == 0
    contract.arrow_schema("trials"), contract.markdown_table("splits")
    try:
        rba.load(root / "nope")
    except rba.AnalysisError as exc:
        assert type(exc).__mro__[1:] == (ValueError, Exception, BaseException, object), exc
    loaded = sorted(m for m in sys.modules if m == "raybench" or m.startswith("raybench."))
    assert not loaded, loaded
    print("ok")
    """
)


def test_import_loads_no_raybench_module_even_when_it_is_installed():
    """raybench is importable here: the analysis package must still not touch it (no try-import)."""
    done = subprocess.run(
        [sys.executable, "-c", NO_RAYBENCH], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
