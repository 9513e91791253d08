"""Provider clients. Every one exposes the same small surface (see `openai.BatchProvider`)."""

from warehouse_batch.providers.openai import BatchInfo, OpenAIBatchProvider

__all__ = ["BatchInfo", "OpenAIBatchProvider"]
