"""Numbers derived from stored results: what each section's view measures, and the flat
per-run facts commentary placeholders quote. Pure functions on typed results; no drawing."""

from __future__ import annotations

import math
from typing import Any

from reportgen.train.result import ClassifierResult, GanResult
from reportgen.views import stats
from reportgen.views.stats import Comparison, measured

# The facts a run's repeats are averaged on: each becomes a stats.Measured (the mean, with its spread).
AVERAGED = ("val_accuracy", "accuracy", "val_loss", "loss", "best_val_accuracy", "first_val_accuracy", "misclassified",
            "seconds_per_epoch", "d_loss", "g_loss", "d_acc_real", "d_acc_fake", "first_d_loss", "first_g_loss")


def facts(result: ClassifierResult | GanResult, config: dict[str, Any], labels: Any = None,
          classes: tuple[str, ...] = ()) -> dict[str, Any]:
    """The facts of one run a placeholder may quote, by its kind. With the validation `labels` and
    the `classes`, a classifier's also hold each class's precision and recall."""
    if isinstance(result, GanResult):
        return gan_facts(result, config)
    out = run_facts(result, config)
    miss = result.misclassified
    if labels is not None and classes and miss.total == len(labels) and len(miss.indices) == miss.count:
        measured = confusion(labels, miss.indices, miss.predicted, classes)
        out.update(precision=measured["precision"], recall=measured["recall"])  # runs["x"].recall["cat"]
    return out


def over_repeats(repeats: list[dict[str, Any]]) -> dict[str, Any]:
    """One run's facts from those of its repeats (the first repeat first): each averaged fact the
    mean over the repeats, with its spread (`.std`, `.ci`, `.n`, `.values`); precision and recall
    per class averaged alike; the rest the first repeat's. `repeats` says how many there are,
    `repeat_facts` holds each one's own facts."""
    out = dict(repeats[0])
    for key in AVERAGED:
        if key in out:
            out[key] = measured([f.get(key) for f in repeats])
    for key in ("precision", "recall"):
        if isinstance(out.get(key), dict):
            out[key] = {c: measured([f[key].get(c) for f in repeats]) for c in out[key]}
    out["repeats"] = len(repeats)
    out["seeds"] = [f["config"].get("seed") for f in repeats]
    out["repeat_facts"] = repeats
    return out


# What compare() may compare: a classifier's metrics and a GAN's final losses.
COMPARABLE = ("val_accuracy", "accuracy", "val_loss", "loss", "best_val_accuracy", "d_loss", "g_loss")


def compare_runs(first: dict[str, Any], second: dict[str, Any], results: tuple[Any, Any], metric: str = "val_accuracy",
                 digits: int = 2) -> Comparison:
    """Two runs (their facts, over repeats, and their first repeats' results) on a metric: Welch's
    test over their repeats, or McNemar's on the validation images each got right (stats.compare)."""
    if metric not in COMPARABLE:
        raise ValueError(f"compare: metric {metric!r} is not one of {list(COMPARABLE)}")
    values = []
    for facts in (first, second):
        found = [f.get(metric) for f in facts.get("repeat_facts") or [facts]]
        if not found or any(v is None or not math.isfinite(v) for v in found):
            raise ValueError(f"compare: run {facts['name']!r} has no finite {metric} (it diverged, or its kind "
                             "has none)")
        values.append(found)
    correct = None
    a, b = (r.misclassified if isinstance(r, ClassifierResult) else None for r in results)
    if (a is not None and b is not None and a.total == b.total > 0 and a.count == len(a.indices)
            and b.count == len(b.indices)):
        correct = (stats.correct(a.indices, a.total), stats.correct(b.indices, b.total))
    return stats.compare(first["name"], second["name"], metric, (values[0], values[1]), correct, digits)


def winner(names: list[str], compared: Any, means: dict[str, float], lower_is_better: bool = False) -> dict[str, Any]:
    """The best of `names` by mean, the runner-up, and which runs cannot be told apart from the best
    at 95% (ties, the best among them): `compared(first, second)` gives their stats.Comparison."""
    order = sorted(names, key=lambda n: means[n], reverse=not lower_is_better)
    if not order:
        return {"best": None, "runner_up": None, "against_runner_up": None, "tied": [], "distinct": False}
    best = order[0]
    against = {n: compared(best, n) for n in order[1:]}
    tied = [best] + [n for n in order[1:] if not against[n].differs and against[n].test != stats.NO_TEST]
    runner = order[1] if len(order) > 1 else None
    head = against[runner] if runner else None
    return {"best": best, "runner_up": runner, "against_runner_up": head, "tied": tied,
            "distinct": head is not None and head.differs,
            "untested": head is not None and head.test == stats.NO_TEST}


