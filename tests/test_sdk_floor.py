"""The SDK floor: `.ci/sdk-floor` installs the oldest openai the pyproject allows and runs the `smoke`
tests with it; this test checks that it really did, and that the objects the code reads exist."""

from __future__ import annotations

import inspect
import os

import openai
import pytest
from packaging.version import Version


@pytest.mark.smoke
def test_the_sdk_floor_has_what_the_code_reads() -> None:
    floor = os.environ.get("WAREHOUSE_BATCH_SDK_FLOOR")
    if floor:  # under .ci/sdk-floor: the oldest allowed version is the one installed
        assert Version(openai.__version__) == Version(floor)
    from openai.types import Batch

    assert "usage" in Batch.model_fields
    assert "expires_after" in inspect.signature(openai.resources.files.Files.create).parameters
    assert "output_expires_after" in inspect.signature(openai.resources.batches.Batches.create).parameters
