"""Figures drawn from stored results: matplotlib, saved as byte-stable SVG (vector in the PDF)."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import io
import json
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from reportgen.files import write_atomic

DIGITS = tuple(str(i) for i in range(10))  # MNIST's class names, the default
MIN_FONT = 8  # pt: the smallest text in a figure, at most ~10% shrunk to fit the page (no text under 7 pt)
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b",
          "#e377c2", "#7f7f7f", "#bcbd22"]


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({
        "svg.hashsalt": "reportgen",  # stable element ids: same figure, same bytes
        "svg.fonttype": "none",  # real text: smaller files, faster PDFs, searchable labels
        "font.size": 9,  # titles and labels; legends, ticks and annotations at MIN_FONT
        "xtick.labelsize": MIN_FONT,
        "ytick.labelsize": MIN_FONT,
        "legend.fontsize": MIN_FONT,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": True,
        "grid.alpha": 0.3,
    })
    return plt


# --- drawn once: a figure drawn from the same arguments by the same code is copied, not redrawn ----

_CACHE: contextvars.ContextVar[FigureCache | None] = contextvars.ContextVar("figure_cache", default=None)


class FigureCache:
    """SVGs by the hash of what drew them: the drawing function, this module's source, matplotlib's
    version and every argument (arrays by their bytes). A render that redraws nothing but what
    changed copies the rest; `prune` drops what the last render did not use."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.used: set[str] = set()
        self.drawn = 0

    def prune(self) -> None:
        for path in (*self.folder.glob("*.svg"), *self.folder.glob("*.json")):
            if path.stem not in self.used:
                path.unlink(missing_ok=True)


@contextlib.contextmanager
def cached(folder: Path, prune: bool = True) -> Iterator[FigureCache]:
    """Within this block, `save` reuses figures drawn into `folder` before (made if missing); after
    it, with `prune`, what the block did not use is removed."""
    folder.mkdir(parents=True, exist_ok=True)
    cache = FigureCache(folder)
    token = _CACHE.set(cache)
    try:
        yield cache
    finally:
        _CACHE.reset(token)
    if prune:
        cache.prune()


def _feed(digest: Any, value: Any) -> None:
    """Add a value to a hash by its content, whatever its type (a repr would cut arrays short)."""
    if isinstance(value, np.ndarray):
        digest.update(f"nd{value.dtype.str}{value.shape}".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, Mapping):
        digest.update(b"{")
        for k in sorted(value, key=str):
            _feed(digest, str(k))
            _feed(digest, value[k])
        digest.update(b"}")
    elif isinstance(value, (list, tuple)):
        digest.update(b"[")
        for item in value:
            _feed(digest, item)
        digest.update(b"]")
    elif hasattr(value, "model_dump"):
        _feed(digest, value.model_dump(mode="json"))
    elif isinstance(value, float) and type(value) is not float:  # a mean over repeats: its values too
        _feed(digest, (float(value), getattr(value, "values", ())))
    else:
        digest.update(f"{type(value).__name__}:{value!r};".encode())


@functools.cache
def _code_version() -> str:
    from importlib import metadata

    source = Path(__file__).read_bytes()
    versions = [metadata.version(p) for p in ("matplotlib", "adjustText")]
    return hashlib.sha256(source + repr(versions).encode()).hexdigest()


