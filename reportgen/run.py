"""Train one experiment and capture what the report needs. The only stage that imports keras."""

from __future__ import annotations

import math
import os
import platform
import sys
import threading
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Protocol

import numpy as np

from . import native_log
from .data import Dataset
from .spec import Experiment, GANSpec

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

    result: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)


def backend_name() -> str:
    """The Keras backend that will run, read without importing keras (env, then keras.json)."""
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    config = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "keras.json"
    try:
        import json

        return str(json.loads(config.read_text())["backend"])
    except (OSError, ValueError, KeyError):
        return "tensorflow"


def versions() -> dict[str, str]:
    """Versions of what can change a result: keras, its backend, numpy, Python."""
    out = {"python": platform.python_version()}
    for package in ("keras", backend_name(), "numpy"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


ONEDNN_ENV = "TF_ENABLE_ONEDNN_OPTS"


def tensorflow_environment() -> None:
    """What TensorFlow reads from the environment once, when it is first imported; so this runs
    before anything imports keras. Its C++ start-up chatter (CUDA probing on a CPU machine) is not
    for the user. Its oneDNN kernels are on: TensorFlow turns them on by itself only on x86 CPUs with
    AVX-512 VNNI, BF16 or AMX, and without them a CNN's convolutions take the slower Eigen path (on
    2 AVX2 cores, 440-520 ms against 580-1030 ms a training step of the assignment's CNN). With
    this every x86 machine runs the same kernels. A user's own setting of either variable stands."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault(ONEDNN_ENV, "1")
    native_log.install()  # its start-up lines, which ignore the log level, kept out of the display


def onednn_enabled() -> bool | None:
    """Whether the TensorFlow in this process runs oneDNN's kernels (None: it cannot say)."""
    try:
        from tensorflow.python.util import _pywrap_util_port

        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        return None


THREADS_ENV = "REPORTGEN_THREADS"
XLA_CACHE_ENV = "REPORTGEN_XLA_CACHE"  # JAX: compiled programs kept on disk (the build sets it in its cache)


def cpu_threads() -> int:
    """The size of the backend's CPU thread pool for every run of a build: REPORTGEN_THREADS, else
    the cores this process may use. How TensorFlow splits a matmul or a sum depends on this number,
    and with it the last bits of the weights; so side-by-side runs (--jobs, each pinned to its
    own cores) keep the pool of a sequential build and give the same weights. A value that is not
    a whole number of threads, 1 or more, stops the build before training (fused.check_environment)."""
    text = os.environ.get(THREADS_ENV, "").strip()
    if text:
        if not text.isdigit() or int(text) < 1:
            from .errors import ReportgenError

            raise ReportgenError(f"environment variable {THREADS_ENV}={text!r}: expected a whole number of CPU "
                                 "threads for each run, 1 or more, such as 2")
        return int(text)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def set_seeds(seed: int) -> dict[str, Any]:
    """Seed Python, NumPy and the backend in one place, make TensorFlow ops deterministic and fix
    the CPU thread pool's size. https://keras.io/examples/keras_recipes/reproducibility_recipes/"""
    tensorflow_environment()
    import keras

    _seed_keras(keras, seed)
    flags: dict[str, Any] = {"seed": seed}
    threads = cpu_threads()
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.get_logger().setLevel("ERROR")  # retracing notices: expected, one model after another
        tf.config.experimental.enable_op_determinism()
        flags["tf_op_determinism"] = True
        flags["onednn"] = onednn_enabled()  # other kernels, other last bits of the weights
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:  # already running with another size (set before this build)
            threads = tf.config.threading.get_intra_op_parallelism_threads() or threads
        _share_gpu_memory(tf)
    elif keras.backend.backend() == "torch":
        import torch

        torch.set_num_threads(threads)
    elif keras.backend.backend() == "jax":
        _jax_settings(flags)
    flags["cpu_threads"] = threads
    return flags


_SEEDING = threading.Lock()


def _seed_keras(keras: Any, seed: int) -> None:
    """keras.utils.set_random_seed, which also seeds TensorFlow wherever it is installed: under
    another backend that meant importing it, about 5 s and several hundred MB in every process
    on 2 CPU cores, for a generator nothing draws from. There Keras' seeding is told, for the
    call, that TensorFlow is absent (its module's own reference, so nothing else in Keras is)."""
    try:
        from keras.src.utils import rng_utils
    except ImportError:  # another Keras layout: seed as Keras does
        rng_utils = None
    if keras.backend.backend() == "tensorflow" or "tensorflow" in sys.modules or not hasattr(rng_utils, "tf"):
        keras.utils.set_random_seed(seed)
        return
    with _SEEDING:
        real = rng_utils.tf
        rng_utils.tf = SimpleNamespace(available=False)
        try:
            keras.utils.set_random_seed(seed)
        finally:
            rng_utils.tf = real


def _jax_settings(flags: dict[str, Any]) -> None:
    """Record the XLA options the training loops get; keep compiled programs in the build's cache."""
    from .fused import extra_options, keep_programs

    options = extra_options()
    if options:  # other kernels (cuBLAS or Triton, say), other last bits of the weights
        flags["xla_options"] = options
    if os.environ.get(XLA_CACHE_ENV):
        # A rebuild (--force) or a second model of the same shapes loads its compiled programs
        # instead of compiling them again: compilation is most of a small run on a GPU. JAX keeps
        # XLA's GPU autotuning results in the same folder.
        keep_programs(os.environ[XLA_CACHE_ENV])


def _share_gpu_memory(tf: Any) -> None:
    """Let TensorFlow take GPU memory as it needs it instead of all at once, so several runs can
    share one GPU (--jobs). JAX is told the same by XLA_PYTHON_CLIENT_PREALLOCATE (parallel.py)."""
    try:
        for gpu in tf.config.list_physical_devices("GPU"):
            tf.config.experimental.set_memory_growth(gpu, True)
    except (RuntimeError, ValueError):  # already initialised: it keeps its first setting
        pass


def device_info() -> dict[str, str]:
    """The device training runs on, named per backend, with the CPU as the fallback."""
    tensorflow_environment()
    import keras

    backend = keras.backend.backend()
    cpu = _cpu_name()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            if gpus:
                details = tf.config.experimental.get_device_details(gpus[0])
                capability = details.get("compute_capability") or (0, 0)
                return {"kind": "gpu", "name": str(details.get("device_name", gpus[0].name)),
                        "count": str(len(gpus)), "backend": backend,
                        "compute_capability": ".".join(str(c) for c in capability)}
        elif backend == "jax":
            import jax

            devices = jax.devices()
            if devices and devices[0].platform != "cpu":
                return {"kind": "gpu" if devices[0].platform in ("gpu", "cuda", "rocm") else devices[0].platform,
                        "name": str(devices[0].device_kind), "count": str(len(devices)), "backend": backend,
                        "compute_capability": str(getattr(devices[0], "compute_capability", "0"))}
        elif backend == "torch":
            import torch

            if torch.cuda.is_available():
                major, minor = torch.cuda.get_device_capability(0)
                return {"kind": "gpu", "name": torch.cuda.get_device_name(0),
                        "count": str(torch.cuda.device_count()), "backend": backend,
                        "compute_capability": f"{major}.{minor}"}
    except Exception as exc:  # a broken driver must not stop a CPU run; say what happened
        return {"kind": "cpu", "name": cpu, "count": "1", "backend": backend,
                "note": f"accelerator query failed: {exc}"}
    return {"kind": "cpu", "name": cpu, "count": "1", "backend": backend}


def physical_gpus() -> list[str]:
    """GPUs the machine has, whatever the backend sees: the NVIDIA driver's list (no backend
    import). Empty when there is no driver, no nvidia-smi, or it fails."""
    import shutil
    import subprocess

    names = []
    for info in sorted(Path("/proc/driver/nvidia/gpus").glob("*/information")):
        try:
            for line in info.read_text().splitlines():
                if line.startswith("Model:"):
                    names.append(line.split(":", 1)[1].strip())
        except OSError:
            continue
    if names:
        return names
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20, check=True).stdout
            return [line.strip() for line in out.splitlines() if line.strip()]
        except (OSError, subprocess.SubprocessError):
            return []
    return []


