"""One run at a time per output directory: an flock(2) on `<out>/.lock`.

curate and balance hold an exclusive lock on their --out for the whole run;
`balance --out OTHER` holds a shared one on the directory whose match index
it reads (so several rebalancings of one run may go on together, but not
beside a curate of it). A second run fails at once with one line naming
the holder's pid, host and command, which the holder writes into the file.
The kernel drops the lock when its process dies, even by kill -9: a stale
lock cannot outlive its run, and nothing has to be cleaned up.

On NFS, Linux implements flock with NFS byte-range locks, which hold across
hosts where the server supports locking (NFSv4, or v3 with lockd); on a
mount with `nolock`, or where flock is only local (some FUSE and SMB
mounts), two hosts can both take it: give each host its own --out there.
Dask workers never take the lock; only the process that runs the command does.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import socket
import sys
import time
from pathlib import Path

from .errors import OutputError
from .fs import quote_path

LOCK_NAME = ".lock"


class OutLock:
    """`with OutLock(out):` holds the lock of directory `out` (created if needed)."""

    def __init__(self, out: str | Path, shared: bool = False):
        self.path = Path(out) / LOCK_NAME
        self.shared = shared
        self.fd: int | None = None

    def __enter__(self) -> "OutLock":
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise OutputError(f"{quote_path(self.path)}: cannot open the lock file ({os.strerror(e.errno)})") from e
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise OutputError(
                f"{quote_path(self.path.parent)}: in use by {holder}; wait for it to end, or stop it"
            ) from None
        except OSError as e:
            os.close(fd)
            raise OutputError(f"{quote_path(self.path)}: cannot lock ({os.strerror(e.errno)})") from e
        self.fd = fd
        # What an exclusive holder wrote is stale once anyone holds the lock again
        # (a killed holder cannot erase it); only an exclusive holder describes itself.
        os.ftruncate(fd, 0)
        if not self.shared:
            _describe_holder(fd)
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            if not self.shared:
                os.ftruncate(self.fd, 0)
            os.close(self.fd)  # releases the lock; the file stays, so no run ever locks a deleted one
            self.fd = None


def _describe_holder(fd: int) -> None:
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": _command(),
        "since": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }
    os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)


def _command() -> str:
    """This process's command line, as one would type it."""
    argv = list(sys.argv)
    if argv and Path(argv[0]).name == "__main__.py":
        argv[0:1] = ["python", "-m", Path(argv[0]).parent.name]
    elif argv:
        argv[0] = Path(argv[0]).name
    return shlex.join(argv)


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        where = f"pid {info['pid']} on {info['host']}"
        command = " ".join(info["command"].split())
        return f"{where} since {info['since']} ({command if len(command) <= 300 else command[:299] + '…'})"
    except (ValueError, KeyError, OSError):
        return "another run (a `balance --out` reading from it, or a run just starting)"
