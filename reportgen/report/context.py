"""Everything the templates and commentary see, gathered from the plan's stored results: one
entry per section with its runs, views, figures and filled commentary, and the title page's facts."""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import UndefinedError

from reportgen import __version__
from reportgen.project.spec import Experiment, Section
from reportgen.report import lock
from reportgen.report.commentary import UnknownPlaceholder, render_commentary
from reportgen.report.render import attachment_pages, attachment_text
from reportgen.train import store
from reportgen.train.plan import Planned, Session, rebuild_command
from reportgen.train.result import GanResult
from reportgen.views import analysis, describe, figures, gan_training
from reportgen.views.base import ViewInputs, lookup
from reportgen.views.stats import Comparison


def _history_rows(history: dict[str, list[float]]) -> list[dict[str, Any]]:
    """One row per finished epoch with every recorded column (a diverged run's lists may be short)."""
    n = len(history.get("epoch") or history.get("loss", []))
    return [{"epoch": e + 1, **{c: v[e] for c, v in history.items() if c != "epoch" and e < len(v)}}
            for e in range(n)]


@dataclass
class _Gathered:
    """What every section draws on: the plan by run name, each run's facts, where figures go, and
    the commentary slots as recorded for the current results."""

    session: Session
    assets: Path
    by_name: dict[str, Planned]
    facts: dict[str, dict[str, Any]]
    recorded: dict[str, Any]
    warnings: list[str]


def collect(session: Session) -> tuple[dict[str, Any], list[str]]:
    """Everything the templates and commentary see, and the warnings raised while gathering it.
    Figures are drawn here into build/assets, named after what they show."""

    assets = session.options.out / "assets"
    assets.mkdir(parents=True, exist_ok=True)
    by_name = {p.exp.name: p for p in session.planned}
    facts = {name: analysis.facts(p.entry.result, p.exp.config(), session.data.y_val, session.data.classes)
             for name, p in by_name.items() if p.entry is not None}
    warnings = []
    for exp in session.project.experiments:  # a run's facts are over its repeats: means with their spread
        done = [facts[r.name] for r in exp.with_repeats() if r.name in facts]
        if exp.name in facts:
            facts[exp.name] = analysis.over_repeats(done)
            if len(done) < exp.repeats:
                warnings.append(f"{exp.name}: {len(done)} of its {exp.repeats} repeats have a result; its numbers "
                                f"are over those {len(done)} (run `{rebuild_command(session)}` for the rest)")
    recorded = lock.read_lock(session.project.experiments_dir)["slots"].get(
        lock.lock_key(session.project.profile, session.data.name, session.data.fingerprint), {})
    gathered = _Gathered(session, assets, by_name, facts, recorded, warnings)
    sections = [_section(section, gathered) for section in session.project.sections]
    # The runs with an entry of their own (in the appendix or inline): their names link to it.
    detailed = sorted(e["name"] for s in sections if s["details"] != "none" for e in s["experiments"])
    return {**_title_page(session), "sections": sections, "runs": facts, "warnings": gathered.warnings,
            "detailed": detailed, "appendix": [s for s in sections if s["details"] == "appendix" and s["experiments"]],
            "provenance": provenance(session), "percent_digits": session.project.percent_digits,
            "rebuild": rebuild_command(session),  # the command that fills what is missing, in hints
            "stylesheet": "assets/style.css"}, gathered.warnings


def _section(section: Section, g: _Gathered) -> dict[str, Any]:
    """One section: its runs, its views, and its commentary filled from both."""
    views, view_facts = _views(section, g)
    # A GAN whose figures a gan_training view shows keeps only its tables in its own entry.
    drawn = {v["run"] for v in views if v["kind"] == "gan_training" and v.get("losses")}
    experiments = [_run_item(exp, g, figures_shown=exp.name in drawn) for exp in section.experiments]
    anchor = "sec-" + re.sub(r"[^A-Za-z0-9_-]", "-", section.number)
    curves: dict[str, Any] | None = None
    if section.details == "appendix":
        entries = {e.name: g.by_name[e.name].entry for e in section.experiments}
        histories = {name: entry.result.history for name, entry in entries.items()
                     if entry is not None and g.facts[name].get("kind") != "gan"}
        if histories:
            name = f"curves-{section.slug}.svg"
            figures.save(g.assets / name, figures.curves_grid, histories)
            curves = {"figure": f"assets/{name}", "runs": list(histories),
                      "alt": describe.curves_grid(histories, g.session.project.percent_digits)}
    html, warning, stale = _commentary(section, views, view_facts, g)
    attachment = _attachment(section.attach, g.assets, section.slug) if section.attach else None
    if attachment is not None:
        attachment["title"] = section.attach_title or f"Attached: {attachment['file']}"
    return {"number": section.number, "title": section.title, "slug": section.slug,
            "attachment": attachment, "question": section.question, "details": section.details,
            "anchor": anchor, "appendix_anchor": "app-" + anchor, "curves": curves,
            "commentary": html, "commentary_warning": warning, "stale": stale,
            "stale_summary": lock.some_changes(stale) if stale else None,
            "experiment_names": [e.name for e in section.experiments], "view_facts": view_facts,
            "commentary_file": section.commentary.name, "commentary_path": str(section.commentary),
            "experiments": experiments, "views": views}


