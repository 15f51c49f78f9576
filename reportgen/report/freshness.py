"""Whether the rendered report is still current, as make decides: by the hash of everything it is made
from, recorded in manifest.json when it was written, and the hash of what was written. When neither
changed, a build or render leaves the files as they are instead of rendering them again."""

from __future__ import annotations

import datetime as dt
import hashlib
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from reportgen.report.context import git_commit
from reportgen.report.render import FIGURE_CACHE as FIGURE_CACHE  # where pipeline and preview look
from reportgen.report.render import PACKAGE_TEMPLATES
from reportgen.train.plan import Session

# What draws and lays out the report: a new version of one may change it.
RENDERERS = ("matplotlib", "weasyprint", "pydyf", "jinja2", "markdown-it-py", "mdit-py-plugins", "nh3", "pypdf",
             "adjustText")


def _files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def _feed_files(digest: Any, folder: Path) -> None:
    for path in _files(folder):
        digest.update(f"\0{path.relative_to(folder).as_posix()}\0".encode())
        digest.update(path.read_bytes())


@cache
def _tool() -> str:
    """reportgen's own code and templates, and the renderers' versions."""
    digest = hashlib.sha256()
    _feed_files(digest, Path(__file__).resolve().parents[1])
    _feed_files(digest, PACKAGE_TEMPLATES)
    for name in RENDERERS:
        try:
            digest.update(f"{name}={metadata.version(name)};".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{name}=none;".encode())
    return digest.hexdigest()


def inputs_hash(session: Session, pdf: bool = True) -> str:
    """The hash of everything the report is made from: the project's files (experiments/, templates/),
    reportgen's code and templates and the renderers' versions, every run's result key and state,
    the measurements found, the data, the options that shape the output, the date on the title page
    and the git commit on the provenance page."""
    project = session.project
    digest = hashlib.sha256(_tool().encode())
    for folder in (project.experiments_dir, project.root / "templates"):
        _feed_files(digest, folder)
    options = session.options
    digest.update(repr((project.profile, session.data.name, session.data.fingerprint, options.train_limit,
                        options.val_limit, options.precision, options.pdf_variant, options.self_contained, pdf,
                        str(options.out.resolve()), dt.date.today().isoformat(), git_commit(project.root),
                        session.backend, sorted(session.versions.items()))).encode())
    # A result trained again under the same key (--force) is another result: its record is hashed too.
    for p in session.planned:
        digest.update(repr((p.exp.name, p.key, p.state, p.error, p.reasons)).encode())
        if p.entry is not None:
            digest.update((p.entry.path / "result.json").read_bytes())
    for name, measured in sorted(session.measures.items()):
        digest.update(repr((name, measured.key)).encode())
        digest.update((measured.path / "result.json").read_bytes())
    return digest.hexdigest()


def outputs_hash(out: Path) -> str:
    """The hash of what a render wrote into the build folder (manifest.json and the figure cache aside)."""
    digest = hashlib.sha256()
    for path in _files(out):
        relative = path.relative_to(out)
        if relative.parts[0] == FIGURE_CACHE or relative.as_posix() == "manifest.json":
            continue
        digest.update(f"\0{relative.as_posix()}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def current(session: Session, manifest: dict[str, Any], pdf: bool = True) -> bool:
    """Whether the report in the build folder was rendered from exactly these inputs and has not
    been changed or removed since."""
    recorded = manifest.get("rendered_from")
    if not isinstance(recorded, dict):
        return False
    out = session.options.out
    if not (out / "report.html").is_file() or (pdf and not (out / "report.pdf").is_file()):
        return False
    return recorded.get("inputs") == inputs_hash(session, pdf) and recorded.get("outputs") == outputs_hash(out)