def save(path: Path, draw: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Write draw(*args, **kwargs) to path as SVG; inside `cached`, copy it when the same function
    drew it from the same arguments before."""
    cache = _CACHE.get()
    if cache is None:
        save_svg(draw(*args, **kwargs), path)
        return
    digest = hashlib.sha256(f"{_code_version()}{draw.__module__}.{draw.__qualname__}".encode())
    _feed(digest, (args, kwargs))
    key = digest.hexdigest()[:32]
    stored = cache.folder / f"{key}.svg"
    cache.used.add(key)
    if not stored.is_file():
        save_svg(draw(*args, **kwargs), stored)
        cache.drawn += 1
    shutil.copyfile(stored, path)


def remembered(kind: str, version: str, compute: Callable[..., Any], *args: Any) -> Any:
    """compute(*args), whose result is JSON data; inside `cached`, read back when a value of this
    `kind` and `version` (of the code that computes it) was computed from the same arguments before. Formulas use
    it, so that a build whose formulas did not change does not even import matplotlib."""
    cache = _CACHE.get()
    if cache is None:
        return compute(*args)
    digest = hashlib.sha256(f"{kind}:{version}".encode())
    _feed(digest, args)
    key = digest.hexdigest()[:32]
    stored = cache.folder / f"{key}.json"
    cache.used.add(key)
    try:
        return json.loads(stored.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        value = compute(*args)
        write_atomic(stored, json.dumps(value).encode())
        return value


def save_svg(fig: Any, path: Path) -> None:
    """Write a figure as SVG without a creation date, so an unchanged figure is byte-identical."""
    path.write_text(svg_text(fig), encoding="utf-8")


def svg_text(fig: Any) -> str:
    """A figure as SVG text, for pages that carry their figures inline."""
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    _plt().close(fig)
    return buffer.getvalue()


def _percent(ax: Any, axis: str = "y") -> None:
    """Shares on `axis` as percentages, as the report's tables and prose print them."""
    from matplotlib.ticker import PercentFormatter

    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(PercentFormatter(xmax=1.0, decimals=None))


def _plain_log_ticks(axis: Any, style: str = "g") -> None:
    """Tick labels of a log axis as plain numbers ("10,000", "1e-06"): the default 10^n draws its
    exponent at 70% of the label's size, under 7 pt in print."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}" if style == "," else f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _per_epoch(ax: Any, ylabel: str, title: str) -> None:
    """Labels of a per-epoch plot: whole epochs on x, a legend without a frame."""
    ax.set_xlabel("Epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(frameon=False)


def compared_curves(name: str, histories: dict[str, dict[str, list[float]]], metrics: list[str]) -> Any:
    """One experiment's curves from two builds on shared axes: one panel per metric, one line per build."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.5 * len(metrics), 2.6), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for i, (label, history) in enumerate(histories.items()):
            values = history.get(metric) or []
            epochs = (history.get("epoch") or list(range(1, len(values) + 1)))[:len(values)]
            if values:
                ax.plot(epochs, values, marker="os"[i % 2], ms=3, color=COLORS[i], label=label)
        _per_epoch(ax, metric, f"{metric}: {name}")
        if "accuracy" in metric:
            _percent(ax)
    fig.tight_layout()
    return fig


def learning_curves(name: str, history: dict[str, list[float]]) -> Any:
    """Training against validation accuracy and loss, per epoch."""
    plt = _plt()
    fig, (acc, loss) = plt.subplots(1, 2, figsize=(7.0, 2.6))
    epochs = history.get("epoch") or list(range(1, len(history.get("loss", [])) + 1))
    for ax, metric, label in ((acc, "accuracy", "Accuracy"), (loss, "loss", "Loss")):
        if history.get(metric):
            ax.plot(epochs, history[metric], marker="o", ms=3, color=COLORS[0], label="training")
        if history.get(f"val_{metric}"):
            ax.plot(epochs, history[f"val_{metric}"], marker="s", ms=3, color=COLORS[1],
                    label="validation")
        _per_epoch(ax, label, f"{label}: {name}")
    _percent(acc)
    fig.tight_layout()
    return fig


def curves_grid(histories: dict[str, dict[str, list[float]]], cols: int = 4) -> Any:
    """Small multiples: one panel per run with its training and validation accuracy per epoch, on
    one shared scale, so many runs' curves take one figure instead of one each."""
    plt = _plt()
    n = max(len(histories), 1)
    cols = min(cols, n)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.75 * cols, 1.45 * rows + 0.35), squeeze=False,
                             sharex=True, sharey=True)
    for ax, (name, history) in zip(axes.flat, histories.items(), strict=False):
        for metric, color, label in (("accuracy", COLORS[0], "training"), ("val_accuracy", COLORS[1], "validation")):
            values = [v for v in history.get(metric) or [] if v == v]
            ax.plot(range(1, len(values) + 1), values, marker="o", ms=2, lw=1.2, color=color, label=label)
        ax.set_title(name, fontsize=MIN_FONT)
        _percent(ax)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.tick_params(labelsize=MIN_FONT)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("Epoch", fontsize=MIN_FONT)
    for ax in axes[:, 0]:
        ax.set_ylabel("Accuracy", fontsize=MIN_FONT)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, frameon=False, fontsize=MIN_FONT, ncol=2, loc="upper center",
               bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.3 / (1.45 * rows + 0.35)))
    return fig


