"""Train one experiment: build its model, run the backend's training loop (or the GAN's), and capture what the
report needs (history, summary, misclassified images, weights) as an Outcome."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from reportgen.errors import RunError
from reportgen.project.dataset import Dataset, divisor_of
from reportgen.project.settings import Environment
from reportgen.project.spec import CustomSpec, EarlyStopping, Experiment, GANSpec, MLPSpec, builder_path
from reportgen.train import jax_loop, models, tf_loop
from reportgen.train.gan import train_gan
from reportgen.train.machine import set_seeds, tensorflow_environment
from reportgen.train.outcome import (
    MISCLASSIFIED_IMAGES_KEPT,
    Outcome,
    Reporter,
    SilentReporter,
    model_summary,
    provenance,
    weights_hash,
)
from reportgen.train.result import ClassifierResult
from reportgen.train.store import WEIGHTS_FILE


def _callback(reporter: Reporter, epochs: int, steps: int, stopping: EarlyStopping | None = None) -> Any:
    import keras

    class Watch(keras.callbacks.Callback):
        """Times epochs, forwards progress, and stops after the compiled call (a tenth of an epoch)
        in which the loss became NaN/inf. `batch` is the last step of that call. With `stopping`,
        also stops once its metric has not improved for `patience` epochs, keeping the best
        epoch's weights."""

        def __init__(self) -> None:
            super().__init__()
            self.seconds: list[float] = []
            self.diverged: dict[str, Any] | None = None
            self.stopped_epoch: int | None = None  # the epoch early stopping ended the run after
            self.best_epoch: int | None = None  # the monitored metric's best epoch
            self.best_weights: list[Any] | None = None
            self._best = math.inf
            self._waited = 0
            self._epoch = 0
            self._t0 = 0.0

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self._epoch = epoch
            self._t0 = time.perf_counter()
            reporter.epoch_start(epoch + 1, epochs, steps)

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            loss = float((logs or {}).get("loss", 0.0))
            if not math.isfinite(loss):
                self.diverged = {"epoch": self._epoch + 1, "batch": batch + 1, "loss": str(loss)}
                self.model.stop_training = True
            reporter.batch_end(batch + 1, {k: float(v) for k, v in (logs or {}).items()})

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.seconds.append(time.perf_counter() - self._t0)
            if self.diverged is None and not all(np.isfinite(w).all() for w in self.model.get_weights()):
                # Some backends clip the loss of NaN outputs to a finite number: the weights tell.
                self.diverged = {"epoch": epoch + 1, "batch": steps, "loss": "non-finite weights"}
                self.model.stop_training = True
            if stopping is not None and self.diverged is None:
                self._watch(epoch, logs or {})
            reporter.epoch_end(epoch + 1, {k: float(v) for k, v in (logs or {}).items()})

        def _watch(self, epoch: int, logs: dict[str, Any]) -> None:
            assert stopping is not None
            value = float(logs.get(stopping.monitor, math.nan))
            score = value if stopping.monitor.endswith("loss") else -value  # lower is better
            if math.isfinite(score) and score < self._best - stopping.min_delta:
                self._best, self._waited, self.best_epoch = score, 0, epoch + 1
                if stopping.restore_best:
                    self.best_weights = [np.array(w) for w in self.model.get_weights()]
                return
            self._waited += 1
            if self._waited > stopping.patience:
                self.stopped_epoch = epoch + 1
                self.model.stop_training = True

    return Watch()




