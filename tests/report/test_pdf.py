"""The PDF as a reader meets it: the title page's people and places, the document's metadata, and
the structure a screen reader walks (tagged, with its language and title)."""

from __future__ import annotations

import pytest
from pypdf import PdfReader
from pypdf.generic import ArrayObject, DictionaryObject, IndirectObject

from reportgen.report import context, render
from tests.views.test_registry import unbuilt

PROJECT = """
title = "Dense nets on digits"
author = "A. Student"
student_id = "s1234567"
course = "Deep Learning (COMP 4321)"
institution = "University of Somewhere"
keywords = ["neural networks", "regularisation"]
language = "en-GB"
data = "mnist-sample"
"""

SECTION = """
number = "1"
title = "Widths"
[[runs]]
name = "net"
kind = "mlp"
hidden_layers = [8]
"""


def structure(root: DictionaryObject) -> list[str]:
    found: list[str] = []

    def walk(node: object) -> None:
        node = node.get_object() if isinstance(node, IndirectObject) else node
        if isinstance(node, DictionaryObject):
            if "/S" in node:
                found.append(str(node["/S"]))
            if "/K" in node:
                walk(node["/K"])
        elif isinstance(node, ArrayObject):
            for kid in node:
                walk(kid)

    walk(root)
    return found


@pytest.fixture
def pdf(make_project, tmp_path):
    root = make_project({"experiments/project.toml": PROJECT, "experiments/1.toml": SECTION,
                         "experiments/1.md": "Text.\n"})
    collected, _ = context.collect(unbuilt(root, tmp_path / "cache"))
    page = render.html(collected, root, root / "build")
    render.pdf(page, root / "build" / "report.pdf")
    return root / "build" / "report.pdf", page


def test_the_title_page_and_the_metadata_name_the_student_course_and_institution(pdf):
    path, page = pdf
    reader = PdfReader(path)
    text = reader.pages[0].extract_text()
    for part in ("Dense nets on digits", "A. Student (s1234567)", "Deep Learning (COMP 4321)",
                 "University of Somewhere"):
        assert part in text
    meta = reader.metadata
    assert (meta["/Title"], meta["/Author"], meta["/Subject"], meta["/Keywords"]) == \
        ("Dense nets on digits", "A. Student", "Deep Learning (COMP 4321)", "neural networks, regularisation")
    html = page.read_text(encoding="utf-8")
    assert '<html lang="en-GB">' in html and 'name="viewport" content="width=device-width, initial-scale=1"' in html


def test_the_pdf_is_tagged_with_its_language_and_title(pdf):
    path, _ = pdf
    catalog = PdfReader(path).trailer["/Root"]
    assert bool(catalog["/MarkInfo"]["/Marked"])
    assert catalog["/Lang"] == "en-GB" and catalog["/ViewerPreferences"]["/DisplayDocTitle"]
    tags = structure(catalog["/StructTreeRoot"])
    assert tags[0] == "/Document" and "/H1" in tags and "/H2" in tags and "/TH" in tags


def test_an_attachment_is_listed_under_the_title_the_project_gives_it(make_project, tmp_path):
    from pypdf import PdfWriter

    root = make_project({"experiments/project.toml": PROJECT, "experiments/1.toml": SECTION,
                         "experiments/1.md": "Text.\n",
                         "experiments/2.toml": 'number = "2"\ntitle = "Theory"\nattach = "proof.pdf"\n'
                                               'attach_title = "The proof, by hand"\n',
                         "experiments/2.md": "See the proof.\n"})
    writer = PdfWriter()
    writer.add_blank_page(595, 842)
    with open(root / "experiments" / "proof.pdf", "wb") as f:
        writer.write(f)
    collected, _ = context.collect(unbuilt(root, tmp_path / "cache"))
    page = render.html(collected, root, root / "build")
    render.pdf(page, root / "build" / "report.pdf", [s["attachment"] for s in collected["sections"] if s["attachment"]])
    reader = PdfReader(root / "build" / "report.pdf")
    titles: list[str] = []

    def walk(items: list) -> None:
        for item in items:
            walk(item) if isinstance(item, list) else titles.append(item.title)

    walk(reader.outline)
    assert "The proof, by hand" in titles and not any(t.startswith("Attached:") for t in titles)
    assert "The proof, by hand" in reader.pages[1].extract_text()  # the contents
