"""Fault injection for the test suite (tests/test_faults.py): every write of
an output passes `checkpoint(path, phase)` twice, before and after the rename
that publishes it. Inert when the variables below are unset (one dict look-up).

    GPU_CURATE_FAULT="ACTION:PATTERN:PHASE[:N]"
        ACTION   kill    SIGKILL this process (the client, or the worker running the task)
                 enospc  raise OSError(ENOSPC) as a full disk would (phase before-rename)
        PATTERN  the last components of the written path, each an fnmatch
                 pattern: "matches/_part-000001.json", "generations/*/kept/part-*.parquet",
                 "current", "generations/*" (a generation directory itself)
        PHASE    before-rename (the temporary file is complete) | after-rename;
                 uploads to object storage (publish.py): before-upload | after-upload,
                 with the object's URL as the path ("run/current.json")
        N        fire at the N-th checkpoint that matches, in this process (default 1)
    GPU_CURATE_FAULT_ONCE=FILE   fire only in the process that creates FILE first
                                 (a retried task or a restarted worker passes)
    GPU_CURATE_WRITE_LOG=FILE    append "PHASE<TAB>PATH" for every checkpoint
                                 (a clean run's list of write points)
"""

from __future__ import annotations

import errno
import fnmatch
import os
import signal

PHASES = ("before-rename", "after-rename", "before-upload", "after-upload")


def checkpoint(path, phase: str) -> None:
    spec, log = os.environ.get("GPU_CURATE_FAULT"), os.environ.get("GPU_CURATE_WRITE_LOG")
    if spec is None and log is None:
        return
    path = os.fspath(path)
    if log:
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)  # one write(): lines never interleave
        try:
            os.write(fd, f"{phase}\t{path}\n".encode("utf-8", "surrogateescape"))
        finally:
            os.close(fd)
    if spec:
        action, rest = spec.split(":", 1)
        nth = 1
        if rest.rsplit(":", 1)[-1].isdigit():
            rest, count = rest.rsplit(":", 1)
            nth = int(count)
        pattern, when = rest.rsplit(":", 1)
        if when == phase and _matches(path, pattern) and _count(spec) == nth and _first_time():
            if action == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            elif action == "enospc":
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
            else:
                raise ValueError(f"GPU_CURATE_FAULT: unknown action {action!r}")


_seen: dict[str, int] = {}


def _count(spec: str) -> int:
    """How many checkpoints have matched `spec` in this process, this one included."""
    _seen[spec] = _seen.get(spec, 0) + 1
    return _seen[spec]


def _matches(path: str, pattern: str) -> bool:
    want = pattern.split("/")
    have = path.split(os.sep)[-len(want) :]
    return len(have) == len(want) and all(fnmatch.fnmatchcase(h, w) for h, w in zip(have, want))


def _first_time() -> bool:
    once = os.environ.get("GPU_CURATE_FAULT_ONCE")
    if not once:
        return True
    try:
        os.close(os.open(once, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    except FileExistsError:
        return False
    return True
