"""Render the collected report to build/report.html and build/report.pdf.
The only stage that imports weasyprint; templates are sandboxed like commentary."""

from __future__ import annotations

import mimetypes
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from jinja2 import ChoiceLoader, FileSystemLoader

from reportgen.errors import RenderError
from reportgen.files import temp_name, write_atomic
from reportgen.report.commentary import environment, render_bounded
from reportgen.views.base import template_folders


def _default_templates() -> Path:
    """Installed, the defaults are the package's templates/ folder; run from a checkout (an editable
    install), they are the repository's top-level templates/, which is what installs there."""
    package = Path(__file__).resolve().parent.parent
    return package / "templates" if (package / "templates").is_dir() else package.parent / "templates"


PACKAGE_TEMPLATES = _default_templates()
REPORT_TEMPLATE = "report.html.j2"
STYLESHEET = "style.css"


def template_dirs(project_root: Path) -> list[Path]:
    """Project templates/ first (overrides), then the folders plug-in view kinds ship their
    partials in, then the defaults shipped in the package."""
    own = project_root / "templates"
    if own.is_symlink():
        raise RenderError("templates/ is a link to another folder; a project's templates must live in it", own)
    return [d for d in (own, *template_folders(), PACKAGE_TEMPLATES) if d.is_dir()]


def check_output_folder(build_dir: Path) -> None:
    """build/ and build/assets/ are written, emptied and served from: never through a link."""
    for folder in (build_dir, build_dir / "assets"):
        if folder.is_symlink():
            raise RenderError("is a link to another folder; remove it (reportgen writes and deletes here)", folder)


def _find(name: str, dirs: list[Path]) -> Path:
    for d in dirs:
        if (d / name).is_file():
            return d / name
    raise RenderError(f"template {name!r} not found in {[str(d) for d in dirs]}")


class ContainedLoader(FileSystemLoader):
    """A template loader that refuses files whose real path leaves its folder: a project's
    templates/ may not be a window onto the rest of the machine through symbolic links."""

    def get_source(self, environment: Any, template: str) -> tuple[str, str, Any]:
        source, filename, uptodate = super().get_source(environment, template)
        if not any(Path(filename).resolve().is_relative_to(Path(p).resolve()) for p in self.searchpath):
            raise RenderError(f"template {template!r} is a link to a file outside its templates folder; refused",
                              filename)
        return source, filename, uptodate


def _contained(path: Path, folder: Path) -> Path:
    if not path.resolve().is_relative_to(folder.resolve()):
        raise RenderError(f"a link to a file outside {folder}; refused", path)
    return path


# What a report page may contain once rendered: the elements and attributes reportgen's own templates
# and Markdown produce. Everything else a template override or commentary might smuggle in (script,
# style, link, iframe, object, svg, form, on* handlers, style rules other than layout) is dropped.
ALLOWED_TAGS = {
    "a", "article", "blockquote", "br", "caption", "code", "col", "colgroup", "dd", "del", "div", "dl", "dt",
    "em", "figcaption", "figure", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "img", "li", "nav", "ol", "p", "pre",
    "s", "section", "small", "span", "strong", "sub", "sup", "table", "tbody", "td", "tfoot", "th", "thead",
    "tr", "ul",
}
ALLOWED_ATTRIBUTES = {"*": {"class", "id", "title", "lang"}, "a": {"href"}, "img": {"src", "alt", "style"},
                      "td": {"colspan", "rowspan", "style"}, "th": {"colspan", "rowspan", "style"}, "ol": {"start"}}
ALLOWED_STYLES = {"text-align", "width", "height", "vertical-align"}


def _in_assets(url: str) -> bool:
    """A relative URL into the report's assets folder, with no way out of it."""
    path = unquote(url.split("#")[0].split("?")[0])
    return path.startswith("assets/") and ".." not in path and "\\" not in path and "//" not in path


