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


def _render(root, tmp_path, variant="tagged"):
    collected, _ = context.collect(unbuilt(root, tmp_path / "cache"))
    page = render.html(collected, root, root / "build")
    render.pdf(page, root / "build" / "report.pdf", [s["attachment"] for s in collected["sections"] if s["attachment"]],
               variant)
    return root / "build" / "report.pdf", page


def test_pdf_a_3b_and_pdf_ua_1_are_declared_in_the_metadata_and_stay_tagged(make_project, tmp_path):
    import pikepdf

    root = make_project({"experiments/project.toml": PROJECT, "experiments/1.toml": SECTION,
                         "experiments/1.md": "Text.\n"})
    path, _ = _render(root, tmp_path, "pdf/a-3b")
    with pikepdf.open(path) as pdf:
        with pdf.open_metadata() as xmp:
            assert (xmp.get("pdfaid:part"), xmp.get("pdfaid:conformance")) == ("3", "B")
            assert xmp.get("dc:title") == "Dense nets on digits"
        assert pdf.pdf_version == "1.7" and "/ID" in pdf.trailer  # kept through the attachment merge
        assert "/OutputIntents" in pdf.Root and pdf.Root.MarkInfo.Marked
    path, _ = _render(root, tmp_path, "pdf/ua-1")
    with pikepdf.open(path) as pdf:
        with pdf.open_metadata() as xmp:
            assert xmp.get("pdfuaid:part") == "1" and xmp.get("pdfaid:part") is None
        assert pdf.Root.Lang == "en-GB" and pdf.Root.ViewerPreferences.DisplayDocTitle


def figure_alts(pdf) -> list[str]:
    """The alt text of every Figure element in the structure tree ("" where it has none)."""
    import pikepdf

    found: list[str] = []

    def walk(node) -> None:
        if isinstance(node, pikepdf.Array):
            for kid in node:
                walk(kid)
        elif isinstance(node, pikepdf.Dictionary):
            if node.get("/S") == "/Figure":
                found.append(str(node.get("/Alt", "")))
            if "/K" in node:
                walk(node.K)

    walk(pdf.Root.StructTreeRoot)
    return found


def test_an_attached_page_is_read_through_its_text_as_alt_and_its_drawing_is_an_artifact(make_project, tmp_path):
    import pikepdf
    from matplotlib.backends.backend_pdf import PdfPages
    from matplotlib.figure import Figure

    root = make_project({"experiments/project.toml": PROJECT, "experiments/1.toml": SECTION,
                         "experiments/1.md": "The objective is $\\min_G V(G)$.\n",
                         "experiments/2.toml": 'number = "2"\ntitle = "Theory"\nattach = "proof.pdf"\n'
                                               'attach_title = "The proof, by hand"\n',
                         "experiments/2.md": "See the proof.\n"})
    with PdfPages(root / "experiments" / "proof.pdf") as out:
        fig = Figure(figsize=(8.27, 11.7))
        fig.text(0.1, 0.9, "Step one: fix the generator", fontsize=20)
        out.savefig(fig)
    path, _ = _render(root, tmp_path)
    with pikepdf.open(path) as pdf:
        alts = figure_alts(pdf)
        assert "\\min_G V(G)" in alts  # a formula's alt text is its TeX
        assert "The proof, by hand, page 1 of 1: Step one: fix the generator" in alts
        assert all(alts)
        # The attached drawing is merged as one form marked as an artifact, on its own page and no other.
        def artifacts(page) -> int:
            drawn = pikepdf.unparse_content_stream(pikepdf.parse_content_stream(page))
            forms = page.obj.Resources.get("/XObject", {}).items()
            return sum(1 for name, f in forms if f.get("/Subtype") == "/Form" and f"{name} Do".encode() in drawn
                       and f.read_bytes().startswith(b"/Artifact BMC"))

        (page,) = [i for i, p in enumerate(pdf.pages) if artifacts(p)]
    assert "Step one: fix the generator" in PdfReader(path).pages[page].extract_text()


