"""Numbers derived from stored results: what each section's view measures, and the flat
per-run facts commentary placeholders quote. Pure functions on typed results; no drawing."""

from __future__ import annotations

from typing import Any

from reportgen.train.result import ClassifierResult, GanResult
from reportgen.views.stats import measured

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
    """Which runs reach the threshold, and the smallest that does (by parameter count)."""
    rows = sorted(
        ({"name": f["name"], "params": f["params"], "val_accuracy": f["val_accuracy"],
          "above": f["val_accuracy"] is not None and f["val_accuracy"] >= threshold}
         for f in facts),
        key=lambda r: r["params"],
    )
    above = [r for r in rows if r["above"]]
    smallest = min(above, key=lambda r: r["params"]) if above else None
    largest_below = max((r for r in rows if not r["above"]), key=lambda r: r["params"], default=None)
    return {"threshold": threshold, "rows": rows, "smallest": smallest,
            "largest_below": largest_below, "count_above": len(above)}


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
    for f in facts:
        values = f["val_accuracy_by_epoch"]
        rows.append({
            "name": f["name"],
            "group": _shown(setting_of(f["config"], by, "-")) if by else "-",
            "epochs": (epoch_reaching(values, threshold) if threshold is not None else
                       epochs_to_converge(values, tolerance)),
            "best_val_accuracy": f["best_val_accuracy"],
            "first_val_accuracy": f["first_val_accuracy"],
        })
    by_group: dict[str, list[int]] = {}
    for r in rows:
        if r["epochs"] is not None:
            by_group.setdefault(r["group"], []).append(r["epochs"])
    means = {a: sum(v) / len(v) for a, v in by_group.items()}
    return {"tolerance": tolerance, "threshold": threshold, "group_by": by, "rows": rows, "mean_epochs": means,
            "not_reached": [r["name"] for r in rows if r["epochs"] is None]}


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
