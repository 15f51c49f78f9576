"""The pipeline, stage by stage: spec -> data -> plan -> run -> collect -> figures -> render.

Like a static-site build, it first gathers everything (specs validated, data loaded, every
experiment's cache key computed) and only then trains and writes.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__, analysis, check, spec, store
from .data import Dataset, load, subset
from .errors import BuildInterrupted
from .spec import (
    ConvergenceView,
    Experiment,
    MisclassifiedView,
    ModeCollapseView,
    OverlayView,
    ParamsView,
    Project,
)
from .store import Entry

BUILD_DIR = "build"


@dataclass
class Options:
    root: Path
    profile: str = "full"
    only: list[str] = field(default_factory=list)
    force: bool = False
    data_file: Path | None = None
    cache_dir: Path | None = None
    build_dir: Path | None = None
    train_limit: int | None = None
    val_limit: int | None = None
    precision: str | None = None  # --precision: every experiment in it
    jobs: int = 1  # experiments trained at once in local worker processes
    scheduler: str | None = None  # a Dask scheduler's address: train there instead

    @property
    def out(self) -> Path:
        return self.build_dir or self.root / BUILD_DIR


@dataclass
class Planned:
    """One experiment with its cache key, its stored result if fresh, and why it is not."""

    exp: Experiment
    inputs: dict[str, Any]
    key: str
    entry: store.Entry | None
    reasons: list[str]
    error: str | None = None
    cache_hit: bool = False
    seconds: float = 0.0

    @property
    def state(self) -> str:
        if self.error:
            return "failed"
        return "fresh" if self.entry is not None else ("stale" if self.reasons != ["never run"] else "missing")


@dataclass
class Session:
    options: Options
    project: Project
    data: Dataset
    store: store.Store
    planned: list[Planned]
    selected: set[str]
    # Mode-collapse measurements, by (gan run, classifier run): derived results, cached like runs.
    measures: dict[tuple[str, str], Entry] = field(default_factory=dict)
    # What each commentary slot quotes now, recorded after rendering (experiments/commentary.lock.json).
    slots: dict[str, dict[str, Any]] = field(default_factory=dict)


# --- stage 1-3: read specs, load data, compute every key -------------------------------------------


def rebuild_command(session: Session) -> str:
    """`reportgen build` with this session's profile, backend, image limits and precision, for hints: a plain
    `reportgen build` after a quick draft would train the full profile, which takes far longer."""
    from .run import backend_name

    options = session.options
    flags = ["--quick"] if session.project.profile == "quick" else []
    flags += [f"--backend {backend_name()}"] if backend_name() != "tensorflow" else []
    flags += [f"--limit-train {options.train_limit}"] if options.train_limit else []
    flags += [f"--limit-val {options.val_limit}"] if options.val_limit else []
    flags += [f"--precision {options.precision}"] if options.precision else []
    return " ".join(["reportgen build", *flags])


def open_session(options: Options, say: Callable[[str], None] = print) -> Session:
    project = spec.load_project(options.root, options.profile)
    if options.precision:
        project = spec.with_precision(project, options.precision)
    selected = {e.name for e in spec.select(project, options.only)}
    data = load(project.data, options.data_file)
    if options.data_file is not None and project.data == "mnist-sample":
        say(f"Note: --data-file {options.data_file} is not used: the {project.profile} profile's data set is the "
            "embedded sample (`data = \"mnist-sample\"`).")
    if options.train_limit or options.val_limit:
        data = subset(data, options.train_limit or len(data.y_train), options.val_limit or len(data.y_val))
    if data.notice:
        say(f"Note: {data.notice}")
    results = store.Store(options.cache_dir or store.default_root(project.root))
    from .run import XLA_CACHE_ENV

    os.environ[XLA_CACHE_ENV] = str(results.root / "xla")
    from .run import backend_name, versions

    backend, vers = backend_name(), versions()
    planned = []
    for exp in project.experiments:
        inputs = store.inputs_for(exp, project.experiments_dir, data.fingerprint, backend, vers)
        key = store.key_of(inputs)
        entry = results.get(key)
        reasons = [] if entry else store.explain(results.last_inputs(exp.name), inputs)
        planned.append(Planned(exp=exp, inputs=inputs, key=key, entry=entry, reasons=reasons,
                               cache_hit=entry is not None))
    for warning in results.warnings:
        say(f"Warning: {warning}")
    return Session(options, project, data, results, planned, selected)


# --- stage 4: train what is stale --------------------------------------------------------------------


def train_stale(session: Session, console: Any) -> list[Planned]:
    """Train every selected experiment that has no fresh result (all selected with --force):
    one after another, in local worker processes (--jobs) or on a Dask cluster (--scheduler).
    A failing experiment is recorded and the others go on; Ctrl-C stops with nothing half-written
    and raises BuildInterrupted saying what finished."""
    todo = [p for p in session.planned
            if p.exp.name in session.selected and (p.entry is None or session.options.force)]
    if not todo:
        return []
    from .fused import check_environment

    check_environment()  # a misspelt switch or XLA option stops the build here, not in every run
    running: set[str] = set()
    earlier = {p.exp.name: p.entry for p in todo}  # --force: the cached results being replaced
    try:
        from .parallel import scheduler_address

        address = scheduler_address(session.options.scheduler)
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
    outcome.result["config"] = planned.exp.config()
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
    final = result.get("final", {})
    status = (f"[yellow]diverged at epoch {result['diverged']['epoch']}[/yellow]"
              if result["status"] == "diverged" else
              f"val_accuracy {final['val_accuracy']:.4f}" if "val_accuracy" in final else
              f"d_loss {final['d_loss']:.4f}, g_loss {final['g_loss']:.4f}" if "d_loss" in final else "done")
    if result.get("resumed"):
        status += f" (resumed after epoch {result['resumed'][-1]['from_epoch']})"
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


def _train_each(session: Session, todo: list[Planned], console: Any) -> None:
    from .progress import TrainingProgress
    from .run import train

    with TrainingProgress(console, len(todo)) as progress:
        for i, planned in enumerate(todo, start=1):
            progress.start_experiment(i, len(todo), planned.exp.name, planned.exp.model.epochs)
            with _claimed(session, planned, console) as partial:
                if partial is not None:
                    started = time.perf_counter()
                    try:
                        outcome = train(planned.exp, session.data, session.project.experiments_dir, progress,
                                        checkpoints=partial, key=planned.key)
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

    from .parallel import DaskRunner, Failure, LocalRunner, Runner, Task, draining
    from .progress import RunBar, TrainingProgress
    from .run import device_info

    runner: Runner
    if address:
        runner = DaskRunner(address, session.data)
    else:
        device = device_info()
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
                                                     partial, planned.key, priority)).result()
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


# --- stage 5: measurements that need more than one result ---------------------------------------------

MEASURE_SOURCES = ("run.py", "models.py")  # run.classify, with the classifier rebuilt by models.py


def measure(session: Session, say: Callable[[str], None] = print) -> None:
    """Classify each GAN run's recorded samples with the classifier its mode-collapse view names.
    Cached under the keys of both runs: retraining either one redoes the measurement, nothing else."""
    from .run import WEIGHTS_FILE

    by_name = {p.exp.name: p for p in session.planned}
    for section in session.project.sections:
        for view in section.views:
            if not isinstance(view, ModeCollapseView):
                continue
            gan, judge = by_name[view.run], by_name[view.classifier]
            if gan.entry is None or judge.entry is None or judge.entry.result.get("status") != "ok":
                continue  # a diverged classifier would call every image a 0
            weights = judge.entry.file(WEIGHTS_FILE)
            if weights is None:
                continue
            inputs = {"schema": store.SCHEMA, "measure": "mode_collapse", "gan": gan.key, "classifier": judge.key,
                      "code": store.sources_hash(MEASURE_SOURCES)}
            key = store.key_of(inputs)
            entry = session.store.get(key)
            if entry is None:
                samples = gan.entry.arrays()["samples"]
                if not len(samples):
                    continue
                from .run import classify

                say(f"Measuring mode collapse: {len(samples)} epoch(s) of {samples.shape[1]} images generated by "
                    f"{view.run}, classified by {view.classifier}")
                probs = classify(judge.exp, weights, samples.reshape(-1, 28, 28), session.project.experiments_dir)
                probs = probs.reshape(samples.shape[0], samples.shape[1], -1)
                arrays = {"predicted": probs.argmax(axis=-1).astype("uint8"),
                          "confidence": probs.max(axis=-1).astype("float32")}
                result = {"name": f"mode-collapse.{view.run}.{view.classifier}", "gan": view.run,
                          "classifier": view.classifier, "epochs": gan.entry.result["history"]["epoch"]}
                entry = session.store.put(key, inputs, result, arrays)
            session.measures[(view.run, view.classifier)] = entry


# --- stage 6: collect results into the report's context ---------------------------------------------


def _history_rows(history: dict[str, list[float]]) -> list[dict[str, Any]]:
    """One row per finished epoch with every recorded column (a diverged run's lists may be short)."""
    n = len(history.get("epoch") or history.get("loss", []))
    return [{"epoch": e + 1, **{c: v[e] for c, v in history.items() if c != "epoch" and e < len(v)}}
            for e in range(n)]


def collect(session: Session) -> tuple[dict[str, Any], list[str]]:
    """Everything the templates and commentary see, and the warnings raised while gathering it.
    Figures are drawn here into build/assets, named after what they show."""
    from . import figures
    from .commentary import UnknownPlaceholder, render_commentary

    assets = session.options.out / "assets"
    assets.mkdir(parents=True, exist_ok=True)
    warnings: list[str] = []
    by_name = {p.exp.name: p for p in session.planned}
    facts = {name: (analysis.gan_facts if p.exp.model.kind == "gan" else analysis.run_facts)(
                 p.entry.result, p.exp.config())
             for name, p in by_name.items() if p.entry is not None}
    declared = list(by_name)
    recorded = check.read_lock(session.project.experiments_dir)["slots"].get(
        check.lock_key(session.project.profile, session.data.name, session.data.fingerprint), {})

    sections = []
    for section in session.project.sections:
        experiments = []
        for exp in section.experiments:
            p = by_name[exp.name]
            item: dict[str, Any] = {"name": exp.name, "code_cell": exp.code_cell(), "state": p.state,
                                    "error": p.error, "reasons": p.reasons}
            item["kind"] = exp.model.kind
            if p.entry is not None and exp.model.kind == "gan":
                item.update(_gan_item(exp.name, p.entry, assets), facts=facts[exp.name], cache_hit=p.cache_hit)
            elif p.entry is not None:
                result = p.entry.result
                curves = f"curves-{exp.name}.svg"
                figures.save_svg(figures.learning_curves(exp.name, result["history"]), assets / curves)
                item.update(result=result, facts=facts[exp.name], curves=f"assets/{curves}",
                            epochs=_history_rows(result["history"]), cache_hit=p.cache_hit)
            elif p.error:
                warnings.append(f"{exp.name}: failed: {p.error}")
            experiments.append(item)

        views: list[dict[str, Any]] = []
        view_facts: dict[str, Any] = {}
        # Views over classifiers (parameters, overlays, convergence) leave the section's GANs out:
        # a GAN has no validation accuracy to place.
        classifiers = {n for n, f in facts.items() if f.get("kind") != "gan"}
        section_facts = [facts[e.name] for e in section.experiments if e.name in classifiers]
        for i, view in enumerate(section.views):
            figure = f"{section.slug}-{view.kind}-{i}.svg"
            entry: dict[str, Any] = {"kind": view.kind, "measured": None, "figure": None, "figures": [],
                                     "caption": view.caption}
            if isinstance(view, ParamsView) and section_facts:
                measured = analysis.params_threshold(section_facts, view.threshold)
                points = [{"label": f["name"], "params": f["params"], "val_accuracy": f["val_accuracy"]}
                          for f in section_facts if f.get("val_accuracy") is not None]
                if points:  # none when every run failed or diverged: nothing to draw
                    figures.save_svg(figures.params_vs_accuracy(points, view.threshold), assets / figure)
                    entry["figure"] = f"assets/{figure}"
                entry["measured"] = measured
                view_facts[view.kind] = measured
            elif isinstance(view, OverlayView) and section_facts:
                histories = {e.name: by_name[e.name].entry.result["history"]  # type: ignore[union-attr]
                             for e in section.experiments if e.name in classifiers}
                figs = []
                for metric in view.metrics:
                    name = f"{section.slug}-overlay-{metric}.svg"
                    figures.save_svg(figures.overlay(histories, metric), assets / name)
                    figs.append({"metric": metric, "figure": f"assets/{name}"})
                entry.update(figures=figs)
            elif isinstance(view, ConvergenceView):
                names = [e.name for e in section.experiments] + list(view.compare)
                measured = analysis.convergence([facts[n] for n in names if n in classifiers], view.tolerance)
                entry.update(measured=measured)
                view_facts[view.kind] = measured
            elif isinstance(view, MisclassifiedView) and view.run in facts:
                p = by_name[view.run]
                assert p.entry is not None
                miss = p.entry.result["misclassified"]
                images = p.entry.arrays().get("misclassified_images")
                if images is not None and len(images):
                    figures.save_svg(figures.misclassified_grid(images, miss["true"], miss["predicted"],
                                                                miss["confidence"], view.count),
                                     assets / figure)
                    entry.update(figure=f"assets/{figure}")
                entry.update(run=view.run, count=min(view.count, miss["count"]), total=miss["count"],
                             of=miss["total"])
            elif isinstance(view, ModeCollapseView) and (view.run, view.classifier) in session.measures:
                measured_entry = session.measures[(view.run, view.classifier)]
                gan_entry = by_name[view.run].entry
                assert gan_entry is not None
                judged = measured_entry.arrays()
                measured = analysis.mode_collapse(
                    measured_entry.result["epochs"], judged["predicted"], judged["confidence"],
                    gan_entry.arrays()["samples"], session.data.x_val, view.present_share, view.diversity_samples)
                measured.update(run=view.run, classifier=view.classifier,
                                classifier_accuracy=facts[view.classifier].get("val_accuracy"))
                figures.save_svg(figures.mode_collapse(measured["rows"], view.classifier), assets / figure)
                entry.update(measured=measured, figure=f"assets/{figure}")
                view_facts.setdefault(view.kind, {})[view.run] = measured  # one per GAN run
            elif isinstance(view, ModeCollapseView):
                missing = [n for n in (view.run, view.classifier) if by_name[n].entry is None]
                gan_entry = by_name[view.run].entry
                no_epoch = gan_entry is not None and not gan_entry.result["history"].get("epoch")
                judge_entry = by_name[view.classifier].entry
                judge_failed = judge_entry is not None and judge_entry.result.get("status") != "ok"
                entry.update(waiting=missing, no_epoch=no_epoch, judge_failed=judge_failed, run=view.run,
                             classifier=view.classifier)
            views.append(entry)

        context = {"runs": facts, "section": {"number": section.number, "title": section.title,
                                                "views": view_facts},
                   "project": {"title": session.project.title, "data": session.data.name}}
        known = declared + ["runs", "section", "project", "views"] + sorted(
            {k for f in facts.values() for k in f})
        quotes: list[str] = []
        try:
            html, warning = render_commentary(section.commentary, context, known, quotes)
        except UnknownPlaceholder as exc:
            # A name that would exist once every run has a result is a gap, not a typo.
            expected = set(by_name) | {v.kind for v in section.views}
            if exc.name in expected and any(p.entry is None for p in session.planned):
                where = f"{exc.file}:{exc.line}" if exc.line else f"{exc.file}"
                named = by_name.get(exc.name)
                gap = ("has no result for its current configuration (" + "; ".join(named.reasons) + ")"
                       if named is not None and named.state == "stale" else "has no result yet")
                html, warning = None, (f"{where}: placeholder {exc.name!r} {gap}; "
                                       f"run `{rebuild_command(session)}` to fill this slot")
            else:
                raise
        stale = None
        if html is not None:
            source = section.commentary.read_text(encoding="utf-8")
            text = check.text_hash(source)
            slot_key = check.slot_key(section.number, section.commentary, session.project.experiments_dir)
            stale = check.quote_changes(recorded.get(slot_key), text, quotes)
            session.slots[slot_key] = {"text": text, "quotes": quotes, "section": section.number,
                                       "stale": bool(stale)}
            if stale:
                warning = (f"{section.commentary}: written for earlier results (" + check.some_changes(stale)
                           + f"); edit it, or run `reportgen check --accept {section.number}` if it still holds")
        if warning:
            # As the project's own files are named in its README and errors: from its folder, so the
            # report handed in does not carry the author's home directory.
            warning = warning.replace(f"{session.project.root}{os.sep}", "")
            warnings.append(warning)
        attachment = _attachment(section.attach, assets, section.slug) if section.attach else None
        sections.append({"number": section.number, "title": section.title, "slug": section.slug,
                         "attachment": attachment,
                         "anchor": "sec-" + section.number.replace(".", "-"),
                         "commentary": html, "commentary_warning": warning, "stale": stale,
                         "experiment_names": [e.name for e in section.experiments], "view_facts": view_facts,
                         "commentary_file": section.commentary.name, "commentary_path": str(section.commentary),
                         "experiments": experiments, "views": views})

    devices = sorted({f"{p.entry.result['device']['name']} ({p.entry.result['backend']})"
                      for p in session.planned if p.entry is not None})
    precisions = {p.exp.name: p.entry.result.get("precision", "float32")
                  for p in session.planned if p.entry is not None}
    context = {
        "project": {"title": session.project.title, "author": session.project.author,
                    "profile": session.project.profile},
        "data": session.data.summary(),
        "devices": devices,
        "precision": _precision_line(precisions),
        "tool_version": __version__,
        "date": dt.date.today().isoformat(),
        "sections": sections,
        "runs": facts,
        "warnings": warnings,
        "rebuild": rebuild_command(session),  # the command that fills what is missing, in hints
        "stylesheet": "assets/style.css",
    }
    return context, warnings


def _pick_epochs(epochs: list[int], count: int = 5) -> list[int]:
    """First, last and evenly spaced epochs between: the rows of a sample-progress figure."""
    if len(epochs) <= count:
        return list(epochs)
    picks = {round(i * (len(epochs) - 1) / (count - 1)) for i in range(count)}
    return [epochs[i] for i in sorted(picks)]


def _gan_item(name: str, entry: store.Entry, assets: Path) -> dict[str, Any]:
    """A GAN run's figures (losses, sample grids) and its text log, copied beside the report."""
    from . import figures

    result = entry.result
    history = result["history"]
    samples = entry.arrays()["samples"]
    item: dict[str, Any] = {"result": result, "losses": None, "progress": None, "final_samples": None,
                            "log": None, "epoch_rows": _history_rows(history)}
    if history.get("epoch"):
        figures.save_svg(figures.gan_losses(name, history), assets / f"gan-losses-{name}.svg")
        item["losses"] = f"assets/gan-losses-{name}.svg"
    if len(samples):
        chosen = _pick_epochs(history["epoch"])
        rows = [samples[history["epoch"].index(e)] for e in chosen]
        figures.save_svg(figures.sample_progress(np.stack(rows), chosen), assets / f"gan-progress-{name}.svg")
        figures.save_svg(figures.sample_grid(samples[-1][:36]), assets / f"gan-samples-{name}.svg")
        item.update(progress=f"assets/gan-progress-{name}.svg", progress_epochs=chosen,
                    final_samples=f"assets/gan-samples-{name}.svg", final_epoch=history["epoch"][-1])
    log = entry.file("output.txt")
    if log is not None:
        shutil.copyfile(log, assets / f"{name}-output.txt")
        item["log"] = f"assets/{name}-output.txt"
    return item


def _attachment(path: Path, assets: Path, slug: str) -> dict[str, Any]:
    """Check an attached PDF and copy it beside the report; its pages are merged into the PDF."""
    from .render import attachment_pages

    pages = attachment_pages(path)  # checks size, encryption and readability first
    target = assets / "attachments" / f"{slug}-{path.name}"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, target)
    return {"file": path.name, "source": str(target), "href": f"assets/attachments/{target.name}", "pages": pages,
            "anchor": f"attach-{slug}"}


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