def params_vs_accuracy(points: list[dict[str, Any]], threshold: float) -> Any:
    """Each run's parameter count against its final validation accuracy, with the threshold line
    and the smallest model that crosses it marked."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.0, 3.3))
    params = np.array([p["params"] for p in points], dtype=float)
    acc = np.array([p["val_accuracy"] for p in points], dtype=float)
    above = acc >= threshold
    line = f"{round(threshold * 100, 10):g}%"  # the threshold as the project wrote it
    # A legend entry only for a group that has members: no "at or above" when no run is.
    if (~above).any():
        ax.scatter(params[~above], acc[~above], color=COLORS[1], label=f"below {line}", zorder=3)
    if above.any():
        ax.scatter(params[above], acc[above], color=COLORS[0], label=f"at or above {line}", zorder=3)
    _error_bars(ax, [p["params"] for p in points], points)
    named = _named(points, threshold)
    labels = [ax.text(p["params"], p["val_accuracy"], p["label"], fontsize=MIN_FONT) for p in named]
    ax.axhline(threshold, color="#555555", linestyle="--", linewidth=1, label=f"{line} line")
    smallest = min((p for p in points if p["val_accuracy"] >= threshold), key=lambda p: p["params"],
                   default=None)
    if smallest is not None:
        ax.scatter([smallest["params"]], [smallest["val_accuracy"]], s=160, facecolors="none",
                   edgecolors="black", linewidths=1.2, zorder=4,
                   label=f"smallest above: {smallest['label']}")
    ax.set_xscale("log")
    _plain_log_ticks(ax.xaxis, ",")
    ax.set_xlabel("Trainable parameters (log scale)")
    ax.set_ylabel("Final validation accuracy")
    _percent(ax)
    ax.set_title("Parameters against final validation accuracy")
    ax.legend(frameon=False, fontsize=MIN_FONT, loc="lower right")
    low, high = ax.get_ylim()
    ax.set_ylim(low, high + 0.1 * (high - low))  # room above the best runs for their names
    left, right = ax.get_xlim()
    ax.set_xlim(left, right * 1.3)  # and right of the largest
    fig.tight_layout()
    # Runs of similar size and accuracy sit close together: move their names apart, off the
    # points, and draw a thin line to a name that had to move far.
    from adjustText import adjust_text

    adjust_text(labels, x=params, y=acc, objects=[ax.get_legend()], ax=ax, expand=(1.15, 1.4), expand_axes=True,
                iter_lim=300,  # not a time limit: the same figure gives the same bytes
                arrowprops={"arrowstyle": "-", "color": "#888888", "linewidth": 0.5})
    return fig


def _error_bars(ax: Any, xs: list[float], points: list[dict[str, Any]], y: str = "val_accuracy") -> None:
    """Each point's 95% interval (its "low" and "high", where it has them) as a thin vertical bar."""
    bars = [(x, p[y], p["low"], p["high"]) for x, p in zip(xs, points, strict=True) if p.get("low") is not None]
    if bars:
        x, mid, low, high = (np.array(v, dtype=float) for v in zip(*bars, strict=True))
        ax.errorbar(x, mid, yerr=[mid - low, high - mid], fmt="none", ecolor="#777777", elinewidth=0.8, capsize=2,
                    zorder=2, label="95% interval")


MAX_NAMES = 30  # names on the scatter; placing them takes seconds at 30 and minutes at 120


