"""TeX-style math in commentary, drawn to vector images by matplotlib's mathtext (no LaTeX needed).

`$...$` is inline math and `$$...$$` display math, with Pandoc's rules for what counts as a
dollar delimiter (no space just inside `$`, no digit just after the closing one), so "costs 5$"
stays text. Each formula becomes an SVG image embedded as a data: URI, so the HTML and the PDF
show the same drawing and nothing is fetched. Syntax mathtext does not support fails the build
with the file and line.
"""

from __future__ import annotations

import base64
import functools
import html
import io
from typing import Any

from reportgen.errors import RenderError
from reportgen.views import figures

INLINE_POINTS = 10.5  # the report's body text size
DISPLAY_POINTS = 12.5
MAX_FORMULA_CHARS = 500  # a long one takes mathtext about half a second
MAX_FORMULAS = 200  # per commentary file
MAX_SECONDS = 20.0  # drawing every formula of one commentary file


@functools.cache
def _version() -> str:
    """What a formula's drawing depends on besides its TeX: this file and matplotlib's version."""
    import hashlib
    from importlib import metadata
    from pathlib import Path

    return hashlib.sha256(Path(__file__).read_bytes() + metadata.version("matplotlib").encode()).hexdigest()


@functools.lru_cache(maxsize=256)
def _svg(tex: str, points: float) -> tuple[str, float, float, float]:
    """(svg text, width, height, depth) in points for one formula; ValueError when unsupported."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import figure, font_manager, mathtext
    from matplotlib.backends import backend_svg

    prop = font_manager.FontProperties(size=points)
    width, height, depth, _, _ = mathtext.MathTextParser("path").parse(f"${tex}$", dpi=72, prop=prop)
    fig = figure.Figure(figsize=(max(width, 1) / 72.0, max(height, 1) / 72.0))
    fig.text(0, depth / height if height else 0, f"${tex}$", fontproperties=prop)
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "path", "svg.hashsalt": "reportgen-math"}):
        backend_svg.FigureCanvasSVG(fig).print_svg(buffer, metadata={"Date": None})
    return buffer.getvalue(), width, height, depth


def image(tex: str, display: bool, file: str, line: int | None) -> str:
    """The <img> for one formula; RenderError(file, line) when mathtext cannot draw it."""
    tex = tex.strip()
    if len(tex) > MAX_FORMULA_CHARS:
        raise RenderError(f"formula of {len(tex):,} characters is too long (at most {MAX_FORMULA_CHARS:,})",
                          file, line)
    if not tex:
        raise RenderError("empty formula ($$ with nothing between)", file, line)
    try:
        # Kept in the build's figure cache: a build whose formulas did not change draws none.
        svg, width, height, depth = figures.remembered("formula", _version(), _svg, tex,
                                                       DISPLAY_POINTS if display else INLINE_POINTS)
    except Exception as exc:  # mathtext raises ValueError, and pyparsing errors on odd input
        message = " ".join(str(exc).split())
        raise RenderError(f"math that mathtext cannot draw: ${tex}$ ({message}); "
                          "see matplotlib's mathtext documentation for what it supports", file, line) from None
    data = base64.b64encode(svg.encode()).decode()
    style = (f"width: {width:.2f}pt; height: {height:.2f}pt" +
             ("" if display else f"; vertical-align: -{depth:.2f}pt"))
    tag = (f'<img class="math" src="data:image/svg+xml;base64,{data}" alt="{html.escape(tex)}" '
           f'style="{style}">')
    return f'<div class="math-display">{tag}</div>\n' if display else tag


MATH_TOKENS = {"math_inline": False, "math_inline_double": True, "math_block": True,
               "math_block_label": True}


def prepare(tokens: list[Any], file: str) -> None:
    """Draw every formula of a parsed Markdown token stream into token.meta['html'], with the
    line of each formula for errors."""
    import time

    count = 0
    started = time.monotonic()
    for token in tokens:
        found = []
        if token.type in MATH_TOKENS:
            found.append((token, token.map[0] + 1 if token.map else None))
        searched = 0
        for child in token.children or []:
            if child.type in MATH_TOKENS:
                # The line of this formula: find its delimited text after the previous one.
                offset = token.content.find(child.markup + child.content, searched)
                searched = max(offset, searched) + 1
                line = token.map[0] + 1 + token.content[:max(offset, 0)].count("\n") if token.map else None
                found.append((child, line))
        for math_token, line in found:
            count += 1
            if count > MAX_FORMULAS:
                raise RenderError(f"more than {MAX_FORMULAS} formulas in one commentary file", file, line)
            if time.monotonic() - started > MAX_SECONDS:
                raise RenderError(f"stopped: drawing this file's formulas took longer than {MAX_SECONDS:.0f} s",
                                  file, line)
            math_token.meta["html"] = image(math_token.content, MATH_TOKENS[math_token.type], file, line)


def install(md: Any) -> None:
    """Teach a MarkdownIt instance the dollar syntax and to emit the prepared images."""
    from mdit_py_plugins.dollarmath import dollarmath_plugin

    md.use(dollarmath_plugin, allow_space=False, allow_digits=False, double_inline=True)

    def emit(self: Any, tokens: list[Any], idx: int, options: Any, env: Any) -> str:
        return str(tokens[idx].meta["html"])

    for name in MATH_TOKENS:
        md.add_render_rule(name, emit)