def _precision_line(precisions: dict[str, str]) -> str:
    """The title page's precision: one word when every run agrees, else which ran in bfloat16."""
    if not precisions:
        return "float32"
    mixed = sorted(name for name, p in precisions.items() if p != "float32")
    if not mixed:
        return "float32 throughout"
    if len(mixed) == len(precisions):
        return "mixed_bfloat16 throughout (bfloat16 compute, float32 weights and outputs)"
    return (f"float32, except mixed_bfloat16 (bfloat16 compute, float32 weights) in {len(mixed)} run(s): "
            + ", ".join(mixed))


def _distinct(dicts: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each distinct dict once, in a stable order (most builds ran on one device)."""
    unique = {json.dumps(d, sort_keys=True): d for d in dicts}
    return [unique[k] for k in sorted(unique)]


def manifest(session: Session, refusals: list[str], warnings: list[str]) -> dict[str, Any]:
    """What was built from what: enough for `reportgen compare` to put two builds side by side and
    for `reportgen verify` to re-run each experiment elsewhere (configuration, seeds, code and data
    fingerprints, versions) and check its metrics."""
    from .run import backend_name, versions

    results = [p.entry.result for p in session.planned if p.entry is not None]
    return {
        "tool": {"name": "reportgen", "version": __version__},
        "project": {"title": session.project.title, "author": session.project.author},
        "generated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "profile": session.project.profile,
        "limits": {"train": session.options.train_limit, "val": session.options.val_limit},
        "precision_override": session.options.precision,
        "backend": backend_name(),
        "versions": versions(),
        "devices": _distinct(r["device"] for r in results),
        "precisions": sorted({str(r.get("precision", "float32")) for r in results}),
        "data": session.data.summary(),
        "seeds": sorted({p.exp.model.seed for p in session.planned}),
        "determinism": _distinct(r.get("determinism", {}) for r in results),
        "git": _git(session.project.root),
        "experiments": [
            {"name": p.exp.name, "section": p.exp.section, "kind": p.exp.model.kind, "key": p.key, "state": p.state,
             "cache_hit": p.cache_hit, "train_seconds": round(p.seconds, 3) if not p.cache_hit else 0.0,
             "recorded_train_seconds": p.entry.result.get("train_seconds") if p.entry else None,
             "status": p.entry.result["status"] if p.entry else None, "error": p.error,
             "resumed": p.entry.result.get("resumed", []) if p.entry else [],
             "config": p.exp.config(), "inputs": p.inputs, "metrics": _metrics(p),
             "weights_sha256": p.entry.result.get("weights_sha256") if p.entry else None,
             "device": p.entry.result.get("device") if p.entry else None,
             "history": p.entry.result.get("history") if p.entry else None}
            for p in session.planned
        ],
        "warnings": warnings,
        # Each rendered commentary slot's text, hashed: `check` tells a report older than its prose.
        "commentary": {name: slot["text"] for name, slot in sorted(session.slots.items())},
        "refused": refusals,  # fetches refused and content the sanitizers took out, each with FILE:LINE
    }


def render_report(session: Session, pdf: bool = True, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Measure, draw figures, fill commentary, write report.html, report.pdf and manifest.json."""
    from . import render

    out = session.options.out
    render.check_output_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    store.sweep_temp_files(out)  # left by a build killed while writing
    store.sweep_temp_files(session.project.experiments_dir)
    # Figures are regenerated from results every time: stale ones from removed runs must go.
    shutil.rmtree(out / "assets", ignore_errors=True)
    measure(session, say)
    context, warnings = collect(session)
    removed: list[tuple[str, str]] = []
    html_path = render.html(context, session.project.root, out, removed)
    attachments = [s["attachment"] for s in context["sections"] if s["attachment"]]
    refused = render.pdf(html_path, out / "report.pdf", attachments) if pdf else []
    sources = sorted(p for d in (session.project.experiments_dir, session.project.root / "templates") if d.is_dir()
                     for p in d.rglob("*") if p.is_file() and not p.is_symlink()
                     and p.suffix in (".md", ".toml", ".j2", ".css", ".html"))
    refusals = render.locate(refused, sources, out) + render.locate_removed(removed, sources)
    record_slots(session)
    data = manifest(session, refusals, warnings)
    results = results_table(session)
    store.write_atomic(out / "results.json", json.dumps(results, indent=1).encode())
    store.write_atomic(out / "results.csv", results_csv(results).encode())
    store.write_atomic(out / "manifest.json", json.dumps(data, indent=1).encode())
    return {"html": html_path, "pdf": out / "report.pdf" if pdf else None, "warnings": warnings,
            "refusals": refusals, "manifest": data}


def record_slots(session: Session, accept: Iterable[str] = ()) -> list[str]:
    """Record what each current slot quotes, so a later build can tell a slot written for earlier
    results. Stale slots keep their old record unless their section is in `accept` (confirmed by the
    author as still true). Returns the stale slots so accepted."""
    accepted = set(accept)
    lock = check.read_lock(session.project.experiments_dir)
    key = check.lock_key(session.project.profile, session.data.name, session.data.fingerprint)
    chosen = {name: {"text": slot["text"], "quotes": slot["quotes"]} for name, slot in session.slots.items()
              if not slot["stale"] or slot["section"] in accepted}
    lock["slots"].setdefault(key, {}).update(chosen)
    check.write_lock(session.project.experiments_dir, lock)
    return sorted(name for name, slot in session.slots.items() if slot["stale"] and slot["section"] in accepted)


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
                     "status": p.entry.result.get("status") if p.entry else None, "key": p.key,
                     **_metrics(p), "config": p.exp.config(),
                     "history": p.entry.result.get("history") if p.entry else None})
    return {"schema": 1, "project": session.project.title, "profile": session.project.profile,
            "data": {"name": session.data.name, "fingerprint": session.data.fingerprint},
            "columns": list(RESULT_COLUMNS), "experiments": rows}


def _metrics(p: Planned) -> dict[str, Any]:
    """The metric columns of one experiment (None where it has no result or the kind lacks one)."""
    facts: dict[str, Any] = {}
    if p.entry is not None:
        analyse = analysis.gan_facts if p.exp.model.kind == "gan" else analysis.run_facts
        facts = analyse(p.entry.result, p.exp.config())
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

