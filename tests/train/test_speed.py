"""Training side by side and on other machines, and what a build does with the devices it finds.

--jobs and --scheduler must give the results of a sequential build, bit for bit, into the same
cache; a Dask worker lost mid-run must cost a retry, not the experiment. Device detection must
fall back to the CPU, say so, and refuse what the hardware cannot do before anything trains."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reportgen.train import machine
from tests.conftest import THREE_NETS, write_project

SECTION = THREE_NETS
LIMITS = ["--limit-train", "1500", "--limit-val", "200"]


def project(root: Path, section: str = SECTION) -> Path:
    return write_project(root, {"experiments/1-nets.toml": section, "experiments/1-nets.md": "Three nets.\n"})


def reportgen(root: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """`reportgen run` in a fresh interpreter, as a user starts it."""
    return subprocess.run([sys.executable, "-m", "reportgen", "run", "-C", str(root), *LIMITS, *args],
                          capture_output=True, text=True, timeout=timeout, env={**os.environ, "COLUMNS": "200"})


def stored(root: Path) -> dict[str, dict]:
    """Each stored result by experiment name: weights hash and history, less the timings."""
    out = {}
    for path in (root / ".reportgen-cache" / "results").glob("*/result.json"):
        result = json.loads(path.read_text())
        history = {k: v for k, v in result["history"].items() if k != "seconds"}
        out[result["name"]] = {"key": path.parent.name, "weights": result["weights_sha256"], "history": history,
                               "threads": result["determinism"]["cpu_threads"]}
    return out


@pytest.fixture(scope="module")
def sequential(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    root = project(tmp_path_factory.mktemp("sequential"))
    done = reportgen(root)
    assert done.returncode == 0, done.stdout + done.stderr
    results = stored(root)
    assert sorted(results) == ["net-16", "net-24", "net-8"]
    return results


@pytest.mark.slow
def test_jobs_train_side_by_side_into_the_same_cache_with_identical_results(
        tmp_path: Path, sequential: dict[str, dict]) -> None:
    root = project(tmp_path)
    done = reportgen(root, "--jobs", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Training 3 experiment(s) on 2 local worker processes" in done.stdout
    assert done.stdout.count("started on pid") == 3
    # Bit-identical weights and identical curves, under the same keys as the sequential build.
    assert stored(root) == sequential
    # The same cache: a sequential build afterwards finds everything fresh.
    again = reportgen(root)
    assert again.returncode == 0 and "0 to train" in again.stdout, again.stdout


@pytest.mark.slow
def test_repeats_train_side_by_side_under_jobs_and_the_first_repeat_is_the_run_as_before(
        tmp_path: Path, sequential: dict[str, dict]) -> None:
    root = project(tmp_path)
    done = reportgen(root, "--jobs", "2", "--repeats", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Training 6 experiment(s) on 2 local worker processes" in done.stdout
    results = stored(root)
    assert sorted(results) == ["net-16", "net-16#2", "net-24", "net-24#2", "net-8", "net-8#2"]
    # Repeat 1 is the run itself: same key, same weights as the build without repeats.
    assert {name: results[name] for name in sequential} == sequential
    assert results["net-8#2"]["weights"] != results["net-8"]["weights"]
    again = reportgen(root, "--repeats", "2")
    assert again.returncode == 0 and "0 to train" in again.stdout, again.stdout


def on_a_cluster_losing_a_worker(root: Path, *args: str) -> tuple[str, str | None]:
    """`reportgen run --scheduler` on a local cluster of two worker processes, killing the worker of
    the first experiment that starts; the build's output and that experiment's name."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None, silence_logs=40) as cluster, \
            distributed.Client(cluster) as client:
        pids = client.run(os.getpid)
        build = subprocess.Popen([sys.executable, "-m", "reportgen", "run", "-C", str(root), *LIMITS,
                                  "--scheduler", cluster.scheduler_address, *args],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                 env={**os.environ, "COLUMNS": "200"})
        assert build.stdout is not None
        lines, killed = [], None
        for line in build.stdout:
            lines.append(line)
            if killed is None and "started on tcp://" in line:
                address = line.split("started on ", 1)[1].strip()
                time.sleep(1.0)  # let it get into the run
                os.kill(pids[address], signal.SIGKILL)
                killed = line.split(":", 1)[0].strip()
        output = "".join(lines)
        assert build.wait(timeout=600) == 0, output
    return output, killed


@pytest.mark.slow
def test_a_dask_cluster_trains_the_experiments_and_a_lost_worker_costs_a_retry(
        tmp_path: Path, sequential: dict[str, dict]) -> None:
    root = project(tmp_path)
    output, killed = on_a_cluster_losing_a_worker(root)
    assert killed is not None, output
    assert f"{killed}: its worker was lost; running it again on tcp://" in output
    assert "failed" not in output
    # Every experiment came back into this project's cache, equal to the sequential build's.
    assert stored(root) == sequential


