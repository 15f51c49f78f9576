"""Hostile input: every payload of a corpus, placed in commentary, in a section template override
(and the project's stylesheet) and in a figure caption, is rendered into a real report. A canary
file with a random token sits outside the project; a loopback HTTP server counts the renderer's
network fetches; report.html and its stylesheet are scanned for anything a browser would load.

The figures (inputs tried, canary bytes found, fetches, embedded files, payloads executed,
refusals reported with file and line) are printed at the end of the test run."""

from __future__ import annotations

import http.server
import json
import re
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from tests.conftest import build_or_fail, copy_project, write_project

FIGURES: dict[str, int] = {}  # read by conftest.pytest_terminal_summary
LIMITS = ["--limit-train", "300", "--limit-val", "100"]
BOUND_SECONDS = 2.0  # the render time bound, lowered so a runaway loop costs the suite little

SECTION = """
number = "1"
title = "One net"

[[runs]]
name = "net"
kind = "mlp"
hidden_layers = [16]

[[views]]
kind = "misclassified"
run = "net"
count = 4
"""


class Server:
    """A loopback HTTP server that counts requests; /redirect sends the client to the canary."""

    def __init__(self, canary: Path):
        hits = self.hits = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                hits.append(self.path)
                self.send_response(302 if self.path.startswith("/redirect") else 200)
                self.send_header("Location", canary.as_uri())
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def setting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    outside = tmp_path_factory.mktemp("outside")
    token = "CANARY-" + uuid.uuid4().hex
    canary = outside / "canary.txt"
    canary.write_text(token + "\n")
    (outside / "canary.css").write_text(f'body::before {{ content: "{token}"; }}\n')
    server = Server(canary)
    built = write_project(tmp_path_factory.mktemp("p") / "project",
                          {"experiments/1-nets.toml": SECTION, "experiments/1-nets.md": "A net.\n"})
    build_or_fail(built, LIMITS)
    yield {"token": token, "canary": canary, "css": outside / "canary.css", "server": server, "built": built,
           "marker": outside / "executed"}
    server.httpd.shutdown()


def passive(s: dict) -> dict[str, str]:
    """Payloads that try to make the renderer fetch or embed something."""
    canary, port = s["canary"], s["server"].port
    up = "../" * 12 + str(canary).lstrip("/")
    return {
        "img file://": f'<img src="{canary.as_uri()}">',
        "img relative ../": f'<img src="{up}">',
        "css url()": f"<div style=\"background: url('{canary.as_uri()}')\">x</div>",
        "css @import": f'<style>@import url("{s["css"].as_uri()}");</style>',
        "link rel=attachment": f'<link rel="attachment" href="{canary.as_uri()}">',
        "svg image href": f'<svg><image href="{canary.as_uri()}" width="9" height="9"/></svg>',
        "svg data-uri image": ('<img src="data:image/svg+xml;utf8,<svg xmlns=\'http://www.w3.org/2000/svg\'>'
                               f'<image href=\'{canary.as_uri()}\' width=\'9\' height=\'9\'/></svg>">'),
        "@font-face": f'<style>@font-face {{ font-family: x; src: url("{canary.as_uri()}"); }}</style>',
        "metadata service": '<img src="http://169.254.169.254/latest/meta-data/iam/security-credentials/">',
        "redirect to file:": f'<img src="http://127.0.0.1:{port}/redirect">',
        "http fetch": f'<img src="http://127.0.0.1:{port}/pixel.png">',
        "/dev/urandom": '<img src="file:///dev/urandom">',
        "protocol-relative": '<img src="//evil.example/pixel.png">',
        "absolute path": '<img src="/etc/hostname">',
        "network share": '<img src="\\\\evil.example\\share\\pixel.png">',
        "script": "<script>document.write('PW' + 'NED')</script>",
        "on* attributes": '<p onclick="alert(1)" onmouseover="alert(2)">hover</p><img src=x onerror="alert(3)">',
        "iframe/object": f'<iframe src="{canary.as_uri()}"></iframe><object data="{canary.as_uri()}"></object>',
        "markdown image file:": f"![x]({canary.as_uri()})",
        "markdown image ../": f"![x]({up})",
        "markdown link file:": f"[x]({canary.as_uri()})",
        "markdown image http": f"![x](http://127.0.0.1:{port}/md.png)",
    }


def active(s: dict) -> dict[str, str]:
    """Payloads that try to run code in the template engine or exhaust it."""
    marker = s["marker"]
    return {
        "__class__ / __subclasses__": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "__base__ walk": "{{ ().__class__.__base__.__subclasses__()[0] }}",
        "|attr": "{{ (runs | attr('__class__')) }}",
        "format trick": "{{ '{0.__class__.__init__.__globals__}'.format(runs) }}",
        "cycler globals": f"{{{{ cycler.__init__.__globals__.os.popen('touch {marker}').read() }}}}",
        "string bomb": "{{ 'a' * 10**9 }}",
        "nested loops": "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}",
    }


