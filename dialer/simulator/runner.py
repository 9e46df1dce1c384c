"""Run the simulator: its uvicorn configuration (`dialer simulator` serves it, see
`dialer.cli.serve`) or in a background thread (tests)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType

import uvicorn

from dialer.simulator.app import create_app
from dialer.simulator.config import SimulatorConfig


def uvicorn_config(config: SimulatorConfig, host: str, port: int) -> uvicorn.Config:
    """uvicorn's configuration for the simulator on `host:port` (`0`: a free port)."""
    return uvicorn.Config(
        create_app(config),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=1,
    )


class RunningSimulator:
    """The simulator served by uvicorn in a daemon thread; a context manager.

    `port=0` picks a free port; `base_url` (`http://127.0.0.1:PORT`) is set once started.
    """

    def __init__(self, config: SimulatorConfig, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config
        self.host = host
        self._server = uvicorn.Server(uvicorn_config(config, host, port))
        self._thread = threading.Thread(target=self._server.run, name="simulator", daemon=True)
        self.base_url = ""

    def start(self, timeout_s: float = 10.0) -> str:
        """Start serving and wait until the socket listens; return `base_url`.

        Raises:
            RuntimeError: the server did not start within `timeout_s` seconds.
        """
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("carrier simulator did not start")
            time.sleep(0.01)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.base_url = f"http://{self.host}:{port}"
        return self.base_url

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask the server to exit (cancelling call lifecycles) and wait for the thread."""
        self._server.should_exit = True
        self._thread.join(timeout_s)

    def __enter__(self) -> RunningSimulator:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


@contextmanager
def run_in_thread(config: SimulatorConfig, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve the simulator in a background thread for the block; yield its base URL."""
    with RunningSimulator(config, host, port) as simulator:
        yield simulator.base_url
