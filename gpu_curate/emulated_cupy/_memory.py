"""Emulated device memory: host buffers with guard bytes, and the count of
bytes that cross host<->device."""

from __future__ import annotations

import sys
import threading
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

# cudaMalloc returns 256-byte aligned memory; kernels may rely on it (they
# read gc::Slot pairs as 16-byte structs).
ALIGN = 256
# Guard bytes each side of every allocation: a kernel's write past either
# end lands here, and every launch checks them afterwards (what
# compute-sanitizer's memcheck reports on a GPU).
GUARD = 64
_CANARY = np.frombuffer(bytes.fromhex("deadbeefa5c3e1f0") * (GUARD // 8), np.uint8)
# Fresh cudaMalloc memory holds whatever was there; `empty` fills it with this
# byte so that a kernel reading memory nothing wrote gives a visibly wrong answer.
UNWRITTEN = 0xCD


class Allocation:
    """One emulated cudaMalloc of `nbytes`: raw[start:start + nbytes] is the
    device memory, with GUARD canary bytes on each side."""

    __slots__ = ("raw", "start", "nbytes", "__weakref__")

    def __init__(self, nbytes: int):
        self.raw = np.empty(nbytes + 2 * GUARD + ALIGN, np.uint8)
        self.start = GUARD + (-(self.raw.ctypes.data + GUARD) % ALIGN)
        self.nbytes = nbytes
        self.raw[self.start - GUARD : self.start] = _CANARY
        self.raw[self.start + nbytes : self.start + nbytes + GUARD] = _CANARY
        self.body[...] = UNWRITTEN

    @property
    def body(self) -> np.ndarray:
        return self.raw[self.start : self.start + self.nbytes]

    def guards_intact(self) -> bool:
        before = self.raw[self.start - GUARD : self.start]
        after = self.raw[self.start + self.nbytes : self.start + self.nbytes + GUARD]
        return bool(np.array_equal(before, _CANARY) and np.array_equal(after, _CANARY))

    def holds(self, arr: np.ndarray) -> bool:
        """True when `arr` lies in this allocation's memory (a view of it)."""
        return np.may_share_memory(arr, self.raw)


@dataclass(frozen=True)
class Transfers:
    """Bytes moved since the last reset, by direction and by call site: the
    caller outside the stand-in, as "module.function"."""

    to_device: dict[str, int] = field(default_factory=dict)  # host -> device
    to_host: dict[str, int] = field(default_factory=dict)  # device -> host
    on_device: dict[str, int] = field(default_factory=dict)  # device -> device copies

    @property
    def bytes_to_device(self) -> int:
        return sum(self.to_device.values())

    @property
    def bytes_to_host(self) -> int:
        return sum(self.to_host.values())

    @property
    def bytes_on_device(self) -> int:
        return sum(self.on_device.values())


_lock = threading.Lock()
_counts: dict[str, defaultdict[str, int]] = {d: defaultdict(int) for d in ("to_device", "to_host", "on_device")}
_PACKAGE = __name__.rsplit(".", 1)[0]


def _in_package(module: str) -> bool:
    return module == _PACKAGE or module.startswith(_PACKAGE + ".")


_ANONYMOUS = ("<genexpr>", "<listcomp>", "<dictcomp>", "<setcomp>", "<lambda>")


def _call_site() -> str:
    """The first caller outside this package (and outside comprehensions) as module.function."""
    frame = sys._getframe(1)
    while frame is not None and (
        _in_package(frame.f_globals.get("__name__", "")) or frame.f_code.co_name in _ANONYMOUS
    ):
        frame = frame.f_back
    if frame is None:
        return "?"
    code = frame.f_code
    return f"{frame.f_globals.get('__name__', '?')}.{getattr(code, 'co_qualname', code.co_name)}"


def count(direction: str, nbytes: int) -> None:
    """Adds nbytes moved in `direction` (a Transfers field) at the caller's site."""
    site = _call_site()
    with _lock:
        _counts[direction][site] += int(nbytes)


def transfers() -> Transfers:
    """A snapshot of the bytes moved since the last reset_transfers()."""
    with _lock:
        return Transfers(**{d: dict(c) for d, c in _counts.items()})


def reset_transfers() -> None:
    with _lock:
        for c in _counts.values():
            c.clear()