def train(exp: Experiment, data: Dataset, experiments_dir: Path, reporter: Reporter | None = None,
          checkpoints: Path | None = None, key: str = "", programs: Path | None = None,
          env: Environment | None = None) -> Outcome:
    """Build, fit and evaluate one experiment; return its result and arrays for the store.
    A GAN run checkpoints each epoch into `checkpoints` and resumes from it. Under JAX, compiled
    programs are kept in `programs` (the build's cache) for the next run of the same shapes."""

    reporter = reporter or SilentReporter()
    env = env or Environment()
    if isinstance(exp.model, GANSpec):
        outcome: Outcome = train_gan(exp, data, reporter, checkpoints, key, env, programs)
        return outcome
    started = time.perf_counter()
    flags = set_seeds(exp.model.seed, env, programs)
    import keras

    spec = exp.model
    steps = math.ceil(len(data.x_train) / spec.batch_size)
    model = models.build(exp, experiments_dir, shape=data.input_shape, classes=data.num_classes)
    output = getattr(model, "outputs", None)  # a subclassed model has none until it is called
    if spec.precision == "mixed_bfloat16" and output and str(output[0].dtype) != "float32":
        reporter.note(f"{exp.name}: its output is {output[0].dtype} under mixed_bfloat16; give the builder's last "
                      "layer dtype=\"float32\" so the softmax and the loss stay float32")
    backend = keras.backend.backend()
    used = _compile(exp, model, steps, reporter, experiments_dir)
    watch = _callback(reporter, spec.epochs, steps, spec.early_stopping)
    if backend in ("tensorflow", "jax"):  # the data held by the backend, many steps a call

        watch.set_model(model)
        arguments = (model, data.x_train, data.y_train, data.x_val, data.y_val, spec.batch_size, spec.epochs,
                     spec.seed, watch)
        fitted, probs = jax_loop.fit(*arguments, env=env) if backend == "jax" else tf_loop.fit(*arguments)
    else:  # PyTorch: Keras' fit, one step a call
        x_val = data.x_val.astype("float32") / data.divisor
        fitted = model.fit(data.x_train.astype("float32") / data.divisor, data.y_train, batch_size=spec.batch_size,
                           epochs=spec.epochs, validation_data=(x_val, data.y_val), callbacks=[watch],
                           verbose=0).history
        probs = np.asarray(model.predict(x_val, batch_size=1024, verbose=0))
    log = {k: [float(v) for v in values] for k, values in fitted.items()}
    done = len(log.get("loss", []))
    stopped: dict[str, Any] | None = None
    if spec.early_stopping is not None:
        restore = watch.best_weights is not None and watch.best_epoch not in (None, done)
        if restore:  # the best epoch's weights, and what they predict
            model.set_weights(watch.best_weights)
            probs = np.asarray(model.predict(data.x_val.astype("float32") / data.divisor, batch_size=1024, verbose=0))
        stopped = {"monitor": spec.early_stopping.monitor, "stopped_epoch": watch.stopped_epoch,
                   "best_epoch": watch.best_epoch, "restored": restore}
    log["seconds"] = [round(s, 4) for s in watch.seconds[:done]]
    log["epoch"] = list(range(1, done + 1))
    steps_trained = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    return _outcome(exp, data, model, log, probs, watch.diverged, stopped, used, steps_trained,
                    provenance(flags, started, data, spec.precision))


def _outcome(exp: Experiment, data: Dataset, model: Any, log: dict[str, list[float]], probs: np.ndarray,
             diverged: dict[str, Any] | None, stopped: dict[str, Any] | None, used: dict[str, Any],
             steps_trained: int, made: dict[str, Any]) -> Outcome:
    """A trained classifier's result, misclassified images and weights, from its history and its last
    validation class probabilities; `made`: its provenance."""
    done = len(log.get("loss", []))
    arrays: dict[str, np.ndarray] = {}
    misclassified: dict[str, Any] = {"count": 0, "total": int(len(data.y_val))}
    if np.all(np.isfinite(probs)):
        pred = probs.argmax(axis=1)
        wrong = np.flatnonzero(pred != data.y_val)
        confidence = probs[wrong, pred[wrong]]
        order = wrong[np.argsort(-confidence, kind="stable")]
        kept = order[:MISCLASSIFIED_IMAGES_KEPT]
        misclassified = {
            "count": int(len(wrong)),
            "total": int(len(data.y_val)),
            "indices": [int(i) for i in order],
            "true": [int(data.y_val[i]) for i in order],
            "predicted": [int(pred[i]) for i in order],
            "confidence": [round(float(probs[i, pred[i]]), 4) for i in order],
        }
        arrays["misclassified_images"] = data.x_val[kept]

    val_acc = log.get("val_accuracy", [])
    finite_val = [v for v in val_acc if math.isfinite(v)]
    best_epoch = int(np.argmax(finite_val)) + 1 if finite_val else None
    result = ClassifierResult.model_validate({
        "name": exp.name,
        "status": "diverged" if diverged else "ok",
        "diverged": diverged,
        "config": exp.config(),
        "summary": model_summary(model),
        "weights_sha256": weights_hash(model),
        "history": log,
        "epochs_run": done,
        "steps_trained": steps_trained,
        "final": {k: log[k][(stopped["best_epoch"] if stopped and stopped["restored"] else done) - 1]
                  for k in ("loss", "accuracy", "val_loss", "val_accuracy") if log.get(k)},
        "optimizer": used,
        "early_stopping": stopped,
        "best": {"val_accuracy": max(finite_val), "epoch": best_epoch} if finite_val else None,
        "misclassified": misclassified,
        **made,
    })
    return Outcome(result=result, arrays=arrays, files={WEIGHTS_FILE: _weights_bytes(model)})


