"""Claims in commentary, and whether a report is ready to hand in.

- Hand-typed numbers that look like results (97.3%, 0.9826, 27,660) are matched against the results
  a section can quote; one that matches none is reported with the placeholder of the nearest result.
- Slots written for earlier results (report/lock.py records what each quoted) are reported until
  edited or accepted with `reportgen check --accept SECTION`.
review() runs all of it over a project, its cached results and its last build, given the report's
context as rendering it now would make it (the pipeline collects that); nothing here trains.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reportgen.errors import RenderError
from reportgen.train.plan import Session, rebuild_command

MARKERS = re.compile(r"\b(TODO|FIXME|TBD|XXX)\b|lorem ipsum", re.IGNORECASE)

# Spans whose numbers are not prose claims: placeholders, code, math, link targets, HTML.
_MASKED = [re.compile(p, re.DOTALL) for p in (
    r"<!--.*?-->", r"```.*?```", r"~~~.*?~~~", r"\{\{.*?\}\}", r"\{%.*?%\}", r"\{#.*?#\}",
    r"\$\$.*?\$\$", r"(?<![\\$\w])\$(?=\S)[^$\n]*?(?<=\S)\$(?!\d)", r"`[^`\n]*`", r"\]\([^)\n]*\)",
    r"<[^>\n]*>",
)]
_NUMBER = re.compile(r"(?<![A-Za-z0-9.,])(-?)(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(\s?%)?(?![A-Za-z0-9]|[.,]\d)")
# Words after which a number names something rather than claims a result: "Section 2.10",
# "TensorFlow 2.15", "arXiv:1412.6980", "p < 0.05", "$12.50".
_NAMING = re.compile(r"(?:\b(?:sections?|figures?|fig\.|tables?|eq\.|equations?|chapters?|versions?|v|python|"
                     r"tensorflow|keras|jax|torch|pytorch|numpy|cuda|arxiv:?|doi:?|isbn:?)\s*|\bp\s*[<>=≤]\s*|"
                     r"[$€£]\s*)$", re.IGNORECASE)
_INDENTED_CODE = re.compile(r"(?:(?<=\n\n)|\A)(?:(?: {4}|\t)[^\n]*(?:\n|\Z))+")
_RUN_REFERENCE = re.compile(r"""runs\s*(?:\[\s*["']([^"']+)["']\s*\]|\.([A-Za-z_]\w*))""")


@dataclass(frozen=True)
class Typed:
    """A number typed into commentary that reads like a result."""

    line: int
    text: str
    value: float
    unit: str  # "%", "decimal" or "count"
    decimals: int


@dataclass(frozen=True)
class Candidate:
    path: str  # the placeholder expression that yields it, e.g. runs["small"].val_accuracy
    value: float
    is_result: bool  # False for configuration (batch size, dropout): matchable, never suggested


def _blank(match: re.Match[str]) -> str:
    return "".join("\n" if c == "\n" else " " for c in match.group(0))


def typed_numbers(source: str) -> list[Typed]:
    """Numbers in the prose that look like results: percentages, decimals with two or more digits,
    counts written with thousands separators, and plain counts of four digits or more (not years)."""
    text = source
    for pattern in _MASKED:
        text = pattern.sub(_blank, text)
    text = _INDENTED_CODE.sub(_blank, text)
    found = []
    for number in _NUMBER.finditer(text):
        sign, whole, fraction, percent = number.group(1), number.group(2), number.group(3) or "", number.group(4)
        if _NAMING.search(text, max(0, number.start() - 20), number.start()):
            continue
        value = float(sign + whole.replace(",", "") + fraction)
        decimals = max(len(fraction) - 1, 0)
        if percent:
            unit = "%"
        elif fraction and (decimals >= 2 or "," in whole):
            unit = "decimal"
        elif not fraction and ("," in whole or (value >= 1000 and not 1900 <= value <= 2100)):
            unit = "count"
        else:
            continue
        line = text.count("\n", 0, number.start()) + 1
        found.append(Typed(line, number.group(0).strip(), value, unit, decimals))
    return found


def _key(path: str, key: str) -> str:
    return f"{path}.{key}" if re.fullmatch(r"[A-Za-z_]\w*", key) else f"{path}[{json.dumps(key)}]"


def flatten(path: str, value: Any, is_result: bool = True, depth: int = 0) -> list[Candidate]:
    """Every number under value, with the placeholder expression that reaches it."""
    if isinstance(value, bool) or value is None or depth > 8:
        return []
    if isinstance(value, int | float):
        return [Candidate(path, float(value), is_result)] if math.isfinite(value) else []
    out: list[Candidate] = []
    if isinstance(value, dict):
        for k, v in value.items():
            if str(k).endswith("_by_epoch"):
                continue  # a claim about the run quotes its final or best value, not any epoch's
            out += flatten(_key(path, str(k)), v, is_result and k != "config", depth + 1)
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value[:1000]):
            out += flatten(f"{path}[{i}]", v, is_result, depth + 1)
    return out


def candidates(source: str, section_runs: list[str], facts: dict[str, Any], views: dict[str, Any],
               data_sizes: dict[str, int]) -> list[Candidate]:
    """What a section's commentary may quote: its own runs, runs its placeholders name, its views."""
    named = {a or b for a, b in _RUN_REFERENCE.findall(source)}
    out: list[Candidate] = []
    for name in [*section_runs, *sorted(named - set(section_runs))]:
        if name in facts:
            out += flatten(_key("runs", name), facts[name])
    out += flatten("section.views", views)
    out += [Candidate(f"data.{k}", float(v), False) for k, v in data_sizes.items()]
    return out