Band = tuple[list[float], list[float]]  # per epoch: the 95% interval's low and high


def mean_curves(facts: dict[str, Any], history: dict[str, list[Any]]) -> tuple[dict[str, list[Any]], dict[str, Band]]:
    """A run's curves over its repeats: each metric's mean per epoch (over the epochs every repeat
    finished) and its 95% band (Student's t); a single run's `history` as it is, with no bands."""
    repeats = [f["history"] for f in facts.get("repeat_facts") or []]
    if len(repeats) < 2:
        return history, {}
    mean: dict[str, list[Any]] = {}
    bands: dict[str, Band] = {}
    for metric in history:
        columns = [h.get(metric) or [] for h in repeats]
        epochs = min(len(c) for c in columns)
        if metric == "epoch":
            mean[metric] = list(history[metric][:epochs])
            continue
        spreads = [stats.spread([c[e] for c in columns]) if all(c[e] == c[e] for c in columns) else None
                   for e in range(epochs)]
        mean[metric] = [s.mean if s else float("nan") for s in spreads]
        if all(s is not None and s.ci is not None for s in spreads):
            bands[metric] = ([s.ci[0] for s in spreads if s and s.ci], [s.ci[1] for s in spreads if s and s.ci])
    return mean, bands


def run_facts(result: ClassifierResult, config: dict[str, Any]) -> dict[str, Any]:
    """The facts of one classifier run a placeholder may quote, e.g. `runs["relu-30x100"].val_accuracy`."""
    val = result.history.get("val_accuracy", [])
    seconds = result.history.get("seconds", [])
    best = result.best
    return {
        "name": result.name,
        "status": result.status,
        "diverged_epoch": result.diverged.epoch if result.diverged else None,
        "params": result.summary.total,
        "trainable_params": result.summary.trainable,
        "epochs": result.epochs_run,
        "val_accuracy": result.final.get("val_accuracy"),
        "accuracy": result.final.get("accuracy"),
        "val_loss": result.final.get("val_loss"),
        "loss": result.final.get("loss"),
        "best_val_accuracy": best.val_accuracy if best else None,
        "best_epoch": best.epoch if best else None,
        "first_val_accuracy": val[0] if val else None,
        "val_accuracy_by_epoch": val,
        "history": {k: list(v) for k, v in result.history.items()},  # runs["x"].history.val_accuracy[0]
        "seconds_per_epoch": sum(seconds) / len(seconds) if seconds else None,
        "stopped_epoch": result.early_stopping.stopped_epoch if result.early_stopping else None,
        "restored_epoch": result.early_stopping.best_epoch
        if result.early_stopping and result.early_stopping.restored else None,
        "misclassified": result.misclassified.count,
        "validation_size": result.misclassified.total,
        "config": config,
    }


def params_threshold(facts: list[dict[str, Any]], threshold: float) -> dict[str, Any]:
    """Which runs reach the threshold, and the smallest that does (by parameter count). Each run's
    95% interval (over its repeats; a single run's from its validation images) says whether it is
    surely above or below the threshold or cannot be told from it; `ties`: the runs smaller than the
    pick that cannot be told from the threshold (they may reach it as well)."""
    rows = []
    for f in facts:
        value = f["val_accuracy"]
        row = {"name": f["name"], "params": f["params"], "val_accuracy": value,
               "above": value is not None and value >= threshold, "side": None, "ci": None, "n": 1}
        if value is not None and value == value:
            values = getattr(value, "values", (float(value),))
            row.update(stats.against(values, threshold, f.get("validation_size")), n=len(values))
        rows.append(row)
    rows.sort(key=lambda r: r["params"])
    above = [r for r in rows if r["above"]]
    smallest = min(above, key=lambda r: r["params"]) if above else None
    largest_below = max((r for r in rows if not r["above"]), key=lambda r: r["params"], default=None)
    ties = [r["name"] for r in rows if r["side"] == "cannot tell" and r is not smallest
            and (smallest is None or r["params"] <= smallest["params"])]
    return {"threshold": threshold, "rows": rows, "smallest": smallest, "largest_below": largest_below,
            "count_above": len(above), "sure": smallest is not None and smallest["side"] == "above",
            "ties": ties, "repeats": max((r["n"] for r in rows), default=1)}


def epochs_to_converge(val_accuracy: list[float], tolerance: float) -> int | None:
    """The first epoch (1-based) whose validation accuracy is within `tolerance` of the run's best.

    A measured stand-in for "where the curve flattens": a run that is still climbing at its last
    epoch converges at that epoch, one that never trains has no best and returns None."""
    finite = [v for v in val_accuracy if v == v]  # drop NaN
    if not finite:
        return None
    best = max(finite)
    for epoch, value in enumerate(val_accuracy, start=1):
        if value == value and value >= best - tolerance:
            return epoch
    return None