@pytest.mark.slow
def test_a_lone_experiment_whose_worker_is_lost_runs_again(tmp_path: Path, sequential: dict[str, dict]) -> None:
    # The killed worker held the only copy of the data set: the scheduler must be able to make it
    # again on the other worker, which no task had asked for it.
    root = project(tmp_path)
    output, killed = on_a_cluster_losing_a_worker(root, "--only", "net-16")
    assert killed == "net-16", output
    assert "net-16: its worker was lost; running it again on tcp://" in output
    assert "failed" not in output
    assert stored(root) == {"net-16": sequential["net-16"]}


@pytest.mark.slow
@pytest.mark.parametrize("address", ["garbage", "http://127.0.0.1:8786", "tcp://127.0.0.1"])
def test_a_malformed_scheduler_address_is_a_clear_error_at_once(tmp_path: Path, address: str) -> None:
    pytest.importorskip("distributed")
    from typer.testing import CliRunner

    from reportgen.cli import app

    root = project(tmp_path)
    result = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["run", "-C", str(root), *LIMITS, "--scheduler", address])
    assert result.exit_code == 1, result.output
    assert f"Error: --scheduler {address!r} is not a Dask scheduler address (" in result.output
    # Checked before a Dask client is made: no traceback, and no 40 s wait while a half-made one closes
    assert "expected tcp://HOST:PORT" in result.output and "Traceback" not in result.output


