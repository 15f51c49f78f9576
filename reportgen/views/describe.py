"""Alt text for every figure, written from the data it plots: what is plotted, its extremes and what
it answers, for a reader who cannot see the figure (a screen reader reads it from the tagged PDF
and from the HTML). Also which curves of an overlay coincide, which the figure and its caption say.

Numbers are written as the report's tables write them (reportgen.project.formats)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

from reportgen.project.formats import fixed, num, pct

COINCIDE = 0.01  # curves closer than this share of the axis at every epoch are drawn as one line


def metric_label(metric: str) -> str:
    """"val_accuracy" -> "validation accuracy"."""
    return metric.replace("val_", "validation ").replace("_", " ")


def _finite(values: Sequence[float] | None) -> list[float]:
    return [float(v) for v in values or [] if v is not None and math.isfinite(float(v))]


def _value(metric: str, value: float, digits: int) -> str:
    return pct(value, digits) if "accuracy" in metric else fixed(value)


def _names(names: Sequence[str], most: int = 6) -> str:
    """"a, b and c"; beyond `most`, the first few and how many more."""
    names = list(names)
    if len(names) > most:
        return ", ".join(names[:most - 1]) + f" and {len(names) - most + 1} more"
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def log_scaled(values: Sequence[float]) -> bool:
    """Whether positive values span more than a decade, so that a plot of them needs a log scale
    (one run's loss of 280 would otherwise flatten the others' onto zero)."""
    positive = [v for v in _finite(values) if v > 0]
    return bool(positive) and max(positive) / min(positive) > 10


def coinciding(histories: dict[str, dict[str, list[float]]], metric: str) -> list[list[str]]:
    """The runs whose curves of `metric` would be drawn on top of each other: groups of two or more
    runs of the same length that differ at no epoch by more than COINCIDE of the plotted range (of
    its logarithm on a log scale). Every member of a group is that close to every other."""
    curves = {name: _finite(h.get(metric)) for name, h in histories.items()}
    curves = {n: c for n, c in curves.items() if c}
    every = [v for c in curves.values() for v in c]
    if not every:
        return []
    log = log_scaled(every)
    if log:
        if min(every) <= 0:
            return []
        curves = {n: [math.log10(v) for v in c] for n, c in curves.items()}
        every = [v for c in curves.values() for v in c]
    span = max(every) - min(every)
    tolerance = COINCIDE * span if span > 0 else 1e-12

    def close(a: list[float], b: list[float]) -> bool:
        return len(a) == len(b) and all(abs(x - y) <= tolerance for x, y in zip(a, b, strict=True))

    groups: list[list[str]] = []
    for name, curve in curves.items():
        for group in groups:
            if all(close(curve, curves[other]) for other in group):
                group.append(name)
                break
        else:
            groups.append([name])
    return [g for g in groups if len(g) > 1]


def coincide_sentence(groups: list[list[str]]) -> str:
    """What the caption says of curves drawn as one: "" when none coincide."""
    if not groups:
        return ""
    if len(groups) == 1:
        return (f"The curves of {_names(groups[0])} coincide (within 1% of the axis at every epoch) "
                "and are drawn as one line.")
    return ("Curves that coincide (within 1% of the axis at every epoch) are drawn as one line: "
            + "; ".join(_names(g) for g in groups) + ".")


def overlay(histories: dict[str, dict[str, list[float]]], metric: str, groups: list[list[str]],
            digits: int) -> str:
    """An overlay of one metric of several runs."""
    finals = {n: _finite(h.get(metric))[-1] for n, h in histories.items() if _finite(h.get(metric))}
    epochs = max((len(_finite(h.get(metric))) for h in histories.values()), default=0)
    label = metric_label(metric)
    text = (f"Line chart of {label} per epoch (1 to {epochs}) for {len(histories)} runs"
            + (", on a log scale" if log_scaled([v for h in histories.values() for v in _finite(h.get(metric))])
               else "") + ".")
    if finals:
        better = max if "accuracy" in metric else min
        worse = min if better is max else max
        best = better(finals, key=lambda n: finals[n])
        worst = worse(finals, key=lambda n: finals[n])
        text += f" After the last epoch the best is {best} at {_value(metric, finals[best], digits)}"
        if worst != best:
            text += f", the worst {worst} at {_value(metric, finals[worst], digits)}"
        text += "."
    if groups:
        text += " " + coincide_sentence(groups)
    return text


def learning_curves(name: str, history: dict[str, list[float]], digits: int) -> str:
    """One run's training and validation accuracy and loss per epoch."""
    parts = []
    for metric in ("accuracy", "val_accuracy", "loss", "val_loss"):
        values = _finite(history.get(metric))
        if values:
            parts.append(f"{metric_label(metric)} from "
                         f"{_value(metric, values[0], digits)} to {_value(metric, values[-1], digits)}")
    epochs = len(_finite(history.get("loss")) or _finite(history.get("accuracy")))
    val = _finite(history.get("val_accuracy"))
    best = (f"; the best validation accuracy, {pct(max(val), digits)}, at epoch {val.index(max(val)) + 1}"
            if val else "")
    return (f"Two line charts of {name} over {epochs} epoch{'s' if epochs != 1 else ''}, accuracy on the left "
            f"and loss on the right, training against validation: " + "; ".join(parts) + best + ".")


