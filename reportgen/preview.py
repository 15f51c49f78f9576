"""`reportgen preview`: the report served on localhost, rebuilt when the project's files change, and
reloaded in the browser when it is.

Built on watchfiles (file events from the operating system, through Rust's notify: no polling),
Starlette (the HTTP routes and a server-sent-events stream that tells the page to reload) and
uvicorn (the server) - the stack sphinx-autobuild uses for the same job. The page on disk is the
report as a build writes it; the preview's bar, banners and reload script are added only as it is
served."""

from __future__ import annotations

import asyncio
import html
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from reportgen.errors import ReportgenError
from reportgen.pipeline import open_session, render_report, stale_runs
from reportgen.project.settings import Options
from reportgen.report import render
from reportgen.report.freshness import FIGURE_CACHE

EVENTS = "/__reportgen/events"


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (0: a free port), or a ReportgenError saying why not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if port and exc.errno in (98, 48, 10048):  # EADDRINUSE on Linux, macOS, Windows
            raise ReportgenError(f"port {port} on {host} is in use; choose another with --port, or leave it "
                                 "out for a free one") from None
        raise ReportgenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(64)
    sock.setblocking(False)
    return sock


class Preview:
    """The state the server shows: the last good report, the error of the last edit if it failed,
    the runs without a result, and a version that moves on with every rebuild."""

    def __init__(self, options: Options, train: bool = False, say: Callable[[str], None] = print) -> None:
        self.options = options
        self.train = train
        self.say = say
        self.version = 0  # the page's: a change tells open pages to reload
        self.pdf_note = "not yet drawn"
        self.pdf_version = 0
        self.error: str | None = None
        self.stale: list[str] = []
        self.stop = threading.Event()
        self._pdf_wanted = threading.Event()
        self._attachments: list[dict[str, Any]] = []
        self._rebuild_lock = threading.Lock()
        self._training: subprocess.Popen[bytes] | None = None
        self.threads: list[threading.Thread] = []

    @property
    def out(self) -> Path:
        return self.options.out

    @property
    def has_report(self) -> bool:
        return (self.out / "report.html").is_file()

    # --- rebuilding ------------------------------------------------------------------------------

    def rebuild(self) -> None:
        """Render the page from the project as it is now (never training here); on a bad edit keep
        the last good report and show the error instead."""
        with self._rebuild_lock:
            started = time.perf_counter()
            try:
                session = open_session(self.options, say=lambda _message: None)
                self.stale = [p.exp.name for p in stale_runs(session)]
                outcome = render_report(session, pdf=False, say=lambda _message: None)
            except ReportgenError as exc:
                self.error = str(exc).replace(f"{self.options.root}/", "")
                self.say(f"Error (the page keeps the last good report): {self.error}")
            else:
                self.error = None
                self._attachments = outcome["attachments"]
                self.say(f"Rebuilt in {time.perf_counter() - started:.1f} s"
                         + (f"; {len(self.stale)} run(s) without a result" if self.stale else ""))
                self._pdf_wanted.set()
                if self.stale and self.train:
                    self._start_training()
            self.version += 1

    def _start_training(self) -> None:
        """Train the stale runs in a process of their own (`reportgen run`); each result that lands
        in the cache is a change the watcher sees, and the page is rebuilt with it."""
        if self._training is not None and self._training.poll() is None:
            return
        log = (self.out / "preview-training.log").open("ab")
        profile = "--quick" if self.options.profile == "quick" else "--full"
        command = [sys.executable, "-m", "reportgen", "run", "-C", str(self.options.root), profile,
                   "--cache-dir", str(self.options.cache_root)]
        # Trained as the report's runs were (the last build's limits and precision), so that the
        # results land under the keys this page looks for.
        for flag, value in (("--limit-train", self.options.train_limit), ("--limit-val", self.options.val_limit),
                            ("--precision", self.options.precision), ("--data-file", self.options.data_file)):
            if value is not None:
                command += [flag, str(value)]
        self._training = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.say(f"Training {len(self.stale)} run(s) in the background: {', '.join(self.stale)} "
                 f"(log: {self.out / 'preview-training.log'})")

    def _pdf_worker(self) -> None:
        """Draw report.pdf after each rebuild of the page, one at a time; a rebuild during one asks
        for another. The PDF is written to a temporary name and renamed, so it is never half there."""
        while not self.stop.is_set():
            if not self._pdf_wanted.wait(0.2):
                continue
            self._pdf_wanted.clear()
            self.pdf_note = "updating"
            self.pdf_version += 1
            try:
                render.pdf(self.out / "report.html", self.out / "report.pdf", self._attachments,
                           self.options.pdf_variant)
            except ReportgenError as exc:
                self.pdf_note = f"failed: {exc}"
            else:
                self.pdf_note = "updated " + time.strftime("%H:%M:%S")
            self.pdf_version += 1

    def _watch(self, paths: list[Path]) -> None:
        import watchfiles

        def relevant(_change: Any, path: str) -> bool:
            name = Path(path).name
            # The build's own writes (the commentary lock, temporary files) are not edits.
            return not (name.startswith(".") or name.endswith(".tmp") or name == "commentary.lock.json"
                        or "__pycache__" in path)

        for _changes in watchfiles.watch(*paths, watch_filter=relevant, stop_event=self.stop, debounce=150,
                                         step=50, yield_on_timeout=False, raise_interrupt=False):
            self.rebuild()

    def start(self) -> None:
        """The first build, then the watcher and the PDF worker in background threads."""
        self.rebuild()
        watched = [p for p in (self.options.root / "experiments", self.options.root / "templates") if p.is_dir()]
        if self.train:
            results = self.options.cache_root / "results"
            results.mkdir(parents=True, exist_ok=True)
            watched.append(results)
        for target, args in ((self._watch, (watched,)), (self._pdf_worker, ())):
            thread = threading.Thread(target=target, args=args, daemon=True)
            thread.start()
            self.threads.append(thread)

    def close(self) -> None:
        """Stop watching and training; let a PDF being drawn finish (it lands whole or not at all)."""
        self.stop.set()
        if self._training is not None and self._training.poll() is None:
            self._training.terminate()
            self._training.wait(30)
        for thread in self.threads:
            thread.join(15)

    # --- serving ------------------------------------------------------------------------------------

    def decorate(self, page: str) -> str:
        """The served page: the report with the preview's bar, its banners and the reload script."""
        bar = (f'<div id="reportgen-preview" style="position:sticky;top:0;z-index:9;background:#1f3b57;color:#fff;'
               f'font:13px sans-serif;padding:4px 10px">Live preview &middot; <a style="color:#fff" '
               f'href="/report.pdf">PDF</a> <span id="reportgen-pdf">{html.escape(self.pdf_note)}</span></div>')
        banners = ""
        if self.error:
            banners += ('<div id="reportgen-error" role="alert" style="border:2px solid #b00;background:#fff0f0;'
                        'padding:8px 12px;margin:8px 0;font:14px sans-serif"><strong>The last edit could not be '
                        'built.</strong> The page below is the last good report.<pre style="white-space:pre-wrap">'
                        f"{html.escape(self.error)}</pre></div>")
        if self.stale:
            command = ("training in the background" if self.train else
                       f"run <code>reportgen build{' --quick' if self.options.profile == 'quick' else ''}</code> "
                       "to train them, or preview with <code>--train</code>")
            banners += ('<div id="reportgen-stale" style="border:2px solid #c80;background:#fff8e6;padding:8px 12px;'
                        f'margin:8px 0;font:14px sans-serif">{len(self.stale)} run(s) have no result for their '
                        f"current settings: {html.escape(', '.join(self.stale))}; {command}.</div>")
        script = (f'<script>(() => {{ const events = new EventSource("{EVENTS}?v={self.version}");'
                  'events.addEventListener("reload", () => location.reload());'
                  'events.addEventListener("pdf", e => { document.getElementById("reportgen-pdf").textContent = '
                  "e.data; }); })();</script>")
        head, marker, rest = page.partition("<body>")
        if not marker:
            return bar + banners + page + script
        return head + marker + "\n" + bar + banners + rest.replace("</body>", script + "</body>", 1)

    def placeholder(self) -> str:
        """The page while there is no good report yet: the error, and the reload script."""
        return self.decorate("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>reportgen "
                             "preview</title></head><body><p>No report yet.</p></body></html>")

    async def events(self, seen: int) -> AsyncIterator[str]:
        """Server-sent events: "reload" when the page was rebuilt after version `seen`, "pdf" with
        the PDF's state when it changes."""
        pdf_seen = -1
        while not self.stop.is_set():
            if self.version != seen:
                yield f"event: reload\ndata: {self.version}\n\n"
                return
            if self.pdf_version != pdf_seen:
                pdf_seen = self.pdf_version
                yield f"event: pdf\ndata: {self.pdf_note}\n\n"
            await asyncio.sleep(0.1)

    def app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import (
            FileResponse,
            HTMLResponse,
            PlainTextResponse,
            RedirectResponse,
            Response,
            StreamingResponse,
        )
        from starlette.routing import Route

        root = self.out.resolve()

        async def index(_request: Request) -> Response:
            return RedirectResponse("/report.html")

        async def events(request: Request) -> Response:
            try:
                seen = int(request.query_params.get("v", "-1"))
            except ValueError:
                seen = -1
            return StreamingResponse(self.events(seen), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-store"})

        async def build_file(request: Request) -> Response:
            relative = request.path_params["path"]
            if relative == "report.html":
                if not self.has_report:
                    return HTMLResponse(self.placeholder(), headers={"Cache-Control": "no-store"})
                page = (root / "report.html").read_text(encoding="utf-8")
                return HTMLResponse(self.decorate(page), headers={"Cache-Control": "no-store"})
            path = (root / relative).resolve()
            # Only the build's own files: nothing outside it (../, symlinks), no hidden cache folder.
            if (not path.is_relative_to(root) or not path.is_file()
                    or any(part.startswith(".") for part in path.relative_to(root).parts)
                    or path.relative_to(root).parts[0] == FIGURE_CACHE):
                return PlainTextResponse("Not found", status_code=404)
            return FileResponse(path, headers={"Cache-Control": "no-store"})

        return Starlette(routes=[Route("/", index), Route(EVENTS, events), Route("/{path:path}", build_file)])


def serve(preview: Preview, sock: socket.socket) -> None:
    """Serve until Ctrl-C (or SIGTERM), then stop the watcher, the PDF worker and any training."""
    import uvicorn

    config = uvicorn.Config(preview.app(), log_level="warning", lifespan="off", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        preview.close()
