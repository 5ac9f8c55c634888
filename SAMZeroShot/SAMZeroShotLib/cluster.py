"""A cohort's cases on a Dask cluster: ``samzeroshot evaluate --workers N`` or
``--scheduler ADDRESS``.

Cases go out as file paths (the workers read the images from a file system they share with this
process) and are computed whole by :func:`~.evaluation.evaluate_case`, the function the
single-process loop calls, so that both give the same rows. Each worker process loads the model
on its first case and keeps it: a worker plugin (:func:`engines_plugin`) gives each worker an
:class:`~.engines.EngineFactory` of its own, kept with the worker. Finished cases come back to
this process, which alone writes the results folder (:class:`~.recorder.Recorder`,
:class:`~.results.ResultsFolder`).

Threads: the model of a worker uses ``cores // cases run at once on its machine`` threads, in
PyTorch and in the engine's ONNX Runtime sessions (``--workers N`` on this machine: cores / N).

A worker that dies (killed, out of memory) loses the case it was running, and only that one:
a case is sent out only when a worker can start it at once, so no worker holds a case queued
behind another. The lost case is sent out again once (:data:`RETRIES`); when its second worker
dies too it is listed as ``failed`` in ``summary.json`` while the others go on. On the local
cluster of ``--workers`` the scheduler does not resend cases itself; a scheduler started by hand
does so ``allowed-failures`` times (Dask's default 3) before this client sees the case fail
(start it with ``DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=0`` for the same behaviour).

Nothing here is imported when ``--workers 1``: that path needs no Dask.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence

from .cases import Case
from .errors import Cancelled, CaseError, ClusterError
from .evaluation import evaluate_case
from .recorder import Recorder, engine_about
from .results import CaseResult, ResultsFolder

#: Seconds to wait for a scheduler to answer, and then for it to have a worker.
CONNECT_TIMEOUT_S = 10
#: How often a case whose worker died is sent out again before it is reported as failed.
RETRIES = 1
#: Prefix of the Dask keys of the cases (``case-<name>-<run>-<try>``).
KEY_PREFIX = "case-"
#: Name of the worker plugin that holds each worker's engines.
ENGINES_PLUGIN = "samzeroshot-engines"


# -- connecting ---------------------------------------------------------------------------------
@contextlib.contextmanager
def local_client(workers: int) -> Iterator[distributed.Client]:  # noqa: F821
    """A cluster of ``workers`` processes on this machine (loopback only), closed on leaving."""
    import dask
    from distributed import Client, LocalCluster

    # The scheduler does not send a case out again itself: this client does (see evaluate()).
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        # Failed cases are reported by the caller, not by Dask's own log.
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            silence_logs=logging.CRITICAL,
        )
    try:
        with Client(cluster) as client:
            yield client
    finally:
        cluster.close()


def _ask_identity(address: str, timeout: float) -> dict:
    """The scheduler's answer to "who are you", or TimeoutError after ``timeout`` seconds.

    A ``Client`` alone waits for ever on a peer that accepts the connection but never answers.
    """
    import asyncio

    from distributed.comm import connect as open_comm

    async def ask():
        comm = await open_comm(address, timeout=timeout)
        try:
            await comm.write({"op": "identity", "reply": True})
            return await comm.read()
        finally:
            comm.abort()

    return asyncio.run(asyncio.wait_for(ask(), timeout))


@contextlib.contextmanager
def remote_client(address: str, timeout: float = CONNECT_TIMEOUT_S) -> Iterator[distributed.Client]:  # noqa: F821
    """A client of the scheduler at ``address`` that has at least one worker; :class:`ClusterError`
    otherwise."""
    from distributed import Client

    try:
        _ask_identity(address, timeout)
        client = Client(address, timeout=timeout)
    except (OSError, TimeoutError) as error:
        raise ClusterError(
            f"{address}: no Dask scheduler answered within {timeout:g} s: start one "
            "(dask scheduler) or check the address"
        ) from error
    except ValueError as error:  # not an address Dask can parse
        raise ClusterError(
            f"{address}: not a scheduler address ({error}): give one such as tcp://HOST:8786"
        ) from None
    try:
        try:
            client.wait_for_workers(1, timeout=timeout)
        except (TimeoutError, OSError):
            raise ClusterError(
                f"{address}: the scheduler has no workers (none joined within {timeout:g} s): "
                f"start some (dask worker {address})"
            ) from None
        yield client
    finally:
        client.close()


def connect(workers: int = 1, scheduler: str | None = None):
    """A context manager for a client: of ``scheduler`` when given, else of a local cluster of
    ``workers``."""
    return remote_client(scheduler) if scheduler else local_client(workers)


# -- on a worker ----------------------------------------------------------------------------------
def _cores() -> int:
    return (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    )


def worker_threads(cases_per_host: Mapping[str, int]) -> int:
    """The calling worker's share of its machine's cores (at least 1)."""
    from distributed import get_worker
    from distributed.comm import get_address_host

    worker = get_worker()
    at_once = cases_per_host.get(get_address_host(worker.address)) or worker.state.nthreads
    return max(1, _cores() // max(1, at_once))


def _new_engines():
    """A worker's engine factory (one engine kept: a worker runs one case at a time)."""
    from .engines import EngineFactory

    return EngineFactory()


def engines_plugin():
    """A Dask worker plugin that gives each worker process its own engine factory, made when the
    worker starts (or when the plugin reaches it) and dropped with it. Registering it again, as
    ``reproduce`` does for each data set, keeps the engines the workers have (idempotent)."""
    from distributed import WorkerPlugin

    class WorkerEngines(WorkerPlugin):
        idempotent = True
        name = ENGINES_PLUGIN

        def setup(self, worker):
            self.engines = _new_engines()

        def teardown(self, worker):
            self.engines.release()

    return WorkerEngines()


