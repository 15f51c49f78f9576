"""Experiments side by side: in local worker processes (`--jobs N`) or as tasks on a Dask cluster
(`--scheduler ADDRESS`).

The build process stays the only one that reads and writes the cache: a worker gets the
experiment, the data and where its checkpoint lives, trains it with run.train, and sends back the
Outcome (result, arrays, files). The build stores it under the key it computed, holding the key's
lock for the whole time, as a sequential build does. Progress travels back as small events on a
queue and is drawn by the build, one line per running experiment.

Equal results: every run, sequential or not, uses a CPU thread pool of the same size
(machine.cpu_threads; the build's Environment travels with each task). On a CPU, the cores are dealt out
among the local workers that are training (affinity, set again whenever a run starts or ends),
so runs do not fight over them and the last run standing gets them all, without changing how
any run splits its arithmetic. Several workers may share one GPU: they allocate its memory as
they go.
"""

from __future__ import annotations

import collections
import json
import os
import queue
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reportgen.errors import ReportgenError
from reportgen.project.dataset import Dataset
from reportgen.project.settings import Environment
from reportgen.project.spec import Experiment
from reportgen.train.machine import ONEDNN_ENV
from reportgen.train.run import train

EVENT_INTERVAL = 0.25  # seconds between two batch events of one run: enough for a smooth bar


@dataclass(frozen=True)
class Task:
    """One experiment to train somewhere else."""

    index: int
    exp: Experiment
    experiments_dir: Path
    checkpoints: Path | None
    key: str
    priority: int = 0  # higher is handed out first where the runner can order its queue (Dask)
    programs: Path | None = None  # JAX: the build's folder of compiled programs
    # The build's REPORTGEN_* switches, checked before training: a worker (a Dask worker above all)
    # trains with these, not with whatever its own environment says, which nobody checked.
    env: Environment = Environment()


@dataclass
class Failure:
    """An experiment that raised on its worker: recorded as failed, like in a sequential build.
    (A worker that dies is different: the task is run again elsewhere.)"""

    error: str


class EventReporter:
    """A outcome.Reporter in the worker: forwards progress to the build as (index, what, args) tuples."""

    def __init__(self, events: Any, index: int):
        self.events, self.index = events, index
        self._sent = 0.0

    def _put(self, what: str, *args: Any) -> None:
        try:
            self.events.put((self.index, what, args))
        except Exception:  # progress is not worth failing a run for (the build may be gone)
            pass

    def epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
        self._put("epoch_start", epoch, epochs, steps)

    def batch_end(self, step: int, logs: dict[str, float]) -> None:
        now = time.monotonic()
        if now - self._sent >= EVENT_INTERVAL:
            self._sent = now
            self._put("batch_end", step, logs)

    def epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        self._put("epoch_end", epoch, logs)

    def note(self, message: str) -> None:
        self._put("note", message)


def work(task: Task, data: Dataset, events: Any, where: str = "") -> Any:
    """Run in a worker: train one experiment and return its outcome.Outcome, or a Failure when the
    experiment itself raised."""
    if not where:
        try:
            from distributed import get_worker

            where = get_worker().address
        except (ImportError, ValueError):
            where = f"pid {os.getpid()}"
    reporter = EventReporter(events, task.index)
    reporter._put("started", where)

    try:
        return train(task.exp, data, task.experiments_dir, reporter, checkpoints=task.checkpoints, key=task.key,
                     programs=task.programs, env=task.env)
    except Exception as exc:
        return Failure(f"{type(exc).__name__}: {exc}")


# --- where workers run ------------------------------------------------------------------------------


def worker_environment(jobs: int, gpus: int) -> dict[str, str]:
    """What the libraries in a worker process read from its environment when they start: the
    build's backend and device choice (set by train.machine.select before anything imported them)
    and GPU memory taken as needed when shared. reportgen's own switches go with each Task."""

    env = {"TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3")}
    for name in ("KERAS_BACKEND", "CUDA_VISIBLE_DEVICES", "JAX_PLATFORMS", ONEDNN_ENV):
        if name in os.environ:
            env[name] = os.environ[name]
    if gpus and jobs > 1:
        env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"  # JAX: several processes on one GPU
    return env


