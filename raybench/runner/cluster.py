"""Start a private local Ray or join a cluster — quickly, safely — and say how to reach it.

**Which Ray.** Without an address raybench always starts its *own* Ray on this machine
(``ray.init(address="local")``): a plain ``ray.init()`` would join whatever cluster Ray's
``ray_current_cluster`` file or ``RAY_ADDRESS`` names, which may be a crashed ``ray start`` (a
hang of minutes) or another job's cluster (used silently). Joining is explicit: ``"auto"`` (the
cluster of this machine) or ``HOST:PORT`` / ``ray://HOST:PORT``.

**Joining fails fast.** Before ``ray.init`` the GCS port is probed with a short TCP connect, and
Ray's own GCS connect retries are capped (``RAY_gcs_server_port_wait_time_s``) at
:data:`JOIN_TIMEOUT_S`: a dead address is a :class:`ClusterError` (exit 2) in seconds, not Ray's
twenty retries. Ctrl+C while Ray starts stops what was started and raises
:class:`~raybench.runner.interrupt.RunInterrupted` (exit 130).

**Token authentication** (Ray 2.60: on by default for ``ray start --head`` and a local
``ray.init()``). Ray's driver sends its token to an explicit address only when
``RAY_AUTH_MODE=token`` is set; raybench sets it when the mode is unset and a token is available
(``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``, the places Ray reads), as
Ray itself does for ``"auto"``. A refused token is reported as an authentication error. raybench
prints *where* the token is, never the token.

**Loopback only.** A local Ray binds its GCS, raylet, workers, agents and dashboard to 127.0.0.1.
On Linux Ray replaces a loopback node IP by the machine's address unless its "no cluster" mode
(the macOS/Windows default, ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``) is on; raybench turns that
mode on while the local Ray starts, so Ray's servers see node IP 127.0.0.1 and listen on it only.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray

from raybench.errors import RaybenchError
from raybench.runner.interrupt import RunInterrupted

#: Seconds a join may take before raybench gives up (TCP probe, then Ray's GCS connect).
JOIN_TIMEOUT_S = 10.0
LOOPBACK = "127.0.0.1"
_AUTH_WORDS = ("unauthenticated", "invalidauthtoken", "authenticationerror", "auth token")


class ClusterError(RaybenchError):
    """Ray could not be started, the cluster could not be joined, or it cannot run the plan."""


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


def auth_token_source() -> str | None:
    """Where Ray would read this process's auth token from (a name or path, never the token).

    ``RAY_AUTH_TOKEN`` wins, then the file ``RAY_AUTH_TOKEN_PATH`` names, then
    ``~/.ray/auth_token``; None when none of them holds a token.
    """
    if os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return "the RAY_AUTH_TOKEN environment variable"
    shown = os.environ.get("RAY_AUTH_TOKEN_PATH") or "~/.ray/auth_token"
    path = Path(shown).expanduser()
    try:
        return shown if path.is_file() and path.stat().st_size > 0 else None
    except OSError:
        return None


def enable_token_auth() -> str | None:
    """Turn Ray's token mode on for a join when a token is available; return its source.

    An explicit ``RAY_AUTH_MODE`` is respected (``disabled`` sends no token). Returns where the
    token comes from when one will be sent, else None.
    """
    mode = os.environ.get("RAY_AUTH_MODE")
    source = auth_token_source()
    if mode is not None:
        return source if mode.strip().lower() == "token" else None
    if source is None:
        return None
    os.environ["RAY_AUTH_MODE"] = "token"
    with contextlib.suppress(ImportError, AttributeError):
        from ray._raylet import Config  # Ray caches its config: re-read RAY_AUTH_MODE

        Config.initialize("")
    return source


def token_hint() -> str | None:
    """How to obtain the dashboard's authentication token, or None when token auth is off."""
    if not _token_auth_enabled():
        return None
    source = auth_token_source() or "~/.ray/auth_token"
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


def gcs_endpoint(address: str) -> tuple[str, int, str]:
    """``(host, port, where it came from)`` of the GCS (or Ray client server) ``address`` names.

    ``"auto"`` is ``RAY_ADDRESS`` or the ``ray_current_cluster`` file of Ray's temp dir (written
    by ``ray start``). A malformed address or an ``"auto"`` that finds nothing is a ClusterError.

    >>> gcs_endpoint("10.0.0.1:6379")[:2], gcs_endpoint("ray://head:10001")[:2]
    (('10.0.0.1', 6379), ('head', 10001))
    """
    given, where = address, f"--address {address}"
    if address == "auto":
        given = os.environ.get("RAY_ADDRESS") or _current_cluster_file() or ""
        where = "RAY_ADDRESS" if os.environ.get("RAY_ADDRESS") else "Ray's ray_current_cluster file"
        if not given or given == "auto":
            raise ClusterError(
                "--address auto: no Ray cluster is running on this machine (RAY_ADDRESS is unset "
                "and `ray start` left no address); start one with `ray start --head`, give the "
                "head's HOST:PORT, or leave --address out to start a private Ray here"
            )
    host, _, port = given.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(
            f"{where}: {given!r} is not a Ray address; write HOST:PORT (e.g. 10.0.0.1:6379), "
            "ray://HOST:10001 or 'auto'"
        )
    return host.strip("[]"), int(port), where