def _engine(parameters, threads: int):
    """The calling worker's engine for ``parameters``, made with ``threads`` threads (kept between
    cases; a change of thread count makes a new one, as its runtime sessions keep theirs)."""
    import torch
    from distributed import get_worker

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return get_worker().plugins[ENGINES_PLUGIN].engines.get(parameters)


def run_case(
    case: Case, parameters, propagate_from: str | None, cases_per_host: Mapping[str, int]
) -> tuple[CaseResult, dict[str, str]]:
    """Run on a worker: one case's result, and where it ran (device, precision, backend)."""
    engine = _engine(parameters, worker_threads(cases_per_host))
    return evaluate_case(case, engine, parameters, propagate_from), engine_about(engine)


# -- on the client ---------------------------------------------------------------------------------
def prepare_weights(parameters, progress=None):
    """Check the model's weights file (downloading it once, into the cache the workers share) before
    any case goes out; :class:`~.errors.CheckpointError` when it is missing or not the published
    file.
    """
    from . import models

    return models.checkpoint_path(
        models.spec_for(parameters.model, parameters.checkpoint),
        parameters.checkpoint,
        progress=progress,
    )


def cases_per_host(client) -> dict[str, int]:
    """How many cases the cluster's workers run at once, by machine."""
    counts: Counter = Counter()
    for worker in client.scheduler_info(n_workers=-1)["workers"].values():
        counts[worker["host"]] += int(worker["nthreads"])
    return dict(counts)


def free_workers(client, running: Mapping) -> list[str]:
    """The workers that can start a case now, once per free thread: their threads less the tasks
    they hold, less ours not yet placed.

    Asked of the scheduler each time (a worker that died or joined changes it).
    """
    nthreads, processing = client.nthreads(), client.processing()
    placed = {key for keys in processing.values() for key in keys}
    unplaced = sum(1 for future in running if future.key not in placed)
    free = [
        worker
        for worker, n in sorted(nthreads.items())
        for _ in range(max(0, n - len(processing.get(worker, ()))))
    ]
    return free[: max(0, len(free) - unplaced)]


def _finished(running: Mapping, timeout: float = 1.0) -> list:
    """The futures of ``running`` that are done, waiting up to ``timeout`` seconds for one."""
    from distributed import wait

    if not running:
        time.sleep(timeout)
        return []
    with contextlib.suppress(TimeoutError):
        wait(list(running), timeout=timeout, return_when="FIRST_COMPLETED")
    return [future for future in running if future.done()]


def _failure(error, tries: int) -> str:
    deaths = tries * (getattr(error, "allowed_failures", 0) + 1)
    return (
        f"the worker computing it stopped {deaths} times (killed, or out of memory); "
        "run the same command again to retry it"
    )


def _send(client, case: Case, parameters, propagate_from, share, key: str, worker: str):
    """Submit one case (its own key per try: a resent case is a new task, not Dask's retry) to
    ``worker``, a worker with a free thread: two cases never wait on one worker while another is
    idle, where one death would take both down. Should that worker be gone by then, the case
    goes to another."""
    return client.submit(
        run_case,
        case,
        parameters,
        propagate_from,
        share,
        pure=False,
        key=key,
        workers=[worker],
        allow_other_workers=True,
    )


def evaluate(
    cases: Sequence[Case],
    folder: ResultsFolder,
    client,
    parameters,
    propagate_from: str | None = None,
    skipped: Sequence[CaseError] = (),
    progress=None,
    cancel: Callable[[], bool] | None = None,
) -> dict:
    """Evaluate the cases not yet in ``folder`` on the cluster of ``client``; the summary.

    A case goes out only when a worker can start it at once, so that no worker holds a case
    waiting behind another: a worker that dies takes only its running case down, which is sent
    out again (:data:`RETRIES` times) before it is listed as failed. As
    :func:`~.evaluation.evaluate`, each case is recorded as it comes back; when ``cancel()`` turns
    True no case is sent out any more, those running are waited for and kept, and
    :class:`~.errors.Cancelled` is raised.
    """
    from distributed.scheduler import KilledWorker

    client.register_plugin(engines_plugin())
    recorder = Recorder(cases, folder, parameters, propagate_from, skipped, progress)
    by_name, waiting = {case.name: case for case in cases}, deque(recorder.todo)
    running: dict[object, str] = {}
    tries: Counter = Counter()
    run, share, stopping = uuid.uuid4().hex[:8], cases_per_host(client), False
    try:
        while waiting or running:
            for worker in free_workers(client, running)[: len(waiting)]:
                name = waiting.popleft()
                tries[name] += 1
                key = f"{KEY_PREFIX}{name}-{run}-{tries[name]}"
                case = by_name[name]
                running[_send(client, case, parameters, propagate_from, share, key, worker)] = name
            for future in _finished(running):
                name = running.pop(future)
                try:
                    result, about = future.result()
                    # Let go of it at once: a finished case held on a worker that dies would be
                    # computed again, taking a thread no case was sent to.
                    future.release()
                except KilledWorker as error:
                    if tries[name] <= RETRIES and not stopping:
                        waiting.appendleft(name)
                    else:
                        recorder.fail(by_name[name], _failure(error, tries[name]))
                    continue
                recorder.engine_used(about)
                recorder.keep(result)
            if not stopping and cancel is not None and cancel():
                stopping = True
                waiting.clear()
    finally:
        client.cancel(list(running))
        recorder.progress.close()
    if stopping:
        raise Cancelled()
    return recorder.finish()
