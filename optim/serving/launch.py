"""Start `python -m optim.serve` as a child process on free loopback ports, wait until it is ready, stop it
cleanly. A server that exits or is not ready within the timeout raises OptimError with its log's last lines."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from typing_extensions import Self

from optim.errors import OptimError

LOG_TAIL_LINES = 25


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class ServerProcess:
    """`with ServerProcess(source, models) as server:` -> server.http_url / grpc_url / metrics_url while it runs.

    Ready = the server and every model in `models` answer 200 on their KServe-v2 ready endpoints (PyTriton's
    server is ready before its models are bound, so the models must be named)."""

    def __init__(self, source: Path, models: list[str], extra_args: list[str] | None = None,
                 timeout_s: float = 180.0, host: str = "127.0.0.1"):
        self.source = Path(source)
        self.models = list(models)
        self.extra_args = list(extra_args or [])
        self.timeout_s = timeout_s
        self.host = host
        self.ports = {"http": free_port(host), "grpc": free_port(host), "metrics": free_port(host),
                      "monitor": free_port(host)}
        self.log_path = Path(tempfile.mkstemp(prefix="optim-serve-", suffix=".log")[1])
        self.process: subprocess.Popen | None = None

    @property
    def http_url(self) -> str:
        return f"{self.host}:{self.ports['http']}"

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.ports['grpc']}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.ports['metrics']}/metrics"

    @property
    def monitor_url(self) -> str:
        """The detector's own metrics (optim.monitor), beside Triton's."""
        return f"http://{self.host}:{self.ports['monitor']}/metrics"

    def start(self) -> Self:
        command = [sys.executable, "-m", "optim.serve", str(self.source), "--host", self.host,
                   "--http-port", str(self.ports["http"]), "--grpc-port", str(self.ports["grpc"]),
                   "--metrics-port", str(self.ports["metrics"]),
                   "--monitor-port", str(self.ports["monitor"]), *self.extra_args]
        with open(self.log_path, "wb") as log:
            # Own session: stop() signals the whole group (PyTriton's tritonserver and stubs included).
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise OptimError(f"the server exited with code {self.process.returncode} before it was ready; "
                                 f"last lines of its log:\n{log_tail(self.log_path)}", path=self.log_path,
                                 fix="read the log above; python -m optim.serve --help")
            if self.ready():
                return
            time.sleep(0.5)
        self.stop()
        raise OptimError(f"the server was not ready within {self.timeout_s:g} s; last lines of its log:\n"
                         f"{log_tail(self.log_path)}", path=self.log_path,
                         fix="read the log above, or give a longer timeout")

    def ready(self) -> bool:
        """GET /v2/health/ready and /v2/models/<model>/ready answer 200."""
        paths = ["/v2/health/ready"] + [f"/v2/models/{model}/ready" for model in self.models]
        try:
            for path in paths:
                with urllib.request.urlopen(f"http://{self.http_url}{path}", timeout=2) as response:
                    if response.status != 200:
                        return False
        except (urllib.error.URLError, OSError):
            return False
        return True

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM (a clean Triton stop), SIGKILL to the process group if it does not exit in time."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait(timeout=10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