def _run_item(exp: Experiment, g: _Gathered, figures_shown: bool = False) -> dict[str, Any]:
    """One run's block: its settings and state, and with a result its epochs, facts and layers; its
    own figures only where the section shows each run whole (details = "inline") or nothing else
    shows them (a GAN without a gan_training view)."""
    p = g.by_name[exp.name]
    details = next(s.details for s in g.session.project.sections if exp in s.experiments)
    item: dict[str, Any] = {"name": exp.name, "code_cell": exp.code_cell(), "state": p.state,
                            "error": p.error, "reasons": p.reasons, "kind": exp.model.kind}
    if p.entry is not None and isinstance(p.entry.result, GanResult):
        item.update(_gan_item(exp.name, p.entry, g.assets, draw=not figures_shown,
                                    digits=g.session.project.percent_digits), facts=g.facts[exp.name],
                    cache_hit=p.cache_hit)
        summary = p.entry.result.summary
        item["layers"] = {part: _compact(getattr(summary, part).layers)
                          for part in ("generator", "discriminator") if getattr(summary, part) is not None}
    elif p.entry is not None:
        result = p.entry.result
        item.update(result=result, facts=g.facts[exp.name], curves=None, layers=_compact(result.summary.layers),
                    epochs=_history_rows(result.history), cache_hit=p.cache_hit)
        if details == "inline":
            curves = f"curves-{exp.name}.svg"
            figures.save(g.assets / curves, figures.learning_curves, exp.name, result.history)
            item.update(curves=f"assets/{curves}",
                        curves_alt=describe.learning_curves(exp.name, result.history, g.session.project.percent_digits))
    elif p.error:
        g.warnings.append(f"{exp.name}: failed: {p.error}")
    return item


def _views(section: Section, g: _Gathered) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The section's views, each collected by its kind, and what they measured for commentary."""
    views: list[dict[str, Any]] = []
    view_facts: dict[str, Any] = {}
    # Views over classifiers (parameters, overlays, convergence) leave the section's GANs out:
    # a GAN has no validation accuracy to place.
    classifiers = frozenset(n for n, f in g.facts.items() if f.get("kind") != "gan")
    entries = {name: p.entry for name, p in g.by_name.items()}
    for i, view in enumerate(section.views):
        kind = lookup(view.kind)
        inputs = ViewInputs(assets=g.assets, figure=f"{section.slug}-{view.kind}-{i}.svg", section=section.slug,
                            runs=tuple(e.name for e in section.experiments), facts=g.facts,
                            classifiers=classifiers, entries=entries, measures=g.session.measures,
                            validation_images=g.session.data.x_val, validation_labels=g.session.data.y_val,
                            classes=g.session.data.classes, percent_digits=g.session.project.percent_digits)
        collected = kind.collect(view, inputs)
        views.append({"kind": view.kind, "measured": None, "figure": None, "figures": [],
                      "caption": view.caption, "partial": kind.partial, **collected.entry})
        if collected.facts is not None:
            kind.add_facts(view_facts, view, collected.facts)
    return views, view_facts