def _url_allowed(tag: str, attribute: str, value: str) -> str | None:
    """Images come from the report's assets or inline data; links may also point at the web or
    within the page. Nothing else survives, so a browser opening report.html fetches nothing else."""
    if attribute not in ("src", "href"):
        return value
    url = value.strip()
    if tag == "img":
        return value if _in_assets(url) or url.lower().startswith("data:image/") else None
    scheme = urlsplit(url).scheme.lower()
    return value if _in_assets(url) or url.startswith("#") or scheme in ("http", "https", "mailto") else None


_CSS_IMPORT = re.compile(r"@import[^;]*;?", re.IGNORECASE)
_CSS_URL = re.compile(r"url\(\s*(['\"]?)(.*?)\1\s*\)", re.IGNORECASE | re.DOTALL)


def sanitize_css(css: str, removed: list[tuple[str, str]] | None = None) -> str:
    """A project's stylesheet without @import and without url()s that leave the assets folder,
    so neither WeasyPrint nor a browser opening the report fetches anything else. What is taken out
    is added to `removed` as (what, text to find it by)."""
    removed = removed if removed is not None else []

    def drop_import(match: re.Match[str]) -> str:
        removed.append(("an @import rule", f"{STYLESHEET}|{match.group(0)}"))
        return "/* an import was taken out */"

    def keep(match: re.Match[str]) -> str:
        target = match.group(2).strip()
        inside = (target.lower().startswith("data:image/") or
                  (not urlsplit(target).scheme and not target.startswith(("/", "\\")) and ".." not in target))
        if not inside:
            removed.append((f"url({target[:120]})", f"{STYLESHEET}|{target}"))
        return match.group(0) if inside else "none"

    return _CSS_URL.sub(keep, _CSS_IMPORT.sub(drop_import, css))


def disallowed(body: str) -> list[tuple[str, str]]:
    """What sanitize() will take out of a page body, as (what, text to find it by): elements outside
    the allowlist, event handlers, and addresses that lead out of the build."""
    from html.parser import HTMLParser

    found: list[tuple[str, str]] = []

    class Scan(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag not in ALLOWED_TAGS:
                found.append((f"a <{tag}> element", f"<{tag}"))
            for name, value in attrs:
                if name.startswith("on"):
                    found.append((f"an {name} handler", name))
                elif name in ("src", "href") and value is not None and _url_allowed(tag, name, value) is None:
                    found.append((f"the address {value[:120]!r}", f"{name}={value}"))

    Scan().feed(body)
    return list(dict.fromkeys(found))


def sanitize(document: str, title: str, about: dict[str, Any] | None = None) -> str:
    """The rendered page with its body cleaned by nh3 (an allowlist HTML sanitizer) and reportgen's own
    head: however a template override was written, no script, handler, external resource or embedded
    object survives into report.html or report.pdf."""
    import html as html_lib

    import nh3

    match = re.search(r"<body[^>]*>(.*)</body>", document, re.DOTALL | re.IGNORECASE)
    body = match.group(1) if match else document
    clean = nh3.clean(body, tags=ALLOWED_TAGS, attributes=ALLOWED_ATTRIBUTES, generic_attribute_prefixes={"data-"},
                      attribute_filter=_url_allowed, url_schemes={"http", "https", "mailto", "data"},
                      filter_style_properties=ALLOWED_STYLES, strip_comments=True, link_rel="noopener noreferrer")
    about = about or {}
    language = about.get("language") if re.fullmatch(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8})*", str(about.get("language"))) \
        else "en"
    # The PDF's metadata comes from these (WeasyPrint: title, author, description as Subject, keywords).
    meta = "".join(f'<meta name="{name}" content="{html_lib.escape(str(value))}">\n'
                   for name, value in (("author", about.get("author")), ("description", about.get("subject")),
                                       ("keywords", ", ".join(about.get("keywords") or [])))
                   if value)
    return (f'<!DOCTYPE html>\n<html lang="{language}">\n<head>\n<meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html_lib.escape(title)}</title>\n{meta}"
            f'<link rel="stylesheet" href="assets/{STYLESHEET}">\n</head>\n<body>\n{clean}\n</body>\n</html>\n')