def epoch_reaching(values: list[float], threshold: float, lower_is_better: bool = False) -> int | None:
    """The first epoch (1-based) whose value reaches `threshold` (at or above it; at or below for a
    loss), or None when none does."""
    for epoch, value in enumerate(values, start=1):
        if value == value and (value <= threshold if lower_is_better else value >= threshold):
            return epoch
    return None


def varying_setting(facts: list[dict[str, Any]]) -> str | None:
    """What a group of runs varies: their activation where it differs, else the first setting that
    differs between them (None when nothing does)."""
    import json

    keys = sorted({k for f in facts for k in f["config"]} - {"name"})
    varying = [k for k in keys if len({json.dumps(f["config"].get(k), sort_keys=True) for f in facts}) > 1]
    return "activation" if "activation" in varying else varying[0] if varying else None


def convergence(facts: list[dict[str, Any]], tolerance: float, threshold: float | None = None,
                group: str | None = None) -> dict[str, Any]:
    """Measured epochs to converge per run: with `threshold`, the first epoch whose validation
    accuracy reaches it; else the first within `tolerance` of the run's own best. Grouped by
    `group` (default: what the runs vary, varying_setting), with each group's mean."""
    by = group or varying_setting(facts)
    rows = []
    by_group: dict[str, list[int]] = {}
    for f in facts:
        each = []
        for repeat in f.get("repeat_facts") or [f]:
            values = repeat["val_accuracy_by_epoch"]
            each.append(epoch_reaching(values, threshold) if threshold is not None else
                        epochs_to_converge(values, tolerance))
        label = _shown(setting_of(f["config"], by, "-")) if by else "-"
        rows.append({
            "name": f["name"],
            "group": label,
            # over repeats: the mean (a stats.Measured), where every repeat got there
            "epochs": each[0] if len(each) == 1 or None in each else measured([float(e) for e in each if e]),
            "epochs_each": each,
            "best_val_accuracy": f["best_val_accuracy"],
            "first_val_accuracy": f["first_val_accuracy"],
        })
        by_group.setdefault(label, []).extend(e for e in each if e is not None)
    by_group = {a: v for a, v in by_group.items() if v}
    means = {a: sum(v) / len(v) for a, v in by_group.items()}
    test = None
    if len(by_group) == 2 and all(len(v) >= 2 for v in by_group.values()):
        # Two groups (tanh and relu, say): every run's every repeat is one measurement of its group.
        (a, first), (b, second) = sorted(by_group.items())
        test = stats.compare(a, b, "epochs", ([float(v) for v in first], [float(v) for v in second]))
    return {"tolerance": tolerance, "threshold": threshold, "group_by": by, "rows": rows, "mean_epochs": means,
            "not_reached": [r["name"] for r in rows if None in r["epochs_each"]],
            "groups_compared": str(test) if test else None, "groups_differ": test.differs if test else None,
            "groups_test": test}


def setting_of(config: dict[str, Any], key: str, missing: Any = None) -> Any:
    """A run's value of `key`: one of its settings, or a custom builder's parameter."""
    if key in config:
        return config[key]
    params = config.get("params")
    return params.get(key, missing) if isinstance(params, dict) else missing


