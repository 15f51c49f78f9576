"""Builds side by side: read a build's manifest, compare its metrics with another build's (or with
a re-run's, for `reportgen verify`) within tolerances, and list what differs in how they were made.

Nothing here trains; page_context() asks figures.py for the curves of the --html page.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reportgen import __version__
from reportgen.errors import ReportgenError
from reportgen.project.spec import REPEAT_MARK
from reportgen.views import figures

MANIFEST = "manifest.json"

# Exit codes shared by compare, verify and check: agree, differ (different projects or data sets
# included), could not compare at all (unreadable or invalid input).
EXIT_AGREE, EXIT_DIFFER, EXIT_BAD_INPUT = 0, 1, 2

# The metrics compared, per kind of value. Accuracies are fractions measured on the validation set;
# losses are compared relative to their size; counts must be equal.
ACCURACIES = ("val_accuracy", "accuracy", "best_val_accuracy")
LOSSES = ("val_loss", "loss")
# A GAN's numbers are averages over its training batches, which swing more between seeds.
GAN_METRICS = ("d_loss", "g_loss", "d_acc_real", "d_acc_fake")
COUNTS = ("params", "epochs")
METRICS = ("val_accuracy", "val_loss", "accuracy", "loss", "best_val_accuracy", "d_loss", "g_loss",
           "d_acc_real", "d_acc_fake", "params", "epochs")
# Shown for every experiment; the others only when they differ.
HEADLINE = {"gan": ("d_loss", "g_loss"), "classifier": ("val_accuracy", "val_loss")}
# The --html page draws the curves of at most this many changed experiments (it stays one small file).
MAX_FIGURES = 40
# Curves drawn for a changed experiment.
CURVES = {"gan": ["d_loss", "g_loss"], "classifier": ["val_accuracy", "val_loss"]}


class CompareError(ReportgenError):
    """A build folder or manifest that cannot be read or is not a reportgen build."""


@dataclass(frozen=True)
class Build:
    """One build as its manifest records it."""

    path: Path
    manifest: dict[str, Any]

    @property
    def experiments(self) -> dict[str, dict[str, Any]]:
        return {e["name"]: e for e in self.manifest["experiments"]}

    @property
    def project(self) -> str | None:
        return (self.manifest.get("project") or {}).get("title")

    @property
    def data(self) -> dict[str, Any]:
        return dict(self.manifest.get("data") or {})

    @property
    def validation_size(self) -> int | None:
        size = self.data.get("validation")
        return int(size) if isinstance(size, int) and size > 0 else None


def load_build(path: Path) -> Build:
    """A build folder (holding manifest.json) or a manifest file; CompareError says what is wrong."""
    file = path / MANIFEST if path.is_dir() else path
    if not file.exists():
        raise CompareError(f"{path}: no {MANIFEST} here; expected a build folder made by `reportgen build` "
                           "(such as build/) or its manifest.json")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CompareError(f"{file}: cannot be read as JSON ({exc})") from None
    if not isinstance(data, dict) or (data.get("tool") or {}).get("name") != "reportgen":
        raise CompareError(f"{file}: not a reportgen manifest (expected a JSON object with tool.name \"reportgen\")")
    experiments = data.get("experiments")
    if not isinstance(experiments, list) or not all(isinstance(e, dict) and isinstance(e.get("name"), str)
                                                    for e in experiments):
        raise CompareError(f"{file}: key 'experiments': expected a list of objects with a name")
    for key in ("project", "data", "limits", "versions", "git", "tool"):
        if data.get(key) is not None and not isinstance(data[key], dict):
            raise CompareError(f"{file}: key {key!r}: expected an object, got {type(data[key]).__name__}")
    for key in ("devices", "determinism"):
        value = data.get(key)
        if value is not None and not (isinstance(value, list) and all(isinstance(v, dict) for v in value)):
            raise CompareError(f"{file}: key {key!r}: expected a list of objects")
    for e in experiments:
        for key in ("config", "history", "inputs"):
            if e.get(key) is not None and not isinstance(e[key], dict):
                raise CompareError(f"{file}: experiment {e['name']!r}, key {key!r}: expected an object")
        if not isinstance(e.get("metrics"), dict):
            raise CompareError(f"{file}: experiment {e['name']!r} has no 'metrics' (written by an older "
                               "reportgen?); rebuild it with `reportgen build` to compare it")
        bad = [k for k, v in e["metrics"].items() if v is not None and not isinstance(v, int | float)]
        if bad:
            raise CompareError(f"{file}: experiment {e['name']!r}: metrics {bad} must be numbers or null")
    return Build(path=file.parent, manifest=data)


# --- tolerances ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tolerance:
    """How far two values of a metric may be apart and still agree.

    accuracy: absolute; None means three standard deviations of the difference of two accuracies
    measured on n validation images, sqrt(2 p (1 - p) / n), but never below one image (1/n).
    loss / gan: relative to the larger value (a GAN's losses and discriminator accuracies swing
    more between seeds)."""

    accuracy: float | None = None
    loss: float = 0.10
    gan: float = 0.25

    def rule(self, metric: str) -> str:
        """Which rule `allowed` applies to the metric."""
        if metric in COUNTS:
            return EQUAL
        if metric in ACCURACIES:
            return FIXED if self.accuracy is not None else BINOMIAL
        return RELATIVE

    def allowed(self, metric: str, a: float, b: float, validation_size: int | None) -> float:
        if metric in COUNTS:
            return 0.0
        if metric in ACCURACIES:
            if self.accuracy is not None:
                return self.accuracy
            return default_accuracy_tolerance((a + b) / 2, validation_size)
        relative = self.gan if metric in GAN_METRICS else self.loss
        return relative * max(abs(a), abs(b))


def default_accuracy_tolerance(p: float, n: int | None) -> float:
    n = n or 10_000
    p = min(max(p, 0.01), 0.99)  # a measured 100% still has sampling noise
    return max(3 * math.sqrt(2 * p * (1 - p) / n), 1 / n)


# --- comparing metrics ------------------------------------------------------------------------------


# How far apart a metric may be: by the repeats' spread (both sides repeated), by sampling noise on the
# validation images (an accuracy of single runs), relative to its size (a loss), or not at all (a count).
SPREAD, BINOMIAL, FIXED, RELATIVE, EQUAL = "spread", "binomial", "fixed", "relative", "equal"


@dataclass(frozen=True)
class MetricDiff:
    metric: str
    a: float | None
    b: float | None
    allowed: float | None
    rule: str = ""  # which of the rules above gave `allowed`

    @property
    def diff(self) -> float | None:
        return None if self.a is None or self.b is None else self.b - self.a

    @property
    def ok(self) -> bool:
        if self.a is None or self.b is None:
            return self.a is None and self.b is None
        if not (math.isfinite(self.a) and math.isfinite(self.b)):
            return str(self.a) == str(self.b)
        return abs(self.b - self.a) <= (self.allowed or 0.0) + 1e-12


def family(kind: str | None) -> str:
    return "gan" if kind == "gan" else "classifier"


def compare_metrics(a: dict[str, Any], b: dict[str, Any], tolerance: Tolerance,
                    validation_size: int | None) -> list[MetricDiff]:
    """Every metric either side has, in a fixed order, with how far apart it may be."""
    out = []
    for metric in METRICS:
        va, vb = a.get(metric), b.get(metric)
        if va is None and vb is None:
            continue
        allowed = (tolerance.allowed(metric, float(va), float(vb), validation_size)
                   if va is not None and vb is not None else None)
        out.append(MetricDiff(metric, None if va is None else float(va), None if vb is None else float(vb),
                              allowed, tolerance.rule(metric)))
    return out


def repeated_metrics(a: list[dict[str, Any]], b: list[dict[str, Any]], tolerance: Tolerance,
                     validation_size: int | None) -> list[MetricDiff]:
    """One run's metrics over its repeats in two builds (each a list of the repeats' metrics): the
    means, which may differ by the 95% interval of their difference that the two spreads give
    (Welch's t); a count must be equal, and a metric without two finite values a side falls back
    to the single-run rules."""
    from reportgen.views.stats import welch

    out = []
    for metric in METRICS:
        va = [float(m[metric]) for m in a if m.get(metric) is not None]
        vb = [float(m[metric]) for m in b if m.get(metric) is not None]
        if not va and not vb:
            continue
        mean_a, mean_b = (sum(v) / len(v) if v else None for v in (va, vb))
        finite = all(math.isfinite(x) for x in va + vb)
        if metric not in COUNTS and len(va) >= 2 and len(vb) >= 2 and finite:
            difference, (low, _high), _p = welch(vb, va)
            out.append(MetricDiff(metric, mean_a, mean_b, difference - low, SPREAD))
        else:
            out.extend(compare_metrics({metric: mean_a}, {metric: mean_b}, tolerance, validation_size))
    return out


def runs_of(names: list[str]) -> dict[str, list[str]]:
    """Recorded experiment names grouped by run: "x", "x#2", "x#3" under "x", in order."""
    out: dict[str, list[str]] = {}
    for name in names:
        out.setdefault(name.split(REPEAT_MARK)[0], []).append(name)
    return out


def config_changes(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


@dataclass
class Row:
    """One experiment in either build."""

    name: str
    section: str
    kind: str
    state: str  # compare: same, changed, added, removed, unfinished; verify: agrees, differs, failed, skipped
    diffs: list[MetricDiff] = field(default_factory=list)
    config: list[str] = field(default_factory=list)
    note: str = ""
    histories: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    @property
    def differs(self) -> bool:
        return self.state not in ("same", "agrees", "skipped")

    def shown(self) -> list[MetricDiff]:
        """The headline metrics plus every metric that does not agree."""
        headline = HEADLINE[family(self.kind)]
        return [d for d in self.diffs if d.metric in headline or not d.ok]


@dataclass
class Comparison:
    a: Build
    b: Build
    rows: list[Row]
    environment: list[tuple[str, str, str]]
    not_comparable: list[str]  # why a metric table would mislead (different project or data set)

    @property
    def agree(self) -> bool:
        return not self.not_comparable and not any(r.differs for r in self.rows)


def _row(name: str, ea: dict[str, Any] | None, eb: dict[str, Any] | None, tolerance: Tolerance,
         validation_size: int | None) -> Row:
    either = ea or eb
    assert either is not None
    row = Row(name=name, section=str(either.get("section", "")), kind=str(either.get("kind") or "mlp"),
              state="same")
    if ea is None or eb is None:
        row.state = "added" if ea is None else "removed"
        return row
    row.config = config_changes(ea.get("config") or {}, eb.get("config") or {})
    row.diffs = compare_metrics(ea["metrics"], eb["metrics"], tolerance, validation_size)
    row.histories = {"A": ea.get("history") or {}, "B": eb.get("history") or {}}
    missing = [side for side, e in (("A", ea), ("B", eb)) if all(v is None for v in e["metrics"].values())]
    if len(missing) == 2 and not row.config:
        row.note = "no result in either build"
    elif missing:
        row.state, row.note = "unfinished", "no result in " + " and ".join(missing)
    elif row.config or not all(d.ok for d in row.diffs):
        row.state = "changed"
        if row.config:
            row.note = "configuration: " + "; ".join(row.config)
    return row


def _has_result(e: dict[str, Any]) -> bool:
    return any(v is not None for v in e["metrics"].values())


def _repeated_row(run: str, ea: list[dict[str, Any]], eb: list[dict[str, Any]], tolerance: Tolerance,
                  validation_size: int | None) -> Row:
    """A run repeated in both builds: one row, its means compared within what the two spreads allow."""
    first = ea[0]
    row = Row(name=run, section=str(first.get("section", "")), kind=str(first.get("kind") or "mlp"), state="same")
    row.config = config_changes({k: v for k, v in (first.get("config") or {}).items() if k not in ("name", "seed")},
                                {k: v for k, v in (eb[0].get("config") or {}).items() if k not in ("name", "seed")})
    row.diffs = repeated_metrics([e["metrics"] for e in ea], [e["metrics"] for e in eb], tolerance, validation_size)
    row.histories = {"A": first.get("history") or {}, "B": eb[0].get("history") or {}}
    notes = [f"mean of {len(ea)} (A) and {len(eb)} (B) repeats, within what their spreads allow"]
    if row.config or not all(d.ok for d in row.diffs):
        row.state = "changed"
        if row.config:
            notes.append("configuration: " + "; ".join(row.config))
    row.note = "; ".join(notes)
    return row


def _flat(prefix: str, value: Any) -> dict[str, str]:
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for k, v in value.items():
            out.update(_flat(f"{prefix}.{k}" if prefix else str(k), v))
        return out
    if isinstance(value, list):
        return {prefix: ", ".join(json.dumps(v, sort_keys=True) if isinstance(v, dict) else str(v) for v in value)}
    return {prefix: "-" if value is None else str(value)}


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def environment_of(build: Build) -> dict[str, str]:
    """How a build was made, flattened for side-by-side display."""
    m = build.manifest
    data = build.data
    return {
        **_flat("", {"reportgen": (m.get("tool") or {}).get("version"), "backend": m.get("backend"),
                     "profile": m.get("profile")}),
        **_flat("versions", m.get("versions") or {}),
        "devices": "; ".join(f"{d.get('name')} ({d.get('kind')})" for d in m.get("devices") or []) or "-",
        "data": f"{data.get('name')} ({_count(data.get('train'))} train / {_count(data.get('validation'))} validation)",
        "data fingerprint": str(data.get("fingerprint", "-"))[:16],
        "limits": ", ".join(f"{k} {_count(v)} images" for k, v in (m.get("limits") or {}).items() if v) or "none",
        "determinism": "; ".join(", ".join(f"{k}={v}" for k, v in d.items())
                                 for d in m.get("determinism") or []) or "-",
        "git commit": str((m.get("git") or {}).get("commit") or "-")[:12]
        + (" (uncommitted changes)" if (m.get("git") or {}).get("dirty") else ""),
        "built": str(m.get("generated", "-")),
    }


def compare(a: Build, b: Build, tolerance: Tolerance | None = None) -> Comparison:
    tolerance = tolerance or Tolerance()
    not_comparable = []
    if a.project and b.project and a.project != b.project:
        not_comparable.append(f"they are reports of different projects: A is {a.project!r}, B is {b.project!r}")
    fa, fb = a.data.get("fingerprint"), b.data.get("fingerprint")
    if fa != fb:
        not_comparable.append(
            f"they were built on different data sets: A on {a.data.get('name')} ({a.data.get('train')} training / "
            f"{a.data.get('validation')} validation images, fingerprint {str(fa)[:12]}), B on {b.data.get('name')} "
            f"({b.data.get('train')} / {b.data.get('validation')}, fingerprint {str(fb)[:12]}); their metrics "
            "measure different things")
    size = a.validation_size or b.validation_size
    ea, eb = a.experiments, b.experiments
    names = list(ea) + [n for n in eb if n not in ea]
    rows = []
    for run, members in runs_of(names).items():
        done_a = [ea[n] for n in members if n in ea and _has_result(ea[n])]
        done_b = [eb[n] for n in members if n in eb and _has_result(eb[n])]
        if len(done_a) >= 2 and len(done_b) >= 2:  # repeated in both: compared by their spread
            rows.append(_repeated_row(run, done_a, done_b, tolerance, size))
        else:
            rows.extend(_row(n, ea.get(n), eb.get(n), tolerance, size) for n in members)
    env_a, env_b = environment_of(a), environment_of(b)
    environment = [(k, env_a.get(k, "-"), env_b.get(k, "-")) for k in list(env_a) + [k for k in env_b if k not in env_a]
                   if env_a.get(k) != env_b.get(k) and k != "built"]
    return Comparison(a, b, rows, environment, not_comparable)


def fmt(metric: str, value: float | None, signed: bool = False) -> str:
    """A metric the way the tables show it."""
    if value is None:
        return "-"
    if not math.isfinite(value):
        return str(value)
    if metric in COUNTS:
        return f"{value:+,.0f}" if signed else f"{value:,.0f}"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def verdict(cmp: Comparison) -> str:
    counts = {state: sum(r.state == state for r in cmp.rows) for state in ("same", "changed", "added", "removed",
                                                                        "unfinished")}
    summary = ", ".join(f"{n} {state}" for state, n in counts.items() if n)
    if cmp.not_comparable:
        return "The builds differ: " + "; ".join(cmp.not_comparable) + "."
    if cmp.agree:
        return f"The builds agree within tolerance ({summary})."
    return f"The builds differ ({summary})."


def describe(tolerance: Tolerance, rows: list[Row] | None = None) -> str:
    """The rules the table applied, and to how many experiments each (`rows`: the table's)."""
    accuracy = (f"accuracies within {tolerance.accuracy:g}" if tolerance.accuracy is not None else
                "accuracies within 3 standard deviations of sampling noise on the validation set (the binomial "
                "rule)")
    text = (f"Agreeing means: for single runs, {accuracy}; losses within {tolerance.loss:.0%}, and GAN losses and "
            f"accuracies within {tolerance.gan:.0%}, of their size; parameter and epoch counts equal.")
    spread = sum(any(d.rule == SPREAD for d in r.diffs) for r in rows or [])
    if spread:
        text += (f" For {spread} run(s) repeated in both builds (the spread rule): the means of each metric may "
                 "differ by the 95% interval of their difference that the two sets of repeats give (Welch's t).")
    return text


def _side(label: str, build: Build) -> dict[str, Any]:
    data = build.data
    return {"label": label, "path": str(build.path), "project": build.project or "-",
            "data": f"{data.get('name')} ({data.get('train')} / {data.get('validation')} images)",
            "built": build.manifest.get("generated", "-")}


def page_context(cmp: Comparison, tolerance: Tolerance, only_changed: bool) -> dict[str, Any]:
    """What the --html page shows: the same tables as the terminal, plus each changed experiment's
    curves from both builds on one plot (inline SVG, so the page is one file to pass around)."""
    import base64


    rows = []
    drawn = 0
    for i, row in enumerate(r for r in cmp.rows if r.differs or not only_changed):
        figure = None
        metrics = CURVES[family(row.kind)]
        if (row.state == "changed" and drawn < MAX_FIGURES
                and any(h.get(m) for h in row.histories.values() for m in metrics)):
            drawn += 1
            svg = figures.svg_text(figures.compared_curves(row.name, row.histories, metrics))
            figure = "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()
        rows.append({"name": row.name, "section": row.section, "state": row.state, "note": row.note,
                     "anchor": f"exp-{i}", "figure": figure,
                     "metrics": [{"metric": d.metric, "a": fmt(d.metric, d.a), "b": fmt(d.metric, d.b),
                                  "diff": fmt(d.metric, d.diff, signed=True),
                                  "allowed": fmt(d.metric, d.allowed) + (f" ({d.rule})" if d.rule and d.allowed
                                                                         is not None else ""),
                                  "ok": d.ok} for d in row.shown()]})
    changed = sum(r.state == "changed" for r in cmp.rows)
    return {"a": _side("A", cmp.a), "b": _side("B", cmp.b), "agree": cmp.agree, "verdict": verdict(cmp),
            "figures_left_out": max(changed - MAX_FIGURES, 0),
            "not_comparable": cmp.not_comparable, "environment": cmp.environment, "rows": rows,
            "only_changed": only_changed, "tolerance": describe(tolerance, cmp.rows), "tool_version": __version__}