def stackable(exps: list[Experiment]) -> str | None:
    """Why these repeats of one run cannot train side by side in one program (tf_stacked.py), or None
    when they can: dense networks without batch normalization, dropout or early stopping, whose
    optimizer steps each weight on its own (no clipnorm), in float32, under TensorFlow."""
    import keras

    first = exps[0].model
    same = {k: v for k, v in exps[0].config().items() if k not in ("name", "seed")}
    if len(exps) < 2:
        return "a single run"
    if keras.backend.backend() != "tensorflow":
        return f"the {keras.backend.backend()} backend (stacked repeats are TensorFlow's)"
    if not isinstance(first, MLPSpec):
        return f"a {first.kind} run (only dense networks are stacked)"
    if any({k: v for k, v in e.config().items() if k not in ("name", "seed")} != same for e in exps):
        return "repeats of different settings"
    reasons = [why for why, applies in (
        ("batch normalization", first.batch_norm), ("dropout", any(first.dropout_after(i)
                                                                    for i in range(len(first.hidden_layers)))),
        ("early stopping", first.early_stopping is not None), ("clipnorm", first.clipnorm is not None),
        (f"precision {first.precision}", first.precision != "float32")) if applies]
    return ", ".join(reasons) if reasons else None


def train_repeats(exps: list[Experiment], data: Dataset, experiments_dir: Path, reporter: Reporter | None = None,
                  programs: Path | None = None, env: Environment | None = None) -> list[Outcome]:
    """Several repeats of one dense run (`stackable`) trained side by side as one program; each
    outcome is the repeat's own, as `train` would give it up to the last bits of rounding
    (tf_stacked.py says why). A repeat that diverges sends them all through `train`, one by one."""
    from reportgen.train import tf_stacked

    reporter = reporter or SilentReporter()
    env = env or Environment()
    started = time.perf_counter()
    spec = exps[0].model
    assert isinstance(spec, MLPSpec)
    flags, inits, model = _initial_weights(exps, data, experiments_dir, env, programs)
    steps = math.ceil(len(data.x_train) / spec.batch_size)
    chosen = models.optimizer(spec, steps_per_epoch=steps)
    used = _described(chosen, "the run's settings")
    try:
        fitted = tf_stacked.fit(spec, inits, [e.model.seed for e in exps], chosen, data.x_train, data.y_train,
                                data.x_val, data.y_val, reporter)
    except tf_stacked.Diverged as exc:
        reporter.note(f"{exps[0].run}: {exc} when its repeats trained stacked; training them one by one")
        return [train(exp, data, experiments_dir, reporter, programs=programs, env=env) for exp in exps]
    share = (time.perf_counter() - started) / len(exps)
    outcomes = []
    for i, exp in enumerate(exps):  # one model holds each repeat's weights in turn, for its summary and file
        model.set_weights(fitted["weights"][i])
        log = {k: [float(v) for v in values] for k, values in fitted["histories"][i].items()}
        log["seconds"] = [round(s / len(exps), 4) for s in fitted["seconds"]]
        log["epoch"] = list(range(1, len(log["loss"]) + 1))
        made = provenance({**flags[i], "stacked_repeats": len(exps)}, started, data, spec.precision)
        made["train_seconds"] = round(share, 3)
        outcomes.append(_outcome(exp, data, model, log, fitted["probs"][i], None, None, used, fitted["steps"], made))
    return outcomes


