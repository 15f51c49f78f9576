"""Everything the templates and commentary see, gathered from the plan's stored results: one
entry per section with its runs, views, figures and filled commentary, and the title page's facts."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from reportgen import __version__
from reportgen.report import lock
from reportgen.report.commentary import UnknownPlaceholder, render_commentary
from reportgen.report.render import attachment_pages
from reportgen.train import store
from reportgen.train.plan import Session, rebuild_command
from reportgen.views import analysis, figures
from reportgen.views.base import ViewInputs, lookup


def _history_rows(history: dict[str, list[float]]) -> list[dict[str, Any]]:
    """One row per finished epoch with every recorded column (a diverged run's lists may be short)."""
    n = len(history.get("epoch") or history.get("loss", []))
    return [{"epoch": e + 1, **{c: v[e] for c, v in history.items() if c != "epoch" and e < len(v)}}
            for e in range(n)]


def collect(session: Session) -> tuple[dict[str, Any], list[str]]:
    """Everything the templates and commentary see, and the warnings raised while gathering it.
    Figures are drawn here into build/assets, named after what they show."""

    assets = session.options.out / "assets"
    assets.mkdir(parents=True, exist_ok=True)
    warnings: list[str] = []
    by_name = {p.exp.name: p for p in session.planned}
    facts = {name: analysis.facts(p.entry.result, p.exp.config()) for name, p in by_name.items()
             if p.entry is not None}
    declared = list(by_name)
    entries = {name: p.entry for name, p in by_name.items()}
    recorded = lock.read_lock(session.project.experiments_dir)["slots"].get(
        lock.lock_key(session.project.profile, session.data.name, session.data.fingerprint), {})

    sections = []
    for section in session.project.sections:
        experiments = []
        for exp in section.experiments:
            p = by_name[exp.name]
            item: dict[str, Any] = {"name": exp.name, "code_cell": exp.code_cell(), "state": p.state,
                                    "error": p.error, "reasons": p.reasons}
            item["kind"] = exp.model.kind
            if p.entry is not None and exp.model.kind == "gan":
                item.update(_gan_item(exp.name, p.entry, assets), facts=facts[exp.name], cache_hit=p.cache_hit)
            elif p.entry is not None:
                result = p.entry.result
                curves = f"curves-{exp.name}.svg"
                figures.save_svg(figures.learning_curves(exp.name, result.history), assets / curves)
                item.update(result=result, facts=facts[exp.name], curves=f"assets/{curves}",
                            epochs=_history_rows(result.history), cache_hit=p.cache_hit)
            elif p.error:
                warnings.append(f"{exp.name}: failed: {p.error}")
            experiments.append(item)

        views: list[dict[str, Any]] = []
        view_facts: dict[str, Any] = {}
        # Views over classifiers (parameters, overlays, convergence) leave the section's GANs out:
        # a GAN has no validation accuracy to place.
        classifiers = frozenset(n for n, f in facts.items() if f.get("kind") != "gan")
        for i, view in enumerate(section.views):
            kind = lookup(view.kind)
            inputs = ViewInputs(assets=assets, figure=f"{section.slug}-{view.kind}-{i}.svg", section=section.slug,
                                runs=tuple(e.name for e in section.experiments), facts=facts,
                                classifiers=classifiers, entries=entries, measures=session.measures,
                                validation_images=session.data.x_val)
            collected = kind.collect(view, inputs)
            entry: dict[str, Any] = {"kind": view.kind, "measured": None, "figure": None, "figures": [],
                                     "caption": view.caption, "partial": kind.partial, **collected.entry}
            if collected.facts is not None:
                kind.add_facts(view_facts, view, collected.facts)
            views.append(entry)

        context = {"runs": facts, "section": {"number": section.number, "title": section.title,
                                                "views": view_facts},
                   "project": {"title": session.project.title, "data": session.data.name}}
        known = declared + ["runs", "section", "project", "views"] + sorted(
            {k for f in facts.values() for k in f})
        quotes: list[str] = []
        try:
            html, warning = render_commentary(section.commentary, context, known, quotes)
        except UnknownPlaceholder as exc:
            # A name that would exist once every run has a result is a gap, not a typo.
            expected = set(by_name) | {v.kind for v in section.views}
            unmeasured = any(v.get("unmeasured") for v in views)
            if exc.name in expected and (unmeasured or any(p.entry is None for p in session.planned)):
                where = f"{exc.file}:{exc.line}" if exc.line else f"{exc.file}"
                named = by_name.get(exc.name)
                gap = ("has no result for its current configuration (" + "; ".join(named.reasons) + ")"
                       if named is not None and named.state == "stale" else
                       "is not measured yet" if unmeasured and named is None else "has no result yet")
                html, warning = None, (f"{where}: placeholder {exc.name!r} {gap}; "
                                       f"run `{rebuild_command(session)}` to fill this slot")
            else:
                raise
        stale = None
        if html is not None:
            source = section.commentary.read_text(encoding="utf-8")
            text = lock.text_hash(source)
            slot_key = lock.slot_key(section.number, section.commentary, session.project.experiments_dir)
            stale = lock.quote_changes(recorded.get(slot_key), text, quotes)
            session.slots[slot_key] = {"text": text, "quotes": quotes, "section": section.number,
                                       "stale": bool(stale)}
            if stale:
                warning = (f"{section.commentary}: written for earlier results (" + lock.some_changes(stale)
                           + f"); edit it, or run `reportgen check --accept {section.number}` if it still holds")
        if warning:
            # As the project's own files are named in its README and errors: from its folder, so the
            # report handed in does not carry the author's home directory.
            warning = warning.replace(f"{session.project.root}{os.sep}", "")
            warnings.append(warning)
        attachment = _attachment(section.attach, assets, section.slug) if section.attach else None
        sections.append({"number": section.number, "title": section.title, "slug": section.slug,
                         "attachment": attachment,
                         "anchor": "sec-" + section.number.replace(".", "-"),
                         "commentary": html, "commentary_warning": warning, "stale": stale,
                         "stale_summary": lock.some_changes(stale) if stale else None,
                         "experiment_names": [e.name for e in section.experiments], "view_facts": view_facts,
                         "commentary_file": section.commentary.name, "commentary_path": str(section.commentary),
                         "experiments": experiments, "views": views})

    devices = sorted({f"{p.entry.result.device['name']} ({p.entry.result.backend})"
                      for p in session.planned if p.entry is not None})
    precisions = {p.exp.name: p.entry.result.precision
                  for p in session.planned if p.entry is not None}
    context = {
        "project": {"title": session.project.title, "author": session.project.author,
                    "profile": session.project.profile},
        "data": session.data.summary(),
        "devices": devices,
        "precision": _precision_line(precisions),
        "tool_version": __version__,
        "date": dt.date.today().isoformat(),
        "sections": sections,
        "runs": facts,
        "warnings": warnings,
        "rebuild": rebuild_command(session),  # the command that fills what is missing, in hints
        "stylesheet": "assets/style.css",
    }
    return context, warnings


def _pick_epochs(epochs: list[int], count: int = 5) -> list[int]:
    """First, last and evenly spaced epochs between: the rows of a sample-progress figure."""
    if len(epochs) <= count:
        return list(epochs)
    picks = {round(i * (len(epochs) - 1) / (count - 1)) for i in range(count)}
    return [epochs[i] for i in sorted(picks)]


def _gan_item(name: str, entry: store.Entry, assets: Path) -> dict[str, Any]:
    """A GAN run's figures (losses, sample grids) and its text log, copied beside the report."""

    result = entry.result
    history = result.history
    samples = entry.arrays()["samples"]
    item: dict[str, Any] = {"result": result, "losses": None, "progress": None, "final_samples": None,
                            "log": None, "epoch_rows": _history_rows(history)}
    if history.get("epoch"):
        figures.save_svg(figures.gan_losses(name, history), assets / f"gan-losses-{name}.svg")
        item["losses"] = f"assets/gan-losses-{name}.svg"
    if len(samples):
        chosen = _pick_epochs(history["epoch"])
        rows = [samples[history["epoch"].index(e)] for e in chosen]
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
