"""What the cache stores for a run: typed, versioned result models, one per kind (a classifier, a
GAN, a measurement derived from other results). Training makes them, the store validates them on
every read and write, and every later stage reads attributes, not string keys.

The version is part of every result (`schema_version`) and of every cache key (store.SCHEMA):
results of an earlier schema are never read as this one; they are trained once again, and
`reportgen status` says why ("stored by an earlier reportgen")."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

RESULT_SCHEMA: Literal[2] = 2  # 1: untyped dicts, before these models


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Layer(_Model):
    name: str
    type: str
    output_shape: str
    params: int


class Summary(_Model):
    """A model's layers and parameter counts (a GAN's: both networks', each also on its own)."""

    layers: list[Layer]
    total: int
    trainable: int
    non_trainable: int
    generator: Summary | None = None
    discriminator: Summary | None = None


class Diverged(_Model):
    """Where a run stopped because its loss or weights stopped being finite."""

    epoch: int
    batch: int
    loss: str


class DataRef(_Model):
    name: str
    fingerprint: str


class Best(_Model):
    val_accuracy: float
    epoch: int


class Misclassified(_Model):
    """The validation images a classifier got wrong, most confident first."""

    count: int = 0
    total: int = 0
    indices: list[int] = []
    true: list[int] = []
    predicted: list[int] = []
    confidence: list[float] = []


class Resumed(_Model):
    from_epoch: int


History = dict[str, list[int | float]]  # per epoch: "epoch" (ints), losses, accuracies, seconds


class _Trained(_Model):
    """What every training run records: its outcome, its history and where it was made."""

    schema_version: Literal[2] = RESULT_SCHEMA
    name: str
    status: Literal["ok", "diverged"]
    diverged: Diverged | None = None
    config: dict[str, Any]  # the experiment's configuration, as its key saw it
    summary: Summary
    weights_sha256: str
    history: History
    epochs_run: int
    final: dict[str, float]  # the last epoch's value of each metric
    # provenance: where and how it was made
    device: dict[str, str]
    precision: str
    backend: str
    versions: dict[str, str]
    determinism: dict[str, Any]
    train_seconds: float
    data: DataRef


class Stopped(_Model):
    """What early stopping did: the epoch it ended the run after (None: it ran to the end), the
    monitored metric's best epoch, and whether that epoch's weights were restored."""

    monitor: str
    stopped_epoch: int | None
    best_epoch: int | None
    restored: bool


class ClassifierResult(_Trained):
    kind: Literal["classifier"] = "classifier"
    steps_trained: int
    best: Best | None = None  # None when no epoch had a finite validation accuracy
    misclassified: Misclassified
    # The class and settings that trained it, and whether the run or a custom builder chose them.
    optimizer: dict[str, Any] = {}
    early_stopping: Stopped | None = None


class GanResult(_Trained):
    kind: Literal["gan"] = "gan"
    steps_per_epoch: int
    resumed: list[Resumed] = []  # each time training went on from a checkpoint


class ModeCollapseResult(_Model):
    """A GAN's samples at each recorded epoch, classified by a trained classifier (derive stage)."""

    schema_version: Literal[2] = RESULT_SCHEMA
    kind: Literal["mode_collapse"] = "mode_collapse"
    name: str
    gan: str
    classifier: str
    epochs: list[int]


Result = Annotated[ClassifierResult | GanResult | ModeCollapseResult, Field(discriminator="kind")]
_RESULT: TypeAdapter[ClassifierResult | GanResult | ModeCollapseResult] = TypeAdapter(Result)


def parse(raw: Any) -> ClassifierResult | GanResult | ModeCollapseResult:
    """A stored result read back; pydantic's ValidationError (a ValueError) says what does not fit."""
    return _RESULT.validate_python(raw)


def to_json(result: ClassifierResult | GanResult | ModeCollapseResult) -> dict[str, Any]:
    """The result as JSON-able data. NaN stays NaN (a diverged run's losses), as Python's json writes it."""
    return result.model_dump()
