"""`warehouse-batch worker`: the loop in the main thread, the HTTP side in a uvicorn thread.

SIGTERM (or SIGINT) stops it cleanly: a wait ends at once; a step in progress is interrupted the
way the CLI interrupts a run (what it recorded stays, and the next start resumes it without
sending anything twice); the HTTP server is shut down last.
"""

from __future__ import annotations

import logging
import signal
import socket
import sys
import threading
import time
from typing import Any

import uvicorn

from warehouse_batch.definitions import Policy, definers_for
from warehouse_batch.errors import ConfigError
from warehouse_batch.runner import Runner
from warehouse_batch.worker.http import create_app
from warehouse_batch.worker.service import Timing, Worker


def serve(runner: Runner, *, host: str, port: int, policy: Policy, timing: Timing,
          default_definer: str | None = None, webhook_secret: str | None = None) -> None:
    """Run the worker until SIGTERM/SIGINT. Prints `listening on http://HOST:PORT` once it serves."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per provider call would bury the worker's own
    worker = Worker(runner, definers_for(runner.warehouse, policy, default_definer), policy, timing)
    loop_thread = threading.current_thread()
    app = create_app(worker, location=runner.warehouse.location, webhook_secret=webhook_secret,
                     loop_alive=loop_thread.is_alive)
    try:
        sock = socket.create_server((host, port))
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}; choose another --port") from None
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                           timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="worker-http", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    bound = sock.getsockname()
    print(f"listening on http://{bound[0]}:{bound[1]}", file=sys.stderr, flush=True)

    def on_signal(signum: int, frame: Any) -> None:
        worker.stop()
        if worker.stepping:
            raise KeyboardInterrupt  # interrupt the step; the Runner keeps what it recorded

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        worker.run_forever()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        logging.getLogger("warehouse_batch.worker").info("stopped")
