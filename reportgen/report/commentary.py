"""Commentary: the author's Markdown with placeholders bound to results, filled in a sandbox.

TeX-style math (`$...$`, `$$...$$`) is drawn by formulas.py.
Placeholders are Jinja expressions such as `{{ runs["relu-30x100"].val_accuracy | pct }}`,
evaluated in an ImmutableSandboxedEnvironment with StrictUndefined and autoescaping, so a typo
fails the build naming file, line and name, and commentary cannot reach Python internals.
The filled Markdown is then rendered with raw HTML switched off.
"""

from __future__ import annotations

import contextlib
import difflib
import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, UndefinedError, nodes, pass_context
from jinja2.compiler import CodeGenerator, Frame
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from markupsafe import Markup, escape

from reportgen.errors import RenderError
from reportgen.project import formats
from reportgen.report import formulas
from reportgen.views import analysis

MAX_OUTPUT_CHARS = 5_000_000  # no honest report section is larger; a runaway template is
MAX_SECONDS = 20.0
MAX_SEQUENCE = 1_000_000  # largest string or list a template may build with * or +


# --- filters placeholders use to format numbers -------------------------------------------------


@pass_context
def pct(context: Any, value: Any, digits: int | None = None) -> str:
    """0.9701 -> '97.01%', with the project's `percent_digits` unless the placeholder gives its own."""
    if digits is None:
        digits = context.get("percent_digits", formats.PERCENT_DIGITS)
    return formats.pct(value, digits)


share, num, fixed = formats.share, formats.num, formats.fixed


@pass_context
def spread(context: Any, value: Any, percent: bool = True) -> str:
    """`{{ runs["x"].val_accuracy | spread }}`: mean ± standard deviation (95% CI) over the run's
    repeats, with the project's `percent_digits`; `spread(false)` for a loss."""
    return formats.spread(value, context.get("percent_digits", formats.PERCENT_DIGITS), percent)


class Timing(str):
    """What the `seconds` filter prints. A duration differs from one training to the next of the
    same run, so a slot quoting one is not, for that, written for other results."""


DURATION = re.compile(r"\d+\.\d s")  # the form `seconds` prints, to tell one in an older record


def seconds(value: Any) -> str:
    """12.345 -> '12.3 s'."""
    return Timing(f"{float(value):.1f} s")


class UnknownPlaceholder(RenderError):
    """A placeholder names something the results do not have (often a typo)."""

    def __init__(self, name: str, message: str, file: str, line: int | None):
        self.name = name
        super().__init__(message, file, line)


_HUGE_WIDTH = re.compile(r"\d{5,}|\*")  # a width or precision of 10,000 or more, or one given by argument


def _too_large(size: int) -> None:
    if size > MAX_SEQUENCE:
        raise SecurityError(f"a template may not build a value of {size:,} items")