def html(context: dict[str, Any], project_root: Path, build_dir: Path,
         removed: list[tuple[str, str]] | None = None) -> Path:
    """Write report.html (and its stylesheet into assets/) and return its path. What the sanitizers
    take out of the page and the stylesheet is added to `removed` as (what, text to find it by)."""
    removed = removed if removed is not None else []
    dirs = template_dirs(project_root)
    assets = build_dir / "assets"
    assets.mkdir(parents=True, exist_ok=True)
    style = _find(STYLESHEET, dirs)
    css = _contained(style, style.parent).read_text(encoding="utf-8", errors="replace")
    (assets / STYLESHEET).write_text(sanitize_css(css, removed) if style.parent != PACKAGE_TEMPLATES else css,
                                     encoding="utf-8")
    main = _find(REPORT_TEMPLATE, dirs)
    _contained(main, main.parent)
    env = environment(loader=ChoiceLoader([ContainedLoader([str(d) for d in dirs])]))
    page = render_bounded(env, main.read_text(encoding="utf-8"), str(main), context)
    body = re.search(r"<body[^>]*>(.*)</body>", page, re.DOTALL | re.IGNORECASE)
    removed.extend(disallowed(body.group(1) if body else page))
    text = sanitize(page, str(context["project"]["title"]), context["project"])
    out = build_dir / "report.html"
    write_atomic(out, text.encode())
    return out


_ASSET_REF = re.compile(r'(?P<attr>src|href)="(?P<url>assets/[^"]+)"')


def self_contained(html_path: Path) -> Path:
    """Rewrite report.html as one file: the stylesheet in a <style> element, every figure and
    attached PDF named under assets/ as a data: URL (an attachment's link downloads it under its
    own name). Only files inside the build's assets/ folder are read."""
    import base64
    import html as html_lib

    build_dir = html_path.parent
    root = (build_dir / "assets").resolve()
    text = html_path.read_text(encoding="utf-8")

    def read(url: str) -> bytes | None:
        path = (build_dir / unquote(url)).resolve()
        return path.read_bytes() if path.is_relative_to(root) and path.is_file() else None

    def stylesheet(match: re.Match[str]) -> str:
        data = read(match.group(1))
        if data is None:
            return match.group(0)
        css = data.decode("utf-8", errors="replace").replace("</", "<\\/")  # nothing can close the element
        return f"<style>\n{css}\n</style>"

    text = re.sub(r'<link rel="stylesheet" href="(assets/[^"]+)">', stylesheet, text)

    def inline(match: re.Match[str]) -> str:
        url = html_lib.unescape(match.group("url"))
        data = read(url)
        if data is None:
            return match.group(0)
        kind = mimetypes.guess_type(url)[0] or "application/octet-stream"
        encoded = f'{match.group("attr")}="data:{kind};base64,{base64.b64encode(data).decode()}"'
        if match.group("attr") == "href":  # a browser downloads a data: link rather than open it
            encoded += f' download="{html_lib.escape(Path(url).name)}"'
        return encoded

    write_atomic(html_path, _ASSET_REF.sub(inline, text).encode())
    return html_path


