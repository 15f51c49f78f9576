"""`reportgen verify`: re-run the experiments a build's manifest records, from their recorded
configuration and seeds, and check each metric against the recorded one within a tolerance.

The manifest is enough: configuration, seed, data fingerprint, code fingerprint and versions are in
it. Where this machine's code, data, backend or versions differ from the recorded ones, that is said
before anything runs; data that differ stop the verification, since no metric could agree by design.
"""

from __future__ import annotations

import fnmatch
import json
import random
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from reportgen.errors import SpecError
from reportgen.grade.compare import (
    METRICS,
    Build,
    CompareError,
    Row,
    Tolerance,
    compare_metrics,
    repeated_metrics,
    runs_of,
)
from reportgen.project import spec
from reportgen.project.data import load, load_source
from reportgen.project.dataset import Dataset, subset
from reportgen.project.dataset import sample as sample_of
from reportgen.project.settings import Environment
from reportgen.project.spec import builder_path
from reportgen.train import store
from reportgen.train.machine import backend_name, check_environment, versions
from reportgen.train.run import train
from reportgen.views import analysis


@dataclass
class Plan:
    """What verify will re-run, and what differs between the recorded build and this machine."""

    build: Build
    chosen: list[dict[str, Any]]
    experiments: dict[str, spec.Experiment]
    data: Dataset
    notes: list[str]
    sample_seed: int | None = None
    env: Environment = field(default_factory=Environment)


def choose(build: Build, only: list[str], sample: int | None,
           seed: int | None) -> tuple[list[dict[str, Any]], int | None]:
    """The recorded experiments named by --only (names, globs or section numbers), then --sample K of
    them at random with a seed that is printed so the choice can be repeated."""
    recorded = list(build.manifest["experiments"])
    if only:
        chosen = [e for e in recorded
                  if any(p == str(e.get("section")) or fnmatch.fnmatchcase(e["name"], p) for p in only)]
        if not chosen:
            raise CompareError(f"--only {only} matches no experiment of {build.path}; it records "
                               f"{[e['name'] for e in recorded]}")
    else:
        chosen = recorded
    if sample is not None and sample < len(chosen):
        seed = seed if seed is not None else random.SystemRandom().randrange(1_000_000)
        picked = {e["name"] for e in random.Random(seed).sample(chosen, sample)}
        return [e for e in chosen if e["name"] in picked], seed
    return chosen, None


def experiment_of(recorded: dict[str, Any], source: Path) -> spec.Experiment:
    """Rebuild an experiment from the configuration its manifest entry records."""
    config = dict(recorded.get("config") or {})
    try:
        model = spec.parse_model({k: v for k, v in config.items() if k not in ("name", "data")})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise CompareError(f"{source}: experiment {recorded.get('name')!r}: its recorded configuration is not "
                           f"valid for this reportgen ({problems})") from None
    return spec.Experiment(name=str(config.get("name", recorded["name"])), section=str(recorded.get("section", "")),
                           model=model, data=str(config.get("data", "")), source=source)


def recorded_data(build: Build, data_file: Path | None, project_root: Path) -> Dataset:
    """The data set the build used, loaded here: the same source, sample and image limits. MNIST
    by its name; any other source as the project in `project_root` declares it (for the profile
    the build was made with)."""
    data = build.data
    name = str(data.get("name", "")).split("[")[0]
    if name in ("mnist", "mnist-sample"):
        loaded = load(name, data_file)
    else:
        profile = str(build.manifest.get("profile") or "full")
        try:
            project = spec.load_project(project_root, profile)
        except SpecError as exc:
            raise CompareError(f"the build used the data set {data.get('name')!r}, which only its project declares, "
                               f"and the project in {project_root} cannot be read ({exc}); pass -C PROJECT") from None
        loaded = load_source(project.data, project_root, data_file)
        if project.sample is not None:
            loaded = sample_of(loaded, *project.sample)
    limits = build.manifest.get("limits") or {}
    if limits.get("train") or limits.get("val"):
        loaded = subset(loaded, limits.get("train") or len(loaded.y_train), limits.get("val") or len(loaded.y_val))
    return loaded


def plan(build: Build, project_root: Path, only: list[str], sample: int | None, seed: int | None,
         data_file: Path | None, env: Environment | None = None) -> Plan:
    """Everything checked before training: the choice, the configurations, the data, the code.
    `env`: the REPORTGEN_* variables (a local MNIST file, the XLA switches the re-runs train with)."""
    env = env or Environment()

    chosen, sample_seed = choose(build, only, sample, seed)
    manifest_path = build.path / "manifest.json"
    experiments = {e["name"]: experiment_of(e, manifest_path) for e in chosen}
    data = recorded_data(build, data_file or env.mnist_file, project_root)
    recorded_fp = build.data.get("fingerprint")
    if data.fingerprint != recorded_fp:
        raise CompareError(
            f"the data here are not the data the build used: it recorded {build.data.get('name')} with fingerprint "
            f"{str(recorded_fp)[:12]}, and here {data.name} has {data.fingerprint[:12]}. Pass --data-file with the "
            "MNIST file the build was made from; nothing was run.")
    notes = []
    here_backend, here_versions = backend_name(), versions()

    check_environment(env)  # an XLA option XLA refuses would fail every run and read as "does not reproduce"
    exp_dir = project_root / spec.EXPERIMENTS_DIR

    for name, exp in experiments.items():
        builder = getattr(exp.model, "builder", None)
        if builder and not builder_path(builder, exp_dir).is_file():
            raise CompareError(f"experiment {name!r} is built by {builder}, and {builder_path(builder, exp_dir)} "
                               "is not here: pass -C PROJECT, the project folder the build was made from; "
                               "nothing was run.")
    for e in chosen:
        inputs = e.get("inputs") or {}
        if inputs.get("code") and inputs["code"] != store.code_fingerprint(experiments[e["name"]], exp_dir):
            notes.append(f"{e['name']}: the training code here differs from the code that made it (reportgen "
                         f"{(build.manifest.get('tool') or {}).get('version')} recorded); results may differ")
    if build.manifest.get("backend") != here_backend:
        notes.append(f"backend: the build used {build.manifest.get('backend')}, this machine uses {here_backend}; "
                     "expect differences within seed noise, not identical numbers")
    recorded_versions = build.manifest.get("versions") or {}
    for package in sorted(set(recorded_versions) | set(here_versions)):
        if recorded_versions.get(package) != here_versions.get(package):
            notes.append(f"{package}: the build used {recorded_versions.get(package)}, "
                         f"here {here_versions.get(package)}")
    return Plan(build, chosen, experiments, data, notes, sample_seed, env)


