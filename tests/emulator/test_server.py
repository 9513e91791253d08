"""Serving: serve() in a separate process driven over HTTP, real-time clock, concurrency."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from openai import OpenAI

from warehouse_batch.emulator import Emulator, EmulatorConfig

from .conftest import chat_line, read_lines, run_batch

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_in_a_separate_process(tmp_path: Path) -> None:
    port = _free_port()
    code = ("from warehouse_batch.emulator import serve, EmulatorConfig; "
            f"serve(EmulatorConfig(request_time=5, state_dir={str(tmp_path)!r}), host='127.0.0.1', port={port})")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == f"warehouse-batch emulator: base URL http://127.0.0.1:{port}/v1"
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 10
        while True:
            try:
                urllib.request.urlopen(base + "/_emulator/health", timeout=1).read()
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        client = OpenAI(api_key="k", base_url=base + "/v1")
        b = run_batch(client, [chat_line("a"), chat_line("b")])
        assert client.batches.retrieve(b.id).status == "in_progress"
        req = urllib.request.Request(base + "/_emulator/advance", data=json.dumps({"seconds": 10}).encode(),
                                     headers={"content-type": "application/json"}, method="POST")
        urllib.request.urlopen(req, timeout=5).read()
        done = client.batches.retrieve(b.id)
        assert done.status == "completed"
        assert len(read_lines(client, done.output_file_id)) == 2
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert "Traceback" not in err


def test_time_scale_runs_the_clock_fast(client: OpenAI, emulator: Emulator) -> None:
    emulator.configure(time_scale=1000, request_time=50)
    b = run_batch(client, [chat_line("a"), chat_line("b")])
    time.sleep(0.3)  # 300 emulated seconds
    assert client.batches.retrieve(b.id).status == "completed"


def test_concurrent_clients() -> None:
    with Emulator(EmulatorConfig(request_time=1)) as emu:
        client = OpenAI(api_key="k", base_url=emu.base_url)

        def one(i: int) -> str:
            b = run_batch(client, [chat_line(f"{i}-{j}") for j in range(20)])
            for _ in range(5):
                client.batches.retrieve(b.id)
                client.batches.list(limit=3)
            emu.advance(5)
            return b.id

        with ThreadPoolExecutor(8) as pool:
            ids = list(pool.map(one, range(16)))
        emu.advance(100)
        assert {client.batches.retrieve(i).status for i in ids} == {"completed"}
        assert emu.counters()["batches_created"] == 16 and emu.counters()["requests_received"] == 320


def test_sigterm_stops_the_emulator_cleanly_and_removes_its_temporary_files(tmp_path: Path) -> None:
    """Without a state dir, file bytes over 1 MiB live in a temporary directory: a stop by SIGTERM
    (a supervisor, `docker stop`, a CI step ending) removes it, as Ctrl-C does."""
    import os
    import signal

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "warehouse_batch.cli", "emulator", "--port", "0"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TMPDIR": str(scratch)})
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip().rsplit(" ", 1)[1]
        client = OpenAI(api_key="k", base_url=base_url)
        big = b"".join(json.dumps(chat_line(str(i), "x" * 1000)).encode() + b"\n" for i in range(1500))  # ~1.6 MB
        client.files.create(file=("big.jsonl", big), purpose="batch")
        assert [p.name.startswith("wb-emulator-") for p in scratch.iterdir()] == [True]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert list(scratch.iterdir()) == []
