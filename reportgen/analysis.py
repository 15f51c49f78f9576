"""Numbers derived from stored results: what each section's view measures, and the flat
per-run facts commentary placeholders quote. Pure functions on result dicts; no drawing."""

from __future__ import annotations

from typing import Any


def run_facts(result: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """The facts of one run a placeholder may quote, e.g. `runs["relu-30x100"].val_accuracy`."""
    history = result.get("history", {})
    final = result.get("final", {})
    best = result.get("best", {})
    val = history.get("val_accuracy", [])
    seconds = history.get("seconds", [])
    miss = result.get("misclassified", {})
    return {
        "name": result["name"],
        "status": result.get("status", "ok"),
        "diverged_epoch": (result.get("diverged") or {}).get("epoch"),
        "params": result["summary"]["total"],
        "trainable_params": result["summary"]["trainable"],
        "epochs": result.get("epochs_run", len(val)),
        "val_accuracy": final.get("val_accuracy"),
        "accuracy": final.get("accuracy"),
        "val_loss": final.get("val_loss"),
        "loss": final.get("loss"),
        "best_val_accuracy": best.get("val_accuracy"),
        "best_epoch": best.get("epoch"),
        "first_val_accuracy": val[0] if val else None,
        "val_accuracy_by_epoch": val,
        "seconds_per_epoch": sum(seconds) / len(seconds) if seconds else None,
        "misclassified": miss.get("count"),
        "validation_size": miss.get("total"),
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


def convergence(facts: list[dict[str, Any]], tolerance: float) -> dict[str, Any]:
    """Measured epochs to converge per run, grouped by activation where the runs declare one."""
    rows = []
    for f in facts:
        rows.append({
            "name": f["name"],
            "activation": f["config"].get("activation", "-"),
            "epochs": epochs_to_converge(f["val_accuracy_by_epoch"], tolerance),
            "best_val_accuracy": f["best_val_accuracy"],
            "first_val_accuracy": f["first_val_accuracy"],
        })
    by_activation: dict[str, list[int]] = {}
    for r in rows:
        if r["epochs"] is not None:
            by_activation.setdefault(r["activation"], []).append(r["epochs"])
    means = {a: sum(v) / len(v) for a, v in by_activation.items()}
    return {"tolerance": tolerance, "rows": rows, "mean_epochs": means}