def _current_cluster_file() -> str | None:
    try:
        from ray._private.utils import read_ray_address
    except ImportError:
        return None
    return read_ray_address()


def probe(host: str, port: int, timeout: float) -> str | None:
    """None when something accepts TCP connections at ``host:port`` within ``timeout``, else why."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return str(exc) or type(exc).__name__


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _loopback_node() -> Iterator[None]:
    """Ray's single-machine mode while a local Ray starts: its node IP stays 127.0.0.1."""
    from ray._private import ray_constants

    enabled = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        with _env(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0"):  # for the processes Ray spawns
            yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = enabled


def _chain_text(exc: BaseException) -> str:
    parts, seen = [], set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts.append(f"{type(current).__name__}: {current}")
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


def _join_error(address: str, exc: BaseException, token: str | None) -> ClusterError:
    text = _chain_text(exc)
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if any(word in text.lower() for word in _AUTH_WORDS):
        if token:
            how = (
                f"raybench sent the token from {token} and the cluster refused it; put the head "
                "node's token (`ray get-auth-token` on the head) in RAY_AUTH_TOKEN or the file "
                "RAY_AUTH_TOKEN_PATH names"
            )
        else:
            how = (
                "no token was found in RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token; "
                "copy the head node's token (`ray get-auth-token` on the head) to one of them"
            )
        return ClusterError(
            f"could not join the Ray cluster at {address}: authentication failed ({first}); {how}"
        )
    return ClusterError(
        f"could not join the Ray cluster at {address}: {first}. Check that the address is the "
        "head node's GCS address (e.g. 10.0.0.1:6379, or 'auto' on a cluster node) and that the "
        "Ray and Python versions match the cluster's; leave --address out to start a private "
        "Ray on this machine."
    )


def _join(address: str, timeout: float, kwargs: dict[str, Any]) -> Any:
    host, port, where = gcs_endpoint(address)
    why = probe(host, port, min(timeout, 5.0))
    if why is not None:
        stale = (
            " (a crashed `ray start` leaves it behind: run `ray stop`)" if "file" in where else ""
        )
        raise ClusterError(
            f"could not join the Ray cluster at {host}:{port} ({where}{stale}): nothing answers "
            f"there ({why}). Start the cluster, fix the address, or leave --address out to start "
            "a private Ray on this machine."
        )
    token = enable_token_auth()
    try:
        with _env(RAY_gcs_server_port_wait_time_s=str(max(1, round(timeout)))):
            return ray.init(address=address, log_to_driver=False, **kwargs)
    except (
        ConnectionError,
        RuntimeError,
        ValueError,
        TimeoutError,
        ray.exceptions.RayError,
    ) as exc:
        raise _join_error(address, exc, token) from exc


def _start_local(
    num_cpus: int | None, num_gpus: int | None, include_dashboard: bool, kwargs: dict[str, Any]
) -> Any:
    kwargs.setdefault("_node_ip_address", LOOPBACK)
    try:
        with _loopback_node():
            return ray.init(
                address="local",
                num_cpus=num_cpus,
                num_gpus=num_gpus,
                include_dashboard=include_dashboard,
                dashboard_host=LOOPBACK,
                log_to_driver=False,
                **kwargs,
            )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ClusterError(f"could not start a local Ray: {exc}") from exc


def init_ray(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    include_dashboard: bool = True,
    join_timeout: float = JOIN_TIMEOUT_S,
    **kwargs: Any,
) -> ClusterInfo:
    """Start a private local Ray on 127.0.0.1 (``address`` None or ``"local"``), or join one.

    When Ray is already initialised in this process (tests, notebooks), it is reused as is.
    Raises :class:`ClusterError` (exit 2) when Ray cannot start or the cluster cannot be joined
    within about ``join_timeout`` seconds, and :class:`RunInterrupted` on Ctrl+C.
    """
    local = address in (None, "local")
    started_here = False
    note = None
    if include_dashboard and local and (missing := dashboard_missing()):
        include_dashboard = False
        note = (
            f"Ray's dashboard is off: its dependencies are not installed ({missing}); "
            "install them with `pip install 'ray[default]'`."
        )
    if not ray.is_initialized():
        try:
            if local:
                ctx = _start_local(num_cpus, num_gpus, include_dashboard, dict(kwargs))
                started_here = True
            else:
                ctx = _join(str(address), join_timeout, dict(kwargs))
        except KeyboardInterrupt:
            ray.shutdown()
            raise RunInterrupted(
                "interrupted while Ray was starting: nothing ran, nothing was written"
            ) from None
        url = ctx.dashboard_url or None
    else:
        url = ray.get_runtime_context().gcs_address and _current_dashboard_url()
    if url and "://" not in url:
        url = "http://" + url
    return ClusterInfo(
        address=None if local else address,
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