def _commentary(section: Section, views: list[dict[str, Any]], view_facts: dict[str, Any],
                g: _Gathered) -> tuple[str | None, str | None, Any]:
    """The section's commentary filled in (None where a placeholder waits for a result), the
    warning to show beside it, and what it quoted that changed since it was last accepted."""
    session = g.session
    context = {"percent_digits": session.project.percent_digits, "runs": g.facts,
               "section": {"number": section.number, "title": section.title, "views": view_facts},
               "project": {"title": session.project.title, "data": session.data.name,
                           "profile": session.project.profile, "train_size": len(session.data.y_train),
                           "validation_size": len(session.data.y_val)}}
    comparisons: list[dict[str, str]] = []
    context["compare"] = _comparer(g, comparisons)
    known = list(g.by_name) + ["runs", "section", "project", "views", "compare"] + sorted(
        {k for f in g.facts.values() for k in f})
    quotes: list[str] = []
    try:
        html, warning = render_commentary(section.commentary, context, known, quotes)
    except UnknownPlaceholder as exc:
        # A name that would exist once every run has a result is a gap, not a typo.
        expected = set(g.by_name) | {v.kind for v in section.views}
        unmeasured = any(v.get("unmeasured") for v in views)
        if exc.name not in expected or not (unmeasured or any(p.entry is None for p in session.planned)):
            raise
        where = f"{exc.file}:{exc.line}" if exc.line else f"{exc.file}"
        named = g.by_name.get(exc.name)
        gap = ("has no result for its current configuration (" + "; ".join(named.reasons) + ")"
               if named is not None and named.state == "stale" else
               "is not measured yet" if unmeasured and named is None else "has no result yet")
        html, warning = None, (f"{where}: placeholder {exc.name!r} {gap}; "
                               f"run `{rebuild_command(session)}` to fill this slot")
    stale = None
    if html is not None:
        source = section.commentary.read_text(encoding="utf-8")
        text = lock.text_hash(source)
        slot_key = lock.slot_key(section.number, section.commentary, session.project.experiments_dir)
        stale = lock.quote_changes(g.recorded.get(slot_key), text, quotes)
        turned = lock.comparison_changes(g.recorded.get(slot_key), text, comparisons)
        session.slots[slot_key] = {"text": text, "quotes": quotes, "section": section.number, "stale": bool(stale),
                                   "comparisons": comparisons, "turned": turned}
        if stale:
            warning = (f"{section.commentary}: written for earlier results (" + lock.some_changes(stale)
                       + f"); edit it, or run `reportgen check --accept {section.number}` if it still holds")
    if warning:
        # As the project's own files are named in its README and errors: from its folder, so the
        # report handed in does not carry the author's home directory.
        warning = warning.replace(f"{session.project.root}{os.sep}", "")
        g.warnings.append(warning)
    return html, warning, stale


def _comparer(g: _Gathered, made: list[dict[str, str]]) -> Callable[..., Comparison]:
    """The commentary's `compare(first, second, metric="val_accuracy")`: two runs on a metric, with
    the difference's interval and p-value in words (stats.Comparison); each call is recorded in `made`,
    so `check` can tell a sentence whose comparison has since changed sign or significance."""

    def compare(first: str, second: str, metric: str = "val_accuracy") -> Comparison:
        for name in (first, second):
            if name not in g.facts:  # a typo, or a run still without a result: said as for any placeholder
                raise UndefinedError(f"compare: no result for run '{name}'")
        entries = [g.by_name[n].entry for n in (first, second)]
        results = (entries[0].result if entries[0] else None, entries[1].result if entries[1] else None)
        found = analysis.compare_runs(g.facts[first], g.facts[second], results, metric,
                                      g.session.project.percent_digits)
        made.append({"first": first, "second": second, "metric": metric, "verdict": found.verdict,
                     "words": str(found)})
        return found

    return compare


def _title_page(session: Session) -> dict[str, Any]:
    """The title page's facts: the project, the data, the devices and precision the results came from."""
    results = [p.entry.result for p in session.planned if p.entry is not None]
    about = dict(session.project.about)
    return {
        "project": {"title": session.project.title, "author": session.project.author,
                    "profile": session.project.profile, "student_id": about.get("student_id", ""),
                    "course": about.get("course", ""), "institution": about.get("institution", ""),
                    "subject": about.get("subject") or about.get("course", ""),
                    "keywords": list(about.get("keywords", [])), "language": about.get("language", "en")},
        "data": session.data.summary(),
        "devices": sorted({f"{r.device['name']} ({r.backend})" for r in results}),
        "precision": _precision_line({p.exp.name: p.entry.result.precision
                                      for p in session.planned if p.entry is not None}),
        "tool_version": __version__,
        "date": dt.date.today().isoformat(),
    }


