"""Running one task per partition: on a Dask cluster, or in this process.

The stages (pass1, pass2) know nothing of Dask; this module maps them over
partitions and shows progress.

Lost workers: a task's inputs are its partition, the run's config and files
on disk (never data that lives only in a worker's memory), so when a worker
dies the scheduler reruns its tasks elsewhere, and a rerun task finds what
its first try wrote. Tasks that raise are retried (`RETRIES`: a flaky
network file system), except for CurateErrors, which the same input would
raise again. If the cluster gives up all the same (a task's workers died
`distributed.scheduler.allowed-failures` times, or the scheduler went away),
the run stops with one line: what finished is kept, and a rerun resumes.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Callable, Iterator

from .errors import CurateError, RunInterrupted
from .partition import Partition

RETRIES = 2


class Executor:
    """Runs one task per partition on a Dask cluster, or here when client is None."""

    def __init__(self, client=None, progress: bool = True):
        self.client = client
        self.progress = progress

    def map(self, fn: Callable, parts: list[Partition], label: str, **kwargs) -> Iterator:
        with ProgressBar(label, len(parts), self.progress) as advance:
            if self.client is None:
                for part in parts:
                    yield fn(part, **kwargs)
                    advance()
                return
            from distributed import as_completed

            futures = self.client.map(
                partial(_task, fn),
                parts,
                **kwargs,
                key=[f"{label}-{p.shard}-{time.time_ns()}" for p in parts],
                retries=RETRIES,
            )
            try:
                for future in as_completed(futures):
                    try:
                        outcome = future.result()
                    except CurateError:
                        raise
                    except Exception as e:
                        lost = _lost_cluster(e)
                        if lost is None:
                            raise  # a bug: its traceback, as it is
                        raise RunInterrupted(
                            f"{label}: {lost}; finished partitions are kept: rerun the same command to resume"
                        ) from e
                    if isinstance(outcome, _UserError):
                        raise outcome.error
                    yield outcome
                    advance()
            finally:
                self.client.cancel(futures)


class _UserError:
    """A CurateError returned as a task's value, so that Dask does not retry it."""

    def __init__(self, error: CurateError):
        self.error = error


def _task(fn: Callable, part: Partition, **kwargs):
    try:
        return fn(part, **kwargs)
    except CurateError as e:
        return _UserError(e)


def _lost_cluster(e: Exception) -> str | None:
    """What went wrong, when `e` says the cluster lost a worker or the scheduler."""
    from concurrent.futures import CancelledError

    from distributed import KilledWorker
    from distributed.comm.core import CommClosedError

    if isinstance(e, KilledWorker):
        return "the workers running a task died too often (KilledWorker)"
    if isinstance(e, CancelledError):
        return "the cluster cancelled a task (a lost worker or scheduler)"
    if isinstance(e, CommClosedError):
        return "the connection to the Dask scheduler closed"
    return None


class ProgressBar:
    """`with ProgressBar(label, total, enabled) as advance:` a rich bar (nothing when disabled); call advance() per item."""

    def __init__(self, label: str, total: int, enabled: bool):
        self.label, self.total, self.enabled = label, total, enabled

    def __enter__(self):
        if not self.enabled:
            return lambda: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

        self.bar = Progress(
            "[bold]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            transient=False,
        )
        self.bar.__enter__()
        task = self.bar.add_task(self.label, total=self.total)
        return lambda: self.bar.advance(task)

    def __exit__(self, *exc):
        if self.enabled:
            self.bar.__exit__(*exc)
