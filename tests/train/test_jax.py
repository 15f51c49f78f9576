"""Training under the JAX backend, where a classifier trains through reportgen's own compiled loop
(jax_loop.py) instead of Keras' fit. It must report what Keras would: the validation figures of the
stored weights, a short last batch trained, a penalty counted in the loss, the same weights for
the same seed, and a run that blows up marked as diverged."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from reportgen.project.settings import Environment
from reportgen.train import xla
from tests.conftest import EXPLODING_RUN, write_project

SECTION = """
number = "1"
title = "Under JAX"
[defaults]
epochs = 2
[[runs]]
name = "plain"
kind = "mlp"
hidden_layers = [16]
[[runs]]
name = "penalised"
kind = "mlp"
hidden_layers = [16]
regularizer = "l2"
strength = 0.01
[[runs]]
name = "dropout"
kind = "custom"
builder = "nets:dropout"
""" + EXPLODING_RUN

NETS = """
import keras

def dropout():
    return keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(), keras.layers.Dense(32, activation="relu"),
                             keras.layers.Dropout(0.3, seed=7), keras.layers.Dense(10, activation="softmax")])
"""

# 1000 training images in batches of 64: 15 whole batches and a short one of 40.
CHECK = r"""
import json, os, sys, tempfile
from pathlib import Path

import keras

from reportgen.project import data, dataset
from reportgen.train import models, outcome, run, store
from reportgen.project.settings import Environment
from reportgen.project.spec import load_project

root = Path(sys.argv[1])
images = dataset.subset(data.load("mnist-sample"), 1000, 300)
out = {"backend": keras.backend.backend()}


class Steps(outcome.SilentReporter):
    def __init__(self):
        self.last = []

    def batch_end(self, step, logs):
        self.last.append(step)


for exp in load_project(root).experiments:
    steps, looped_steps = Steps(), Steps()
    first, again = run.train(exp, images, root / "experiments", steps), run.train(exp, images, root / "experiments")
    # as on a GPU: a tenth of an epoch per call
    looped = run.train(exp, images, root / "experiments", looped_steps, env=Environment(device_loop=True))
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / store.WEIGHTS_FILE
        weights.write_bytes(first.files[store.WEIGHTS_FILE])
        model = models.build(exp, root / "experiments", shape=images.input_shape, classes=images.num_classes)
        model.load_weights(weights)
        model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        evaluated = model.evaluate(images.x_val / 255.0, images.y_val, batch_size=64, verbose=0, return_dict=True)
    out[exp.name] = {"result": first.result.model_dump(), "again": again.result.weights_sha256,
                     "evaluated": {k: float(v) for k, v in evaluated.items()},
                     "grid": len(first.arrays.get("misclassified_images", [])), "steps": steps.last,
                     "looped": {"result": looped.result.model_dump(), "steps": looped_steps.last}}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = write_project(tmp_path_factory.mktemp("jax"), {
        "experiments/1-jax.toml": SECTION, "experiments/1-jax.md": "Under JAX.\n", "experiments/nets.py": NETS})
    env = {k: v for k, v in os.environ.items() if k != "REPORTGEN_DEVICE_LOOP"}  # one call per step, as on a CPU
    done = subprocess.run([sys.executable, "-c", CHECK, str(root)], capture_output=True, text=True, timeout=900,
                          env={**env, "KERAS_BACKEND": "jax"})
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def assert_keras_would_report_it(trained: dict, name: str, backend: str, progress: list[int]) -> None:
    """A run's result against what Keras' evaluate gives on its stored weights (the CHECK script's
    output), under JAX or PyTorch; progress: the steps at which the reporter heard of a batch."""
    assert trained["backend"] == backend
    result, evaluated = trained[name]["result"], trained[name]["evaluated"]
    assert result["backend"] == backend and result["status"] == "ok" and result["epochs_run"] == 2
    assert result["device"]["backend"] == backend
    history = result["history"]
    assert history["val_accuracy"][-1] == pytest.approx(evaluated["accuracy"], abs=1e-6)
    assert history["val_loss"][-1] == pytest.approx(evaluated["loss"], rel=1e-4)
    # The misclassified grid comes from the same last-epoch predictions.
    wrong = round((1 - evaluated["accuracy"]) * 300)
    assert result["misclassified"]["count"] == wrong and result["misclassified"]["total"] == 300
    assert trained[name]["grid"] == min(wrong, 100)
    assert history["loss"][1] < history["loss"][0]
    # Each epoch trains 16 batches, the last a short one.
    assert result["steps_trained"] == 32
    assert trained[name]["steps"] == progress
    assert trained[name]["again"] == result["weights_sha256"]  # same seed, same weights


