"""The report's SVG figures in the PDF, drawn once and reused.

Drawing matplotlib's SVGs is a third of WeasyPrint's time on a report with many figures, and a
commentary edit changes none of them. So WeasyPrint lays the page out with the real SVG (the same
intrinsic size, so the same layout), but where it would draw the figure it draws a form XObject by
name; after WeasyPrint wrote the file, the form is filled with the figure as WeasyPrint drew it on
a page of its own, kept in build/.figures/forms/ under the hash of the SVG's bytes. The drawing
sits inside the Figure element's marked content, so the tagged PDF is unchanged, and it is the same
vector drawing a direct render gives (tests compare the two page by page)."""

from __future__ import annotations

import functools
import hashlib
import html
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from reportgen.files import sweep_temp_files, temp_name

_NAME = "RgFigure"  # XObject names WeasyPrint's own never take
_USE = b"/" + _NAME.encode() + rb"(\d+)\s+Do"


def _draw_by_name(name: str, stream: Any, width: float, height: float, _style: Any) -> None:
    """In place of SVGImage.draw: the form (a unit square, y up) stretched over the box (y down)."""
    stream.push_state()
    stream.transform(a=width, d=-height, f=height)
    stream.draw_x_object(name)
    stream.pop_state()


def install(images: dict[str, Any], assets: Path, folder: Path, fetcher: Any) -> dict[str, Path]:
    """Make each SVG figure from `assets` (or a data: address, as formulas are) in WeasyPrint's
    image cache `images` (filled by a render's layout) draw a named form instead; draw the figures
    not yet in `folder` (one WeasyPrint document, a page each) and drop those this report no
    longer uses. Returns the form names with the one-page PDF that fills each, for `fill` after
    write_pdf."""
    from weasyprint import __version__
    from weasyprint.images import SVGImage

    folder.mkdir(parents=True, exist_ok=True)
    sweep_temp_files(folder)  # left by a render that died while drawing
    root = assets.resolve()
    forms: dict[str, Path] = {}
    missing: dict[str, tuple[str, float, float]] = {}
    for url, image in images.items():
        if not isinstance(image, SVGImage):
            continue
        parts = urlsplit(url)
        if parts.scheme == "data":  # a formula: the SVG is in the address
            source = url.encode()
        else:
            path = Path(unquote(parts.path)).resolve() if parts.scheme == "file" else None
            if path is None or not path.is_relative_to(root) or not path.is_file():
                continue
            source = path.read_bytes()
        width, height, _ratio = image.get_intrinsic_size(1, 16)
        if not width or not height:
            continue  # sized by its box alone: left to WeasyPrint
        key = hashlib.sha256(source + __version__.encode()).hexdigest()[:40]
        name = f"{_NAME}{len(forms)}"
        forms[name] = folder / f"{key}.pdf"
        image.draw = functools.partial(_draw_by_name, name)
        if not forms[name].exists():
            missing[key] = (url, width, height)
    for old in folder.glob("*.pdf"):
        if old not in forms.values():
            old.unlink(missing_ok=True)
    if missing:
        _draw_pages(missing, folder, fetcher)
    return forms


def _draw_pages(missing: dict[str, tuple[str, float, float]], folder: Path, fetcher: Any) -> None:
    """Draw each figure on a page of its size (CSS px), in one document, and keep each page."""
    import pikepdf
    from weasyprint import HTML

    rules, body = [], []
    for i, (url, width, height) in enumerate(missing.values()):
        rules.append(f"@page f{i} {{ size: {width!r}px {height!r}px; margin: 0 }} "
                     f".f{i} {{ page: f{i}; width: {width!r}px; height: {height!r}px }}")
        body.append(f'<img class="f{i}" src="{html.escape(url)}" alt="">')
    source = ("<!doctype html><style>html, body { margin: 0 } img { display: block } "
              + " ".join(rules) + "</style>" + "".join(body))
    sheet = folder / "drawing.pdf"
    tmp = temp_name(sheet)
    try:
        HTML(string=source, url_fetcher=fetcher).write_pdf(tmp)
        with pikepdf.open(tmp) as drawn:
            if len(drawn.pages) != len(missing):
                raise ValueError(f"{len(drawn.pages)} page(s) drawn for {len(missing)} figure(s)")
            for key, page in zip(missing, drawn.pages, strict=True):
                single = pikepdf.new()
                single.pages.append(page)
                target = folder / f"{key}.pdf"
                part = temp_name(target)
                single.save(part)
                part.replace(target)
    finally:
        tmp.unlink(missing_ok=True)


def fill(pdf: Any, forms: dict[str, Path]) -> None:
    """Put each named form into the resources of every content stream (page or form) that draws
    it, filled with its figure's page scaled to the unit square."""
    import re

    import pikepdf

    made: dict[str, Any] = {}

    def form(name: str) -> Any:
        if name not in made:
            with pikepdf.open(forms[name]) as source:
                copied = pdf.copy_foreign(source.pages[0].as_form_xobject())
            x0, y0, x1, y1 = (float(v) for v in copied.BBox)
            copied.Matrix = pikepdf.Array([1 / (x1 - x0), 0, 0, 1 / (y1 - y0), -x0 / (x1 - x0), -y0 / (y1 - y0)])
            made[name] = copied
        return made[name]

    def visit(holder: Any, content: bytes, seen: set[tuple[int, int]]) -> None:
        names = {f"{_NAME}{n.decode()}" for n in re.findall(_USE, content)}
        resources = holder.get("/Resources")
        if names:
            if resources is None:
                holder.Resources = resources = pikepdf.Dictionary()
            if "/XObject" not in resources:
                resources.XObject = pikepdf.Dictionary()
            for name in names:
                if name in forms:
                    resources.XObject[f"/{name}"] = form(name)
        if resources is not None and "/XObject" in resources:  # groups WeasyPrint made (opacity, transforms)
            for key, child in list(resources.XObject.items()):
                if key.startswith(f"/{_NAME}") or child.get("/Subtype") != "/Form" or child.objgen in seen:
                    continue
                seen.add(child.objgen)
                visit(child, child.read_bytes(), seen)

    seen: set[tuple[int, int]] = set()
    for page in pdf.pages:
        page.contents_coalesce()
        visit(page.obj, page.obj.Contents.read_bytes(), seen)
