"""Where dask runs an aggregation: ``threads`` (dask's in-process thread pool, the default), ``local`` (a
LocalCluster of processes, one per core), ``ADDRESS`` (an existing ``dask scheduler``, e.g. ``tcp://node01:8786``),
``slurm`` (dask-jobqueue SLURMCluster) or ``sync`` (one thread, for debugging).

``threads`` is the default because it measured fastest on one node: the per-file work is pyarrow and numpy, which
release the GIL, and a LocalCluster costs ~5–10 s to start and serialises every partial between processes
(benchmarks/bench_aggregate.py, 2 cores: 1.03·10^8 node rows in 14 s with threads, 38 s with a LocalCluster).

Remote workers (ADDRESS, slurm) must see the run folder at the same absolute path (a shared file system) and
run the same environment (``hpcsim`` importable). SLURMCluster options come from dask's configuration
(``jobqueue.slurm.*`` in ``~/.config/dask/jobqueue.yaml`` or ``DASK_JOBQUEUE__SLURM__QUEUE=...`` environment
variables); cores and memory fall back to one core and 4 GiB when not configured (walltime: dask-jobqueue's
default, 30 minutes).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

import dask

from hpcsim.errors import OutputError

log = logging.getLogger(__name__)

IN_PROCESS = ("threads", "sync")
SLURM_DEFAULTS = {"cores": 1, "memory": "4GiB"}
CONNECT_TIMEOUT_S = 10
SLURM_WAIT_S = 600
SLURM_REST_WAIT_S = 30


def check_scheduler(value: str) -> str:
    """Validate a ``--scheduler`` value (argparse ``type``): a keyword or something that looks like an address."""
    if value in (*IN_PROCESS, "local", "slurm") or "://" in value or value.rpartition(":")[2].isdigit():
        return value
    raise OutputError(f"unknown dask scheduler {value!r}: expected local, slurm, threads, sync or a scheduler "
                      "address (tcp://host:8786)")


def slurm_cluster(jobs: int):
    """A dask-jobqueue SLURMCluster scaled to ``jobs`` jobs (not started until workers are needed)."""
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise OutputError("--scheduler slurm needs dask-jobqueue (pip install 'hpcsim[hpc]')") from None
    kwargs = {k: v for k, v in SLURM_DEFAULTS.items() if dask.config.get(f"jobqueue.slurm.{k}", None) is None}
    cluster = SLURMCluster(**kwargs)
    log.debug("SLURM worker job script:\n%s", cluster.job_script())
    cluster.scale(jobs=jobs)
    return cluster


@contextlib.contextmanager
def dask_client(scheduler: str = "threads", slurm_jobs: int = 1) -> Iterator[str]:
    """Make ``dask.compute`` inside the block run on ``scheduler``; yields a label for logs and manifests.
    Clusters started here are closed on every path."""
    scheduler = check_scheduler(scheduler)
    if scheduler in IN_PROCESS:
        with dask.config.set(scheduler=scheduler):
            yield scheduler
        return
    from distributed import Client, LocalCluster

    if not log.isEnabledFor(logging.DEBUG):  # distributed logs every worker start/stop at INFO
        logging.getLogger("distributed").setLevel(logging.WARNING)
    cluster = None
    try:
        if scheduler == "local":
            cluster = LocalCluster(n_workers=os.cpu_count() or 1, threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=logging.ERROR)
            address = cluster.scheduler_address
        elif scheduler == "slurm":
            cluster = slurm_cluster(slurm_jobs)
            address = cluster.scheduler_address
        else:
            address = scheduler
        try:
            client = Client(address, timeout=f"{CONNECT_TIMEOUT_S}s")
        except (OSError, TimeoutError) as exc:
            raise OutputError(f"cannot reach dask scheduler {address}: {exc}") from None
        with client:
            if scheduler == "slurm":
                log.info("waiting for SLURM workers (%d job(s))", slurm_jobs)
                try:
                    client.wait_for_workers(1, timeout=SLURM_WAIT_S)
                except TimeoutError:
                    raise OutputError(f"no SLURM dask worker started within {SLURM_WAIT_S} s") from None
                with contextlib.suppress(TimeoutError):  # the rest, briefly: a busy queue does not hold the work
                    client.wait_for_workers(slurm_jobs, timeout=SLURM_REST_WAIT_S)
            workers = client.scheduler_info().get("workers", {})
            hosts = sorted({w.get("host", a) for a, w in workers.items()})
            n = len(workers)
            yield f"{scheduler} ({n} worker{'s' if n != 1 else ''} on {', '.join(hosts) or 'no host'})"
    finally:
        if cluster is not None:
            cluster.close()