@pytest.mark.slow
@pytest.mark.parametrize("name", ["plain", "penalised", "dropout"])
def test_the_history_ends_with_what_keras_evaluates_on_the_stored_weights(trained: dict, name: str) -> None:
    # Progress every tenth of an epoch.
    assert_keras_would_report_it(trained, name, "jax", [2, 4, 6, 8, 10, 12, 14, 16] * 2)


@pytest.mark.slow
def test_the_penalty_is_part_of_the_validation_loss(trained: dict) -> None:
    plain, penalised = trained["plain"]["result"]["history"], trained["penalised"]["result"]["history"]
    # An L2 of 0.01 on 12,700 weights adds a visible amount that the cross-entropy alone would not show.
    assert penalised["val_loss"][-1] - plain["val_loss"][-1] > 0.05


@pytest.mark.slow
def test_a_run_that_blows_up_under_jax_is_marked_diverged(trained: dict) -> None:
    result = trained["explodes"]["result"]
    assert result["status"] == "diverged" and result["diverged"]["epoch"] == 1
    assert result["epochs_run"] == 1


@pytest.mark.slow
@pytest.mark.parametrize("name", ["plain", "penalised", "dropout", "explodes"])
def test_looping_on_the_device_trains_the_same_steps_to_the_same_weights(trained: dict, name: str) -> None:
    # A GPU runs a tenth of an epoch per call, looping on the device; the CPU a step per call.
    stepped, looped = trained[name]["result"], trained[name]["looped"]["result"]
    assert looped["weights_sha256"] == stepped["weights_sha256"]
    assert looped["steps_trained"] == stepped["steps_trained"]
    assert looped["history"]["val_accuracy"] == stepped["history"]["val_accuracy"]
    assert looped["status"] == stepped["status"]
    assert trained[name]["looped"]["steps"] == trained[name]["steps"]


@pytest.mark.slow
def test_jax_lays_out_its_program_folder_as_reportgen_tidies_it(tmp_path) -> None:
    # keep_programs deletes programs by JAX's file names, under JAX's lock: if a JAX release renames
    # them, tidying stops (the folder is left alone) and this says so.
    from jax._src import lru_cache


    cache = lru_cache.LRUCache(str(tmp_path), max_size=2**20)
    cache.put("program", b"compiled")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lockfile", "program-atime", "program-cache"]
    assert xla._jax_layout_known()


@pytest.mark.slow
def test_a_program_cut_short_goes_even_once_another_process_has_read_it(tmp_path) -> None:
    # Killed while writing, a worker leaves a program cut short; another worker that asks for it
    # before the next tidying reads it, refuses it and stamps it as used all the same.
    import jax
    from jax._src import compilation_cache, lru_cache


    program = compilation_cache.compress_executable(b"a compiled program " * 200)
    cache = lru_cache.LRUCache(str(tmp_path), max_size=2**20)
    cache.put("whole", program)
    cache.put("cut", program[: len(program) // 2])
    assert cache.get("cut") is not None and (tmp_path / "cut-atime").is_file()
    before = jax.config.jax_compilation_cache_dir
    try:
        xla.keep_programs(str(tmp_path), Environment().xla_cache_bytes)
    finally:
        jax.config.update("jax_compilation_cache_dir", before)
    assert sorted(p.name for p in tmp_path.glob("*-*")) == ["whole-atime", "whole-cache"]


@pytest.mark.slow
def test_a_program_folder_that_cannot_be_made_means_compiling_not_failing(tmp_path) -> None:
    # A Dask worker on another machine gets the build's folder, which it may not be able to make.
    import jax


    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    xla.keep_programs(str(blocked / "xla"), Environment().xla_cache_bytes)
    assert jax.config.jax_compilation_cache_dir != str(blocked / "xla")


def test_seeding_a_jax_run_leaves_tensorflow_out_yet_usable() -> None:
    # Keras seeds TensorFlow wherever it is installed; a JAX run skips that import (5 s here), and
    # a model that needs TensorFlow for a layer of its own still gets it.
    probe = ("import sys, keras; from reportgen.train.machine import set_seeds; "
             "from reportgen.project.settings import Environment; set_seeds(3, Environment()); "
             "print('tensorflow' in sys.modules); ours = keras.random.uniform((4,)).tolist(); "
             "keras.layers.Hashing(num_bins=3); keras.utils.set_random_seed(3); "
             "print(ours == keras.random.uniform((4,)).tolist())")  # the same draws as Keras' own seeding
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "KERAS_BACKEND": "jax"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False", "True"]


@pytest.mark.slow
def test_on_a_gpu_only_models_without_convolutions_skip_autotuning(monkeypatch: pytest.MonkeyPatch) -> None:
    import keras


    dense = keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(), keras.layers.Dense(10)])
    inner = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(4, 3)])
    nested = keras.Sequential([keras.Input((28, 28, 1)), inner, keras.layers.Flatten(), keras.layers.Dense(10)])
    generator = keras.Sequential([keras.Input((7, 7, 8)), keras.layers.Conv2DTranspose(1, 4, strides=4)])
    plain = Environment()
    assert xla.compiler_options(dense, env=plain, platform="gpu") == {"xla_gpu_autotune_level": 0}
    # Without autotuning the CNN ran several times slower on an H100.
    assert xla.compiler_options(nested, env=plain, platform="gpu") == {}
    assert xla.compiler_options(dense, generator, env=plain, platform="gpu") == {}
    assert xla.compiler_options(dense, env=plain, platform="cpu") == {}
    tuned = Environment.read({"REPORTGEN_XLA_AUTOTUNE": "4"})
    assert xla.compiler_options(dense, env=tuned, platform="gpu") == {"xla_gpu_autotune_level": 4}


