"""Test helpers: a webhook receiver on a free port and a simulator client."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

import httpx
from twilio.request_validator import RequestValidator

from dialer.settings import SIMULATOR_ACCOUNT_SID, SIMULATOR_AUTH_TOKEN
from dialer.simulator import SimulatorConfig, run_in_thread

ACCOUNT_SID = SIMULATOR_ACCOUNT_SID
AUTH_TOKEN = SIMULATOR_AUTH_TOKEN
CALLS_PATH = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json"


@dataclass(frozen=True)
class Received:
    """One webhook request the receiver got."""

    path: str
    headers: dict[str, str]
    params: dict[str, str]
    at: float
    url: str = ""
    """The request target as sent (GET callbacks carry their parameters in it)."""


@dataclass
class Receiver:
    """A threaded HTTP server recording form POSTs; `status_for(path, n)` picks the reply
    status for the n-th (0-based) request to `path`."""

    base_url: str = ""
    requests: list[Received] = field(default_factory=list)
    status_for: Callable[[str, int], int] = lambda path, n: 204
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, item: Received) -> int:
        with self.lock:
            count = sum(1 for r in self.requests if r.path == item.path)
            self.requests.append(item)
        return self.status_for(item.path, count)

    def on(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.path == path]

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; received: {self.requests}")
            time.sleep(0.005)


@contextmanager
def run_receiver() -> Iterator[Receiver]:
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length).decode()
            item = Received(
                path=self.path,
                headers={k: v for k, v in self.headers.items()},
                params=dict(parse_qsl(body, keep_blank_values=True)),
                at=time.monotonic(),
            )
            status = receiver.record(item)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            path, _, query = self.path.partition("?")
            item = Received(
                path=path,
                headers={k: v for k, v in self.headers.items()},
                params=dict(parse_qsl(query, keep_blank_values=True)),
                at=time.monotonic(),
                url=self.path,
            )
            self.send_response(receiver.record(item))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class Sim:
    """A running simulator and an authenticated httpx client for it."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = httpx.Client(base_url=base_url, auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=5)

    def create(self, **form: Any) -> httpx.Response:
        data = {"From": "+15550000000", "Twiml": "<Response><Say>Hi</Say></Response>", **form}
        return self.http.post(CALLS_PATH, data=data)

    def fetch(self, sid: str) -> dict[str, Any]:
        response = self.http.get(f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{sid}.json")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def stats(self) -> dict[str, Any]:
        body: dict[str, Any] = self.http.get("/_sim/stats").json()
        return body

    def configure(self, **update: Any) -> httpx.Response:
        return self.http.post("/_sim/config", json=update)

    def wait_status(self, sid: str, done: Callable[[str], bool], timeout_s: float = 5.0) -> str:
        deadline = time.monotonic() + timeout_s
        while True:
            status = str(self.fetch(sid)["status"])
            if done(status):
                return status
            if time.monotonic() > deadline:
                raise AssertionError(f"call {sid} stuck in {status}")
            time.sleep(0.005)


TERMINAL = {"completed", "busy", "failed", "no-answer", "canceled"}


@contextmanager
def run_sim(**config: Any) -> Iterator[Sim]:
    settings = {"time_scale": 0.001, "seed": 7, **config}
    with run_in_thread(SimulatorConfig(**settings)) as base_url:
        sim = Sim(base_url)
        try:
            yield sim
        finally:
            sim.http.close()


EVENTS = ["initiated", "ringing", "answered", "completed"]


def place(sim: Sim, receiver: Receiver, to: str, **form: Any) -> str:
    response = sim.create(
        To=to,
        StatusCallback=f"{receiver.base_url}/status/{to}",
        StatusCallbackEvent=EVENTS,
        **form,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["sid"])


def wait_final(receiver: Receiver, to: str) -> list[Received]:
    path = f"/status/{to}"
    receiver.wait_for(lambda: any(r.params["CallStatus"] in TERMINAL for r in receiver.on(path)))
    return receiver.on(path)


def assert_signed(received: Received, url: str) -> None:
    signature = received.headers["X-Twilio-Signature"]
    assert RequestValidator(AUTH_TOKEN).validate(url, received.params, signature)
