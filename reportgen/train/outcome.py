"""What a training run gives back, for every kind and backend: progress reports on the way, and
the result, arrays and files it produced, with the model's summary and where it was made."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from reportgen.project.dataset import Dataset
from reportgen.train.machine import device_info, versions
from reportgen.train.result import ClassifierResult, GanResult

MISCLASSIFIED_IMAGES_KEPT = 100  # the most confident mistakes, enough for any grid the report draws


PROGRESS_TICKS = 10  # calls per epoch (TensorFlow, JAX): each runs many steps, and the progress bar moves after each


class Reporter(Protocol):
    """Where training reports progress (the CLI draws it with rich; tests pass a silent one)."""

    def epoch_start(self, epoch: int, epochs: int, steps: int) -> None: ...
    def batch_end(self, step: int, logs: dict[str, float]) -> None: ...
    def epoch_end(self, epoch: int, logs: dict[str, float]) -> None: ...
    def note(self, message: str) -> None: ...


class SilentReporter:
    def epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
        pass

    def batch_end(self, step: int, logs: dict[str, float]) -> None:
        pass

    def epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        pass

    def note(self, message: str) -> None:
        pass


@dataclass
class Outcome:
    """What one training run produced: JSON-able facts, arrays (misclassified images, generated
    samples) and files (the trained weights, a GAN's text log)."""

    result: ClassifierResult | GanResult
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)


def weights_hash(*models: Any) -> str:
    """SHA-256 of the trained weights' bytes, in layer order: equal hashes, equal models."""
    import hashlib

    h = hashlib.sha256()
    for model in models:
        for w in model.get_weights():
            h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()


def model_summary(model: Any) -> dict[str, Any]:
    """The model summary as data: one row per layer, and the totals."""
    rows = []
    for layer in model.layers:
        try:
            shape = tuple(layer.output.shape)
        except (AttributeError, ValueError):
            shape = ()
        rows.append({
            "name": layer.name,
            "type": type(layer).__name__,
            "output_shape": "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")",
            "params": int(layer.count_params()),
        })
    trainable = int(sum(int(np.prod(w.shape)) for w in model.trainable_weights))
    non_trainable = int(sum(int(np.prod(w.shape)) for w in model.non_trainable_weights))
    return {"layers": rows, "total": trainable + non_trainable, "trainable": trainable,
            "non_trainable": non_trainable}


def provenance(flags: dict[str, Any], started: float, data: Dataset, precision: str) -> dict[str, Any]:
    """Where and how a result was made: device, backend, precision, versions, determinism, time, data."""
    import keras

    return {
        "device": device_info(),
        "precision": precision,
        "backend": keras.backend.backend(),
        "versions": versions(),
        "determinism": flags,
        "train_seconds": round(time.perf_counter() - started, 3),
        "data": {"name": data.name, "fingerprint": data.fingerprint},
    }
