"""Dask clusters: a new local one (CPU processes or one worker per GPU), or an
existing scheduler that the user names."""

from __future__ import annotations

import importlib.util
import logging
import signal
import threading
from contextlib import contextmanager, nullcontext
from typing import Callable

from .errors import ClusterError, InputError

SCHEDULER_TIMEOUT_S = 5  # an unreachable --scheduler-address fails after this long, in one line
NO_DASHBOARD = "127.0.0.1:0"  # the scheduler's HTTP server (health, metrics) still starts: on a free local port


def make_client(
    device: str,
    workers: int | None,
    threads_per_worker: int | None,
    memory_limit: str | None,
    scheduler_address: str | None,
    dashboard: bool = False,
    **cuda_options,
):
    """A distributed Client: on an existing scheduler, or on a new local cluster."""
    from distributed import Client

    from .gpu_backend import emulated

    if scheduler_address:
        try:
            return Client(scheduler_address, timeout=SCHEDULER_TIMEOUT_S)
        except Exception as e:  # refused, timed out, a malformed address or no Dask scheduler there: one line
            raise ClusterError(f"--scheduler-address {scheduler_address}: cannot connect ({_first_line(e)})") from None
    if dashboard and importlib.util.find_spec("bokeh") is None:
        raise ClusterError("--dashboard needs bokeh: pip install 'bokeh>=3.1'")
    # The emulated device runs in any worker process (which inherits
    # GPU_CURATE_EMULATE), so it gets a plain LocalCluster.
    if device == "gpu" and not emulated() and (workers != 1 or importlib.util.find_spec("dask_cuda")):
        try:
            from dask_cuda import LocalCUDACluster
        except ImportError:
            raise InputError(
                "--device gpu starts one worker per GPU with dask-cuda: pip install 'gpu_curate[gpu]' "
                "(or --workers 1: one GPU, threads of this process)"
            ) from None
        options = {k: v for k, v in cuda_options.items() if v is not None}
        if options.get("rmm_pool_size"):  # the engine's CuPy arrays come from the same RMM pool as cuDF's
            options["rmm_allocator_external_lib_list"] = ["cupy"]
        with _sigint_ignored():
            cluster = LocalCUDACluster(
                memory_limit=memory_limit or "auto",
                silence_logs=logging.CRITICAL,
                **_web(dashboard),
                **options,
            )
        return Client(cluster)
    # One worker of threads in this process: the CPU engine, the emulated
    # device, or one GPU asked for with --workers 1 (no dask-cuda needed).
    if device == "gpu" and not emulated() and cuda_options.get("rmm_pool_size"):
        _rmm_pool_here(cuda_options["rmm_pool_size"])
    return Client(local_cluster(workers or 1, threads_per_worker, memory_limit, dashboard))


def _rmm_pool_here(size: str) -> None:
    """An RMM pool for this process, serving CuPy too (what LocalCUDACluster
    sets up in each of its workers)."""
    try:
        import rmm
        from rmm.allocators.cupy import rmm_cupy_allocator
    except ImportError:
        raise InputError("--rmm-pool-size needs RMM (it comes with cuDF): pip install 'gpu_curate[gpu]'") from None
    import cupy
    from dask.utils import parse_bytes

    rmm.reinitialize(pool_allocator=True, initial_pool_size=parse_bytes(size))
    cupy.cuda.set_allocator(rmm_cupy_allocator)


def local_cluster(
    workers: int, threads_per_worker: int | None = None, memory_limit: str | None = None, dashboard: bool = False
):
    """A LocalCluster of worker processes (threads: all cores over the
    workers), silent, on no fixed port, its workers deaf to Ctrl-C."""
    from distributed import LocalCluster

    from .match import default_threads

    with _sigint_ignored():
        return LocalCluster(
            n_workers=workers,
            threads_per_worker=threads_per_worker or max(1, default_threads() // workers),
            memory_limit=memory_limit or "auto",
            processes=workers > 1,  # one worker: threads in this process, which has the metadata loaded already
            silence_logs=logging.CRITICAL,  # a failed task's error reaches the user once, from the client
            **_web(dashboard),
        )


def _web(dashboard: bool) -> dict:
    """Dask's default takes port 8787 even with the dashboard off (the
    scheduler's health and metrics pages), and warns in every run where it is
    busy: a free local port instead, or the dashboard on a free port."""
    return {"dashboard_address": ":0"} if dashboard else {"scheduler_kwargs": {"dashboard_address": NO_DASHBOARD}}


@contextmanager
def _sigint_ignored():
    """SIGINT ignored for a while. Worker processes started meanwhile inherit
    that (and Python keeps it ignored in them): a Ctrl-C to the process
    group reaches only this process, which closes the cluster, and no worker
    prints a traceback. A Ctrl-C while the workers start is lost."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class LocalOrRemoteClient:
    """A Dask client for the run's lifetime, or None with --in-process."""

    def __init__(
        self,
        device,
        in_process,
        workers=None,
        threads_per_worker=None,
        memory_limit=None,
        scheduler_address=None,
        rmm_pool_size=None,
        protocol=None,
        dashboard: bool = False,
        log: Callable[[str], None] = lambda s: None,
    ):
        self.args = (device, workers, threads_per_worker, memory_limit, scheduler_address, dashboard)
        self.cuda = {"rmm_pool_size": rmm_pool_size, "protocol": protocol}
        self.in_process = in_process
        self.log = log
        self.client = None

    def __enter__(self):
        if self.in_process:
            return None
        from .match import resolve_device

        device = resolve_device(self.args[0])  # fail before starting a cluster
        self.client = make_client(device, *self.args[1:], **self.cuda)
        if self.args[-1]:
            self.log(f"dashboard: {self.client.dashboard_link}")
        return self.client

    def __exit__(self, exc_type, *exc):
        if self.client is None:
            return
        # After a Ctrl-C, close without a second one cutting the close short (and printing a traceback).
        with _sigint_ignored() if exc_type is KeyboardInterrupt else nullcontext():
            cluster = self.client.cluster
            self.client.close()
            if cluster is not None:
                cluster.close()


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