def _scaled(typed: Typed, value: float) -> list[float]:
    # A percentage may quote a fraction (0.973 -> 97.3%) or a value already in percent.
    if typed.unit != "%":
        return [value]
    # 0.973 is quoted as 97.3%; a value already in percent (a share of 12.5) as itself. A fraction
    # typed with a percent sign ("0.98%" for 0.98) is the mistake this check is for.
    return [value * 100] if 0 <= value <= 1 else [value]


def matches(typed: Typed, value: float) -> bool:
    """Equal at the precision typed: rounded or truncated to the digits shown."""
    unit = 10.0 ** -typed.decimals if typed.unit != "count" else 1.0
    for scaled in _scaled(typed, value):
        if abs(scaled - typed.value) <= unit / 2 + 1e-9 or 0 <= scaled - typed.value < unit - 1e-9:
            return True
    return False


def nearest(typed: Typed, found: list[Candidate]) -> Candidate | None:
    def fits(value: float, c_path: str) -> bool:  # a percentage quotes a fraction (not a time), a count an integer
        if typed.unit == "%":
            return 0 <= value <= 1 and "seconds" not in c_path and (not value.is_integer() or "acc" in c_path)
        return value.is_integer() if typed.unit == "count" else not value.is_integer()

    results = [c for c in found if c.is_result and fits(c.value, c.path)]
    if not results:
        return None

    def distance(c: Candidate) -> float:
        return min(abs(s - typed.value) for s in _scaled(typed, c.value))

    return min(results, key=distance)


def placeholder(typed: Typed, candidate: Candidate) -> str:
    """The placeholder that prints this candidate the way the number was typed."""
    if typed.unit == "%":
        fmt = "pct" if typed.decimals == 2 else f"pct({typed.decimals})"
    elif typed.unit == "decimal":
        fmt = "fixed" if typed.decimals == 4 else f"fixed({typed.decimals})"
    else:
        fmt = "num"
    return "{{ " + candidate.path + " | " + fmt + " }}"


def unmatched_claims(source: str, found: list[Candidate]) -> list[tuple[Typed, Candidate | None]]:
    """Each typed number that matches no candidate, with the nearest result."""
    return [(t, nearest(t, found)) for t in typed_numbers(source) if not any(matches(t, c.value) for c in found)]


def markers(source: str) -> list[tuple[int, str]]:
    """TODO, FIXME, TBD, XXX or lorem ipsum left in the text, by line."""
    return [(i, m.group(0)) for i, line in enumerate(source.splitlines(), start=1) for m in MARKERS.finditer(line)]


# --- comparisons whose conclusion changed ----------------------------------------------------------------


def compare_line(source: str, turned: dict[str, str]) -> int | None:
    """The line of the commentary's compare() call for these two runs (the first such), if it is found."""
    pattern = re.compile(r"compare\(\s*['\"]" + re.escape(turned["first"]) + r"['\"]\s*,\s*['\"]"
                         + re.escape(turned["second"]) + r"['\"]")
    for number, line in enumerate(source.splitlines(), start=1):
        if pattern.search(line):
            return number
    return None