def place(root: Path, location: str, payload: str, s: dict) -> Path:
    """Put a payload where a student could; returns the file it went into."""
    if location == "commentary":
        path = root / "experiments" / "1-nets.md"
        path.write_text("Intro line.\n\n" + payload + "\n")
    elif location == "template":
        path = root / "templates" / "sections" / "1-nets.html.j2"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text('<section id="{{ s.anchor }}"><h2>{{ s.title }}</h2>\n' + payload + "\n</section>\n")
        (root / "templates" / "style.css").write_text(
            f'@import url("{s["css"].as_uri()}");\n'
            f'@font-face {{ font-family: leak; src: url("{s["canary"].as_uri()}"); }}\n'
            f'body {{ font-family: leak; background: url("{s["canary"].as_uri()}"); }}\n'
            'h1 { background: url("http://169.254.169.254/latest/meta-data/"); }\n')
    else:
        path = root / "experiments" / "1-nets.toml"
        path.write_text(SECTION + f"caption = {json.dumps(payload)}\n")
    return path


def outputs(root: Path) -> dict:
    """What the render left: HTML text, PDF text and raw bytes, embedded files, every asset's bytes."""
    from pypdf import PdfReader

    build = root / "build"
    html = (build / "report.html").read_text()
    reader = PdfReader(build / "report.pdf")
    text = "\n".join(page.extract_text() or "" for page in reader.pages)
    annotations = sum(1 for page in reader.pages for a in (page.get("/Annots") or [])
                      if a.get_object().get("/Subtype") == "/FileAttachment")
    assets = b"".join(p.read_bytes() for p in (build / "assets").rglob("*") if p.is_file())
    return {"html": html, "pdf_text": text, "pdf_bytes": (build / "report.pdf").read_bytes(), "assets": assets,
            "embedded": len(reader.attachments) + annotations}