def curves_grid(histories: dict[str, dict[str, list[float]]], digits: int) -> str:
    """Small multiples: one panel per run of training and validation accuracy."""
    finals = {n: _finite(h.get("val_accuracy"))[-1] for n, h in histories.items() if _finite(h.get("val_accuracy"))}
    if len(histories) == 1:
        text = f"Line chart of {next(iter(histories))}'s training and validation accuracy per epoch."
    else:
        text = (f"{len(histories)} small line charts on one scale, one per run, of training and validation "
                f"accuracy per epoch.")
    if finals:
        best = max(finals, key=lambda n: finals[n])
        worst = min(finals, key=lambda n: finals[n])
        if worst != best:
            text += (f" Final validation accuracy is highest for {best}, {pct(finals[best], digits)}, and lowest "
                     f"for {worst}, {pct(finals[worst], digits)}.")
        else:
            text += f" The final validation accuracy is {pct(finals[best], digits)}."
        gaps = {n: _finite(h.get("accuracy"))[-1] - finals[n] for n, h in histories.items()
                if n in finals and _finite(h.get("accuracy"))}
        if gaps:
            widest = max(gaps, key=lambda n: gaps[n])
            if gaps[widest] > 0:
                whose = "The gap" if len(gaps) == 1 else f"The widest gap, {widest}'s,"
                text += (f" {whose} between final training and validation accuracy is "
                         f"{gaps[widest] * 100:.{digits}f} points.")
    return text


def params_vs_accuracy(points: list[dict[str, Any]], threshold: float, threshold_text: str, digits: int) -> str:
    """Parameters against final validation accuracy, with the threshold."""
    if not points:
        return "Scatter plot of parameters against final validation accuracy: no run has a result yet."
    small = min(points, key=lambda p: p["params"])
    large = max(points, key=lambda p: p["params"])
    best = max(points, key=lambda p: p["val_accuracy"])
    above = [p for p in points if p["val_accuracy"] >= threshold]
    sizes = (f"all of {num(small['params'])} parameters" if small["params"] == large["params"] else
             f"from {num(small['params'])} parameters ({small['label']}) to {num(large['params'])} ({large['label']})")
    text = (f"Scatter plot of final validation accuracy against trainable parameters (log scale) for "
            f"{len(points)} runs, {sizes}; the best is {best['label']} at "
            f"{pct(best['val_accuracy'], digits)}. A dashed line marks {threshold_text}: ")
    if above:
        smallest = min(above, key=lambda p: p["params"])
        text += (f"{len(above)} of {len(points)} runs reach it, the smallest {smallest['label']} with "
                 f"{num(smallest['params'])} parameters at {pct(smallest['val_accuracy'], digits)}.")
    else:
        text += "no run reaches it."
    return text


def metric_vs_setting(points: list[dict[str, Any]], setting: str, metric: str, scale: str, digits: int) -> str:
    """A metric against a setting's value."""
    label = metric_label(metric)
    if not points:
        return f"Line chart of {label} against {setting}: no run has a result yet."
    xs = sorted(p["x"] for p in points)
    better = max if "accuracy" in metric else min
    best = better(points, key=lambda p: p["y"])
    worst = (min if better is max else max)(points, key=lambda p: p["y"])
    return (f"Line chart of {label} against {setting}{' (log scale)' if scale in ('log', 'symlog') else ''}, "
            f"{len(points)} runs from {setting} = {xs[0]:g} to {xs[-1]:g}. The best is {best['name']} "
            f"({setting} = {best['x']:g}) at {_value(metric, best['y'], digits)}; the worst {worst['name']} "
            f"({setting} = {worst['x']:g}) at {_value(metric, worst['y'], digits)}.")


