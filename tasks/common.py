"""What every task shares: the retry policy of store I/O, the GPU tag, store settings and artifact keys."""

from __future__ import annotations

import re
from typing import Any

from prefect import Task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.states import State
from pydantic import BaseModel, ConfigDict, Field

from seed_story.storage import ObjectStore, S3Settings, StorageError, open_store

# One tag for every task that holds a GPU (generation and training): a tag concurrency limit on a worker then
# shares its GPUs among both.
GPU_TAG = "gpu"


def storage_errors_only(task: Task, task_run: TaskRun, state: State) -> bool:
    """Prefect ``retry_condition_fn``: retry only when the task failed on the store, never on bad data."""
    try:
        state.result()
    except StorageError:
        return True
    except Exception:
        return False
    return False


# Options of a task that reads or writes the store: storage hiccups are retried with backoff. Tasks take
# settings and records, never tensors, so nothing is worth caching.
IO_TASK: dict[str, Any] = dict(
    retries=3, retry_delay_seconds=[2.0, 5.0, 15.0], retry_condition_fn=storage_errors_only, cache_policy=NO_CACHE
)


class StoreSettings(BaseModel):
    """Flow settings that name a store: a local folder, file:// or s3://bucket/prefix, and its S3 options."""

    model_config = ConfigDict(extra="forbid")

    store: str = Field(description="store root: a local folder, file:// or s3://bucket/prefix")
    s3: S3Settings = S3Settings()

    def open_store(self) -> ObjectStore:
        return open_store(self.store, self.s3)


def artifact_key(*parts: str | None) -> str:
    """A Prefect artifact key from ``parts`` (it allows only lowercase letters, digits and dashes)."""
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(p for p in parts if p).lower()).strip("-")