def make_fetcher(assets_dir: Path, refusals: list[tuple[str, str]]) -> Any:
    """A WeasyPrint URL fetcher that serves files inside assets_dir and nothing else: no network
    scheme, no path outside (`../`, symlinks, a sibling `assets_evil/`), no device files."""
    from weasyprint.urls import URLFetcher, URLFetcherResponse

    root = assets_dir.resolve()

    class AssetsOnly(URLFetcher):
        def __init__(self) -> None:
            super().__init__(allowed_protocols={"file", "data"}, allow_redirects=False)

        def fetch(self, url: str, headers: Any = None) -> Any:
            parts = urlsplit(url)
            if parts.scheme.lower() == "data":  # inline bytes (matplotlib embeds images so): nothing to leak
                return super().fetch(url, headers)
            if parts.scheme.lower() != "file" or parts.netloc not in ("", "localhost"):
                return self._refuse(url, "only files of the report's assets folder are served")
            path = Path(unquote(parts.path)).resolve()
            if not path.is_relative_to(root):
                return self._refuse(url, f"outside {root}")
            if not path.is_file():
                return self._refuse(url, "not a regular file")
            kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            return URLFetcherResponse(url, body=path.read_bytes(), headers={"Content-Type": kind})

        def _refuse(self, url: str, why: str) -> Any:
            refusals.append((url[:200], why))
            raise ValueError(f"refused: {why}")

    return AssetsOnly()


FIGURE_CACHE = ".figures"  # inside the build folder, kept between renders (views/figures.cached)
FIGURE_FORMS = Path(FIGURE_CACHE) / "forms"  # the figures as drawn for the PDF (figure_forms)
MAX_ATTACHMENT_PAGES = 500
MAX_ATTACHMENT_BYTES = 50 * 1024 * 1024


def attachment_pages(path: Path) -> int:
    """The page count of an attached PDF; RenderError naming the file when it cannot be used."""
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        size = path.stat().st_size
        if size > MAX_ATTACHMENT_BYTES:
            raise RenderError(f"attached PDF is {size / 2**20:.0f} MiB; at most "
                              f"{MAX_ATTACHMENT_BYTES // 2**20} MiB is accepted", path)
        reader = PdfReader(path)
        if reader.is_encrypted:
            raise RenderError("attached PDF is encrypted; attach an unprotected copy", path)
        pages = len(reader.pages)
    except RenderError:
        raise
    except (OSError, PyPdfError, ValueError, KeyError, TypeError) as exc:
        raise RenderError(f"attached file is not a readable PDF: {type(exc).__name__}: {exc}", path) from None
    if pages == 0 or pages > MAX_ATTACHMENT_PAGES:
        raise RenderError(f"attached PDF has {pages} pages; expected 1 to {MAX_ATTACHMENT_PAGES}", path)
    return pages


def _first_place(forms: list[str], files: list[Path], accept: Any = None) -> str | None:
    """FILE:LINE of the first of `forms` (tried in order) written in one of `files`; `accept(text, at)`
    may turn down a match by its context."""
    texts = {}
    for file in files:
        try:
            texts[file] = file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
    for form in dict.fromkeys(f for f in forms if f):
        for file, text in texts.items():
            for found in re.finditer(re.escape(form), text):
                if accept is None or accept(form, text, found.start()):
                    return f"{file}:{text.count(chr(10), 0, found.start()) + 1}"
    return None


# Where a bare file name counts as the address: inside src=, href=, url( or a Markdown link target.
_ADDRESS_BEFORE = re.compile(r"(src|href)\s*=\s*['\"]?[^'\"\s>]*$|url\(\s*['\"]?[^)]*$|\]\([^)]*$")


def source_of(url: str, files: list[Path], build_dir: Path) -> str | None:
    """FILE:LINE of the project file a refused URL was written in: as written, or as written relative
    to the build folder (the page resolved it against that), or None."""
    whole = [url, unquote(url)]
    forms = list(whole)
    parts = urlsplit(url)
    if parts.scheme == "file":
        path = Path(unquote(parts.path))
        forms.append(os.path.relpath(path, build_dir))
        if len(path.name) >= 6:  # a distinctive file name, where a src, href or url() names it
            forms.append(path.name)

    def accept(form: str, text: str, at: int) -> bool:
        return form in whole or _ADDRESS_BEFORE.search(text[max(0, at - 300):at]) is not None

    return _first_place(forms, files, accept)


