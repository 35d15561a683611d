"""Dask clusters: a new local one (CPU processes or one worker per GPU), or an
existing scheduler that the user names."""

from __future__ import annotations

import logging

from .errors import InputError


def make_client(
    device: str,
    workers: int | None,
    threads_per_worker: int | None,
    memory_limit: str,
    scheduler_address: str | None,
    **cuda_options,
):
    """A distributed Client: on an existing scheduler, or on a new local cluster."""
    from distributed import Client, LocalCluster

    from .gpu_backend import emulated

    if scheduler_address:
        return Client(scheduler_address)
    # The emulated device runs in any worker process (which inherits
    # GPU_CURATE_EMULATE), so it gets a plain LocalCluster.
    if device == "gpu" and not emulated():
        try:
            from dask_cuda import LocalCUDACluster
        except ImportError:
            raise InputError("--device gpu needs dask-cuda for its cluster: pip install 'gpu_curate[gpu]'") from None
        return Client(
            LocalCUDACluster(
                memory_limit=memory_limit,
                silence_logs=logging.CRITICAL,
                **{k: v for k, v in cuda_options.items() if v is not None},
            )
        )
    from .match import default_threads

    cores = default_threads()
    workers = workers or 1
    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=threads_per_worker or max(1, cores // workers),
        memory_limit=memory_limit,
        processes=workers > 1,  # one worker: threads in this process, which has the metadata loaded already
        dashboard_address=None,
        silence_logs=logging.CRITICAL,  # a failed task's error reaches the user once, from the client
    )
    return Client(cluster)


class LocalOrRemoteClient:
    """A Dask client for the run's lifetime, or None with --in-process."""

    def __init__(
        self, device, in_process, workers, threads_per_worker, memory_limit, scheduler_address, rmm_pool_size, protocol
    ):
        self.args = (device, workers, threads_per_worker, memory_limit, scheduler_address)
        self.cuda = {"rmm_pool_size": rmm_pool_size, "protocol": protocol}
        self.in_process = in_process
        self.client = None

    def __enter__(self):
        if self.in_process:
            return None
        from .match import resolve_device

        device = resolve_device(self.args[0])  # fail before starting a cluster
        self.client = make_client(device, *self.args[1:], **self.cuda)
        return self.client

    def __exit__(self, *exc):
        if self.client is not None:
            cluster = self.client.cluster
            self.client.close()
            if cluster is not None:
                cluster.close()