def turned_message(turned: dict[str, str]) -> str:
    """What changed in a comparison the text rests on: its sign or whether it is a real difference."""
    then, now = turned["then"].split(", "), turned["verdict"].split(", ")
    what = " and ".join(w for w, a, b in (("sign", then[0], now[0]), ("significance", then[-1], now[-1])) if a != b)
    return (f"compare({turned['first']!r}, {turned['second']!r}) on {turned['metric']} changed {what or 'verdict'} "
            f"since the text was written: it was {turned['then']} ({turned['words_then']}), now {turned['verdict']} "
            f"({turned['words']}); the sentence quoting it may no longer hold: edit it, or run `reportgen check "
            "--accept` for its section if it still does")


# --- slots written for earlier results -----------------------------------------------------------------


# --- the whole review -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One thing to fix before handing in, precise enough to find without the report."""

    file: Path | str
    line: int | None
    what: str  # experiment, build, slot, marker, number, stale slot, comparison, fonts, pages
    message: str

    def __str__(self) -> str:
        return f"{self.file}" + (f":{self.line}" if self.line else "") + f": {self.message}"


@dataclass
class Review:
    findings: list[Finding]
    accepted: list[str]
    numbers_checked: int
    pages: int | None
    main_pages: int | None = None  # the main body's: before the appendix


def _report_behind(pdf: Path, made: dict[str, Any], context: dict[str, Any], slots: dict[str, Any],
                   accept: set[str]) -> list[Finding]:
    """The built report against what rendering it now would give: commentary edited since, or
    warnings it shows that no longer hold (a slot accepted since, say). `reportgen render` mends both."""
    rendered = made.get("commentary")
    edited = sorted({slot["section"] for name, slot in slots.items()
                     if isinstance(rendered, dict) and rendered.get(name) != slot["text"]})
    accepted = {s["commentary_warning"] for s in context["sections"] if s["stale"] and s["number"] in accept}
    current = [w for w in context["warnings"] if w not in accepted]
    gone = [w for w in made.get("warnings", []) if w not in current]
    findings = []
    if edited:
        findings.append(Finding(pdf, None, "build", f"older than the commentary of section(s) {', '.join(edited)}, "
                                "edited since it was made: run `reportgen render`"))
    if gone:
        findings.append(Finding(pdf, None, "build", f"shows {len(gone)} warning(s) that no longer hold "
                                f"({gone[0][:120]}{'...' if len(gone[0]) > 120 else ''}): run `reportgen render`"))
    return findings


def review(session: Session, context: dict[str, Any], slots: dict[str, Any], accept: Iterable[str] = (),
           accepted: Iterable[str] = ()) -> Review:
    """Every submission check over a project, its cached results and its last build, given the report's
    context as rendering it now would make it (`context`, with what each commentary slot quotes in
    `slots`). `accept` names the sections whose slots the author confirmed; `accepted` the stale slots
    that confirmation recorded."""
    accept = set(accept)
    findings: list[Finding] = []
    project = session.project
    again = f"run `{rebuild_command(session)}`"  # with the last build's profile and limits
    for p in session.planned:
        if p.state != "fresh":
            findings.append(Finding(p.exp.source, None, "experiment", f"experiment {p.exp.name!r} is {p.state} ("
                                    + "; ".join(p.reasons) + "): " + again))
    out = session.options.out
    made: dict[str, Any] | None = None
    try:
        made = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        findings.append(Finding(out, None, "build", "no readable manifest.json: " + again))
    if made is not None:
        keys = {e.get("name"): e.get("key") for e in made.get("experiments", []) if isinstance(e, dict)}
        behind = [p.exp.name for p in session.planned if p.state == "fresh" and keys.get(p.exp.name) != p.key]
        if behind:
            findings.append(Finding(out / "report.pdf", None, "build", "the report was made from other results "
                                    f"than the cache now holds for {behind}: " + again))
        if made.get("profile") == "quick":
            findings.append(Finding(out / "report.pdf", None, "build", "a draft, built with the quick profile "
                                    "(shortened training on the offline sample): run `reportgen build --full` "
                                    "for the report to hand in"))

    numbers = 0
    if made is not None:
        findings += _report_behind(out / "report.pdf", made, context, slots, set(accept))
    sizes = {"train": len(session.data.y_train), "validation": len(session.data.y_val)}
    for section in context["sections"]:
        file = Path(section["commentary_path"])
        if section["commentary"] is None:
            warning = section["commentary_warning"] or "empty commentary slot"
            shown = file.relative_to(project.root) if file.is_relative_to(project.root) else file
            where = re.match(re.escape(str(shown)) + r"(?::(\d+))?: ", warning)
            line = int(where.group(1)) if where and where.group(1) else None
            findings.append(Finding(file, line, "slot", warning[where.end():] if where else warning))
            continue
        source = file.read_text(encoding="utf-8")
        for line, word in markers(source):
            findings.append(Finding(file, line, "marker", f"{word!r} left in the text"))
        found = candidates(source, section["experiment_names"], context["runs"], section["view_facts"], sizes)
        numbers += len(typed_numbers(source))
        for typed, near in unmatched_claims(source, found):
            hint = (f"; the nearest result is {near.path} = {near.value:g}, which {placeholder(typed, near)} prints"
                    if near else "")
            findings.append(Finding(file, typed.line, "number",
                                    f"{typed.text} matches no result of section {section['number']}{hint}"))
        if section["number"] not in accept:
            for slot in (v for v in slots.values() if v["section"] == section["number"]):
                for turned in slot.get("turned") or []:
                    findings.append(Finding(file, compare_line(source, turned), "comparison", turned_message(turned)))
        if section["stale"] and section["number"] not in accept:
            findings.append(Finding(file, None, "stale slot", "written for earlier results ("
                                    + section["stale_summary"] + "): edit it, or run `reportgen check "
                                    f"--accept {section['number']}` if it still holds"))
    pages = main_pages = None
    pdf = out / "report.pdf"
    if pdf.is_file():
        facts = pdf_facts(pdf)
        pages, main_pages = facts["pages"], facts["main_pages"]
        if facts["fonts_not_embedded"]:
            findings.append(Finding(pdf, None, "fonts", "fonts not embedded: " + ", ".join(facts["fonts_not_embedded"])
                                    + "; a reader without them sees other fonts"))
        if project.page_limit is not None and main_pages > project.page_limit:
            findings.append(Finding(pdf, None, "pages", f"the main body (title page to the last section, before "
                                    f"the appendix) has {main_pages} pages, over the page_limit of "
                                    f"{project.page_limit} set in {project.experiments_dir / 'project.toml'}"))
    elif made is not None:
        findings.append(Finding(pdf, None, "build", "missing: " + again))
    return Review(findings, list(accepted), numbers, pages, main_pages)


