"""Test helpers for the hub: a real uvicorn server on 127.0.0.1, and a loopback TCP proxy that can cut
a connection mid-download (the only way to test resume without a real flaky network)."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn

from outpost.hub import create_app
from outpost.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def outpost_cli(
    *args: str, home: Path, fault: str | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """The real `outpost` entry point in a subprocess; ``fault`` sets a crash point (outpost.faults)."""
    env = {**os.environ, "OUTPOST_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    env.pop("OUTPOST_FAULT", None)
    if fault:
        env["OUTPOST_FAULT"] = fault
    command = [sys.executable, "-m", "outpost", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)


class ServerThread:
    """A real ASGI app under uvicorn in a thread, on a free loopback port."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        self.port = port or free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("hub did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


class HubServer(ServerThread):
    """The hub app over a hub home."""

    def __init__(self, home: Path, port: int | None = None) -> None:
        super().__init__(create_app(Settings(home=home)), port)


class CuttingProxy:
    """Forwards 127.0.0.1:<port> to the hub; while armed, closes a connection once it has carried
    ``cut_after`` response bytes, then disarms. Records the requests' first lines and Range headers, and the
    responses' status lines and Content-Range headers (so a test can see that a resume got a 206)."""

    def __init__(self, target_port: int, cut_after: int) -> None:
        self.target_port = target_port
        self.cut_after: int | None = cut_after
        self.port = free_port()
        self.requests: list[str] = []
        self.responses: list[str] = []
        self.cuts = 0
        self.listener = socket.create_server(("127.0.0.1", self.port))
        self.listener.settimeout(0.2)
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> CuttingProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.running = False
        self.thread.join(timeout=5)
        self.listener.close()

    def _serve(self) -> None:
        while self.running:
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pump_requests, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump_responses, args=(upstream, client), daemon=True).start()

    def _pump_requests(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                text = data.decode("latin-1")
                self.requests += [line for line in text.split("\r\n") if line.startswith(("GET ", "range:", "Range:"))]
                dst.sendall(data)
        except OSError:
            pass
        finally:
            _close(src, dst)

    def _pump_responses(self, src: socket.socket, dst: socket.socket) -> None:
        carried = 0
        tail = ""  # the end of the previous read: a header line may straddle two reads
        try:
            while data := src.recv(4096):
                seen = tail + data.decode("latin-1")
                self.responses += [m[1] for m in _RESPONSE_LINE.finditer(seen) if m.end() > len(tail)]
                tail = seen[-256:]
                if self.cut_after is not None and carried + len(data) > self.cut_after:
                    dst.sendall(data[: self.cut_after - carried])
                    self.cut_after = None
                    self.cuts += 1
                    break
                carried += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            _close(src, dst)


# A status line follows the previous body directly (bodies are sized, not newline-terminated): match it anywhere.
_RESPONSE_LINE = re.compile(r"(HTTP/1\.[01] \d{3} [^\r\n]*|(?<=\n)content-range:[^\r\n]*)\r\n", re.IGNORECASE)


def _close(*socks: socket.socket) -> None:
    for s in socks:
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)
        s.close()