def locate(refusals: list[tuple[str, str]], files: list[Path], build_dir: Path) -> list[str]:
    """Each refused fetch as one message, first naming where the URL was written."""
    out = []
    for url, why in refusals:
        where = source_of(url, files, build_dir)
        message = f"refused to fetch {url!r}: {why}"
        out.append(f"{where}: {message}" if where else f"{message} (not found as written in the project's files)")
    return out


def locate_removed(removed: list[tuple[str, str]], files: list[Path]) -> list[str]:
    """Each thing the sanitizers took out, as one message naming the file and line it came from."""
    out = []
    for what, needle in removed:
        # A needle is "name=value" for an attribute (found with either quote, or none), or
        # "style.css|text" for what came out of the stylesheet, or the text itself.
        candidates = files
        if needle.startswith(f"{STYLESHEET}|"):
            needle = needle.split("|", 1)[1]
            candidates = [f for f in files if f.name == STYLESHEET]
        forms = [needle]
        if "=" in needle and not needle.startswith("<"):
            name, value = needle.split("=", 1)
            forms = [f'{name}="{value}"', f"{name}='{value}'", needle] + ([value] if len(value) >= 6 else [])
        where = _first_place(forms, candidates)
        message = f"took {what} out of the report (not allowed in a report page)"
        out.append(f"{where}: {message}" if where else message)
    return out


def pdf(html_path: Path, out: Path, attachments: list[dict[str, Any]] | None = None,
        variant: str = "tagged", reuse_figures: bool = True) -> list[tuple[str, str]]:
    """Render the HTML to PDF with WeasyPrint, merge attached PDFs into the pages the layout kept
    for them, and return the fetches that were refused. Always tagged; `variant` "pdf/ua-1" or
    "pdf/a-3b" also declares that conformance (WeasyPrint's variants: XMP metadata, and for PDF/A
    the sRGB output intent and a document identifier). With `reuse_figures`, SVG figures are
    drawn once and kept in build/.figures/forms/ (figure_forms); without, WeasyPrint draws each
    in place, which gives the same pages more slowly."""
    import logging

    from weasyprint import HTML

    from reportgen.report import figure_forms

    # WeasyPrint logs every refused fetch and unsupported CSS property as a warning; we report
    # refusals ourselves, once each, with what was asked for.
    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    refusals: list[tuple[str, str]] = []
    build_dir = html_path.parent
    fetcher = make_fetcher(build_dir / "assets", refusals)
    tmp = temp_name(out)  # swept by the next build if this process dies
    images: dict[str, Any] = {}  # WeasyPrint's image cache, filled by the layout
    forms: dict[str, Path] = {}
    try:
        document = HTML(string=html_path.read_text(encoding="utf-8"),
                        base_url=build_dir.resolve().as_uri() + "/", url_fetcher=fetcher).render(cache=images)
        anchors = {name: i for i, page in enumerate(document.pages) for name in page.anchors}
        if reuse_figures:
            forms = figure_forms.install(images, build_dir / "assets", build_dir / FIGURE_FORMS, fetcher)
        # Tagged: headings, paragraphs, tables with header cells, figures with their alt text, the
        # document's language and title, for screen readers (WeasyPrint's own structure tree).
        document.write_pdf(tmp, pdf_tags=True, **({"pdf_variant": variant} if variant != "tagged" else {}))
    except Exception as exc:  # WeasyPrint raises many kinds; the user needs the message
        raise RenderError(f"PDF rendering failed: {type(exc).__name__}: {exc}", html_path) from exc
    if attachments or forms:
        try:
            _merge(tmp, anchors, attachments or [], forms)
        except Exception:
            tmp.unlink(missing_ok=True)
            raise
    tmp.replace(out)
    return sorted(set(refusals))