@pytest.mark.slow
def test_xla_options_from_the_environment_are_added_last_and_win(monkeypatch: pytest.MonkeyPatch) -> None:
    import keras


    dense = keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(), keras.layers.Dense(10)])
    env = Environment.read({"REPORTGEN_XLA_OPTIONS":
                            '{"xla_gpu_enable_triton_gemm": false, "xla_gpu_autotune_level": 2}'})
    assert xla.compiler_options(dense, env=env, platform="gpu") == {"xla_gpu_enable_triton_gemm": False,
                                                                      "xla_gpu_autotune_level": 2}
    assert xla.compiler_options(dense, env=env, platform="cpu") == {"xla_gpu_enable_triton_gemm": False,
                                                                      "xla_gpu_autotune_level": 2}


@pytest.mark.slow
def test_an_xla_option_that_xla_lacks_stops_training_before_it_starts_and_keeps_the_cache(tmp_path) -> None:
    root = write_project(tmp_path, {"experiments/1-jax.toml": SECTION.replace("epochs = 2", "epochs = 1"),
                                    "experiments/1-jax.md": "Under JAX.\n", "experiments/nets.py": NETS})
    command = [sys.executable, "-m", "reportgen", "run", "-C", str(root), "--backend", "jax", "--only", "plain",
               "--limit-train", "200", "--limit-val", "50"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPORTGEN_")}
    options = {"xla_gpu_enable_triton_gemm": False}  # a GPU option: accepted, and unused, on a CPU
    done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env={**env, "REPORTGEN_XLA_OPTIONS": json.dumps(options)})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    cached = sorted(p.name for p in (root / ".reportgen-cache" / "results").iterdir())
    assert len(cached) == 1
    result = json.loads((root / ".reportgen-cache" / "results" / cached[0] / "result.json").read_text())
    assert result["determinism"]["xla_options"] == options  # the options that trained it, on record
    bad = {**env, "REPORTGEN_XLA_OPTIONS": '{"xla_gpu_enable_trition_gemm": false}'}
    done = subprocess.run([*command, "--force"], capture_output=True, text=True, timeout=600, env=bad)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output[-2000:]
    assert "environment variable REPORTGEN_XLA_OPTIONS: XLA refused it" in output
    assert "No such compile option: 'xla_gpu_enable_trition_gemm'" in output
    assert "Traceback" not in output and "plain:" not in output
    assert sorted(p.name for p in (root / ".reportgen-cache" / "results").iterdir()) == cached


GAN_SECTION = """
number = "2"
title = "A GAN under JAX"
[[runs]]
name = "small-gan"
kind = "gan"
generator = [32, 64]
discriminator = [64, 32]
batch_size = 32
samples = 1200
"""

GAN_CHECK = r"""
import json, sys
from pathlib import Path

import keras
import numpy as np

from reportgen.project import data, dataset
from reportgen.train import gan
from reportgen.project.spec import load_project

root = Path(sys.argv[1])
spec = load_project(root).experiments[0].model
nets = gan.GanNets(spec)
noise = gan.fixed_noise(spec)
before = nets.generate(noise)
reals, z1, z2 = gan.epoch_batches(gan.scale_images(data.load("mnist-sample").x_train[:640], spec.generator_output),
                                  spec, 1)
nets.run_steps(reals, z1, z2)
after, again = nets.generate(noise), nets.generate(noise)
nets.sync()
eager = keras.ops.convert_to_numpy(nets.generator(noise, training=False))
eager = np.clip((eager + 1.0) * 127.5, 0, 255).round().astype(np.uint8).reshape(-1, 28, 28)
diff = np.abs(after.astype(int) - eager.astype(int))
print(json.dumps({"backend": keras.backend.backend(), "shape": list(after.shape),
                  "changed": float((after != before).mean()), "repeatable": bool((after == again).all()),
                  "max_diff": int(diff.max()), "equal": float((diff == 0).mean())}))
"""