def _shown(value: Any) -> str:
    """A setting's value as a group's label: lists as 200x100, numbers as written."""
    if isinstance(value, list):
        return "x".join(_shown(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def gan_facts(result: GanResult, config: dict[str, Any]) -> dict[str, Any]:
    """The facts of one GAN run a placeholder may quote, e.g. `runs["gan"].g_loss`."""
    history = result.history
    seconds = history.get("seconds", [])
    generator, discriminator = result.summary.generator, result.summary.discriminator
    return {
        "name": result.name,
        "kind": "gan",
        "status": result.status,
        "diverged_epoch": result.diverged.epoch if result.diverged else None,
        "params": result.summary.total,
        "generator_params": generator.total if generator else None,
        "discriminator_params": discriminator.total if discriminator else None,
        "epochs": result.epochs_run,
        "steps_per_epoch": result.steps_per_epoch,
        "d_loss": result.final.get("d_loss"),
        "g_loss": result.final.get("g_loss"),
        "d_acc_real": result.final.get("d_acc_real"),
        "d_acc_fake": result.final.get("d_acc_fake"),
        "first_d_loss": history["d_loss"][0] if history.get("d_loss") else None,
        "first_g_loss": history["g_loss"][0] if history.get("g_loss") else None,
        "d_loss_by_epoch": history.get("d_loss", []),
        "g_loss_by_epoch": history.get("g_loss", []),
        "history": {k: list(v) for k, v in history.items()},
        "seconds_per_epoch": sum(seconds) / len(seconds) if seconds else None,
        "resumed_from": result.resumed[-1].from_epoch if result.resumed else None,
        "config": config,
    }


def confusion(labels: Any, wrong: list[int], predicted: list[int], classes: tuple[str, ...]) -> dict[str, Any]:
    """The confusion matrix (rows: true class, columns: predicted) of a classifier whose mistakes
    on the validation images `labels` are `wrong` (indices) with their `predicted` classes, and each
    class's precision and recall (None where the class was never predicted, or never present)."""
    import numpy as np

    labels = np.asarray(labels, dtype=int)
    n = len(classes)
    matrix = np.zeros((n, n), dtype=int)
    right = np.ones(len(labels), dtype=bool)
    right[np.asarray(wrong, dtype=int)] = False
    np.add.at(matrix, (labels[right], labels[right]), 1)
    np.add.at(matrix, (labels[np.asarray(wrong, dtype=int)], np.asarray(predicted, dtype=int)), 1)
    per_class = []
    for c, name in enumerate(classes):
        predicted_as, present = int(matrix[:, c].sum()), int(matrix[c].sum())
        per_class.append({"name": name, "support": present,
                          "precision": matrix[c, c] / predicted_as if predicted_as else None,
                          "recall": matrix[c, c] / present if present else None})
    return {"matrix": matrix.tolist(), "classes": list(classes), "per_class": per_class, "total": int(len(labels)),
            "accuracy": float(np.trace(matrix) / max(len(labels), 1)),
            "precision": {c["name"]: c["precision"] for c in per_class},
            "recall": {c["name"]: c["recall"] for c in per_class}}


def class_distribution(predicted: Any, confidence: Any, present_share: float,
                       classes: int = 10) -> dict[str, Any]:
    """How a batch of generated images spreads over the classes a classifier sees in them.

    `digits_present` counts classes above `present_share` of the batch; the entropy (bits) of the
    class shares is log2(10) = 3.32 for a uniform spread and 0 when every image is one digit."""
    import numpy as np

    predicted = np.asarray(predicted, dtype=int)
    counts = np.bincount(predicted, minlength=classes)[:classes]
    shares = counts / max(len(predicted), 1)
    nonzero = shares[shares > 0]
    entropy = abs(float(-(nonzero * np.log2(nonzero)).sum())) if len(nonzero) else 0.0  # no "-0.00"
    top = int(np.argmax(shares))
    return {
        "shares": [round(float(s), 4) for s in shares],
        "digits_present": int((shares > present_share).sum()),
        "entropy": entropy,
        "max_entropy": float(np.log2(classes)),
        "entropy_ratio": entropy / float(np.log2(classes)),
        "top_digit": top,
        "top_share": float(shares[top]),
        "mean_confidence": float(np.mean(confidence)) if len(confidence) else None,
        "count": int(len(predicted)),
    }


def mean_pairwise_distance(images: Any) -> float:
    """Mean Euclidean distance between distinct pairs of images (pixels scaled to [0, 1]):
    near 0 when a generator draws the same image again and again."""
    import numpy as np

    # Whole pixel values keep every product exact in float64, so copies give exactly 0.
    x = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
    top = 255.0 if np.asarray(images).dtype == np.uint8 else 1.0
    if len(x) < 2:
        return 0.0
    squared = (x * x).sum(axis=1)
    d2 = np.maximum(squared[:, None] + squared[None, :] - 2.0 * x @ x.T, 0.0)
    n = len(x)
    return float(np.sqrt(d2)[~np.eye(n, dtype=bool)].mean()) / top


def mode_collapse(epochs: list[int], predicted: Any, confidence: Any, samples: Any, real: Any,
                  present_share: float, diversity_samples: int, classes: int = 10) -> dict[str, Any]:
    """Mode-collapse measures at each recorded epoch, and the diversity of real images to compare."""
    real_diversity = mean_pairwise_distance(real[:diversity_samples])
    rows = []
    for i, epoch in enumerate(epochs):
        row = class_distribution(predicted[i], confidence[i], present_share, classes)
        row["epoch"] = epoch
        row["diversity"] = mean_pairwise_distance(samples[i][:diversity_samples])
        row["diversity_ratio"] = row["diversity"] / real_diversity if real_diversity else None
        rows.append(row)
    return {"present_share": present_share, "rows": rows, "final": rows[-1] if rows else None,
            "real_diversity": real_diversity, "diversity_samples": diversity_samples}