def provenance(session: Session) -> dict[str, Any]:
    """The appendix's provenance page: what a reader needs to know where every number came from
    (the data's fingerprint, the software, the devices, the seeds, the project's commit)."""
    results = {p.exp.name: p.entry.result for p in session.planned if p.entry is not None}
    versions: dict[str, set[str]] = {}
    for r in results.values():
        for package, version in r.versions.items():
            versions.setdefault(package, set()).add(version)
    seeds: dict[int, list[str]] = {}
    for p in session.planned:
        seeds.setdefault(int(p.exp.model.seed), []).append(p.exp.name)
    data = session.data.summary()
    return {"data": data, "profile": session.project.profile, "tool_version": __version__,
            "python": platform.python_version(),
            "versions": {k: ", ".join(sorted(v)) for k, v in sorted(versions.items())},
            "devices": sorted({f"{r.device['name']} ({r.backend})" for r in results.values()}),
            "precision": _precision_line({n: r.precision for n, r in results.items()}),
            "seeds": [{"seed": seed, "runs": names} for seed, names in sorted(seeds.items())],
            "trained": len(results), "declared": len(session.planned),
            "train_seconds": sum(r.train_seconds for r in results.values()),
            "commit": git_commit(session.project.root)}


def git_commit(root: Path) -> str | None:
    """The project's git commit, marked when the working tree differs from it; None outside git."""
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=False)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")


def _compact(layers: Any) -> dict[str, Any]:
    """A layer table without the rows that neither hold parameters nor change the shape (a
    separate Activation, a Dropout), and what was left out: the appendix's compact form."""
    shown, hidden = [], []
    previous = None
    for layer in layers:
        if layer.params == 0 and previous is not None and layer.output_shape == previous:
            hidden.append(layer.type)
        else:
            shown.append(layer)
        previous = layer.output_shape
    counts = {t: hidden.count(t) for t in dict.fromkeys(hidden)}
    return {"layers": shown, "hidden": [f"{n} {t}" for t, n in counts.items()]}


def _gan_item(name: str, entry: store.Entry[Any], assets: Path, draw: bool = True, digits: int = 2) -> dict[str, Any]:
    """A GAN run's tables, its figures where nothing else shows them, and its text log, copied
    beside the report."""
    result = entry.result
    item: dict[str, Any] = {"result": result, "losses": None, "progress": None, "final_samples": None,
                            "log": None, "epoch_rows": _history_rows(result.history)}
    if draw:
        item.update(gan_training.draw(name, entry, assets, digits=digits))
    log = entry.file("output.txt")
    if log is not None:
        shutil.copyfile(log, assets / f"{name}-output.txt")
        item["log"] = f"assets/{name}-output.txt"
    return item


# A transparent pixel: on each page reserved for an attached page it carries that page's text as
# alt text, the tagged PDF's Figure standing for the page (whose own drawing is an artifact).
BLANK_PIXEL = ("data:image/svg+xml;base64,"
               "PHN2ZyB4bWxucz0iaHR0cDovL3d3dy53My5vcmcvMjAwMC9zdmciIHdpZHRoPSIxIiBoZWlnaHQ9IjEiLz4=")


def _attachment(path: Path, assets: Path, slug: str) -> dict[str, Any]:
    """Check an attached PDF and copy it beside the report; its pages are merged into the PDF."""

    pages = attachment_pages(path)  # checks size, encryption and readability first
    target = assets / "attachments" / f"{slug}-{path.name}"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, target)
    texts = attachment_text(path)
    return {"file": path.name, "source": str(target), "href": f"assets/attachments/{target.name}", "pages": pages,
            "anchor": f"attach-{slug}", "texts": texts + [""] * (pages - len(texts)), "blank": BLANK_PIXEL}


def _precision_line(precisions: dict[str, str]) -> str:
    """The title page's precision: one word when every run agrees, else which ran in bfloat16."""
    if not precisions:
        return "float32"
    mixed = sorted(name for name, p in precisions.items() if p != "float32")
    if not mixed:
        return "float32 throughout"
    if len(mixed) == len(precisions):
        return "mixed_bfloat16 throughout (bfloat16 compute, float32 weights and outputs)"
    return (f"float32, except mixed_bfloat16 (bfloat16 compute, float32 weights) in {len(mixed)} run(s): "
            + ", ".join(mixed))