@pytest.mark.slow
def test_gan_samples_under_jax_are_the_generators_own_output_on_its_trained_weights(tmp_path) -> None:
    # Under JAX, generate() runs the generator as one compiled program instead of layer by layer;
    # the images must be what Keras' own call gives, from the weights the training loop holds,
    # and more than one 1000-noise part must come back whole.
    root = write_project(tmp_path, {"experiments/2-gan.toml": GAN_SECTION, "experiments/2-gan.md": "A GAN.\n"})
    done = subprocess.run([sys.executable, "-c", GAN_CHECK, str(root)], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "KERAS_BACKEND": "jax"})
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["backend"] == "jax" and out["shape"] == [1200, 28, 28]
    assert out["changed"] > 0.05  # trained weights, not the ones synced before training
    assert out["repeatable"]
    # Fused into one program, a pixel may round the other way; a few at most, by one level.
    assert out["max_diff"] <= 1 and out["equal"] > 0.999


CACHE_CHECK = r"""
import json, logging, sys
from pathlib import Path

from reportgen.project import data, dataset
from reportgen.train import run
from reportgen.project.settings import Environment
from reportgen.project.spec import load_project


class Seen(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.hits = self.misses = 0

    def emit(self, record):
        message = record.getMessage()
        self.hits += message.startswith("Persistent compilation cache hit")
        self.misses += message.startswith("PERSISTENT COMPILATION CACHE MISS")


seen = Seen()
logger = logging.getLogger("jax._src.compiler")
logger.setLevel(logging.DEBUG)
logger.addHandler(seen)
root = Path(sys.argv[1])
exp = next(e for e in load_project(root).experiments if e.name == "plain")
outcome = run.train(exp, dataset.subset(data.load("mnist-sample"), 300, 100), root / "experiments",
                    programs=Path(sys.argv[2]), env=Environment.read())  # REPORTGEN_XLA_CACHE_MB, as a build reads it
print(json.dumps({"hits": seen.hits, "misses": seen.misses, "weights": outcome.result.weights_sha256,
                  "tensorflow": "tensorflow" in sys.modules}))
"""


@pytest.mark.slow
def test_compiled_programs_are_loaded_again_mended_when_cut_short_and_kept_within_their_bound(tmp_path) -> None:
    # The build keeps JAX's compiled programs in its cache (<cache>/xla): a rebuild or
    # another worker training the same shapes loads every program, the weights' initialisers
    # included, instead of compiling it again.
    root = write_project(tmp_path, {"experiments/1-jax.toml": SECTION, "experiments/1-jax.md": "Under JAX.\n",
                                    "experiments/nets.py": NETS})
    folder = tmp_path / "xla"
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPORTGEN_")}
    env.update({"KERAS_BACKEND": "jax"})

    def train(**extra: str) -> dict:
        done = subprocess.run([sys.executable, "-c", CACHE_CHECK, str(root), str(folder)], capture_output=True,
                              text=True,
                              timeout=600, env={**env, **extra})
        assert done.returncode == 0, done.stderr[-3000:]
        assert "persistent compilation cache" not in done.stderr, done.stderr[-3000:]  # no entry refused
        return dict(json.loads(done.stdout.strip().splitlines()[-1]))

    first = train()
    assert first["misses"] >= 5 and first["hits"] == 0
    assert first.pop("tensorflow") is False  # seeding a JAX run no longer imports TensorFlow (5 s here)
    assert train() == {**first, "hits": first["misses"], "misses": 0, "tensorflow": False}

    # A process killed while writing a program leaves it cut short, without its last-use file:
    # the next run compiles that one again (once) instead of failing to read it.
    programs = sorted(folder.glob("*-cache"), key=lambda p: p.stat().st_size)
    cut = programs[-1]
    size = cut.stat().st_size
    cut.write_bytes(cut.read_bytes()[:1000])
    cut.with_name(cut.name.removesuffix("-cache") + "-atime").unlink()
    assert train() == {**first, "hits": first["misses"] - 1, "misses": 1, "tensorflow": False}
    assert cut.stat().st_size > size // 2

    # REPORTGEN_XLA_CACHE_MB bounds the folder: the programs used least recently go.
    bound = 0.1
    assert sum(p.stat().st_size for p in folder.glob("*-cache")) > bound * 2**20
    assert train(REPORTGEN_XLA_CACHE_MB=str(bound))["weights"] == first["weights"]
    kept = sum(p.stat().st_size for p in folder.glob("*-cache"))
    assert 0 < kept <= bound * 2**20
    # 0 keeps none: what earlier runs kept goes too.
    assert train(REPORTGEN_XLA_CACHE_MB="0")["weights"] == first["weights"]
    assert list(folder.glob("*-cache")) == [] and list(folder.glob("*-atime")) == []
