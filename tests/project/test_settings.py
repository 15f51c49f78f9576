"""The REPORTGEN_* variables, read once into an Environment: each bad value is named with what it takes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reportgen.errors import ReportgenError
from reportgen.project.settings import Environment, Options


def test_unset_variables_mean_the_defaults() -> None:
    env = Environment.read({"PATH": "/usr/bin", "REPORTGEN_THREADS": " "})
    assert env == Environment()
    assert env.threads is None and env.device_loop is None and env.xla_extra == {}
    assert env.xla_cache_bytes == 2048 * 2**20


def test_every_variable_is_read_typed() -> None:
    env = Environment.read({"REPORTGEN_MNIST": "/data/mnist.npz", "REPORTGEN_CACHE": "/cache",
                            "REPORTGEN_THREADS": "3", "REPORTGEN_SCHEDULER": "tcp://10.0.0.5:8786",
                            "REPORTGEN_DEVICE_LOOP": "0", "REPORTGEN_XLA_AUTOTUNE": "4",
                            "REPORTGEN_XLA_OPTIONS": '{"xla_gpu_enable_triton_gemm": false}',
                            "REPORTGEN_XLA_CACHE_MB": "0.5"})
    assert env.mnist_file == Path("/data/mnist.npz") and env.cache_dir == Path("/cache")
    assert env.threads == 3 and env.scheduler == "tcp://10.0.0.5:8786"
    assert env.device_loop is False and env.xla_autotune == 4
    assert env.xla_extra == {"xla_gpu_enable_triton_gemm": False}
    assert env.xla_cache_bytes == 2**19
    hash(env)  # frozen: one value for the whole command, the same in every worker


def test_flags_win_over_the_variables(tmp_path: Path) -> None:
    env = Environment.read({"REPORTGEN_MNIST": "/env.npz", "REPORTGEN_CACHE": "/env-cache",
                            "REPORTGEN_SCHEDULER": "tcp://env:8786"})
    from_env = Options(root=tmp_path, env=env)
    assert (from_env.mnist_file, from_env.cache_root, from_env.scheduler_address) == \
        (Path("/env.npz"), Path("/env-cache"), "tcp://env:8786")
    flags = Options(root=tmp_path, data_file=Path("/flag.npz"), cache_dir=Path("/flag-cache"),
                    scheduler="tcp://flag:8786", env=env)
    assert (flags.mnist_file, flags.cache_root, flags.scheduler_address) == \
        (Path("/flag.npz"), Path("/flag-cache"), "tcp://flag:8786")
    assert Options(root=tmp_path).cache_root == tmp_path / ".reportgen-cache"


@pytest.mark.parametrize("variable", ["REPORTGEN_DEVICE_LOOP", "REPORTGEN_XLA_AUTOTUNE"])
def test_a_bad_jax_switch_is_named_with_what_it_takes(variable: str) -> None:
    with pytest.raises(ReportgenError, match=f"environment variable {variable}='yes': expected one of 0, 1"):
        Environment.read({variable: "yes"})


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_a_bad_thread_count_is_named_with_what_it_takes(value: str) -> None:
    with pytest.raises(ReportgenError, match=f"REPORTGEN_THREADS={value!r}: expected a whole number of CPU threads"):
        Environment.read({"REPORTGEN_THREADS": value})


@pytest.mark.parametrize("value", ["-1", "lots", "nan", "inf"])
def test_a_bad_bound_on_the_compiled_programs_is_named_with_what_it_takes(value: str) -> None:
    with pytest.raises(ReportgenError, match=f"REPORTGEN_XLA_CACHE_MB='{value}': expected a size in megabytes, "
                                             "0 or more, such as 2048 or 0.5"):
        Environment.read({"REPORTGEN_XLA_CACHE_MB": value})


@pytest.mark.parametrize(("text", "expected"), [
    ('{"xla_gpu_enable_triton_gemm": fals}', "not JSON (Expecting value at character 31)"),
    ('["xla_gpu_enable_triton_gemm"]', "expected a non-empty JSON object of XLA options"),
    ('{"triton_gemm": false, "xla_gpu_enable_command_buffer": ["WHILE"], "xla_gpu_autotune_level": 0}',
     '"triton_gemm": false; "xla_gpu_enable_command_buffer": ["WHILE"]: expected XLA options (names that start '
     'with xla_) set to true, false, a number or a string'),
])
def test_bad_xla_options_are_named_with_what_they_take(text: str, expected: str) -> None:
    with pytest.raises(ReportgenError) as caught:
        Environment.read({"REPORTGEN_XLA_OPTIONS": text})
    assert str(caught.value).startswith("environment variable REPORTGEN_XLA_OPTIONS: ")
    assert expected in str(caught.value)


def test_the_last_build_fills_in_what_the_command_line_left_open(tmp_path: Path) -> None:
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "manifest.json").write_text(json.dumps(
        {"profile": "quick", "limits": {"train": 300, "val": 100}, "precision_override": "mixed_bfloat16"}))
    recalled = Options(root=tmp_path).like_last_build(profile_given=False)
    assert (recalled.profile, recalled.train_limit, recalled.val_limit, recalled.precision) == \
        ("quick", 300, 100, "mixed_bfloat16")
    given = Options(root=tmp_path, profile="full", train_limit=50).like_last_build(profile_given=True)
    assert (given.profile, given.train_limit, given.val_limit) == ("full", 50, 100)
    (tmp_path / "build" / "manifest.json").write_text("{not json")
    assert Options(root=tmp_path).like_last_build(profile_given=False).profile == "full"