def core_sets(cores: list[int], busy: int) -> list[list[int]]:
    """`cores` dealt out into `busy` disjoint sets as even as can be (each gets them all when there
    are fewer cores than busy workers)."""
    if busy <= 0:
        return []
    if len(cores) < busy:
        return [list(cores) for _ in range(busy)]
    return [cores[i::busy] for i in range(busy)]


def pin(pid: int, cores: list[int]) -> None:
    """Confine every thread of a process to `cores` (affinity is per thread on Linux, and the
    backend's thread pool already exists). Best effort: a thread may end meanwhile."""
    try:
        threads = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        threads = [pid]
    for tid in threads:
        try:
            os.sched_setaffinity(tid, cores)
        except OSError:
            pass


_WORKER_DATA: Dataset | None = None  # a local worker's copy of the data set, received once


def _init_worker(env: dict[str, str], data: Dataset) -> None:
    """Start of a local worker process: the environment, before keras is imported, and the data
    set, kept for every task: sent with each task instead, its 55 MB (MNIST) were pickled and
    piped through the pool's one feeder thread again for every experiment."""
    global _WORKER_DATA
    os.environ.update(env)
    _WORKER_DATA = data


def _local_work(task: Task, events: Any) -> Any:
    assert _WORKER_DATA is not None, "the worker was started without its data set"
    return work(task, _WORKER_DATA, events)


class Runner:
    """Somewhere to train tasks: submit returns a Future of what `work` returns; events holds
    the progress the tasks send; started/finished tell it which tasks are running where."""

    events: Any
    description: str

    def submit(self, task: Task) -> Future[Any]:
        raise NotImplementedError

    def started(self, index: int, where: str) -> None:
        pass

    def finished(self, index: int) -> None:
        pass

    def close(self, cancel: bool = False) -> None:
        raise NotImplementedError


class LocalRunner(Runner):
    """`jobs` worker processes on this machine (spawned, so each starts its backend afresh)."""

    def __init__(self, jobs: int, data: Dataset, gpus: int):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        context = multiprocessing.get_context("spawn")
        self._manager = context.Manager()
        self.events = self._manager.Queue()
        self._pool = ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_init_worker,
                                         initargs=(worker_environment(jobs, gpus), data))
        # On a CPU the cores are dealt out among the workers that are training, again whenever
        # one starts or finishes: two runs get a core each, the last run left gets them all.
        self._on_cpu = not (gpus > 0 and os.environ.get("CUDA_VISIBLE_DEVICES", None) != "")
        try:
            self._cores = sorted(os.sched_getaffinity(0)) if self._on_cpu else []
        except AttributeError:  # not Linux: the operating system schedules them
            self._cores = []
        self._busy: dict[int, int] = {}
        self._done: set[int] = set()  # a late "started" event of a finished task is ignored
        self._lock = threading.Lock()
        where = ("cores dealt out among the running ones" if self._cores else
                 "cores scheduled by the operating system" if self._on_cpu else f"{gpus} GPU(s) shared")
        self.description = f"{jobs} local worker processes ({where})"

    def started(self, index: int, where: str) -> None:
        if where.startswith("pid ") and where[4:].isdigit():
            with self._lock:
                if index not in self._done:
                    self._busy[index] = int(where[4:])
                    self._deal()

    def finished(self, index: int) -> None:
        with self._lock:
            self._done.add(index)
            if self._busy.pop(index, None) is not None:
                self._deal()

    def _deal(self) -> None:
        if not self._cores:
            return
        pids = sorted(set(self._busy.values()))
        for pid, cores in zip(pids, core_sets(self._cores, len(pids)), strict=True):
            pin(pid, cores)

    def submit(self, task: Task) -> Future[Any]:
        return self._pool.submit(_local_work, task, self.events)

    def close(self, cancel: bool = False) -> None:
        if cancel:
            for process in list(getattr(self._pool, "_processes", {}).values()):
                process.kill()  # a run cut short keeps its checkpoint; nothing is half-stored
        self._pool.shutdown(wait=not cancel, cancel_futures=True)
        self._manager.shutdown()


