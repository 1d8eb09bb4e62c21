"""Retry policy shared by the tasks: storage hiccups are retried with backoff, bad data never is."""

from __future__ import annotations

from prefect import Task
from prefect.client.schemas.objects import TaskRun
from prefect.states import State

from seed_story.storage import StorageError

STORAGE_RETRIES = 3
STORAGE_BACKOFF = [2.0, 5.0, 15.0]


def storage_errors_only(task: Task, task_run: TaskRun, state: State) -> bool:
    """Prefect ``retry_condition_fn``: retry only when the task failed on the store."""
    try:
        state.result()
    except StorageError:
        return True
    except Exception:
        return False
    return False