def test_self_contained_html_carries_its_stylesheet_and_attachments_inline(make_project, tmp_path):
    from pypdf import PdfWriter

    root = make_project({"experiments/project.toml": PROJECT, "experiments/1.toml": SECTION,
                         "experiments/1.md": "Text.\n",
                         "experiments/2.toml": 'number = "2"\ntitle = "Theory"\nattach = "proof.pdf"\n',
                         "experiments/2.md": "See the proof.\n"})
    writer = PdfWriter()
    writer.add_blank_page(595, 842)
    with open(root / "experiments" / "proof.pdf", "wb") as f:
        writer.write(f)
    _, page = _render(root, tmp_path)
    html = render.self_contained(page).read_text(encoding="utf-8")
    assert "assets/" not in html and "<link" not in html
    assert "<style>" in html and "@page" in html  # the stylesheet, whole
    assert 'href="data:application/pdf;base64,JVBER' in html and 'download="2-proof.pdf"' in html


def test_a_gan_training_view_without_a_result_says_so_instead_of_failing(make_project, tmp_path):
    root = make_project({"experiments/project.toml": PROJECT,
                         "experiments/1.toml": 'number = "1"\ntitle = "GAN"\n[[runs]]\nname = "gan"\nkind = "gan"\n'
                                               '[[views]]\nkind = "gan_training"\nrun = "gan"\n',
                         "experiments/1.md": "Text.\n"})
    _, page = _render(root, tmp_path)
    assert "No training of" in page.read_text(encoding="utf-8")


def same_pages(first, second) -> None:
    """Two PDFs a reader cannot tell apart: page count, each page's text, the bookmarks, every
    figure's alt text, and the pixels (pdfium at 144 dpi; edge pixels may round differently)."""
    import numpy as np
    import pikepdf
    import pypdfium2

    a, b = PdfReader(first), PdfReader(second)
    assert len(a.pages) == len(b.pages)
    assert [p.extract_text() for p in a.pages] == [p.extract_text() for p in b.pages]
    assert [(o.title, a.get_destination_page_number(o)) for o in a.outline if not isinstance(o, list)] == \
        [(o.title, b.get_destination_page_number(o)) for o in b.outline if not isinstance(o, list)]
    with pikepdf.open(first) as x, pikepdf.open(second) as y:
        assert figure_alts(x) == figure_alts(y)
    for i, (x, y) in enumerate(zip(pypdfium2.PdfDocument(first), pypdfium2.PdfDocument(second), strict=True)):
        one = np.asarray(x.render(scale=2).to_pil().convert("L"), dtype=float)
        two = np.asarray(y.render(scale=2).to_pil().convert("L"), dtype=float)
        assert one.shape == two.shape
        inked = max(int((one < 128).sum()), int((two < 128).sum()), 1)
        differ = int((np.abs(one - two) > 96).sum())
        assert differ <= inked // 200, f"page {i + 1}: {differ} of {inked} drawn pixels differ"


def drawn_from_forms(path) -> int:
    """How many figures on the PDF's pages are drawn from the cached forms."""
    import pikepdf

    with pikepdf.open(path) as pdf:
        return len({str(name) for page in pdf.pages for name in page.Resources.get("/XObject", {}).keys()
                    if str(name).startswith("/RgFigure")})


def test_figures_drawn_once_are_reused_and_give_the_pages_drawing_them_in_place_gives(make_project, tmp_path):
    root = make_project({"experiments/project.toml": PROJECT, "experiments/1.toml": SECTION,
                         "experiments/1.md": "Euler: $e^{i\\pi} + 1 = 0$, and $$\\sum_{k=1}^{n} k = n(n+1)/2$$\n"})
    path, page = _render(root, tmp_path)
    forms = root / "build" / render.FIGURE_FORMS
    drawn = {p: p.stat().st_mtime_ns for p in forms.glob("*.pdf")}
    assert len(drawn) == 2 and drawn_from_forms(path) == 2
    direct = tmp_path / "direct.pdf"
    render.pdf(page, direct, reuse_figures=False)
    assert drawn_from_forms(direct) == 0
    same_pages(path, direct)
    # Rendered again: nothing is redrawn. One formula changed: it alone is drawn, the old one goes.
    _render(root, tmp_path)
    assert {p: p.stat().st_mtime_ns for p in forms.glob("*.pdf")} == drawn
    (root / "experiments" / "1.md").write_text("Euler: $e^{i\\pi} = -1$, and $$\\sum_{k=1}^{n} k = n(n+1)/2$$\n")
    path, page = _render(root, tmp_path)
    now = {p: p.stat().st_mtime_ns for p in forms.glob("*.pdf")}
    assert len(now) == 2 and len(set(now.items()) & set(drawn.items())) == 1
    render.pdf(page, direct, reuse_figures=False)
    same_pages(path, direct)