class PolledQueue:
    """A Dask Queue read without waiting on the scheduler: a `get` that times out there is logged by
    the scheduler as an error with its traceback, several times a second while runs train."""

    def __init__(self, events: Any):
        self._events = events
        self._read: collections.deque[Any] = collections.deque()

    def get(self, timeout: float) -> Any:
        if not self._read:
            self._read.extend(self._events.get(batch=True))  # what is there now, perhaps nothing
        if not self._read:
            time.sleep(timeout)
            raise queue.Empty
        return self._read.popleft()


class DaskRunner(Runner):
    """Tasks on a Dask distributed cluster. The data set goes to the cluster once. A worker
    lost mid-run makes the scheduler run its task again on another worker (Dask retries a task
    whose worker died up to `distributed.scheduler.allowed-failures` times, 3 by default); an
    experiment that raises is not retried, it is reported as failed."""

    def __init__(self, address: str, data: Dataset):
        try:
            from distributed import Client, Queue
        except ImportError as exc:
            raise ReportgenError("--scheduler needs Dask: pip install 'reportgen[dask]'") from exc

        try:
            check_address(address)
        except ValueError as exc:
            raise ReportgenError(f"--scheduler {address!r} is not a Dask scheduler address ({exc}); expected "
                                 "tcp://HOST:PORT, as `dask scheduler` prints it") from None
        try:
            self._client = Client(address, timeout="20s", set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise ReportgenError(f"cannot reach the Dask scheduler at {address}: {exc}") from exc
        workers = self._client.scheduler_info().get("workers", {})
        if not workers:
            self._client.close()
            raise ReportgenError(f"the Dask scheduler at {address} has no workers")
        self._queue = Queue(f"reportgen-events-{os.getpid()}-{time.time_ns()}", client=self._client)
        self.events = PolledQueue(self._queue)
        # A task that returns the data set, not scattered data: the scheduler keeps the data in the
        # task, so a worker lost mid-run, with the only copy, costs the scheduler a recomputation and
        # the experiment a retry. Scattered data would be lost for good, and with it the retry (Dask
        # cancels what depended on it, even with copies on other workers: distributed 2026.8).
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sending large graph", category=UserWarning)
            self._data = self._client.submit(_held, data, key=f"reportgen-data-{data.fingerprint[:12]}-"
                                             f"{time.time_ns()}", pure=False)
        self._env = worker_environment(1, 0)
        self._submitted: list[Future[Any]] = []
        self.description = f"Dask scheduler {address} ({len(workers)} workers)"

    def submit(self, task: Task) -> Future[Any]:
        future: Future[Any] = Future()
        dask_future = self._client.submit(_dask_work, task, self._data, self._queue, self._env,
                                          key=f"reportgen-{task.exp.name}-{task.key[:12]}-{time.time_ns()}",
                                          pure=False, priority=task.priority)

        def done(f: Any) -> None:
            if future.cancelled():
                return
            try:
                future.set_result(f.result())
            except BaseException as exc:  # noqa: B036 - handed on to whoever waits for it
                future.set_exception(exc)

        dask_future.add_done_callback(done)
        future.dask_future = dask_future  # type: ignore[attr-defined]  # kept alive while it runs
        self._submitted.append(future)
        return future

    def close(self, cancel: bool = False) -> None:
        if cancel:
            for future in self._submitted:
                future.dask_future.cancel()  # type: ignore[attr-defined]
                future.cancel()
        self._client.close()


def _held(data: Dataset) -> Dataset:
    """The data set, as a task's result on a Dask worker."""
    return data


def _dask_work(task: Task, data: Dataset, events: Any, env: dict[str, str]) -> Any:
    """Run on a Dask worker: train in a child process of its own, with the build's backend and
    thread pool. Not in the worker itself: Keras draws its default seeds from Python's global
    `random`, which the worker's own threads (heartbeats, retries) draw from too, so the same
    seed gave other weights there; and each run gets a fresh backend, as in a sequential build."""
    import pickle
    import subprocess
    import sys
    import tempfile

    from distributed import get_worker

    where = get_worker().address
    with tempfile.TemporaryDirectory(prefix="reportgen-task-") as tmp:
        folder = Path(tmp)
        (folder / "task.pkl").write_bytes(pickle.dumps((task, data, where)))
        log = (folder / "stderr.txt").open("w")  # a file, not a pipe nobody reads while it trains
        child = subprocess.Popen([sys.executable, "-m", "reportgen.train.parallel", str(folder)],
                                 stdout=subprocess.PIPE, stderr=log, text=True, env={**os.environ, **env})
        assert child.stdout is not None
        for line in child.stdout:  # progress, one JSON event a line
            try:
                index, what, args = json.loads(line)
            except ValueError:
                continue
            try:
                events.put((index, what, args))
            except Exception:  # progress is not worth failing a run for
                pass
        child.wait()
        log.close()
        errors = (folder / "stderr.txt").read_text(errors="replace")
        if child.returncode != 0 or not (folder / "outcome.pkl").is_file():
            return Failure(f"the training process exited with {child.returncode}: {errors.strip()[-2000:]}")
        return pickle.loads((folder / "outcome.pkl").read_bytes())


class _LineEvents:
    """Progress of a child process: JSON lines on its stdout, read by _dask_work."""

    def put(self, item: tuple[int, str, tuple[Any, ...]]) -> None:
        print(json.dumps(item), flush=True)


def _watch_parent() -> None:
    """End this child when the worker that started it dies (kill -9 leaves no one to wait for it)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _child_main(folder: Path) -> None:
    import pickle

    _watch_parent()
    task, data, where = pickle.loads((folder / "task.pkl").read_bytes())
    outcome = work(task, data, _LineEvents(), where)
    partial = folder / "outcome.pkl.part"
    partial.write_bytes(pickle.dumps(outcome))
    partial.replace(folder / "outcome.pkl")


if __name__ == "__main__":
    import sys

    _child_main(Path(sys.argv[1]))


def probe_scheduler(address: str) -> int:
    """The number of workers a Dask scheduler has; ImportError without Dask, OSError, TimeoutError
    or ValueError (saying why) when it cannot be reached."""
    from distributed import Client

    check_address(address)
    with Client(address, timeout="10s", set_as_default=False) as client:
        return len(client.scheduler_info().get("workers", {}))


def check_address(address: str) -> None:
    """Raise ValueError, saying why, unless `address` is one a Dask client can connect to: Dask's own
    error comes with a traceback and a 40 s wait while the half-made client closes."""
    from distributed.comm.addressing import parse_address, parse_host_port
    from distributed.comm.registry import get_backend

    scheme, location = parse_address(address)
    get_backend(scheme)  # an unknown scheme: http://, say
    if scheme in ("tcp", "tls"):
        parse_host_port(location)  # without a port


@contextmanager
def draining(events: Any, handle: Callable[[int, str, tuple[Any, ...]], None]) -> Iterator[None]:
    """Read progress events in a thread of their own while the body runs; drain what is left."""
    stop = threading.Event()

    def pump() -> None:
        while True:
            try:
                item = events.get(timeout=0.2)
            except queue.Empty:
                if stop.is_set():
                    return
                continue
            except Exception:  # Dask: its own timeout error; a closed manager: the build is ending
                if stop.is_set():
                    return
                time.sleep(0.2)
                continue
            try:
                index, what, args = item
                handle(index, what, tuple(args))
            except Exception:  # one malformed event must not stop the display
                continue

    thread = threading.Thread(target=pump, name="reportgen-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
