"""Free local ports for a second stack beside the default one (tests, benchmarks).

weed puts each component's gRPC listener on its HTTP port + 10000, so ports for SeaweedFS are
drawn from 20000-22699 (gRPC twins at 30000-32699) and the others from 22700-29999: all below
Linux's ephemeral range (32768+), where outgoing connections would take them at random.
"""

from __future__ import annotations

import random
import socket
import threading

__all__ = ["free_port", "free_stack_ports"]

_GRPC_OFFSET = 10000
_handed_out: set[int] = set()
_lock = threading.Lock()


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(with_grpc: bool = False) -> int:
    """A port free on 127.0.0.1 now (and port + 10000 too when ``with_grpc``).

    Never hands out the same port twice in one process; another process may still take it
    before the service binds it, which the service then reports as a startup failure.
    """
    rng = random.SystemRandom()
    with _lock:
        for _ in range(1000):
            port = rng.randrange(20000, 22700) if with_grpc else rng.randrange(22700, 30000)
            wanted = [port, port + _GRPC_OFFSET] if with_grpc else [port]
            if _handed_out.intersection(wanted) or not all(_bindable(p) for p in wanted):
                continue
            _handed_out.update(wanted)
            return port
    raise OSError("no free local port found in 20000-32699")


def free_stack_ports() -> dict[str, object]:
    """``Settings`` overrides putting every stack service (and its URL) on a free port."""
    s3_port = free_port(with_grpc=True)
    mlflow_port = free_port()
    prefect_port = free_port()
    return {
        "s3_port": s3_port,
        "s3_endpoint_url": f"http://127.0.0.1:{s3_port}",
        "weed_master_port": free_port(with_grpc=True),
        "weed_volume_port": free_port(with_grpc=True),
        "weed_filer_port": free_port(with_grpc=True),
        "weed_admin_port": free_port(with_grpc=True),
        "mlflow_port": mlflow_port,
        "mlflow_tracking_uri": f"http://127.0.0.1:{mlflow_port}",
        "prefect_port": prefect_port,
        "prefect_api_url": f"http://127.0.0.1:{prefect_port}/api",
    }