def misclassified(run: str, true: Sequence[int], predicted: Sequence[int], confidence: Sequence[float],
                  shown: int, total: int, of: int, classes: Sequence[str], digits: int) -> str:
    """A grid of one run's most confident mistakes."""
    if not shown:
        return f"{run} misclassified none of the {num(of)} validation images."
    pairs = Counter((classes[t], classes[p]) for t, p in zip(true[:shown], predicted[:shown], strict=False))
    common = ", ".join(f"{t} read as {p} ({n})" for (t, p), n in pairs.most_common(3))
    conf = [float(c) for c in confidence[:shown]]
    return (f"Grid of the {shown} most confident of {num(total)} misclassified validation images (of {num(of)}) "
            f"of {run}, each labelled true class → predicted class and confidence. Most frequent here: {common}. "
            f"Confidence from {pct(max(conf), digits)} down to {pct(min(conf), digits)}.")


def confusion(run: str, matrix: list[list[int]], classes: Sequence[str], digits: int) -> str:
    """A confusion matrix."""
    n = len(classes)
    total = sum(sum(row) for row in matrix)
    right = sum(matrix[i][i] for i in range(n))
    off = [(matrix[r][c], r, c) for r in range(n) for c in range(n) if r != c]
    text = (f"Confusion matrix of {run}, {n} by {n} classes, on {num(total)} validation images: "
            f"{num(right)} on the diagonal ({pct(right / total if total else 0, digits)} right).")
    worst = max(off, default=(0, 0, 0))
    if worst[0]:
        text += (f" The largest mistake is true {classes[worst[1]]} predicted {classes[worst[2]]}, "
                 f"{num(worst[0])} images.")
    return text


def gan_losses(name: str, history: dict[str, list[float]], digits: int) -> str:
    """A GAN's losses and the discriminator's accuracy per epoch."""
    def path(key: str, as_share: bool = False) -> str:
        values = _finite(history.get(key))
        if not values:
            return "not recorded"
        show = (lambda v: pct(v, digits)) if as_share else fixed
        return f"from {show(values[0])} to {show(values[-1])}"

    epochs = len(_finite(history.get("d_loss")))
    return (f"Two line charts of {name} over {epochs} epoch{'s' if epochs != 1 else ''}. Left, cross-entropy: "
            f"the discriminator's {path('d_loss')}, the generator's {path('g_loss')}. Right, the discriminator's "
            f"accuracy on real images {path('d_acc_real', True)} and on generated images "
            f"{path('d_acc_fake', True)}.")


def sample_progress(name: str, epochs: Sequence[int], per_row: int) -> str:
    """Rows of generated images from fixed noise."""
    return (f"{len(epochs)} rows of {per_row} images generated by {name} from the same fixed noise, one row after "
            f"each of epochs {_names([str(e) for e in epochs], most=12)}, to compare how the same inputs change.")


def sample_grid(name: str, count: int, epoch: int) -> str:
    """The last epoch's generated images."""
    return f"Grid of {count} images generated by {name} after its last epoch, {epoch}."


def mode_collapse(run: str, classifier: str, rows: list[dict[str, Any]], classes: Sequence[str], digits: int) -> str:
    """Shares of each class among generated images per epoch, and their entropy."""
    if not rows:
        return f"Stacked bar chart of the classes among images generated by {run}: nothing measured yet."
    last = rows[-1]
    shares = list(last["shares"])
    top = max(range(len(shares)), key=lambda i: shares[i])
    present = last.get("digits_present", sum(1 for s in shares if s > 0))
    entropies = [r["entropy"] for r in rows]
    return (f"Left, stacked bars of the share of each of {len(classes)} classes among the images {run} generated at "
            f"each of {len(rows)} epochs, as {classifier} classifies them; right, a line of their entropy against "
            f"the uniform maximum of {last['max_entropy']:.2f} bits. After epoch {last['epoch']} the most common "
            f"class is {classes[top]} at {pct(shares[top], digits)}, {present} of {len(classes)} classes appear, and "
            f"the entropy is {last['entropy']:.2f} bits (from {min(entropies):.2f} to {max(entropies):.2f} over "
            f"the epochs).")