def cpu_has_bf16() -> bool:
    """Whether the CPU computes bfloat16 natively (AVX512_BF16 or AMX); without it the backend
    emulates bfloat16, measured ten times slower than float32 for the CNN on such a CPU."""
    try:
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("flags")), "")
    except OSError:
        return False
    return any(f in flags.split() for f in ("avx512_bf16", "amx_bf16"))


def gpu_has_bf16(device: dict[str, str]) -> bool:
    """Whether the GPU named in device_info() has bfloat16 units (NVIDIA compute capability 8.0
    or later: A100, H100, RTX 30xx on)."""
    try:
        return float(device.get("compute_capability", "0")) >= 8.0
    except ValueError:
        return False


def bf16_supported(device: dict[str, str]) -> bool:
    return gpu_has_bf16(device) if device.get("kind") == "gpu" else cpu_has_bf16()


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"CPU: {line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"CPU: {platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


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


def _callback(reporter: Reporter, epochs: int, steps: int) -> Any:
    import keras

    class Watch(keras.callbacks.Callback):
        """Times epochs, forwards progress, and stops after the compiled call (a tenth of an epoch)
        in which the loss became NaN/inf. `batch` is the last step of that call."""

        def __init__(self) -> None:
            super().__init__()
            self.seconds: list[float] = []
            self.diverged: dict[str, Any] | None = None
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
            reporter.epoch_end(epoch + 1, {k: float(v) for k, v in (logs or {}).items()})

    return Watch()


WEIGHTS_FILE = "model.weights.h5"


def train(exp: Experiment, data: Dataset, experiments_dir: Path, reporter: Reporter | None = None,
          checkpoints: Path | None = None, key: str = "") -> Outcome:
    """Build, fit and evaluate one experiment; return its result and arrays for the store.
    A GAN run checkpoints each epoch into `checkpoints` and resumes from it."""
    from . import models

    reporter = reporter or SilentReporter()
    if isinstance(exp.model, GANSpec):
        from .gan import train_gan

        outcome: Outcome = train_gan(exp, data, reporter, checkpoints, key)
        return outcome
    started = time.perf_counter()
    flags = set_seeds(exp.model.seed)
    import keras

    spec = exp.model
    steps = math.ceil(len(data.x_train) / spec.batch_size)
    model = models.build(exp, experiments_dir)
    output = getattr(model, "outputs", None)  # a subclassed model has none until it is called
    if spec.precision == "mixed_bfloat16" and output and str(output[0].dtype) != "float32":
        reporter.note(f"{exp.name}: its output is {output[0].dtype} under mixed_bfloat16; give the builder's last "
                      "layer dtype=\"float32\" so the softmax and the loss stay float32")
    backend = keras.backend.backend()
    model.compile(optimizer=models.optimizer(exp.model), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    watch = _callback(reporter, spec.epochs, steps)
    if backend in ("tensorflow", "jax"):  # the data held by the backend, many steps a call
        from . import fused, tf_fit

        fit = fused.fit if backend == "jax" else tf_fit.fit
        watch.set_model(model)
        fitted, probs = fit(model, data.x_train, data.y_train, data.x_val, data.y_val, spec.batch_size, spec.epochs,
                            spec.seed, watch)
    else:  # PyTorch: Keras' fit, one step a call
        x_val = data.x_val.astype("float32") / 255.0
        fitted = model.fit(data.x_train.astype("float32") / 255.0, data.y_train, batch_size=spec.batch_size,
                           epochs=spec.epochs, validation_data=(x_val, data.y_val), callbacks=[watch],
                           verbose=0).history
        probs = np.asarray(model.predict(x_val, batch_size=1024, verbose=0))
    log = {k: [float(v) for v in values] for k, values in fitted.items()}
    done = len(log.get("loss", []))
    log["seconds"] = [round(s, 4) for s in watch.seconds[:done]]
    log["epoch"] = list(range(1, done + 1))

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
    result = {
        "name": exp.name,
        "status": "diverged" if watch.diverged else "ok",
        "diverged": watch.diverged,
        "summary": model_summary(model),
        "weights_sha256": weights_hash(model),
        "history": log,
        "epochs_run": done,
        "steps_trained": int(keras.ops.convert_to_numpy(model.optimizer.iterations)),
        "final": {k: log[k][-1] for k in ("loss", "accuracy", "val_loss", "val_accuracy") if log.get(k)},
        "best": {"val_accuracy": max(finite_val), "epoch": best_epoch} if finite_val else {},
        "misclassified": misclassified,
        **provenance(flags, started, data, spec.precision),
    }
    return Outcome(result=result, arrays=arrays, files={WEIGHTS_FILE: _weights_bytes(model)})


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


def _weights_bytes(model: Any) -> bytes:
    """The trained weights as an .h5 file's bytes, kept so later steps can use the model."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / WEIGHTS_FILE
        model.save_weights(path)
        return path.read_bytes()


def classify(exp: Experiment, weights: Path, images: np.ndarray, experiments_dir: Path) -> np.ndarray:
    """Class probabilities of uint8 images (n x 28 x 28) under a stored classifier run."""
    from . import models

    tensorflow_environment()
    model = models.build(exp, experiments_dir)
    model.load_weights(weights)
    probs = model.predict(images.astype("float32") / 255.0, batch_size=1000, verbose=0)
    return np.asarray(probs, dtype=np.float32)
