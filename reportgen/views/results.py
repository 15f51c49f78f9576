"""The results view: one row per classifier run of the section, with the settings that tell the runs
apart, their size and what they reached. It is the table that answers a section's question when
each run's detail lives in the appendix."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from reportgen.project.spec import ViewSettings, toml_value
from reportgen.views.base import Collected, ViewInputs, ViewKind

AUTO_COLUMNS = 3  # settings shown when the view names none: the first this many that differ between runs
NOT_SETTINGS = frozenset({"name", "kind", "seed", "precision"})


class Settings(ViewSettings):
    """A table of the section's classifier runs."""

    kind: Literal["results"]
    # The settings shown as columns; default: those that differ between the section's runs (up to 3).
    settings: Annotated[list[Annotated[str, Field(min_length=1, max_length=60)]], Field(max_length=6)] | None = None


def varying(configs: list[dict[str, Any]], limit: int = AUTO_COLUMNS) -> list[str]:
    """The settings whose values differ between the runs, in the order the first run lists them."""
    keys = [k for c in configs for k in c]
    seen = list(dict.fromkeys(k for k in keys if k not in NOT_SETTINGS))
    differ = [k for k in seen if len({repr(c.get(k)) for c in configs}) > 1]
    return differ[:limit]


class Kind(ViewKind[Settings]):
    def collect(self, settings: Settings, inputs: ViewInputs) -> Collected:
        facts = inputs.section_facts
        if not facts:
            return Collected({})
        configs = [f.get("config") or {} for f in facts]
        columns = settings.settings if settings.settings is not None else varying(configs)
        rows = []
        for f, config in zip(facts, configs, strict=True):
            rows.append({"name": f["name"], "status": f["status"],
                         "settings": [toml_value(config[c]) if c in config else "–" for c in columns],
                         "params": f["params"], "val_accuracy": f["val_accuracy"],
                         "best_val_accuracy": f["best_val_accuracy"], "best_epoch": f["best_epoch"],
                         "epochs": f["epochs"]})
        ranked = [r["name"] for r in rows if r["val_accuracy"] is not None and r["val_accuracy"] == r["val_accuracy"]]
        picked = inputs.winner(ranked)
        best = next((r for r in rows if r["name"] == picked["best"]), None)
        against = picked["against_runner_up"]
        measured = {"columns": columns, "rows": rows, "best": best, "runner_up": picked["runner_up"],
                    "tied": picked["tied"], "distinct": picked["distinct"],
                    "against_runner_up": str(against) if against else None,
                    "against_short": against.short if against else None, "test": against.test if against else None,
                    "repeats": max((getattr(r["val_accuracy"], "n", 1) for r in rows), default=1)}
        return Collected({"measured": measured}, measured)


VIEW = Kind("results", Settings)
