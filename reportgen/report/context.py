"""Everything the templates and commentary see, gathered from the plan's stored results: one
entry per section with its runs, views, figures and filled commentary, and the title page's facts."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reportgen import __version__
from reportgen.project.spec import Experiment, Section
from reportgen.report import lock
from reportgen.report.commentary import UnknownPlaceholder, render_commentary
from reportgen.report.render import attachment_pages
from reportgen.train import store
from reportgen.train.plan import Planned, Session, rebuild_command
from reportgen.train.result import GanResult
from reportgen.views import analysis, figures
from reportgen.views.base import ViewInputs, lookup


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
    recorded = lock.read_lock(session.project.experiments_dir)["slots"].get(
        lock.lock_key(session.project.profile, session.data.name, session.data.fingerprint), {})
    gathered = _Gathered(session, assets, by_name, facts, recorded, [])
    sections = [_section(section, gathered) for section in session.project.sections]
    return {**_title_page(session), "sections": sections, "runs": facts, "warnings": gathered.warnings,
            "rebuild": rebuild_command(session),  # the command that fills what is missing, in hints
            "stylesheet": "assets/style.css"}, gathered.warnings


def _section(section: Section, g: _Gathered) -> dict[str, Any]:
    """One section: its runs, its views, and its commentary filled from both."""
    experiments = [_run_item(exp, g) for exp in section.experiments]
    views, view_facts = _views(section, g)
    html, warning, stale = _commentary(section, views, view_facts, g)
    attachment = _attachment(section.attach, g.assets, section.slug) if section.attach else None
    if attachment is not None:
        attachment["title"] = section.attach_title or f"Attached: {attachment['file']}"
    return {"number": section.number, "title": section.title, "slug": section.slug,
            "attachment": attachment,
            "anchor": "sec-" + re.sub(r"[^A-Za-z0-9_-]", "-", section.number),
            "commentary": html, "commentary_warning": warning, "stale": stale,
            "stale_summary": lock.some_changes(stale) if stale else None,
            "experiment_names": [e.name for e in section.experiments], "view_facts": view_facts,
            "commentary_file": section.commentary.name, "commentary_path": str(section.commentary),
            "experiments": experiments, "views": views}


def _run_item(exp: Experiment, g: _Gathered) -> dict[str, Any]:
    """One run's block: its settings and state, and with a result its curves, epochs and facts."""
    p = g.by_name[exp.name]
    item: dict[str, Any] = {"name": exp.name, "code_cell": exp.code_cell(), "state": p.state,
                            "error": p.error, "reasons": p.reasons, "kind": exp.model.kind}
    if p.entry is not None and isinstance(p.entry.result, GanResult):
        item.update(_gan_item(exp.name, p.entry.result, p.entry, g.assets), facts=g.facts[exp.name],
                    cache_hit=p.cache_hit)
    elif p.entry is not None:
        result = p.entry.result
        curves = f"curves-{exp.name}.svg"
        figures.save_svg(figures.learning_curves(exp.name, result.history), g.assets / curves)
        item.update(result=result, facts=g.facts[exp.name], curves=f"assets/{curves}",
                    epochs=_history_rows(result.history), cache_hit=p.cache_hit)
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
                            classes=g.session.data.classes)
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
    context = {"runs": g.facts, "section": {"number": section.number, "title": section.title,
                                            "views": view_facts},
               "project": {"title": session.project.title, "data": session.data.name}}
    known = list(g.by_name) + ["runs", "section", "project", "views"] + sorted(
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
        session.slots[slot_key] = {"text": text, "quotes": quotes, "section": section.number, "stale": bool(stale)}
        if stale:
            warning = (f"{section.commentary}: written for earlier results (" + lock.some_changes(stale)
                       + f"); edit it, or run `reportgen check --accept {section.number}` if it still holds")
    if warning:
        # As the project's own files are named in its README and errors: from its folder, so the
        # report handed in does not carry the author's home directory.
        warning = warning.replace(f"{session.project.root}{os.sep}", "")
        g.warnings.append(warning)
    return html, warning, stale


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


def _pick_epochs(epochs: list[int], count: int = 5) -> list[int]:
    """First, last and evenly spaced epochs between: the rows of a sample-progress figure."""
    if len(epochs) <= count:
        return list(epochs)
    picks = {round(i * (len(epochs) - 1) / (count - 1)) for i in range(count)}
    return [epochs[i] for i in sorted(picks)]


def _gan_item(name: str, result: GanResult, entry: store.Entry[Any], assets: Path) -> dict[str, Any]:
    """A GAN run's figures (losses, sample grids) and its text log, copied beside the report."""

    history = result.history
    samples = entry.arrays()["samples"]
    item: dict[str, Any] = {"result": result, "losses": None, "progress": None, "final_samples": None,
                            "log": None, "epoch_rows": _history_rows(history)}
    if history.get("epoch"):
        figures.save_svg(figures.gan_losses(name, history), assets / f"gan-losses-{name}.svg")
        item["losses"] = f"assets/gan-losses-{name}.svg"
    if len(samples):
        epochs = [int(e) for e in history["epoch"]]
        chosen = _pick_epochs(epochs)
        rows = [samples[epochs.index(e)] for e in chosen]
        figures.save_svg(figures.sample_progress(np.stack(rows), chosen), assets / f"gan-progress-{name}.svg")
        figures.save_svg(figures.sample_grid(samples[-1][:36]), assets / f"gan-samples-{name}.svg")
        item.update(progress=f"assets/gan-progress-{name}.svg", progress_epochs=chosen,
                    final_samples=f"assets/gan-samples-{name}.svg", final_epoch=history["epoch"][-1])
    log = entry.file("output.txt")
    if log is not None:
        shutil.copyfile(log, assets / f"{name}-output.txt")
        item["log"] = f"assets/{name}-output.txt"
    return item


def _attachment(path: Path, assets: Path, slug: str) -> dict[str, Any]:
    """Check an attached PDF and copy it beside the report; its pages are merged into the PDF."""

    pages = attachment_pages(path)  # checks size, encryption and readability first
    target = assets / "attachments" / f"{slug}-{path.name}"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, target)
    return {"file": path.name, "source": str(target), "href": f"assets/attachments/{target.name}", "pages": pages,
            "anchor": f"attach-{slug}"}


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
