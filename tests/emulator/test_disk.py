"""Big files live on disk, not in the emulator's memory; uploads and downloads stream."""
from __future__ import annotations

import io
import json
from pathlib import Path

from openai import OpenAI

from warehouse_batch.emulator import Emulator, EmulatorConfig
from warehouse_batch.emulator.files import SPILL_BYTES
from warehouse_batch.emulator.multipart import FormParser

from .conftest import API_KEY, CHAT, chat_line, jsonl, read_lines


def _big_input(n: int = 3000) -> bytes:
    data = jsonl([chat_line(f"r{i}", "a long review " * 30 + str(i)) for i in range(n)])
    assert len(data) > SPILL_BYTES
    return data


def test_big_upload_is_on_disk_and_downloads_unchanged(client: OpenAI, emulator: Emulator) -> None:
    data = _big_input()
    f = client.files.create(file=("big.jsonl", data), purpose="batch")
    assert f.bytes == len(data)
    record = emulator.engine.files._files[f.id]
    assert record.data is None  # not held in memory
    assert client.files.content(f.id).content == data
    small = client.files.create(file=("small.jsonl", jsonl([chat_line("a")])), purpose="batch")
    assert emulator.engine.files._files[small.id].data is not None  # small files stay in memory


def test_big_batch_results_are_written_to_disk_and_complete(client: OpenAI, emulator: Emulator) -> None:
    f = client.files.create(file=("big.jsonl", _big_input()), purpose="batch")
    batch = client.batches.create(input_file_id=f.id, endpoint=CHAT, completion_window="24h")
    done = client.batches.retrieve(batch.id)
    assert done.status == "completed" and done.request_counts.completed == 3000  # type: ignore[union-attr]
    assert emulator.engine.files._files[done.output_file_id].data is None  # type: ignore[index]
    lines = read_lines(client, done.output_file_id)
    assert sorted(line["custom_id"] for line in lines) == sorted(f"r{i}" for i in range(3000))
    assert all(line["response"]["status_code"] == 200 for line in lines)


def test_cancelled_big_batch_splits_results_and_unrun_lines(client: OpenAI, emulator: Emulator) -> None:
    emulator.configure(request_time=10.0, shuffle_output=True)  # wall-clock seconds do not matter
    f = client.files.create(file=("big.jsonl", _big_input()), purpose="batch")
    batch = client.batches.create(input_file_id=f.id, endpoint=CHAT, completion_window="24h")
    emulator.advance(10_005)  # 1,000 requests done
    client.batches.cancel(batch.id)
    done = client.batches.retrieve(batch.id)
    assert done.status == "cancelled"
    ran = read_lines(client, done.output_file_id)
    unrun = read_lines(client, done.error_file_id)
    assert len(ran) == 1000 and len(unrun) == 2000
    assert {line["error"]["code"] for line in unrun} == {"batch_cancelled"}
    assert {line["custom_id"] for line in ran + unrun} == {f"r{i}" for i in range(3000)}
    assert done.usage.input_tokens > 0  # type: ignore[union-attr]


def test_deleted_input_still_runs_a_created_batch(client: OpenAI, emulator: Emulator) -> None:
    f = client.files.create(file=("big.jsonl", _big_input()), purpose="batch")
    batch = client.batches.create(input_file_id=f.id, endpoint=CHAT, completion_window="24h")
    client.files.delete(f.id)  # the batch read what was there when it was created
    assert client.batches.retrieve(batch.id).status == "completed"


def test_temporary_directory_goes_with_the_emulator() -> None:
    with Emulator(EmulatorConfig()) as emu:
        client = OpenAI(api_key=API_KEY, base_url=emu.base_url, timeout=10.0)
        client.files.create(file=("big.jsonl", _big_input()), purpose="batch")
        directory = emu.engine.files.data_dir()
        assert any(directory.glob("*.data"))
    assert not directory.exists()


def test_state_dir_keeps_big_files_across_restarts(tmp_path: Path) -> None:
    data = _big_input()
    with Emulator(EmulatorConfig(state_dir=str(tmp_path))) as emu:
        client = OpenAI(api_key=API_KEY, base_url=emu.base_url, timeout=10.0)
        file_id = client.files.create(file=("big.jsonl", data), purpose="batch").id
    with Emulator(EmulatorConfig(state_dir=str(tmp_path))) as emu:
        client = OpenAI(api_key=API_KEY, base_url=emu.base_url, timeout=10.0)
        assert client.files.content(file_id).content == data


def test_form_parser_finds_parts_across_any_chunking() -> None:
    boundary = "b0undary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.jsonl\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + b"line one\r\n--not the boundary\n" + (
            f"\r\n--{boundary}--\r\n").encode()
    for size in (1, 2, 3, 7, 64, len(body)):
        received = io.BytesIO()
        parser = FormParser(f"multipart/form-data; boundary={boundary}", lambda: received)
        for i in range(0, len(body), size):
            parser.feed(body[i:i + size])
        parser.finish()
        assert parser.fields == {"purpose": "batch"} and parser.filename == "x.jsonl"
        assert received.getvalue() == b"line one\r\n--not the boundary\n", size


def test_upload_answers_are_unchanged_for_bad_forms(client: OpenAI, emulator: Emulator) -> None:
    import httpx2

    from .conftest import AUTH

    r = httpx2.post(emulator.base_url + "/files", headers={**AUTH, "content-type": "multipart/form-data; boundary=x"},
                   content=b"--x\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch")
    assert r.status_code == 400 and "Unterminated multipart part" in json.loads(r.text)["error"]["message"]