APPENDIX_ANCHORS = ("appendix", "provenance")  # where the main body ends: the first of these the PDF has


def pdf_facts(path: Path) -> dict[str, Any]:
    """What a submission check needs from a PDF: its page count, the main body's (the pages before
    the appendix, found by its named destination), and the fonts it uses without embedding them
    (a reader without those fonts would substitute others)."""
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(path)
        pages = len(reader.pages)
        destinations = reader.named_destinations
        starts = [reader.get_destination_page_number(destinations[a]) for a in APPENDIX_ANCHORS if a in destinations]
        main_pages = min((s for s in starts if s is not None), default=pages)
    except (OSError, PyPdfError, ValueError) as exc:
        raise RenderError(f"cannot read the PDF: {exc}", path) from None
    return {"pages": pages, "main_pages": main_pages, "fonts_not_embedded": fonts_not_embedded(path)}


def fonts_not_embedded(path: Path) -> list[str]:
    """The fonts a PDF's pages and forms use without carrying them. With qpdf (pikepdf): pypdf
    takes seconds over a report whose figures are forms of many paths."""
    import pikepdf

    missing: set[str] = set()
    seen: set[tuple[int, int]] = set()

    def fonts_in(resources: Any) -> None:
        if not isinstance(resources, pikepdf.Dictionary):
            return
        if resources.is_indirect:
            if resources.objgen in seen:
                return
            seen.add(resources.objgen)
        for font in (resources.get("/Font") or {}).values():
            if font.get("/Subtype") == "/Type3":
                continue  # glyphs drawn by the PDF itself
            described = font.DescendantFonts[0] if "/DescendantFonts" in font else font
            descriptor: Any = described.get("/FontDescriptor") or {}
            if not any(k in descriptor for k in ("/FontFile", "/FontFile2", "/FontFile3")):
                missing.add(str(font.get("/BaseFont", "?")).lstrip("/"))
        for xobject in (resources.get("/XObject") or {}).values():
            if xobject.get("/Subtype") == "/Form" and xobject.objgen not in seen:
                seen.add(xobject.objgen)
                fonts_in(xobject.get("/Resources"))

    try:
        with pikepdf.open(path) as pdf:
            for page in pdf.pages:
                fonts_in(page.obj.get("/Resources"))
    except (pikepdf.PdfError, OSError, ValueError) as exc:
        raise RenderError(f"cannot read the PDF: {exc}", path) from None
    return sorted(missing)
