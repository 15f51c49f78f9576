"""The help a user reads: -h as --help, flags without placeholders, choices listed, arguments named as
the usage line says, descriptions as flowing text; and `list` showing the last build's profile."""

from __future__ import annotations

import inspect
import json

import pytest
from typer.testing import CliRunner

from reportgen.cli import app
from tests.conftest import THREE_NETS, write_project

COMMANDS = ["init", "build", "run", "render", "preview", "status", "list", "clean", "doctor", "compare", "verify",
            "check"]
DOCS = {(c.name or c.callback.__name__).rstrip("_"): inspect.cleandoc(c.callback.__doc__ or "")
        for c in app.registered_commands}


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env={"COLUMNS": "240", "NO_COLOR": "1", "TERM": "dumb"})


def _help(runner: CliRunner, *args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def _flat(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_dash_h_prints_the_same_help_as_dash_dash_help(runner, command):
    args = [command] if command else []
    long = _help(runner, *args, "--help")
    assert "Usage:" in long
    assert _help(runner, *args, "-h") == long
    assert "-h" in long  # and the help says so


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_no_flag_shows_a_value_placeholder(runner, command):
    out = _help(runner, *([command] if command else []), "--help")
    assert "<bool>" not in out


def test_flags_still_act_as_flags(runner, tmp_path):
    assert runner.invoke(app, ["--version"]).output.startswith("reportgen ")
    root = write_project(tmp_path / "project", {"experiments/1-nets.toml": THREE_NETS})
    result = runner.invoke(app, ["list", "-C", str(root), "--quick"])
    assert result.exit_code == 0, result.output
    assert "(profile quick)" in result.output
    (root / "build").mkdir()
    assert runner.invoke(app, ["clean", "-C", str(root), "--cache"]).exit_code == 0
    assert not (root / "build").exists()


@pytest.mark.parametrize("command", ["build", "run", "render", "status", "doctor", "verify", "check"])
def test_backend_lists_its_choices_and_default(runner, command):
    out = _flat(_help(runner, command, "--help"))
    assert "--backend <tensorflow|jax|torch>" in out
    assert "[default: (KERAS_BACKEND, else tensorflow)]" in out


@pytest.mark.parametrize("command", ["build", "run"])
def test_precision_and_device_list_their_choices_and_defaults(runner, command):
    out = _flat(_help(runner, command, "--help"))
    assert "--precision <float32|mixed_bfloat16>" in out
    assert "[default: (each experiment's own precision)]" in out
    assert "--device <auto|cpu|gpu|gpu:N>" in out
    assert "auto (the backend's GPU when it sees one, else the CPU), cpu, gpu, or gpu:N" in out
    assert "[default: auto]" in out


@pytest.mark.parametrize(("option", "value", "choices"), [
    ("--backend", "foo", "'tensorflow', 'jax', 'torch'"),
    ("--precision", "fp16", "'float32', 'mixed_bfloat16'"),
    ("--device", "tpu9", "expected auto, cpu, gpu or gpu:N"),
])
def test_a_value_outside_the_choices_is_a_usage_error(runner, tmp_path, option, value, choices):
    root = write_project(tmp_path / "project", {"experiments/1-nets.toml": THREE_NETS})
    result = runner.invoke(app, ["run", "-C", str(root), "--dry-run", option, value])
    assert result.exit_code == 2, result.output
    out = _flat(result.output)
    assert option in out and repr(value) in out and choices in out
    assert not (root / ".reportgen-cache").exists()


def test_arguments_read_as_the_usage_line_names_them(runner):
    compare = _help(runner, "compare", "--help")
    assert "compare [OPTIONS] A B" in compare
    assert "{a}" not in compare and "{b}" not in compare
    assert " A " in compare and " B " in compare  # in the Arguments panel
    verify = _help(runner, "verify", "--help")
    assert "verify [OPTIONS] BUILD" in verify
    assert "{build_dir}" not in verify


@pytest.mark.parametrize("command", COMMANDS)
def test_descriptions_are_flowing_text(runner, command):
    paragraphs = [" ".join(p.split()) for p in DOCS[command].split("\n\n")]
    out = _help(runner, command, "--help")
    lines = [line.strip() for line in out.splitlines()]
    for paragraph in paragraphs:  # each on one line at 240 columns, not broken where the source wraps
        assert paragraph in lines, f"{command}: {paragraph!r} is not one line of\n{out}"
    listed = _help(runner, "--help").splitlines()  # the first paragraph is the command list's entry
    assert any(line.strip(" │").split(None, 1) == [command, paragraphs[0]] for line in listed), listed


def test_the_command_list_shows_one_short_line_per_command(runner):
    listed = _help(runner, "--help")
    panel = listed[listed.index("Commands"):]
    rows = [line.strip(" │") for line in panel.splitlines()[1:] if line.startswith("│")]
    assert [row.split()[0] for row in rows] == COMMANDS  # no continuation lines
    assert all(len(row) < 120 for row in rows)


def _project(tmp_path, profile: str | None):
    root = write_project(tmp_path / "project", {
        "experiments/project.toml": 'title = "Tiny test report"\ndata = "mnist-sample"\n'
                                    "[defaults]\nepochs = 7\n[quick]\nepochs = 3\n",
        "experiments/1-nets.toml": THREE_NETS})
    if profile is not None:
        (root / "build").mkdir()
        (root / "build" / "manifest.json").write_text(json.dumps({"profile": profile}))
    return root


def test_list_shows_the_profile_of_the_last_build(runner, tmp_path):
    root = _project(tmp_path, "quick")
    result = runner.invoke(app, ["list", "-C", str(root)])
    assert result.exit_code == 0, result.output
    assert "Tiny test report: 3 experiment(s) (profile quick, as the last build)" in result.output
    assert "epochs=3" in result.output and "epochs=7" not in result.output
    full = runner.invoke(app, ["list", "-C", str(root), "--full"])  # the flags still decide
    assert "Tiny test report: 3 experiment(s) (profile full)" in full.output
    assert "epochs=7" in full.output and "epochs=3" not in full.output


@pytest.mark.parametrize(("profile", "epochs"), [(None, 7), ("full", 7)])
def test_list_without_a_quick_build_shows_the_full_profile(runner, tmp_path, profile, epochs):
    root = _project(tmp_path, profile)
    result = runner.invoke(app, ["list", "-C", str(root)])
    assert result.exit_code == 0, result.output
    said = "(profile full, as the last build)" if profile else "(profile full)"
    assert said in result.output and f"epochs={epochs}" in result.output
    quick = runner.invoke(app, ["list", "-C", str(root), "--quick"])
    assert "(profile quick)" in quick.output and "epochs=3" in quick.output