def results_json_mismatches(build: Build) -> dict[str, list[str]]:
    """Where build/results.json disagrees with the manifest: both are outputs, neither is edited by hand."""
    path = build.path / "results.json"
    if not path.is_file():
        return {}
    try:
        rows = {r["name"]: r for r in json.loads(path.read_text(encoding="utf-8"))["experiments"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CompareError(f"{path}: cannot be read ({exc})") from None
    out: dict[str, list[str]] = {}
    for e in build.manifest["experiments"]:
        row = rows.get(e["name"], {})
        for metric, value in e["metrics"].items():
            if metric in row and str(row[metric]) != str(value):  # str: a diverged run's NaN equals itself
                out.setdefault(e["name"], []).append(f"results.json has {metric} = {row[metric]!r}, "
                                                     f"the manifest {value!r}")
    return out


def run(p: Plan, project_root: Path, tolerance: Tolerance, progress: Any,
        on_done: Callable[[Row], None] = lambda row: None) -> list[Row]:
    """Train each chosen experiment again and compare its metrics with the recorded ones."""

    mismatched = results_json_mismatches(p.build)
    rows = []
    again_by_name: dict[str, dict[str, Any]] = {}
    size = p.build.validation_size
    with tempfile.TemporaryDirectory(prefix="reportgen-verify-") as scratch:
        for i, recorded in enumerate(p.chosen, start=1):
            exp = p.experiments[recorded["name"]]
            row = Row(name=exp.name, section=exp.section, kind=exp.model.kind, state="agrees")
            if all(v is None for v in recorded["metrics"].values()):
                row.state, row.note = "skipped", "the build recorded no result for it (it failed or never ran)"
                rows.append(row)
                on_done(row)
                continue
            progress.start_experiment(i, len(p.chosen), exp.name, exp.model.epochs)
            try:
                outcome = train(exp, p.data, project_root / spec.EXPERIMENTS_DIR, progress,
                                checkpoints=Path(scratch) / exp.name, key=recorded.get("key", ""), env=p.env)
            except Exception as exc:  # report it and go on with the others
                row.state, row.note = "failed", f"{type(exc).__name__}: {exc}"
                rows.append(row)
                on_done(row)
                continue
            facts = analysis.facts(outcome.result, exp.config())
            again = {m: facts.get(m) for m in METRICS}
            row.diffs = compare_metrics(recorded["metrics"], again, tolerance, size)
            same_weights = outcome.result.weights_sha256 == recorded.get("weights_sha256")
            notes = ["bit-identical weights" if same_weights else "weights differ"]
            notes += mismatched.get(exp.name, [])
            if not all(d.ok for d in row.diffs) or exp.name in mismatched:
                row.state = "differs"
            row.note = "; ".join(notes)
            rows.append(row)
            again_by_name[exp.name] = again
            on_done(row)
    return fold_repeats(rows, {e["name"]: e for e in p.chosen}, again_by_name, tolerance, size)


def fold_repeats(rows: list[Row], recorded: dict[str, dict[str, Any]], again: dict[str, dict[str, Any]],
                 tolerance: Tolerance, size: int | None) -> list[Row]:
    """The rows of a run two or more of whose repeats were re-run, as one row comparing the recorded
    repeats' metrics with the re-runs' by their spread (compare.repeated_metrics); the rest as they are."""
    groups = runs_of([r.name for r in rows])
    by_name = {r.name: r for r in rows}
    out: list[Row] = []
    for run, members in groups.items():
        done = [n for n in members if n in again and by_name[n].state in ("agrees", "differs")]
        if len(done) < 2:
            out.extend(by_name[n] for n in members)
            continue
        first = by_name[done[0]]
        row = Row(name=run, section=first.section, kind=first.kind, state="agrees")
        row.diffs = repeated_metrics([recorded[n]["metrics"] for n in done], [again[n] for n in done], tolerance, size)
        identical = sum("bit-identical" in by_name[n].note for n in done)
        row.note = (f"{len(done)} repeats re-run, compared by their spread; bit-identical weights in {identical} of "
                    f"{len(done)}")
        if not all(d.ok for d in row.diffs):
            row.state = "differs"
        out.append(row)
        out.extend(by_name[n] for n in members if n not in done)
    return out