@pytest.mark.slow
def test_an_unreachable_scheduler_is_a_clear_error_before_training(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    from typer.testing import CliRunner

    from reportgen.cli import app

    root = project(tmp_path)
    result = CliRunner(env={"COLUMNS": "200"}).invoke(
        app, ["run", "-C", str(root), *LIMITS, "--scheduler", "tcp://127.0.0.1:9"])
    assert result.exit_code == 1, result.output
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in result.output
    assert not (root / ".reportgen-cache" / "results").exists() or not any(
        (root / ".reportgen-cache" / "results").iterdir())


# --- devices -----------------------------------------------------------------------------------------


def fake_nvidia_smi(folder: Path, script: str) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    tool = folder / "nvidia-smi"
    tool.write_text("#!/bin/sh\n" + script)
    tool.chmod(0o755)
    return str(folder)


def test_physical_gpus_come_from_the_driver_and_fall_back_to_none(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:

    if Path("/proc/driver/nvidia/gpus").is_dir():
        pytest.skip("this machine has an NVIDIA driver: the fallbacks cannot be staged")
    monkeypatch.setenv("PATH", fake_nvidia_smi(tmp_path / "ok", "echo 'NVIDIA H100 80GB HBM3'\n"))
    assert machine.physical_gpus() == ["NVIDIA H100 80GB HBM3"]
    monkeypatch.setenv("PATH", fake_nvidia_smi(tmp_path / "broken", "echo 'NVIDIA-SMI has failed' >&2; exit 9\n"))
    assert machine.physical_gpus() == []
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert machine.physical_gpus() == []


@pytest.mark.slow
def test_a_failing_accelerator_query_falls_back_to_the_cpu_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    import tensorflow as tf


    def broken(kind: str | None = None) -> list:
        raise RuntimeError("CUDA driver version is insufficient")

    monkeypatch.setattr(tf.config, "list_physical_devices", broken)
    info = machine.device_info()
    assert info["kind"] == "cpu" and info["name"].startswith("CPU:")
    assert "accelerator query failed: CUDA driver version is insufficient" in info["note"]


@pytest.mark.slow
def test_a_gpu_the_backend_does_not_use_is_named_and_training_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from reportgen.cli import app

    monkeypatch.setattr(machine, "physical_gpus", lambda: ["NVIDIA H100 80GB HBM3"])
    root = project(tmp_path, SECTION.replace("[[8], [16], [24]]", "[[8]]"))
    result = CliRunner(env={"COLUMNS": "240"}).invoke(app, ["run", "-C", str(root), *LIMITS])
    assert result.exit_code == 0, result.output
    assert ("this machine has a GPU (NVIDIA H100 80GB HBM3) but the tensorflow backend does not use it; "
            "training runs on the CPU") in result.output
    assert "net-8: val_accuracy" in result.output


@pytest.mark.slow
def test_asking_for_a_gpu_that_is_not_there_stops_before_training(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from reportgen.cli import app

    root = project(tmp_path)
    result = CliRunner(env={"COLUMNS": "240"}).invoke(app, ["run", "-C", str(root), *LIMITS, "--device", "gpu"])
    assert result.exit_code == 1, result.output
    assert "--device gpu: the tensorflow backend sees no GPU" in result.output
    assert not (root / ".reportgen-cache" / "results").exists() or not any(
        (root / ".reportgen-cache" / "results").iterdir())
    bad = CliRunner().invoke(app, ["run", "-C", str(root), "--device", "tpu9"])
    assert bad.exit_code == 2 and "expected auto, cpu, gpu or gpu:N" in bad.output


@pytest.mark.slow
def test_bfloat16_without_bfloat16_hardware_names_the_file_and_trains_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from reportgen.cli import app

    monkeypatch.setattr(machine, "cpu_has_bf16", lambda: False)
    root = project(tmp_path, SECTION.replace('kind = "mlp"', 'kind = "mlp"\nprecision = "mixed_bfloat16"'))
    result = CliRunner(env={"COLUMNS": "240"}).invoke(app, ["run", "-C", str(root), *LIMITS])
    assert result.exit_code == 1, result.output
    assert "1-nets.toml (run net-8, key precision)" in result.output
    assert 'Expected precision = "float32" on this machine. Nothing was trained.' in result.output
    flag = CliRunner(env={"COLUMNS": "240"}).invoke(
        app, ["run", "-C", str(project(tmp_path / "b")), *LIMITS, "--precision", "mixed_bfloat16"])
    assert flag.exit_code == 1 and "--precision mixed_bfloat16: mixed_bfloat16 needs bfloat16 hardware" in flag.output
    assert "Leave out --precision, or give --precision float32, on this machine." in " ".join(flag.output.split())


@pytest.mark.slow
def test_a_custom_models_bfloat16_output_is_pointed_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from reportgen.cli import app

    monkeypatch.setattr(machine, "cpu_has_bf16", lambda: True)
    builder = ("import keras\n\n\ndef net(out):\n    return keras.Sequential([keras.Input((28, 28)), "
               "keras.layers.Flatten(), keras.layers.Dense(10), keras.layers.Activation('softmax', dtype=out)])\n")
    runs = "".join(f'[[runs]]\nname = "{out}-out"\nkind = "custom"\nbuilder = "nets:net"\n'
                   f'params = {{ out = "{out}" }}\nprecision = "mixed_bfloat16"\nepochs = 1\n'
                   for out in ("float32", "mixed_bfloat16"))
    root = write_project(tmp_path, {"experiments/1-nets.toml": 'number = "1"\ntitle = "t"\n' + runs,
                                    "experiments/1-nets.md": "Nets.\n", "experiments/nets.py": builder})
    result = CliRunner(env={"COLUMNS": "240"}).invoke(app, ["run", "-C", str(root), "--limit-train", "300",
                                                            "--limit-val", "100"])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert ("mixed_bfloat16-out: its output is bfloat16 under mixed_bfloat16; give the builder's last layer "
            'dtype="float32"') in out
    assert "float32-out: its output" not in out


@pytest.mark.slow
def test_bfloat16_runs_where_supported_and_the_report_says_so(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from reportgen.cli import app

    monkeypatch.setattr(machine, "cpu_has_bf16", lambda: True)  # emulated here: slow, but the same arithmetic
    section = SECTION.replace("[[8], [16], [24]]", "[[16]]")
    root = project(tmp_path, section)
    plain = CliRunner(env={"COLUMNS": "240"}).invoke(app, ["build", "-C", str(root), *LIMITS])
    assert plain.exit_code == 0, plain.output
    mixed = CliRunner(env={"COLUMNS": "240"}).invoke(
        app, ["build", "-C", str(root), *LIMITS, "--precision", "mixed_bfloat16"])
    assert mixed.exit_code == 0, mixed.output
    assert "1 to train" in mixed.output  # a bfloat16 result is not the float32 one
    results = {r["precision"]: r for r in (json.loads(p.read_text()) for p in
                                           (root / ".reportgen-cache" / "results").glob("*/result.json"))}
    assert set(results) == {"float32", "mixed_bfloat16"}
    assert results["float32"]["weights_sha256"] != results["mixed_bfloat16"]["weights_sha256"]
    # Both learned (chance is 0.1), and bfloat16 compute stays within a few points of float32.
    accs = {p: r["final"]["val_accuracy"] for p, r in results.items()}
    assert accs["mixed_bfloat16"] > 0.3 and abs(accs["mixed_bfloat16"] - accs["float32"]) < 0.1, accs
    html = (root / "build" / "report.html").read_text()
    assert "<th>Precision</th><td>mixed_bfloat16 throughout" in html
    assert "(tensorflow)</td>" in html  # the provenance page's device, beside the precision above
    manifest = json.loads((root / "build" / "manifest.json").read_text())
    assert manifest["precisions"] == ["mixed_bfloat16"] and manifest["precision_override"] == "mixed_bfloat16"
    # render (no flag) follows the last build's precision and finds its results.
    again = CliRunner(env={"COLUMNS": "240"}).invoke(app, ["render", "-C", str(root)])
    assert again.exit_code == 0 and "mixed_bfloat16 throughout" in (root / "build" / "report.html").read_text()



def test_side_by_side_runs_start_with_the_longest(tmp_path: Path) -> None:
    """Handed out in declared order, the shipped project's GANs (20 epochs) and CNN would start
    last under --jobs, and the build would wait for them after every dense run had finished."""
    from reportgen.pipeline import longest_first
    from reportgen.project.spec import load_project
    from reportgen.train.plan import Planned

    experiments = load_project(Path(__file__).resolve().parents[2]).experiments
    todo = [Planned(exp, {}, f"key-{i}", None, ["never run"]) for i, exp in enumerate(experiments)]
    order = longest_first(todo)
    assert [p.exp.name for _, p in order[:4]] == ["gan", "gan-l2", "cnn", "dropout-400"]
    # The dense runs follow in their declared order, and each keeps its number for the display.
    dense = [p.exp.name for _, p in order[4:]]
    assert dense == [e.name for e in experiments if e.model.kind == "mlp"]
    assert sorted(i for i, _ in order) == list(range(1, len(todo) + 1))
    assert all(todo[i - 1] is p for i, p in order)


def test_workers_train_with_the_builds_switches_not_their_own(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # A worker (a Dask worker on another machine above all) trains with the switches the build
    # read and checked, sent with the task, not with whatever its own environment says.
    import pickle
    import queue

    from reportgen.project.settings import Environment
    from reportgen.project.spec import load_project
    from reportgen.train import parallel

    built = Environment.read({"REPORTGEN_XLA_OPTIONS": '{"xla_gpu_enable_triton_gemm": false}',
                              "REPORTGEN_DEVICE_LOOP": "1", "REPORTGEN_XLA_CACHE_MB": "512"})
    exp = load_project(project(tmp_path)).experiments[0]
    task = pickle.loads(pickle.dumps(parallel.Task(1, exp, tmp_path / "experiments", None, "key", env=built)))
    seen: dict = {}
    monkeypatch.setattr(parallel, "train", lambda *args, **kwargs: seen.update(kwargs) or "trained")
    monkeypatch.setenv("REPORTGEN_DEVICE_LOOP", "0")  # the worker's own, which nobody checked
    assert parallel.work(task, data=None, events=queue.Queue(), where="here") == "trained"
    assert seen["env"] == built and seen["env"].device_loop is True and seen["env"].xla_cache_mb == 512
    assert not [name for name in parallel.worker_environment(2, 1) if name.startswith("REPORTGEN_")]


@pytest.mark.slow
@pytest.mark.parametrize("value", ["abc", "1.5", "0", "-1"])
def test_a_bad_thread_count_stops_the_build_before_training(tmp_path: Path, value: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from reportgen.cli import app

    monkeypatch.setenv("REPORTGEN_THREADS", value)
    root = project(tmp_path)
    result = CliRunner(env={"COLUMNS": "240"}).invoke(app, ["run", "-C", str(root), *LIMITS])
    assert result.exit_code == 1, result.output
    assert (f"Error: environment variable REPORTGEN_THREADS={value!r}: expected a whole number of CPU threads "
            "for each run, 1 or more") in result.output
    assert not (root / ".reportgen-cache" / "results").exists() or not any(
        (root / ".reportgen-cache" / "results").iterdir())


@pytest.mark.slow
def test_cached_results_from_another_kind_of_device_are_pointed_out(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from reportgen.cli import app

    root = project(tmp_path, SECTION.replace("[[8], [16], [24]]", "[[8]]"))
    runner = CliRunner(env={"COLUMNS": "240"})
    assert runner.invoke(app, ["run", "-C", str(root), *LIMITS]).exit_code == 0  # on this machine's CPU
    result = runner.invoke(app, ["run", "-C", str(root), *LIMITS, "--device", "gpu"])
    assert result.exit_code == 0, result.output  # nothing to train: no GPU needed
    assert ("Note: --device gpu: 1 cached result(s) were trained on another kind of device (net-8) and are used "
            "as they are; --force trains them again here.") in " ".join(result.output.split())
    again = runner.invoke(app, ["run", "-C", str(root), *LIMITS, "--device", "cpu"])
    assert again.exit_code == 0 and "another kind of device" not in again.output
