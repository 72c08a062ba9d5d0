"""A process that starts or joins Ray with raybench's ``init_ray`` and reports, as one JSON line.

Usage: python cluster_script.py local [--dashboard] | python cluster_script.py join ADDRESS
``local`` prints the node IP, whether Ray was started here and every TCP address on which a
process of this process tree listens; ``join`` prints the cluster's resources. On a raybench
error it prints ``{"error": message}`` and exits with the error's exit code (2, or 130).
"""

from __future__ import annotations

import json
import sys
import time

import ray

from raybench.errors import RaybenchError
from raybench.runner.cluster import init_ray


def listeners() -> list[list]:
    """``[name, ip, port]`` of each listening TCP socket of this process and its children."""
    import psutil  # Ray's bundled copy, on sys.path once ray is imported

    me = psutil.Process()
    out = []
    for proc in [me, *me.children(recursive=True)]:
        try:
            for conn in proc.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    out.append([proc.name(), conn.laddr.ip, conn.laddr.port])
        except psutil.Error:
            continue
    return out


def main() -> int:

    mode = sys.argv[1]
    print("starting", file=sys.stderr, flush=True)
    try:
        if mode == "local":
            info = init_ray(num_cpus=1, include_dashboard="--dashboard" in sys.argv)
        else:
            info = init_ray(sys.argv[2])
    except RaybenchError as exc:
        print(json.dumps({"error": str(exc)}), flush=True)
        return exc.exit_code
    report = {"started_here": info.started_here, "cpus": info.resources.get("CPU")}
    if mode == "local":

        @ray.remote
        def node_ip() -> str:
            return ray.util.get_node_ip_address()

        report["worker_ip"] = ray.get(node_ip.remote())  # a worker process is up, too
        time.sleep(1.0)
        report["dashboard_url"] = info.dashboard_url
        report["listeners"] = listeners()
    print(json.dumps(report), flush=True)
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
