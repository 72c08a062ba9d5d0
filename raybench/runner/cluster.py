"""Start a local Ray or join a cluster, and say how to reach its dashboard.

Ray 2.60 turns token authentication on by default for a local ``ray.init()`` cluster (unless
``RAY_AUTH_MODE=disabled``): it generates a random token, saves it in ``~/.ray/auth_token`` (or
``$RAY_AUTH_TOKEN_PATH``; ``$RAY_AUTH_TOKEN`` overrides both) and the dashboard asks for it.
``ray get-auth-token`` prints it. raybench prints *how* to get the token, never the token itself,
so that logs hold no secret.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray

from raybench.errors import RaybenchError


class ClusterError(RaybenchError):
    """Ray could not be started or the cluster at ``--address`` could not be joined."""


@dataclass(frozen=True)
class ClusterInfo:
    """Where the run executes: the dashboard URL (if any), the token hint and the resources."""

    address: str | None
    dashboard_url: str | None
    token_auth: bool
    token_hint: str | None
    started_here: bool
    resources: dict[str, float]
    note: str | None = None

    def describe(self) -> str:
        """One or two lines for the console: dashboard URL and how to log in."""
        where = "local Ray" if self.started_here else f"Ray cluster at {self.address}"
        cpus = self.resources.get("CPU", 0)
        gpus = self.resources.get("GPU", 0)
        line = f"{where}: {cpus:g} CPU, {gpus:g} GPU"
        if self.dashboard_url:
            line += f"; dashboard {self.dashboard_url}"
        if self.token_hint:
            line += f"\n{self.token_hint}"
        if self.note:
            line += f"\n{self.note}"
        return line


def token_hint() -> str | None:
    """How to obtain the dashboard's authentication token, or None when token auth is off."""
    if not _token_auth_enabled():
        return None
    if os.environ.get("RAY_AUTH_TOKEN"):
        source = "the RAY_AUTH_TOKEN environment variable"
    elif os.environ.get("RAY_AUTH_TOKEN_PATH"):
        source = os.environ["RAY_AUTH_TOKEN_PATH"]
    else:
        source = str(Path("~/.ray/auth_token"))
    return (
        "Ray token authentication is on: the dashboard asks for the token, which is in "
        f"{source}; print it with `ray get-auth-token` (set RAY_AUTH_MODE=disabled to opt out)."
    )


def _token_auth_enabled() -> bool:
    try:
        from ray._private.authentication.authentication_utils import is_token_auth_enabled
    except ImportError:  # older Ray: no token authentication
        return False
    return bool(is_token_auth_enabled())


def dashboard_missing() -> str | None:
    """Why Ray's dashboard cannot start here (``ray[default]`` not installed), or None."""
    try:
        from ray._private.utils import get_dashboard_dependency_error
    except ImportError:
        return None
    error = get_dashboard_dependency_error()
    return str(error) if error else None


def init_ray(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    include_dashboard: bool = True,
    **kwargs: Any,
) -> ClusterInfo:
    """Start a local Ray (dashboard on 127.0.0.1) or join the cluster at ``address``.

    When Ray is already initialised in this process (tests, notebooks), it is reused as is.
    """
    started_here = False
    note = None
    if include_dashboard and not address and (missing := dashboard_missing()):
        include_dashboard = False
        note = (
            f"Ray's dashboard is off: its dependencies are not installed ({missing}); "
            "install them with `pip install 'ray[default]'`."
        )
    if not ray.is_initialized():
        try:
            if address:
                ctx = ray.init(address=address, log_to_driver=False, **kwargs)
            else:
                ctx = ray.init(
                    num_cpus=num_cpus,
                    num_gpus=num_gpus,
                    include_dashboard=include_dashboard,
                    dashboard_host="127.0.0.1",
                    log_to_driver=False,
                    **kwargs,
                )
                started_here = True
        except (ConnectionError, RuntimeError, ValueError) as exc:
            target = f"--address {address}" if address else "a local Ray"
            raise ClusterError(
                f"could not start {target}: {exc}. Check that the address is the head node's "
                "GCS address (e.g. 10.0.0.1:6379 or 'auto' on a cluster node) and that the Ray "
                "versions match; leave --address out to start Ray on this machine."
            ) from exc
        url = ctx.dashboard_url or None
    else:
        url = ray.get_runtime_context().gcs_address and _current_dashboard_url()
    if url and "://" not in url:
        url = "http://" + url
    return ClusterInfo(
        address=address,
        dashboard_url=url,
        token_auth=_token_auth_enabled(),
        token_hint=token_hint() if url else None,
        started_here=started_here,
        resources={k: float(v) for k, v in ray.cluster_resources().items()},
        note=note,
    )


def _current_dashboard_url() -> str | None:
    try:
        from ray._private.worker import _global_node

        return _global_node.webui_url if _global_node is not None else None
    except Exception:  # the dashboard URL is a convenience, never a reason to fail
        return None
