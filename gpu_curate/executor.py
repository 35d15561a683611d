"""Running one task per partition: on a Dask cluster, or in this process.

The stages (pass1, pass2) know nothing of Dask; this module maps them over
partitions and shows progress.
"""

from __future__ import annotations

import time
from typing import Callable, Iterator

import numpy as np

from .pool import Partition


class Executor:
    """Runs one task per partition on a Dask cluster, or here when client is None."""

    def __init__(self, client=None, progress: bool = True):
        self.client = client
        self.progress = progress

    def map(self, fn: Callable, parts: list[Partition], label: str, **kwargs) -> Iterator:
        with _progress(label, len(parts), self.progress) as advance:
            if self.client is None:
                for part in parts:
                    yield fn(part, **kwargs)
                    advance()
                return
            from distributed import as_completed

            scattered = {
                k: self.client.scatter(v, broadcast=True) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()
            }
            futures = self.client.map(
                fn, parts, **scattered, key=[f"{label}-{p.shard}-{time.time_ns()}" for p in parts]
            )
            try:
                for future in as_completed(futures):
                    yield future.result()  # re-raises the task's error here, with its message
                    advance()
            finally:
                self.client.cancel(futures)


class _progress:
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