class BoundedCodeGenerator(CodeGenerator):
    """Template code whose `~` concatenations are size-checked: doubling a string in a loop stops
    at the bound instead of filling memory."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.bounded(")
        super().visit_Concat(node, frame)
        self.write(")")


class BoundedEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox, plus bounds on what builds huge values: 'a' * 10**9, `~` in a loop, '%0999999999d',
    '{:>999999999}'.format(), and the center, indent, replace, join and format filters."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})
    code_generator_class = BoundedCodeGenerator

    def bounded(self, value: Any) -> Any:
        _too_large(len(value))
        return value

    def wrap_str_format(self, value: Any) -> Any:
        wrapped = super().wrap_str_format(value)
        if wrapped is not None and any(_HUGE_WIDTH.search(spec) for spec in
                                       re.findall(r"\{[^{}]*?:([^{}]*)\}", str(value.__self__))):
            raise SecurityError("a format width or precision of 10,000 or more is refused")
        return wrapped

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int | float) and abs(right) > 64:
            raise SecurityError(f"exponent {right} is too large for a template")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(times, int):
                    if len(seq) * times > MAX_SEQUENCE:
                        raise SecurityError(f"a template may not build a value of {len(seq) * times:,} items")
        if operator == "+" and isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
            if len(left) + len(right) > MAX_SEQUENCE:
                raise SecurityError("a template may not build a value this large")
        if operator == "%" and isinstance(left, str):
            _check_percent_format(left)
        return super().call_binop(context, operator, left, right)


def _check_percent_format(text: str) -> None:
    for spec in re.findall(r"%[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?", text):
        if any(_HUGE_WIDTH.fullmatch(part) for part in spec if part):
            raise SecurityError("a format width or precision of 10,000 or more is refused")


def _bounded_filters(filters: dict[str, Any]) -> dict[str, Any]:
    """Jinja's filters that can multiply a value's size, checked before they run."""
    center, indent, replace, join, do_format = (filters[n] for n in ("center", "indent", "replace", "join",
                                                                     "format"))

    def bounded_center(value: Any, width: int = 80) -> Any:
        _too_large(int(width))
        return center(value, width)

    def bounded_indent(s: Any, width: Any = 4, *args: Any, **kwargs: Any) -> Any:
        _too_large((len(str(width)) if isinstance(width, str) else int(width)) * (str(s).count("\n") + 1))
        return indent(s, width, *args, **kwargs)

    def bounded_replace(eval_ctx: Any, s: Any, old: Any, new: Any, count: int | None = None) -> Any:
        text, old_s, new_s = str(s), str(old), str(new)
        hits = text.count(old_s) if old_s else len(text) + 1
        _too_large(len(text) + min(hits, count if count is not None else hits) * max(len(new_s) - len(old_s), 0))
        return replace(eval_ctx, s, old, new, count)

    def bounded_join(eval_ctx: Any, value: Any, d: str = "", attribute: Any = None) -> Any:
        items = list(value)
        _too_large(sum(len(str(i)) for i in items) + len(d) * len(items))
        return join(eval_ctx, items, d, attribute)

    def bounded_format(value: Any, *args: Any, **kwargs: Any) -> Any:
        _check_percent_format(str(value))
        return do_format(value, *args, **kwargs)

    wrappers: list[tuple[str, Any, Any]] = [("replace", bounded_replace, replace), ("join", bounded_join, join)]
    for name, wrapper, original in wrappers:
        wrapper.jinja_pass_arg = original.jinja_pass_arg  # both take the eval context first
        filters[name] = wrapper
    filters.update(center=bounded_center, indent=bounded_indent, format=bounded_format)
    return filters


def environment(loader: Any = None) -> BoundedEnvironment:
    env = BoundedEnvironment(undefined=StrictUndefined, autoescape=True, loader=loader,
                             keep_trailing_newline=True)
    env.filters.update(pct=pct, share=share, num=num, fixed=fixed, seconds=seconds, epoch_reaching=epoch_reaching,
                       runs_linked=runs_linked, spread=spread)
    _bounded_filters(env.filters)
    return env


@pass_context
def runs_linked(context: Any, text: Any) -> Markup:
    """`{{ caption | runs_linked }}`: the text escaped, with every run name that has an entry of its
    own (the report's `detailed` runs) linked to it and kept on one line."""
    names = context.get("detailed") or []
    escaped = str(escape(str(text)))
    if not names:
        return Markup(escaped)
    alternatives = "|".join(re.escape(str(escape(n))) for n in sorted(names, key=len, reverse=True))
    pattern = re.compile(r"(?<![\w.-])(" + alternatives + r")(?![\w-]|\.\w)")
    linked = pattern.sub(lambda m: f'<a class="run" href="#run-{m.group(1)}">{m.group(1)}</a>', escaped)
    return Markup(linked)


def epoch_reaching(run: Any, threshold: float, metric: str = "val_accuracy") -> int | None:
    """`{{ runs["x"] | epoch_reaching(0.95) }}`: the first epoch whose `metric` (default validation
    accuracy) reaches `threshold` (at or above it; at or below for a loss), None when none does:
    `{{ runs["x"] | epoch_reaching(0.95) or "no epoch" }}`."""
    history = run.get("history") if isinstance(run, dict) else None
    if not isinstance(history, dict) or metric not in history:
        known = sorted(history) if isinstance(history, dict) else []
        raise ValueError(f"epoch_reaching: the run has no per-epoch {metric!r}; it has {known}")
    return analysis.epoch_reaching(list(history[metric]), float(threshold), lower_is_better=metric.endswith("loss"))


@contextlib.contextmanager
def _time_limit(limit: float, what: str) -> Iterator[None]:
    """Stop Python-level runaway loops (nested range loops emit nothing to count) with SIGALRM."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def _expired(signum: int, frame: Any) -> None:
        raise TimeoutError(f"{what} took longer than {limit:.0f} s to render")

    previous = signal.signal(signal.SIGALRM, _expired)
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _template_line(tb: Any, filename: str) -> tuple[str, int | None]:
    """The template file and line of a runtime error: Jinja rewrites tracebacks to template lines.
    The deepest template frame wins, so an error inside an included template names that file."""
    where: tuple[str, int | None] = (filename, None)
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename
        if name == filename or (name.endswith(".j2") and Path(name).is_file()):
            where = (name, tb.tb_lineno)
        tb = tb.tb_next
    return where


def _undefined_name(message: str) -> str:
    quoted = re.findall(r"'([^']*)'", message)
    return quoted[-1] if quoted else message


def render_bounded(env: BoundedEnvironment, source: str, filename: str, context: dict[str, Any],
                   known_names: list[str] | None = None) -> str:
    """Render template source with size and time bounds; errors become RenderError(file, line)."""
    try:
        template = env.from_string(source)
    except TemplateSyntaxError as exc:
        raise RenderError(f"template syntax error: {exc.message}", filename, exc.lineno) from None
    template.filename = filename
    pieces: list[str] = []
    size = 0
    started = time.monotonic()
    try:
        with _time_limit(MAX_SECONDS, filename):
            for piece in template.generate(**context):
                size += len(piece)
                if size > MAX_OUTPUT_CHARS:
                    raise RenderError(f"output exceeds {MAX_OUTPUT_CHARS:,} characters; "
                                      "a template that large is runaway", filename)
                if time.monotonic() - started > MAX_SECONDS:
                    raise TimeoutError(f"{filename} took longer than {MAX_SECONDS:.0f} s to render")
                pieces.append(piece)
    except UndefinedError as exc:
        file, line = _template_line(exc.__traceback__, filename)
        name = _undefined_name(exc.message or "")
        hint = ""
        close = difflib.get_close_matches(name, known_names or [], n=1)
        if close and close[0] != name:
            hint = f"; did you mean {close[0]!r}?"
        raise UnknownPlaceholder(name, f"unknown placeholder {name!r} ({exc.message}){hint}",
                                 file, line) from None
    except SecurityError as exc:
        file, line = _template_line(exc.__traceback__, filename)
        raise RenderError(f"refused by the template sandbox: {exc}", file, line) from None
    except TimeoutError as exc:
        file, line = _template_line(exc.__traceback__, filename)
        raise RenderError(f"stopped: rendering took longer than {MAX_SECONDS:.0f} s (a runaway loop?)",
                          file, line) from None
    except TemplateError as exc:
        file, line = _template_line(exc.__traceback__, filename)
        raise RenderError(f"template error: {exc}", file, line) from None
    except (TypeError, ValueError, LookupError, AttributeError, ZeroDivisionError, OverflowError, RecursionError,
            MemoryError) as exc:
        file, line = _template_line(exc.__traceback__, filename)
        raise RenderError(f"{type(exc).__name__} while filling placeholders: {exc}", file, line) from None
    return "".join(pieces)


def markdown_to_html(text: str, file: str = "<commentary>") -> str:
    """CommonMark plus tables and $math$, raw HTML off; author headings shifted below the
    section heading. Unsupported math raises RenderError naming file and line."""
    from markdown_it import MarkdownIt


    md = MarkdownIt("commonmark", {"html": False, "typographer": True}).enable(["table", "replacements"])
    formulas.install(md)
    env: dict[str, Any] = {}
    tokens = md.parse(text, env)
    formulas.prepare(tokens, file)
    html = md.renderer.render(tokens, md.options, env)
    return re.sub(r"<(/?)h([1-4])>", lambda m: f"<{m[1]}h{min(int(m[2]) + 2, 6)}>", html)


def render_commentary(path: Path, context: dict[str, Any], known_names: list[str],
                      quotes: list[str] | None = None) -> tuple[Markup | None, str | None]:
    """(html, warning): html is None when the slot is missing or empty, with the warning why.
    `quotes`, when given, receives what each placeholder printed, in order, less the durations."""
    if not path.is_file():
        return None, f"{path}: commentary slot is missing (create it to write this section's text)"
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RenderError(f"cannot read commentary: {exc}", path) from None
    if not source.strip():
        return None, f"{path}: commentary slot is empty"
    env = environment()
    if quotes is not None:
        def record(value: Any) -> Any:
            if not isinstance(value, Timing):
                quotes.append(str(value))
            return value

        env.finalize = record
    filled = render_bounded(env, source, str(path), context, known_names)
    # Autoescaping made every value safe HTML text; Markdown keeps entities as they are.
    return Markup(markdown_to_html(filled, str(path))), None
