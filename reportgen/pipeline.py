"""The build, stage by stage: load -> plan -> train -> derive -> collect -> render -> write.

Like a static-site build, it first gathers everything (experiment files validated, data loaded,
every experiment's cache key computed) and only then trains and writes. Each stage is a package
of its own (project, train, views, report); this module only calls them in order.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from reportgen import __version__, files
from reportgen.errors import BuildInterrupted, ReportgenError, SpecError
from reportgen.grade import check
from reportgen.project import spec
from reportgen.project.data import load_source
from reportgen.project.dataset import sample, subset
from reportgen.project.settings import Options
from reportgen.report import context as report_context
from reportgen.report import freshness, lock, render
from reportgen.train import machine, store
from reportgen.train.machine import backend_name, check_environment, cpu_threads, versions
from reportgen.train.parallel import DaskRunner, Failure, LocalRunner, Runner, Task, draining
from reportgen.train.plan import Planned, Session
from reportgen.train.progress import RunBar, TrainingProgress
from reportgen.train.result import GanResult, ModeCollapseResult
from reportgen.train.run import classify, stackable, train, train_repeats
from reportgen.views import analysis, figures, mode_collapse

# --- stage 1-3: read specs, load data, compute every key -------------------------------------------


def open_session(options: Options, say: Callable[[str], None] = print) -> Session:
    project = spec.load_project(options.root, options.profile)
    if options.precision:
        project = spec.with_precision(project, options.precision)
    if options.repeats:
        project = spec.with_repeats(project, options.repeats)
    selected = {r.name for e in spec.select(project, options.only) for r in e.with_repeats()}
    data = load_source(project.data, project.root, options.mnist_file)
    if project.sample is not None:
        data = sample(data, *project.sample)
    problems = spec.data_problems(project, data.kind, data.input_shape)
    if problems:
        raise SpecError(problems)
    if options.data_file is not None and project.data == "mnist-sample":
        say(f"Note: --data-file {options.data_file} is not used: the {project.profile} profile's data set is the "
            "embedded sample (`data = \"mnist-sample\"`).")
    if options.train_limit or options.val_limit:
        data = subset(data, options.train_limit or len(data.y_train), options.val_limit or len(data.y_val))
    if data.notice:
        say(f"Note: {data.notice}")
    results = store.Store(options.cache_root)


    backend, vers = backend_name(), versions()
    planned = []
    for exp in project.trained:  # each repeat is trained and cached as an experiment of its own
        inputs = store.inputs_for(exp, project.experiments_dir, data.fingerprint, backend, vers)
        key = store.key_of(inputs)
        entry = results.get(key)
        reasons = [] if entry else store.explain(results.last_inputs(exp.name), inputs)
        planned.append(Planned(exp=exp, inputs=inputs, key=key, entry=entry, reasons=reasons,
                               cache_hit=entry is not None))
    for warning in results.warnings:
        say(f"Warning: {warning}")
    return Session(options, project, data, results, planned, selected, backend, vers)


# --- before stage 4: the machine can train what is stale --------------------------------------------


def stale_runs(session: Session) -> list[Planned]:
    """The selected runs a build trains: those without a fresh result, and with --force all of them."""
    return [p for p in session.planned
            if p.exp.name in session.selected and (p.entry is None or session.options.force)]


def check_machine(session: Session, device: str, stale: list[Planned]) -> list[str]:
    """Before anything trains: the device asked for (--device: auto, cpu, gpu, gpu:N) exists and
    bfloat16 runs have bfloat16 hardware, else a ReportgenError; what the user should hear (a GPU
    the backend cannot see, cached results another kind of device made) comes back as notes."""
    notes = _cached_elsewhere(session, device, stale)
    if not stale:
        return notes
    found, present = machine.device_info(), machine.physical_gpus()
    if device.startswith("gpu") and found["kind"] != "gpu":
        seen = f" (the driver lists: {', '.join(present)})" if present else ""
        raise ReportgenError(f"--device {device}: the {found['backend']} backend sees no GPU{seen}. "
                             "Use --device cpu, or a backend built with GPU support.")
    if found["kind"] == "cpu" and present and device != "cpu":
        notes.append(f"Warning: this machine has a GPU ({', '.join(present)}) but the {found['backend']} backend "
                     "does not use it; training runs on the CPU. Install the backend's GPU build (e.g. pip install "
                     "'tensorflow[and-cuda]') or use --backend jax/torch with CUDA.")
    if found.get("note"):
        notes.append(f"Warning: {found['note']}")
    wanting = [p for p in stale if p.exp.model.precision == "mixed_bfloat16"]
    if wanting and not machine.bf16_supported(found):
        flag = session.options.precision
        where = (f"--precision {flag}" if flag else
                 ", ".join(f"{p.exp.source.name} (run {p.exp.name}, key precision)" for p in wanting[:3])
                 + (f" and {len(wanting) - 3} more" if len(wanting) > 3 else ""))
        fix = ("Leave out --precision, or give --precision float32, on this machine" if flag else
               "Expected precision = \"float32\" on this machine")
        raise ReportgenError(f"{where}: mixed_bfloat16 needs bfloat16 hardware, and {found['name']} has none "
                             "(a CPU needs AVX512_BF16 or AMX, an NVIDIA GPU compute capability 8.0 or later). "
                             f"{fix}. Nothing was trained.")
    return notes


def _cached_elsewhere(session: Session, device: str, stale: list[Planned]) -> list[str]:
    """--device cpu or gpu with cached results another kind of device made: they are used as they
    are (the device is not part of a result's key), which the user should hear of."""
    wanted = "gpu" if device.startswith("gpu") else "cpu" if device == "cpu" else None
    if wanted is None:
        return []
    training = {p.exp.name for p in stale}
    elsewhere = [p.exp.name for p in session.planned if p.exp.name in session.selected - training
                 and p.entry is not None and p.entry.result.device.get("kind") not in (wanted, None)]
    if not elsewhere:
        return []
    names = ", ".join(elsewhere[:3]) + (f" and {len(elsewhere) - 3} more" if len(elsewhere) > 3 else "")
    return [f"Note: --device {device}: {len(elsewhere)} cached result(s) were trained on another kind of device "
            f"({names}) and are used as they are; --force trains them again here."]


# --- stage 4: train what is stale --------------------------------------------------------------------


def train_stale(session: Session, console: Any) -> list[Planned]:
    """Train every selected experiment that has no fresh result (all selected with --force):
    one after another, in local worker processes (--jobs) or on a Dask cluster (--scheduler).
    A failing experiment is recorded and the others go on; Ctrl-C stops with nothing half-written
    and raises BuildInterrupted saying what finished."""
    todo = stale_runs(session)
    if not todo:
        return []

    check_environment(session.options.env)  # an XLA option stops the build here, not in every run
    running: set[str] = set()
    earlier = {p.exp.name: p.entry for p in todo}  # --force: the cached results being replaced
    try:
        address = session.options.scheduler_address
        if address or (session.options.jobs > 1 and len(todo) > 1):
            _train_side_by_side(session, todo, console, address, running)
        else:
            _train_each(session, todo, console)
    except KeyboardInterrupt:
        finished = [p.exp.name for p in todo if p.entry is not earlier[p.exp.name] and not p.error]
        left = [p for p in todo if p.exp.name not in finished and not p.error]
        cut = [p for p in todo if p.exp.name in running] or left[:1]
        resumable = any((session.store.partial(p.key) / "checkpoint.npz").is_file() for p in cut)
        pending = [p.exp.name for p in left if p not in cut]
        raise BuildInterrupted(finished, ", ".join(p.exp.name for p in cut) or None, resumable,
                               pending) from None
    return todo


def _store_outcome(session: Session, planned: Planned, outcome: Any, started: float) -> None:
    planned.seconds = time.perf_counter() - started
    planned.entry = session.store.put(planned.key, planned.inputs, outcome.result, outcome.arrays, outcome.files,
                                      replace=session.options.force)
    shutil.rmtree(session.store.partial(planned.key), ignore_errors=True)  # stored: the checkpoint has served
    planned.cache_hit, planned.reasons = False, []


def _finished_line(planned: Planned, i: int, total: int) -> str:
    from rich.markup import escape

    head = f"  [{i}/{total}] {escape(planned.exp.name)}: "
    if planned.error:
        return head + f"[red]failed[/red]: {escape(planned.error)}"
    assert planned.entry is not None
    result = planned.entry.result
    if planned.cache_hit:
        return head + "trained by another build, using its result"
    final = result.final
    status = (f"[yellow]diverged at epoch {result.diverged.epoch}[/yellow]"
              if result.diverged is not None else
              f"val_accuracy {final['val_accuracy']:.4f}" if "val_accuracy" in final else
              f"d_loss {final['d_loss']:.4f}, g_loss {final['g_loss']:.4f}" if "d_loss" in final else "done")
    if isinstance(result, GanResult) and result.resumed:
        status += f" (resumed after epoch {result.resumed[-1].from_epoch})"
    return head + f"{status} ({planned.seconds:.1f} s)"


def _already_done(session: Session, planned: Planned) -> bool:
    """Under the key's lock: whether the build we waited for has stored it meanwhile."""
    done = None if session.options.force else session.store.get(planned.key)
    if done is None:
        return False
    planned.entry, planned.cache_hit, planned.reasons = done, True, []
    return True


@contextmanager
def _claimed(session: Session, planned: Planned, console: Any) -> Iterator[Path | None]:
    """Hold the experiment's key lock while it trains (another build training it is waited for)
    and give its checkpoint folder, emptied under --force; None when a build that held the lock
    meanwhile left a result, which then stands."""
    from rich.markup import escape

    def waiting(pid: int) -> None:
        console.print(f"  {escape(planned.exp.name)}: another build (pid {pid}) is training it; waiting")

    with session.store.lock(planned.key, wait_message=waiting):
        if _already_done(session, planned):
            yield None
            return
        partial = session.store.partial(planned.key)
        if session.options.force:
            shutil.rmtree(partial, ignore_errors=True)
        yield partial


def _stacks(session: Session, todo: list[Planned]) -> list[list[Planned]]:
    """The runs to train one after another, each a list: two or more repeats of one dense run that
    train stacked in one program (run.stackable), or a single run. REPORTGEN_STACK_REPEATS=0 keeps
    every repeat on its own."""
    groups: list[list[Planned]] = []
    for planned in todo:
        last = groups[-1] if groups else None
        if last is not None and last[0].exp.run == planned.exp.run:
            last.append(planned)
        else:
            groups.append([planned])
    out: list[list[Planned]] = []
    for group in groups:
        if session.options.env.stack_repeats and len(group) > 1 and stackable([p.exp for p in group]) is None:
            out.append(group)
        else:
            out.extend([p] for p in group)
    return out


def _train_stack(session: Session, stack: list[Planned], console: Any, progress: Any, done: int, total: int) -> None:
    """Repeats of one dense run trained side by side as one program, each stored as its own result;
    under each key's lock, as a single run is (a repeat another build stored meanwhile is kept)."""
    first = stack[0].exp
    progress.start_experiment(done + 1, total, f"{first.run} ({len(stack)} repeats, stacked)", first.model.epochs)
    with ExitStack() as held:
        claimed = [p for p in stack if held.enter_context(_claimed(session, p, console)) is not None]
        if claimed:
            started = time.perf_counter()
            try:
                outcomes = train_repeats([p.exp for p in claimed], session.data, session.project.experiments_dir,
                                         progress, programs=session.store.programs, env=session.options.env)
            except Exception as exc:  # one broken experiment must not sink the others
                for planned in claimed:
                    planned.error = f"{type(exc).__name__}: {exc}"
            else:
                for planned, outcome in zip(claimed, outcomes, strict=True):
                    _store_outcome(session, planned, outcome, started)
                    planned.seconds /= len(claimed)
    for i, planned in enumerate(stack, start=done + 1):
        progress.finish_experiment(_finished_line(planned, i, total))


def _train_each(session: Session, todo: list[Planned], console: Any) -> None:
    with TrainingProgress(console, len(todo)) as progress:
        done = 0
        for stack in _stacks(session, todo):
            if len(stack) > 1:
                _train_stack(session, stack, console, progress, done, len(todo))
                done += len(stack)
                continue
            planned = stack[0]
            done += 1
            i = done
            progress.start_experiment(i, len(todo), planned.exp.name, planned.exp.model.epochs)
            with _claimed(session, planned, console) as partial:
                if partial is not None:
                    started = time.perf_counter()
                    try:
                        outcome = train(planned.exp, session.data, session.project.experiments_dir, progress,
                                        checkpoints=partial, key=planned.key, programs=session.store.programs,
                                        env=session.options.env)
                    except Exception as exc:  # one broken experiment must not sink the others
                        planned.error = f"{type(exc).__name__}: {exc}"
                    else:
                        _store_outcome(session, planned, outcome, started)
            progress.finish_experiment(_finished_line(planned, i, len(todo)))


# A run's rough time per epoch, by kind, against a dense net's; only the order they give matters.
# On 2 CPU cores a CNN epoch takes many times a GAN epoch, on an H100 about the same.
KIND_COST = {"cnn": 3.0, "gan": 2.5, "custom": 1.2, "mlp": 1.0}


def longest_first(todo: list[Planned]) -> list[tuple[int, Planned]]:
    """The order in which side-by-side runs are handed out: (number, run), the likely longest
    first (GANs and convolutional nets, more epochs), so that the build ends on a short run rather
    than waiting for a long one that started last. Ties keep the declared order."""
    def cost(item: tuple[int, Planned]) -> float:
        model = item[1].exp.model
        return KIND_COST.get(model.kind, 1.0) * model.epochs

    return sorted(enumerate(todo, start=1), key=cost, reverse=True)


def _train_side_by_side(session: Session, todo: list[Planned], console: Any, address: str | None,
                        running: set[str]) -> None:
    """Every experiment at once as a task of a Runner (local processes or Dask), each waited for
    by a thread of this process that holds its key's lock and stores what comes back."""
    import threading
    from concurrent.futures import ThreadPoolExecutor
    from concurrent.futures import wait as wait_all

    from rich.markup import escape

    # Every run keeps the thread pool of a sequential build (its last bits of the weights depend on
    # it): the size this process would use, fixed here, since a worker pinned to fewer cores, or a
    # Dask worker on another machine, would otherwise size its own.
    env = dataclasses.replace(session.options.env, threads=cpu_threads(session.options.env))
    runner: Runner
    if address:
        runner = DaskRunner(address, session.data)
    else:
        device = machine.device_info()
        gpus = int(device.get("count", "0")) if device["kind"] == "gpu" else 0
        runner = LocalRunner(min(session.options.jobs, len(todo)), session.data, gpus)
    console.print(f"Training {len(todo)} experiment(s) on {escape(runner.description)}.")
    total = len(todo)
    bars: dict[int, RunBar] = {}
    starts: dict[int, int] = {}
    began: dict[int, float] = {}  # when a worker last started each: its time excludes the wait for one
    lock = threading.Lock()
    stopping = threading.Event()

    with TrainingProgress(console, total) as progress:
        def on_event(index: int, what: str, args: tuple[Any, ...]) -> None:
            planned = todo[index - 1]
            with lock:
                if what == "started":
                    runner.started(index, str(args[0]))
                    starts[index] = starts.get(index, 0) + 1
                    began[index] = time.perf_counter()
                    if starts[index] > 1:
                        console.print(f"  {escape(planned.exp.name)}: its worker was lost; "
                                      f"running it again on {escape(str(args[0]))}")
                    else:
                        console.print(f"  {escape(planned.exp.name)}: started on {escape(str(args[0]))}")
                    if index not in bars:
                        bars[index] = progress.bar(index, total, planned.exp.name)
                    return
                bar = bars.get(index)
            if bar is not None and what in ("epoch_start", "batch_end", "epoch_end", "note"):
                getattr(bar, what)(*args)

        def one(index: int, planned: Planned, priority: int) -> None:
            with _claimed(session, planned, console) as partial:
                if partial is not None:
                    started = time.perf_counter()
                    running.add(planned.exp.name)
                    try:
                        outcome = runner.submit(Task(index, planned.exp, session.project.experiments_dir,
                                                     partial, planned.key, priority,
                                                     session.store.programs, env)).result()
                    except Exception as exc:  # the worker pool itself broke (out of memory, killed)
                        if stopping.is_set():
                            return  # Ctrl-C: it stays in `running`, reported as cut short
                        outcome = Failure(f"worker failed: {type(exc).__name__}: {exc}")
                    finally:
                        runner.finished(index)
                    running.discard(planned.exp.name)
                    if isinstance(outcome, Failure):
                        planned.error = outcome.error
                    else:
                        with lock:
                            started = began.get(index, started)
                        _store_outcome(session, planned, outcome, started)
            with lock:
                bar = bars.pop(index, None)
            progress.finish(bar, _finished_line(planned, index, total))

        interrupted = False
        try:
            with draining(runner.events, on_event), ThreadPoolExecutor(max_workers=total) as threads:
                order = longest_first(todo)
                futures = [threads.submit(one, i, p, len(order) - rank) for rank, (i, p) in enumerate(order)]
                try:
                    while wait_all(futures, timeout=0.5).not_done:
                        pass
                except KeyboardInterrupt:
                    interrupted = True
                    stopping.set()
                    runner.close(cancel=True)
                    raise
                for future in futures:
                    future.result()
        finally:
            if not interrupted:
                runner.close()


# --- stage 5: derive the measurements that need more than one result -------------------------------

MEASURE_SOURCES = ("run.py", "models.py", "machine.py")  # run.classify: the classifier rebuilt by models.py


def _mode_collapse_jobs(session: Session) -> Iterator[tuple[mode_collapse.Settings, Planned, Planned, str,
                                                             dict[str, Any]]]:
    """Each mode-collapse view whose GAN and classifier both have usable results, with the key its
    measurement is cached under: both runs' keys, so retraining either one redoes it, nothing else."""
    by_name = {p.exp.name: p for p in session.planned}
    for section in session.project.sections:
        for view in section.views:
            if not isinstance(view, mode_collapse.Settings):
                continue
            gan, judge = by_name[view.run], by_name[view.classifier]
            if gan.entry is None or judge.entry is None or judge.entry.result.status != "ok":
                continue  # a diverged classifier would call every image a 0
            inputs = {"schema": store.SCHEMA, "measure": "mode_collapse", "gan": gan.key, "classifier": judge.key,
                      "code": store.sources_hash(MEASURE_SOURCES)}
            yield view, gan, judge, store.key_of(inputs), inputs


def derive(session: Session, say: Callable[[str], None] = print) -> None:
    """Classify each GAN run's recorded samples with the classifier its mode-collapse view names, and
    store the result. Runs right after training (it loads the classifier, so Keras); rendering
    only reads what this stored."""

    for view, gan, judge, key, inputs in _mode_collapse_jobs(session):
        assert gan.entry is not None and judge.entry is not None
        weights = judge.entry.file(store.WEIGHTS_FILE)
        samples = gan.entry.arrays()["samples"]
        if weights is None or not len(samples) or session.store.measure(key) is not None:
            continue
        say(f"Measuring mode collapse: {len(samples)} epoch(s) of {samples.shape[1]} images generated by "
            f"{view.run}, classified by {view.classifier}")
        probs = classify(judge.exp, weights, samples.reshape(-1, *samples.shape[2:]), session.project.experiments_dir,
                         session.data.num_classes)
        probs = probs.reshape(samples.shape[0], samples.shape[1], -1)
        arrays = {"predicted": probs.argmax(axis=-1).astype("uint8"),
                  "confidence": probs.max(axis=-1).astype("float32")}
        epochs = [int(e) for e in gan.entry.result.history["epoch"]]
        result = ModeCollapseResult(name=f"mode-collapse.{view.run}.{view.classifier}", gan=view.run,
                                    classifier=view.classifier, epochs=epochs)
        session.store.put(key, inputs, result, arrays)


def find_measures(session: Session) -> None:
    """The stored measurements of this plan's views, for the report; never computes one."""
    for view, _gan, _judge, key, _inputs in _mode_collapse_jobs(session):
        entry = session.store.measure(key)
        if entry is not None:
            session.measures[(view.run, view.classifier)] = entry


# --- stage 6: collect results into the report's context ---------------------------------------------


# --- stage 7: write the report and its manifest ---------------------------------------------------


def _git(root: Path) -> dict[str, Any]:
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain"], capture_output=True,
                               text=True, timeout=10, check=True).stdout.strip() != ""
        return {"commit": commit, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def _distinct(dicts: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each distinct dict once, in a stable order (most builds ran on one device)."""
    unique = {json.dumps(d, sort_keys=True): d for d in dicts}
    return [unique[k] for k in sorted(unique)]


def manifest(session: Session, refusals: list[str], warnings: list[str]) -> dict[str, Any]:
    """What was built from what: enough for `reportgen compare` to put two builds side by side and
    for `reportgen verify` to re-run each experiment elsewhere (configuration, seeds, code and data
    fingerprints, versions) and check its metrics."""
    results = [p.entry.result for p in session.planned if p.entry is not None]
    return {
        "tool": {"name": "reportgen", "version": __version__},
        "project": {"title": session.project.title, "author": session.project.author},
        "generated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "profile": session.project.profile,
        "limits": {"train": session.options.train_limit, "val": session.options.val_limit},
        "precision_override": session.options.precision,
        "repeats_override": session.options.repeats,
        "backend": session.backend,
        "versions": session.versions,
        "devices": _distinct(r.device for r in results),
        "precisions": sorted({r.precision for r in results}),
        "data": session.data.summary(),
        "seeds": sorted({p.exp.model.seed for p in session.planned}),
        "determinism": _distinct(r.determinism for r in results),
        "git": _git(session.project.root),
        "experiments": [
            {"name": p.exp.name, "section": p.exp.section, "kind": p.exp.model.kind, "key": p.key, "state": p.state,
             "cache_hit": p.cache_hit, "train_seconds": round(p.seconds, 3) if not p.cache_hit else 0.0,
             "recorded_train_seconds": p.entry.result.train_seconds if p.entry else None,
             "status": p.entry.result.status if p.entry else None, "error": p.error,
             "resumed": [r.model_dump() for r in p.entry.result.resumed]
             if p.entry and isinstance(p.entry.result, GanResult) else [],
             "config": p.exp.config(), "swept": p.exp.axes, "inputs": p.inputs, "metrics": _metrics(p),
             "weights_sha256": p.entry.result.weights_sha256 if p.entry else None,
             "device": p.entry.result.device if p.entry else None,
             "history": p.entry.result.history if p.entry else None}
            for p in session.planned
        ],
        "warnings": warnings,
        # Each rendered commentary slot's text, hashed: `check` tells a report older than its prose.
        "commentary": {name: slot["text"] for name, slot in sorted(session.slots.items())},
        "refused": refusals,  # fetches refused and content the sanitizers took out, each with FILE:LINE
    }


def render_report(session: Session, pdf: bool = True, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Draw figures, fill commentary, write report.html, report.pdf and manifest.json, from stored
    results and measurements only (nothing here trains or loads Keras)."""

    out = session.options.out
    render.check_output_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    files.sweep_temp_files(out)  # left by a build killed while writing
    files.sweep_temp_files(session.project.experiments_dir)
    find_measures(session)
    last = session.options.last_build()
    if freshness.current(session, last, pdf):  # nothing it is made from changed: leave it as it is
        return {"html": out / "report.html", "pdf": out / "report.pdf" if pdf else None, "current": True,
                "warnings": list(last.get("warnings") or []), "refusals": list(last.get("refused") or []),
                "manifest": last, "attachments": list(last.get("attachments") or [])}
    # The assets are written afresh: figures of removed runs must go (unchanged ones are copied from
    # the figure cache, not redrawn).
    shutil.rmtree(out / "assets", ignore_errors=True)
    # Figures whose data, settings and drawing code did not change are copied, not redrawn.
    with figures.cached(out / freshness.FIGURE_CACHE):
        context, warnings = report_context.collect(session)
    removed: list[tuple[str, str]] = []
    html_path = render.html(context, session.project.root, out, removed)
    attachments = [{"source": s["attachment"]["source"], "anchor": s["attachment"]["anchor"]}
                   for s in context["sections"] if s["attachment"]]
    refused = render.pdf(html_path, out / "report.pdf", attachments, session.options.pdf_variant) if pdf else []
    if session.options.self_contained:  # after the PDF, which is drawn from the page and its assets
        render.self_contained(html_path)
    sources = sorted(p for d in (session.project.experiments_dir, session.project.root / "templates") if d.is_dir()
                     for p in d.rglob("*") if p.is_file() and not p.is_symlink()
                     and p.suffix in (".md", ".toml", ".j2", ".css", ".html"))
    refusals = render.locate(refused, sources, out) + render.locate_removed(removed, sources)
    lock.record_slots(session)
    data = manifest(session, refusals, warnings)
    results = results_table(session)
    files.write_atomic(out / "results.json", json.dumps(results, indent=1).encode())
    files.write_atomic(out / "results.csv", results_csv(results).encode())
    # What the files were rendered from, and their hash: the next build leaves them be when both hold.
    data["attachments"] = attachments  # where `preview` finds them to draw the PDF after the page
    data["rendered_from"] = {"inputs": freshness.inputs_hash(session, pdf), "outputs": freshness.outputs_hash(out)}
    files.write_atomic(out / "manifest.json", json.dumps(data, indent=1).encode())
    return {"html": html_path, "pdf": out / "report.pdf" if pdf else None, "warnings": warnings,
            "refusals": refusals, "manifest": data, "current": False, "attachments": attachments}


# What results.csv has per experiment, in this order; results.json has these and the histories.
RESULT_COLUMNS = ("section", "name", "kind", "state", "status", "params", "epochs", "val_accuracy", "accuracy",
                  "val_loss", "loss", "best_val_accuracy", "best_epoch", "first_val_accuracy", "misclassified",
                  "validation_size", "d_loss", "g_loss", "d_acc_real", "d_acc_fake", "seconds_per_epoch",
                  "resumed_from", "key")


def results_table(session: Session) -> dict[str, Any]:
    """Every experiment's metrics and resolved configuration, for loading many reports into one
    table (build/results.json; build/results.csv holds the metric columns, one row per run)."""
    rows = []
    for p in session.planned:
        rows.append({"section": p.exp.section, "name": p.exp.name, "kind": p.exp.model.kind, "state": p.state,
                     "status": p.entry.result.status if p.entry else None, "key": p.key,
                     **_metrics(p), "config": p.exp.config(),
                     "history": p.entry.result.history if p.entry else None})
    return {"schema": 1, "project": session.project.title, "profile": session.project.profile,
            "data": {"name": session.data.name, "fingerprint": session.data.fingerprint},
            "columns": list(RESULT_COLUMNS), "experiments": rows}


def _metrics(p: Planned) -> dict[str, Any]:
    """The metric columns of one experiment (None where it has no result or the kind lacks one)."""
    facts = analysis.facts(p.entry.result, p.exp.config()) if p.entry is not None else {}
    return {c: facts.get(c) for c in RESULT_COLUMNS if c not in ("section", "name", "kind", "state", "status", "key")}


def results_csv(results: dict[str, Any]) -> str:
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*RESULT_COLUMNS, "config"], extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    for row in results["experiments"]:
        writer.writerow({**row, "config": json.dumps(row["config"], sort_keys=True)})
    return buffer.getvalue()



# --- before handing in: the review `reportgen check` prints ------------------------------------------


def review(session: Session, accept: Iterable[str] = ()) -> check.Review:
    """Every submission check over a project, its cached results and its last build, without training.
    The context is collected into a scratch folder, so build/ is left as it is; `accept` records the
    listed sections' slots as still true for the current results."""
    with tempfile.TemporaryDirectory(prefix="reportgen-check-") as scratch:
        scratch_session = dataclasses.replace(
            session, options=dataclasses.replace(session.options, build_dir=Path(scratch)), slots={}, measures={})
        find_measures(scratch_session)
        # The last build's figures are reused where they still hold (and left as they are).
        built = session.options.out / freshness.FIGURE_CACHE
        with figures.cached(built if built.is_dir() else Path(scratch) / freshness.FIGURE_CACHE, prune=False):
            context, _ = report_context.collect(scratch_session)
        accepted = lock.record_slots(scratch_session, accept) if accept else []
    return check.review(session, context, scratch_session.slots, accept, accepted)
