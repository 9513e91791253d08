from __future__ import annotations

from pathlib import Path

from openai import OpenAI

from warehouse_batch.emulator import Emulator, EmulatorConfig

from .conftest import chat_line, read_lines, run_batch


def test_state_survives_restart(tmp_path: Path) -> None:
    config = EmulatorConfig(state_dir=str(tmp_path / "state"), request_time=10)
    with Emulator(config) as emu:
        client = OpenAI(api_key="k", base_url=emu.base_url)
        done = run_batch(client, [chat_line("a")])
        emu.advance(10)
        done = client.batches.retrieve(done.id)
        assert done.status == "completed"
        running = run_batch(client, [chat_line(f"r{i}") for i in range(4)])
        emu.advance(25)
        assert client.batches.retrieve(running.id).request_counts.completed == 2  # type: ignore[union-attr]
        output_before = client.files.content(done.output_file_id).content  # type: ignore[arg-type]
    # A new process-like emulator on the same directory (and a new port).
    with Emulator(EmulatorConfig(state_dir=str(tmp_path / "state"), request_time=10)) as emu2:
        client = OpenAI(api_key="k", base_url=emu2.base_url)
        again = client.batches.retrieve(done.id)
        assert again.status == "completed" and again.output_file_id == done.output_file_id
        assert client.files.content(done.output_file_id).content == output_before  # type: ignore[arg-type]
        resumed = client.batches.retrieve(running.id)
        assert resumed.status == "in_progress" and resumed.request_counts.completed >= 2  # type: ignore[union-attr]
        emu2.advance(100)
        finished = client.batches.retrieve(running.id)
        assert finished.status == "completed"
        assert [o["custom_id"] for o in read_lines(client, finished.output_file_id)] == ["r0", "r1", "r2", "r3"]
        assert {b.id for b in client.batches.list()} == {done.id, running.id}
        assert len(client.files.list().data) == 4  # 2 inputs + 2 outputs


def test_reset_clears_state_dir(tmp_path: Path) -> None:
    config = EmulatorConfig(state_dir=str(tmp_path))
    with Emulator(config) as emu:
        client = OpenAI(api_key="k", base_url=emu.base_url)
        run_batch(client, [chat_line("a")])
        emu.reset()
    with Emulator(config) as emu:
        client = OpenAI(api_key="k", base_url=emu.base_url)
        assert client.batches.list().data == [] and client.files.list().data == []
