"""Pydantic models used as output schemas by the example jobs (`output_schema: models:SentimentResult`).

warehouse_batch finds this module because it sits beside the job file; any module on PYTHONPATH
or in the working directory works too, as does a path: `output_schema: path/to/models.py:SentimentResult`.
"""

from typing import Literal

from pydantic import BaseModel, Field


class SentimentResult(BaseModel):
    """The sentiment of one product review."""

    sentiment: Literal["Positive", "Neutral", "Negative"]
    confidence: float = Field(ge=0, le=1, description="How sure the model is, from 0 to 1.")
    key_phrases: list[str] = Field(max_length=5, description="Up to five short phrases that carry the sentiment.")