def _named(points: list[dict[str, Any]], threshold: float) -> list[dict[str, Any]]:
    """The runs named on the scatter: all of them, or beyond MAX_NAMES those no smaller run beats
    (the upper-left frontier), smallest first, and of a frontier longer than that, runs spread
    evenly along it from the smallest to the best, with the smallest run at or above the threshold
    (the one the figure marks). The table below the figure names every run."""
    if len(points) <= MAX_NAMES:
        return points
    frontier, best = [], -np.inf
    for p in sorted(points, key=lambda p: (p["params"], -p["val_accuracy"])):
        if p["val_accuracy"] > best:
            frontier.append(p)
            best = p["val_accuracy"]
    if len(frontier) <= MAX_NAMES:
        return frontier
    marked = [i for i, p in enumerate(frontier) if p["val_accuracy"] >= threshold][:1]
    picks = {int(i) for i in np.linspace(0, len(frontier) - 1, MAX_NAMES - len(marked)).round()} | set(marked)
    return [p for i, p in enumerate(frontier) if i in picks]


def overlay(histories: dict[str, dict[str, list[float]]], metric: str,
            coinciding: list[list[str]] | None = None,
            bands: dict[str, tuple[list[float], list[float]]] | None = None) -> Any:
    """One metric of several runs on one plot; each group of `coinciding` runs (describe.coinciding)
    is drawn as one line with one legend entry naming them all, where separate lines would hide
    each other. A run repeated has its mean drawn, and its 95% band (`bands`: low and high per epoch)
    shaded around it."""
    from reportgen.views.describe import log_scaled, metric_label

    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.0, 2.6))
    grouped = {g[0]: g for g in coinciding or []}
    hidden = {n for g in coinciding or [] for n in g[1:]}
    shown = [n for n in histories if n not in hidden]
    for i, name in enumerate(shown):
        values = histories[name].get(metric) or []
        label = " = ".join(grouped[name]) if name in grouped else name
        color = COLORS[i % len(COLORS)]
        ax.plot(range(1, len(values) + 1), values, marker="o", ms=3, color=color, label=label,
                lw=2.5 if name in grouped else 1.5)
        if bands and name in bands:
            low, high = bands[name]
            ax.fill_between(range(1, len(low) + 1), low, high, color=color, alpha=0.18, linewidth=0)
    label = metric_label(metric).capitalize()
    if log_scaled([v for h in histories.values() for v in (h.get(metric) or [])]):
        ax.set_yscale("log")
        _plain_log_ticks(ax.yaxis)
        label += " (log scale)"
    ax.set_xlabel("Epoch")
    ax.set_ylabel(label)
    if "accuracy" in metric:
        _percent(ax)
    ax.set_title(f"{label} per epoch, all runs" + (" (mean of repeats, 95% band)" if bands else ""))
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(frameon=False, fontsize=MIN_FONT, ncol=2)
    fig.tight_layout()
    return fig


def show_image(ax: Any, image: np.ndarray, fixed: bool = True) -> None:
    """One image on `ax`: greyscale dark on light, colour as it is. `fixed`: greyscale on the full
    scale (0 to 255, or 0 to 1 for floats) rather than stretched to the image's own range."""
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        top = 255 if image.dtype == np.uint8 else 1.0
        ax.imshow(image, cmap="gray_r", interpolation="nearest", **({"vmin": 0, "vmax": top} if fixed else {}))
    else:
        ax.imshow(image if image.dtype == np.uint8 else np.clip(image, 0, 1), interpolation="nearest")