def attachment_text(path: Path, limit: int = 4000) -> list[str]:
    """Each page's text of an attached PDF (at most `limit` characters, whitespace folded), for the
    alt text that stands for the page in the tagged PDF; "" for a page without text (a scan)."""
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        pages = PdfReader(path).pages
        texts = []
        for page in pages:
            try:
                texts.append(" ".join(page.extract_text().split())[:limit])
            except (PyPdfError, ValueError, KeyError, TypeError):
                texts.append("")
        return texts
    except (OSError, PyPdfError, ValueError, KeyError, TypeError):
        return []


ATTACHMENT_MARGIN_PT = 14 / 25.4 * 72  # @page attachment's top and bottom margin in style.css (14 mm)


def _merge(path: Path, anchors: dict[str, int], attachments: list[dict[str, Any]],
           forms: dict[str, Path]) -> None:
    """Fill the figures' forms (figure_forms.fill), and draw each attached page onto the blank
    page the layout reserved for it (scaled to fit between the running header and the page
    number), so page numbers, the contents and the bookmark (set by the stylesheet) stay right.
    Only the pages' drawing is taken, as a form XObject: links, form fields and actions stay
    behind. The drawing is marked as an /Artifact: the tagged PDF carries the page's text as the
    alt text of the Figure that stands for it (attachment_text), so a screen reader reads it once
    and nothing is left untagged. With qpdf (pikepdf), in a few hundredths of a second; the
    file's header (1.7 for PDF/UA-1 and PDF/A-3b) and identifier are kept."""
    import pikepdf

    from reportgen.report import figure_forms

    with pikepdf.open(path, allow_overwriting_input=True) as pdf:
        if forms:
            try:
                figure_forms.fill(pdf, forms)
            except (pikepdf.PdfError, ValueError, KeyError, TypeError, OSError) as exc:
                raise RenderError(f"figures could not be placed: {type(exc).__name__}: {exc}", path) from None
        for attachment in attachments:
            try:
                with pikepdf.open(attachment["source"]) as source:
                    for i, page in enumerate(source.pages):
                        target_index = anchors.get(f"{attachment['anchor']}-{i}")
                        if target_index is None:
                            raise RenderError(f"the report template kept no page for page {i + 1} of the attachment "
                                              f"(expected an element with id {attachment['anchor']}-{i})",
                                              attachment["source"])
                        box = page.cropbox  # what a viewer shows; the media box may be larger
                        if float(box[2]) - float(box[0]) <= 0 or float(box[3]) - float(box[1]) <= 0:
                            raise RenderError(f"page {i + 1} of the attachment has an empty page box",
                                              attachment["source"])
                        form = pdf.copy_foreign(page.as_form_xobject())
                        form.write(b"/Artifact BMC\n" + form.read_bytes() + b"\nEMC\n")
                        target = pdf.pages[target_index]
                        media = [float(v) for v in target.mediabox]
                        target.add_overlay(form, pikepdf.Rectangle(media[0], media[1] + ATTACHMENT_MARGIN_PT,
                                                                   media[2], media[3] - ATTACHMENT_MARGIN_PT))
            except RenderError:
                raise
            except (pikepdf.PdfError, ValueError, KeyError, TypeError, OSError) as exc:
                raise RenderError(f"attached PDF could not be merged: {type(exc).__name__}: {exc}",
                                  attachment["source"]) from None
        pdf.save(path)


COMPARE_TEMPLATE = "compare.html.j2"


def compare_page(context: dict[str, Any], out: Path) -> Path:
    """Write `reportgen compare --html`: one self-contained page (styles and figures inline)."""
    env = environment(loader=FileSystemLoader(str(PACKAGE_TEMPLATES)))
    main = PACKAGE_TEMPLATES / COMPARE_TEMPLATE
    text = render_bounded(env, main.read_text(encoding="utf-8"), str(main), context)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, text.encode())
    return out