def _initial_weights(exps: list[Experiment], data: Dataset, experiments_dir: Path, env: Environment,
                     programs: Path | None) -> tuple[list[dict[str, Any]], list[list[np.ndarray]], Any]:
    """Each repeat's seeding flags and the initial weights its seed draws, as its own run's model
    would start, and the first repeat's model. The weights are drawn without building each model
    (models.initial_weights), once that way has been checked to give the first repeat's model's
    weights as `build` makes it; where it does not, each repeat's model is built."""
    flags, inits = [], []
    shape, classes = data.input_shape, data.num_classes
    for exp in exps:
        flags.append(set_seeds(exp.model.seed, env, programs))
        inits.append([np.asarray(w) for w in models.initial_weights(exp, shape=shape, classes=classes)])
    set_seeds(exps[0].model.seed, env, programs)
    model = models.build(exps[0], experiments_dir, shape=shape, classes=classes)
    built = model.get_weights()
    if len(built) == len(inits[0]) and all(np.array_equal(a, b) for a, b in zip(built, inits[0], strict=True)):
        return flags, inits, model
    inits = [built]
    for exp in exps[1:]:
        set_seeds(exp.model.seed, env, programs)
        inits.append(models.build(exp, experiments_dir, shape=shape, classes=classes).get_weights())
    return flags, inits, model


def _compile(exp: Experiment, model: Any, steps: int, reporter: Reporter, experiments_dir: Path) -> dict[str, Any]:
    """Compile for reportgen's loops (integer labels, sparse cross-entropy, accuracy) with the run's
    optimizer; a custom builder that compiled its model itself keeps its optimizer, and says so.
    Returns what trains it: the optimizer's class and settings, for the result."""

    spec = exp.model
    if isinstance(spec, CustomSpec) and getattr(model, "compiled", False) and model.optimizer is not None:
        where = f"experiments/{builder_path(spec.builder, experiments_dir).name}"
        loss = model.loss
        name = loss if isinstance(loss, str) else getattr(loss, "name", type(loss).__name__)
        if name not in ("sparse_categorical_crossentropy", "SparseCategoricalCrossentropy") or \
                getattr(loss, "from_logits", False):
            raise RunError(exp.name, f"{where} compiles its model with the loss {name!r}; "
                                     "the labels are class numbers, so compile with "
                                     "loss=\"sparse_categorical_crossentropy\" (on probabilities), or leave "
                                     "compiling to reportgen and set optimizer and learning_rate in the run")
        kept = model.optimizer
        reporter.note(f"{exp.name}: {where} compiled its own model; its optimizer "
                      f"{type(kept).__name__} is kept, and the run's optimizer settings are not used")
        model.compile(optimizer=kept, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return _described(kept, "the builder's compile")
    chosen = models.optimizer(spec, steps_per_epoch=steps)
    model.compile(optimizer=chosen, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return _described(chosen, "the run's settings")


def _described(optimizer: Any, source: str) -> dict[str, Any]:
    """An optimizer's class and the settings that shape its steps, as JSON."""
    config = optimizer.get_config()
    rate = config.get("learning_rate")
    keys = ("momentum", "nesterov", "beta_1", "beta_2", "epsilon", "weight_decay", "clipnorm", "rho")
    settings = {k: config[k] for k in keys if config.get(k) not in (None, False)}
    settings["learning_rate"] = rate if isinstance(rate, (int, float)) else (rate or {}).get("class_name", str(rate))
    name = "Adam" if type(optimizer).__name__ == "FusedAdam" else type(optimizer).__name__
    return {"class": name, "from": source, **{k: v if isinstance(v, (int, float, str, bool)) else str(v)
                                               for k, v in settings.items()}}


def _weights_bytes(model: Any) -> bytes:
    """The trained weights as an .h5 file's bytes, kept so later steps can use the model."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / WEIGHTS_FILE
        model.save_weights(path)
        return path.read_bytes()


def classify(exp: Experiment, weights: Path, images: np.ndarray, experiments_dir: Path, classes: int) -> np.ndarray:
    """Class probabilities of images (n x H x W [x C], uint8 or float 0..1) under a stored
    classifier run with `classes` outputs."""

    tensorflow_environment()
    model = models.build(exp, experiments_dir, shape=images.shape[1:], classes=classes)
    model.load_weights(weights)
    probs = model.predict(images.astype("float32") / divisor_of(images), batch_size=1000, verbose=0)
    return np.asarray(probs, dtype=np.float32)