def executable(html: str) -> int:
    """Script elements, event-handler attributes and javascript: URLs in the page's real tags (escaped
    text that merely shows them does not count)."""
    from html.parser import HTMLParser

    found = []

    class Scan(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag in ("script", "iframe", "object", "embed"):
                found.append(tag)
            found.extend(k for k, v in attrs
                         if k.startswith("on") or (v or "").strip().lower().startswith("javascript:"))

    Scan().feed(html)
    return len(found)


def external_references(build: Path) -> list[str]:
    """URLs in report.html and its stylesheet that a browser would fetch or follow outside the build:
    anything but assets/..., inline images, in-page anchors and (for links only) web addresses."""
    from html.parser import HTMLParser

    found: list[str] = []

    class Scan(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            for name, value in attrs:
                if name not in ("src", "href", "srcset", "data", "poster", "xlink:href") or value is None:
                    continue
                inside = value.startswith("assets/") and ".." not in value and "\\" not in value
                web_link = tag == "a" and urlsplit(value).scheme in ("http", "https", "mailto")
                if not (inside or value.startswith(("data:image/", "#")) or web_link):
                    found.append(f"<{tag} {name}={value!r}>")

    Scan().feed((build / "report.html").read_text())
    css = (build / "assets" / "style.css").read_text()
    found += re.findall(r"@import[^;]*", css)
    found += [u for u in re.findall(r"url\(\s*['\"]?([^'\")]*)", css)
              if u and (urlsplit(u).scheme not in ("", "data") or u.startswith(("/", "\\")) or ".." in u)]
    return found


def render(runner, root: Path):
    from reportgen.cli import app

    started = time.monotonic()
    result = runner.invoke(app, ["render", "-C", str(root)])
    return result, time.monotonic() - started


def tally(name: str, amount: int = 1) -> None:
    FIGURES[name] = FIGURES.get(name, 0) + amount


@pytest.mark.slow
@pytest.mark.parametrize("location", ["commentary", "template", "caption"])
def test_passive_payloads_fetch_nothing_leak_nothing_and_refusals_name_their_file(
        setting: dict, runner, tmp_path: Path, location: str) -> None:
    payloads = passive(setting)
    root = copy_project(setting["built"], tmp_path)
    hits_before = len(setting["server"].hits)
    text = "\n\n".join(payloads.values())
    if location == "caption":
        text = " ".join(payloads.values())[:2000]  # a caption is one line of at most 2,000 characters
    place(root, location, text, setting)
    result, _ = render(runner, root)
    assert result.exit_code == 0, result.output
    tally("inputs tried", len(payloads))
    out = outputs(root)
    token = setting["token"]
    found = sum(token in t for t in (out["html"], out["pdf_text"])) + (token.encode() in out["pdf_bytes"]) \
        + (token.encode() in out["assets"])
    tally("canary found in HTML, PDF or assets", found)
    fetched = len(setting["server"].hits) - hits_before
    tally("fetches outside the build's assets", fetched)
    tally("files embedded in the PDF", out["embedded"])
    executed = executable(out["html"])
    tally("scripts, handlers or javascript: URLs left in report.html", executed)
    external = external_references(root / "build")
    tally("references a browser would follow out of the build", len(external))
    assert external == [], external
    assert (found, fetched, out["embedded"], executed) == (0, 0, 0, 0)

    refusals = json.loads((root / "build" / "manifest.json").read_text())["refused"]
    for refusal in refusals:
        where = re.match(r"^(/\S+):(\d+): (refused to fetch '([^']*)'|took (.*) out of the report)", refusal)
        assert where, refusal  # FILE:LINE first, then what was refused
        written = Path(where[1]).read_text().splitlines()[int(where[2]) - 1]
        if where[4] is not None:  # a fetch: the line holds the address
            assert where[4] in written or Path(unquote(urlsplit(where[4]).path)).name in written, (refusal, written)
        assert f"Warning: {refusal[:60]}" in result.output.replace("\n", "")
        tally("refusals reported with file and line")
    if location == "commentary":  # Markdown images to file: and ../ became <img> and were taken out
        assert any("1-nets.md:" in r and "took the address" in r for r in refusals), refusals
    if location == "template":
        assert any(re.search(r"sections/1-nets.html.j2:\d+: took a <script> element out", r) for r in refusals), \
            refusals
        assert any("style.css:1: took an @import rule out" in r for r in refusals), refusals
    if location == "caption":
        assert refusals == []  # a caption is text: nothing in it is markup


@pytest.mark.slow
@pytest.mark.parametrize("location", ["commentary", "template", "caption"])
def test_active_payloads_are_refused_with_file_and_line_or_stay_text(
        setting: dict, runner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, location: str) -> None:
    from reportgen.report import commentary

    monkeypatch.setattr(commentary, "MAX_SECONDS", BOUND_SECONDS)
    root = copy_project(setting["built"], tmp_path)
    for name, payload in active(setting).items():
        path = place(root, location, payload, setting)
        result, seconds = render(runner, root)
        tally("inputs tried")
        if location == "caption":  # a caption is text: shown, never evaluated
            assert result.exit_code == 0, result.output
            import html as html_lib

            captions = [html_lib.unescape(c) for c in re.findall(r"<figcaption>(.*?)</figcaption>",
                                                                  outputs(root)["html"], re.DOTALL)]
            assert payload in captions, (name, captions)
            continue
        assert result.exit_code == 1, (name, result.output)
        message = " ".join(result.output.split())
        line = 3 if location == "commentary" else 2
        assert f"{path}:{line}:" in message or (name == "nested loops" and str(path) in message), (name, message)
        tally("refusals reported with file and line")
        if name == "nested loops":
            assert "stopped" in message and seconds < BOUND_SECONDS + 15, (message, seconds)
            tally("runaway renders stopped within the bound")
    executed = setting["marker"].exists()
    tally("template payloads executed", int(executed))
    assert not executed


@pytest.mark.slow
def test_links_out_of_the_project_are_refused(setting: dict, runner, tmp_path: Path) -> None:
    from reportgen.cli import app

    root = copy_project(setting["built"], tmp_path)
    slot = root / "experiments" / "1-nets.md"
    slot.unlink()
    slot.symlink_to(setting["canary"])
    result = runner.invoke(app, ["render", "-C", str(root)])
    assert result.exit_code == 1 and "links that lead outside are refused" in result.output
    slot.unlink()
    slot.write_text("Fine.\n")
    template = root / "templates" / "section.html.j2"
    template.parent.mkdir()
    template.symlink_to(setting["canary"])
    result = runner.invoke(app, ["render", "-C", str(root)])
    assert result.exit_code == 1 and "outside its templates folder; refused" in result.output
    assert setting["token"] not in result.output
    tally("inputs tried", 2)
    tally("refusals reported with file and line", 2)


@pytest.mark.slow
def test_linked_folders_are_refused_and_nothing_outside_is_written_or_read(setting: dict, runner,
                                                                         tmp_path: Path) -> None:
    from reportgen.cli import app

    root = copy_project(setting["built"], tmp_path)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "style.css").write_text("keep me")
    shutil.rmtree(root / "build" / "assets")
    (root / "build" / "assets").symlink_to(victim)
    result = runner.invoke(app, ["render", "-C", str(root)])
    assert result.exit_code == 1 and "assets: is a link to another folder" in result.output.replace("\n", "")
    assert (victim / "style.css").read_text() == "keep me"
    (root / "build" / "assets").unlink()

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "section.html.j2").write_text("{% include 'secret.txt' %}")
    (outside / "secret.txt").write_text(setting["token"])
    (root / "templates").symlink_to(outside)
    result = runner.invoke(app, ["render", "-C", str(root)])
    assert result.exit_code == 1 and "templates/ is a link to another folder" in result.output.replace("\n", "")
    assert setting["token"] not in result.output
    tally("inputs tried", 2)
    tally("refusals reported with file and line", 2)