def misclassified_grid(images: np.ndarray, true: list[int], predicted: list[int],
                       confidence: list[float], count: int, classes: Sequence[str] | None = None) -> Any:
    """Misclassified validation images, each titled with its true and predicted class."""
    plt = _plt()
    n = min(count, len(images))
    cols = min(9, max(n, 1))
    rows = max(1, int(np.ceil(n / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.8, rows * 1.1), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        show_image(ax, images[i], fixed=False)
        names = (classes[true[i]], classes[predicted[i]]) if classes else (str(true[i]), str(predicted[i]))
        ax.set_title(f"{names[0]}→{names[1]}\n{confidence[i]:.0%}", fontsize=MIN_FONT, pad=2)
    fig.subplots_adjust(wspace=0.15, hspace=0.75)
    return fig


def gan_losses(name: str, history: dict[str, list[float]]) -> Any:
    """The discriminator's and the generator's cross-entropy per epoch on one plot, and the
    discriminator's accuracy on real and on generated images beside it."""
    plt = _plt()
    fig, (loss, acc) = plt.subplots(1, 2, figsize=(7.0, 2.6))
    epochs = history.get("epoch", [])
    loss.plot(epochs, history.get("d_loss", []), marker="o", ms=3, color=COLORS[0], label="discriminator")
    loss.plot(epochs, history.get("g_loss", []), marker="s", ms=3, color=COLORS[1], label="generator")
    loss.set_ylabel("Cross-entropy")
    loss.set_title(f"Losses: {name}")
    acc.plot(epochs, history.get("d_acc_real", []), marker="o", ms=3, color=COLORS[2], label="on real images")
    acc.plot(epochs, history.get("d_acc_fake", []), marker="s", ms=3, color=COLORS[3], label="on generated images")
    acc.set_ylim(-0.02, 1.02)
    _percent(acc)
    acc.set_ylabel("Discriminator accuracy")
    acc.set_title(f"Discriminator accuracy: {name}")
    for ax in (loss, acc):
        ax.set_xlabel("Epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(frameon=False, fontsize=MIN_FONT)
    fig.tight_layout()
    return fig


PROGRESS_PER_ROW = 12  # images per epoch in a sample-progress figure


def sample_progress(samples: np.ndarray, epochs: list[int], per_row: int = PROGRESS_PER_ROW) -> Any:
    """One row of generated images per chosen epoch, all from the same fixed noise."""
    plt = _plt()
    fig, axes = plt.subplots(len(epochs), per_row, figsize=(per_row * 0.55, len(epochs) * 0.62), squeeze=False)
    for r, (epoch, images) in enumerate(zip(epochs, samples, strict=True)):
        for c, ax in enumerate(axes[r]):
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c < len(images):
                show_image(ax, images[c])
        axes[r][0].set_ylabel(f"epoch {epoch}", rotation=0, ha="right", va="center", fontsize=MIN_FONT)
    fig.subplots_adjust(wspace=0.05, hspace=0.08)
    return fig


def sample_grid(images: np.ndarray, cols: int = 6) -> Any:
    """Generated images large enough to judge, in a square-ish grid."""
    plt = _plt()
    n = len(images)
    rows = max(1, int(np.ceil(n / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.05, rows * 1.05), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            show_image(ax, images[i])
    fig.subplots_adjust(wspace=0.04, hspace=0.04)
    return fig


def mode_collapse(rows: list[dict[str, Any]], classifier: str, classes: Sequence[str] = DIGITS) -> Any:
    """Share of each class among the generated images per epoch (stacked), and the entropy of
    that distribution against the uniform maximum."""
    plt = _plt()
    noun = "digits" if tuple(classes) == DIGITS else "classes"
    fig, (shares_ax, entropy_ax) = plt.subplots(1, 2, figsize=(7.0, 2.8))
    epochs = [r["epoch"] for r in rows]
    shares = np.array([r["shares"] for r in rows]).T  # digit x epoch
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    bottom = np.zeros(len(epochs))
    for digit in range(shares.shape[0]):
        shares_ax.bar(epochs, shares[digit], bottom=bottom, color=cmap(digit % cmap.N), width=0.8,
                      label=classes[digit] if digit < len(classes) else str(digit))
        bottom += shares[digit]
    shares_ax.set_ylim(0, 1)
    _percent(shares_ax)
    shares_ax.set_xlabel("Epoch")
    shares_ax.set_ylabel(f"Share (classified by {classifier})")
    shares_ax.set_title(f"{noun.capitalize()} among generated images")
    shares_ax.legend(frameon=False, fontsize=MIN_FONT, ncol=5, loc="upper center", bbox_to_anchor=(0.5, -0.3))
    entropy_ax.plot(epochs, [r["entropy"] for r in rows], marker="o", ms=3, color=COLORS[0], label="entropy")
    if rows:
        entropy_ax.axhline(rows[0]["max_entropy"], color="#555555", linestyle="--", linewidth=1,
                           label=f"uniform ({rows[0]['max_entropy']:.2f} bits)")
    entropy_ax.set_ylim(0, max(3.6, float(np.log2(max(len(classes), 2))) * 1.08))
    entropy_ax.set_xlabel("Epoch")
    entropy_ax.set_ylabel("Entropy (bits)")
    entropy_ax.set_title("Spread over the ten digits" if noun == "digits" else
                         f"Spread over the {len(classes)} classes")
    # Below the axes, as the digits' legend: the entropy can end anywhere from 0 to the maximum.
    entropy_ax.legend(frameon=False, fontsize=MIN_FONT, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.3))
    for ax in (shares_ax, entropy_ax):
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    return fig


def confusion(matrix: list[list[int]], classes: Sequence[str], run: str) -> Any:
    """Counts by true (rows) and predicted (columns) class, shaded by each row's share."""
    plt = _plt()
    counts = np.asarray(matrix)
    n = len(classes)
    side = min(7.0, max(2.6, 0.42 * n + 1.4))
    fig, ax = plt.subplots(figsize=(side, side * 0.9))
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    if n <= 20:  # the counts themselves, where they fit
        for (r, c), value in np.ndenumerate(counts):
            ax.text(c, r, str(value), ha="center", va="center", fontsize=MIN_FONT,
                    color="white" if shares[r, c] > 0.6 else "#222222")
    ticks = range(n) if n <= 30 else range(0, n, max(1, n // 20))
    slanted = {"rotation": 45, "ha": "right"} if n > 5 else {}
    ax.set_xticks(list(ticks), [classes[i] for i in ticks], fontsize=MIN_FONT, **slanted)
    ax.set_yticks(list(ticks), [classes[i] for i in ticks], fontsize=MIN_FONT)
    ax.set_xlabel("Predicted class")
    ax.set_ylabel("True class")
    ax.set_title(f"Confusion matrix: {run}")
    fig.tight_layout()
    return fig


def metric_vs_setting(points: list[dict[str, Any]], setting: str, metric: str, scale: str,
                      group: str | None = None) -> Any:
    """A metric against a setting's value, one line per group, on `scale` ("linear", "log" or
    "symlog": zero at the left, the rest on a log scale)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.0, 3.2))
    groups: dict[Any, list[dict[str, Any]]] = {}
    for p in points:
        groups.setdefault(p["group"], []).append(p)
    for i, (value, members) in enumerate(groups.items()):
        members = sorted(members, key=lambda p: p["x"])
        ax.plot([p["x"] for p in members], [p["y"] for p in members], marker="o", ms=4,
                color=COLORS[i % len(COLORS)], label=f"{group} = {value}" if group else None)
        _error_bars(ax, [p["x"] for p in members], members, "y")
    if scale == "log":
        ax.set_xscale("log")
        _plain_log_ticks(ax.xaxis)
    elif scale == "symlog":
        positive = [p["x"] for p in points if p["x"] > 0]
        ax.set_xscale("symlog", linthresh=min(positive) if positive else 1.0)
        _plain_log_ticks(ax.xaxis)
    label = metric.replace("val_", "validation ").replace("_", " ").capitalize()
    ax.set_xlabel(setting + (" (log scale)" if scale in ("log", "symlog") else ""))
    ax.set_ylabel(label)
    if "accuracy" in metric:
        _percent(ax)
    ax.set_title(f"{label} against {setting}")
    if group or any(p.get("low") is not None for p in points):
        ax.legend(frameon=False, fontsize=MIN_FONT)
    fig.tight_layout()
    return fig
