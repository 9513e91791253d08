"""Run the app: `Emulator` in a background thread for tests, `serve()` for the CLI."""
from __future__ import annotations

import signal
import socket
import sys
import threading
import time
from types import TracebackType
from typing import Any

import uvicorn
from starlette.applications import Starlette

from warehouse_batch.errors import interrupt

from .app import create_app, quiet_drop_logs
from .config import EmulatorConfig
from .engine import Engine
from .faults import Fault
from .webhooks import Delivery


class Emulator:
    """An emulator on a real loopback port; usable as a context manager."""

    def __init__(self, config: EmulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config or EmulatorConfig()
        self.host = host
        self.port = port
        self.app: Starlette | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    # -------------------------------------------------------------- lifecycle

    def start(self) -> "Emulator":
        if self._thread is not None:
            return self
        self.app = create_app(self.config)
        # Bind ourselves so port 0 resolves to a real port before uvicorn starts.
        sock = _listen(self.host, self.port)
        self._sock = sock
        self.port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="off",
                                               timeout_graceful_shutdown=2))
        quiet_drop_logs()
        self._server = server
        self._thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="emulator", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 15
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the emulator did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self.app is not None:
            self.engine.webhooks.stop()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._sock is not None:
            self._sock.close()
        if self.app is not None:
            self.engine.close()  # its temporary files go (state_dir stays)
        self._server = self._thread = self._sock = None

    def __enter__(self) -> "Emulator":
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # -------------------------------------------------------------- addresses

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    # -------------------------------------------------------------- in-process control

    @property
    def engine(self) -> Engine:
        if self.app is None:
            raise RuntimeError("the emulator is not started")
        return self.app.state.engine  # type: ignore[no-any-return]

    def counters(self) -> dict[str, Any]:
        return self.engine.counter_snapshot()

    def configure(self, **fields: Any) -> EmulatorConfig:
        self.config = self.engine.configure(**fields)
        return self.config

    def advance(self, seconds: float) -> float:
        """Move the emulated clock forward; returns the new emulated time."""
        return self.engine.advance(seconds)

    def inject_fault(self, op: str, status: int = 500, times: int = 1, retry_after: float | None = None,
                     drop: bool = False, delay: float | None = None, truncate: bool = False,
                     corrupt: bool = False) -> None:
        self.engine.faults.add(Fault(op, status, times, retry_after, drop, delay, truncate, corrupt))

    def send_webhook(self, batch_id: str, status: str | None = None, *, forge: bool = False) -> Delivery:
        """POST a signed event about the batch to the configured webhook_url now (forge: a wrong key)."""
        return self.engine.webhooks.send(batch_id, status, forge=forge)

    def replay_webhook(self, index: int = -1) -> Delivery:
        """Send an earlier webhook delivery again, byte for byte."""
        return self.engine.webhooks.replay(index)

    def webhook_deliveries(self) -> list[Delivery]:
        return list(self.engine.webhooks.deliveries)

    def reset(self) -> None:
        """Forget all files, batches, counters and faults (state_dir contents too)."""
        self.engine.reset()


def serve(config: EmulatorConfig | None = None, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve until interrupted (used by `warehouse-batch emulator`).

    The socket is bound before the base URL is printed, so the printed URL (with the real port
    when `port` is 0) already accepts connections."""
    app = create_app(config or EmulatorConfig())
    sock = _listen(host, port)
    shown = f"[{host}]" if ":" in host else host
    print(f"warehouse-batch emulator: base URL http://{shown}:{sock.getsockname()[1]}/v1", flush=True)
    quiet_drop_logs()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    # uvicorn shuts down on SIGINT/SIGTERM, then raises the signal again with the handler it found:
    # SIGTERM's default would end the process before the engine removes its temporary files.
    main = threading.current_thread() is threading.main_thread()  # only it may set handlers
    previous = signal.signal(signal.SIGTERM, interrupt) if main else None
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass  # asked to stop: a normal end
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
        sock.close()
        app.state.engine.close()
        sys.stdout.flush()


def _listen(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    return sock
