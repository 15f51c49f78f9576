"""The machine a build trains on: the Keras backend and library versions, the device, CPU threads,
bfloat16 support, seeds and determinism, and the switches checked before any training."""

from __future__ import annotations

import os
import platform
import sys
import threading
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from reportgen.errors import ReportgenError
from reportgen.project.settings import OPTIONS_ENV, Environment
from reportgen.train import native_log, xla


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


BACKENDS = ("tensorflow", "jax", "torch")


def parse_device(text: str) -> str:
    """A --device value, lower-cased: auto, cpu, gpu or gpu:N. ValueError says what was expected."""
    device = text.strip().lower()
    if device in ("auto", "cpu", "gpu") or (device.startswith("gpu:") and device[4:].isdigit()):
        return device
    raise ValueError(f"expected auto, cpu, gpu or gpu:N, got {text!r}")


def select(backend: str | None, device: str = "auto", jobs: int = 1) -> None:
    """Choose the Keras backend and the device for this process and the workers it starts. Keras,
    TensorFlow, PyTorch and JAX take these choices only from environment variables they read once,
    when first imported: so this runs before anything imports them, and is the one place reportgen
    sets them. The user's own settings stand unless a flag says otherwise."""
    if backend:
        if backend not in BACKENDS:
            raise ValueError(f"expected one of {list(BACKENDS)}, got {backend!r}")
        os.environ["KERAS_BACKEND"] = backend
    tensorflow_environment()
    device = parse_device(device)
    if device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # TensorFlow, PyTorch and JAX all honour it
        os.environ["JAX_PLATFORMS"] = "cpu"
    elif device.startswith("gpu:"):
        os.environ["CUDA_VISIBLE_DEVICES"] = device[4:]
    if jobs > 1:
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # JAX here must not take the GPU's memory


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


def cpu_threads(env: Environment) -> int:
    """The size of the backend's CPU thread pool for every run of a build: REPORTGEN_THREADS, else
    the cores this process may use. How TensorFlow splits a matmul or a sum depends on this number,
    and with it the last bits of the weights; so side-by-side runs (--jobs, each pinned to its
    own cores) keep the pool of a sequential build and give the same weights."""
    if env.threads is not None:
        return env.threads
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def set_seeds(seed: int, env: Environment, programs: Path | None = None) -> dict[str, Any]:
    """Seed Python, NumPy and the backend in one place, make TensorFlow ops deterministic and fix
    the CPU thread pool's size. Under JAX, compiled programs are kept in `programs` (the build's
    cache) when given. https://keras.io/examples/keras_recipes/reproducibility_recipes/"""
    tensorflow_environment()
    import keras

    _seed_keras(keras, seed)
    flags: dict[str, Any] = {"seed": seed}
    threads = cpu_threads(env)
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
        _jax_settings(flags, env, programs)
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


def _jax_settings(flags: dict[str, Any], env: Environment, programs: Path | None) -> None:
    """Record the XLA options the training loops get; keep compiled programs in the build's cache."""
    options = env.xla_extra
    if options:  # other kernels (cuBLAS or Triton, say), other last bits of the weights
        flags["xla_options"] = options
    if programs is not None:
        # A rebuild (--force) or a second model of the same shapes loads its compiled programs
        # instead of compiling them again: compilation is most of a small run on a GPU. JAX keeps
        # XLA's GPU autotuning results in the same folder.
        xla.keep_programs(str(programs), env.xla_cache_bytes)


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


def check_environment(env: Environment) -> None:
    """Stop before any training when REPORTGEN_XLA_OPTIONS names an option this XLA does not have
    or gives one a value it does not take (under JAX, one trivial program is compiled with them to
    find out; other backends ignore them). The other variables were checked when they were read."""
    import keras

    if keras.backend.backend() != "jax" or not env.xla_options:
        return
    import jax

    lowered = jax.jit(lambda x: x + 1).lower(1.0)  # outside the try: a device that fails to start is not the options'
    try:
        lowered.compile(compiler_options=env.xla_extra)
    except RuntimeError as exc:  # XLA's own words say which option and why
        raise ReportgenError(f"environment variable {OPTIONS_ENV}: XLA refused it: {exc}") from None


def probe_backends(backends: tuple[str, ...] = BACKENDS, timeout: float = 120) -> dict[str, dict[str, str] | str]:
    """What each backend sees (device_info plus bfloat16 support), or why it could not be asked:
    each is asked in a fresh interpreter, so one that hangs or crashes on a broken driver cannot
    take the caller with it. A backend that is not installed is left out."""
    import json
    import subprocess

    probe = ("import json; from reportgen.train.machine import device_info, bf16_supported; d = device_info(); "
             "d['bf16'] = str(bf16_supported(d)); print(json.dumps(d))")
    seen: dict[str, dict[str, str] | str] = {}
    for backend in backends:
        try:
            metadata.version(backend)
        except metadata.PackageNotFoundError:
            continue
        try:
            done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=timeout,
                                  env={**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"})
            seen[backend] = dict(json.loads(done.stdout.strip().splitlines()[-1]))
        except (subprocess.SubprocessError, ValueError, IndexError, OSError) as exc:
            seen[backend] = type(exc).__name__
    return seen
