"""Task policies the flows share: retry only what may pass on a second try, cache what is pure."""

from __future__ import annotations

from prefect.cache_policies import INPUTS, TASK_SOURCE

from curation.errors import CurationError

PURE = INPUTS + TASK_SOURCE  # a pure step's result depends only on its inputs and its code


def transient(task, task_run, state) -> bool:
    """Retry only what may pass on a second try: never a user error."""
    try:
        state.result()
    except CurationError:
        return False
    except Exception:
        return True
    return False
