"""Data sets: the local MNIST override, the offline error, and the embedded sample."""

from __future__ import annotations

import numpy as np
import pytest

from reportgen.errors import DataError
from reportgen.project import data, dataset
from reportgen.project.settings import Environment, Options


def write_npz(path, n_train=20, n_val=10):
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.integers(0, 255, (n_train, 28, 28), dtype=np.uint8),
             y_train=rng.integers(0, 10, n_train), x_test=rng.integers(0, 255, (n_val, 28, 28), dtype=np.uint8),
             y_test=rng.integers(0, 10, n_val))


def test_local_file_from_flag_or_environment(tmp_path, monkeypatch):
    write_npz(tmp_path / "mnist.npz")
    loaded = data.load("mnist", tmp_path / "mnist.npz")
    assert loaded.name == "mnist" and loaded.x_train.shape == (20, 28, 28) and len(loaded.y_val) == 10
    monkeypatch.setenv(data.MNIST_ENV, str(tmp_path / "mnist.npz"))
    options = Options(root=tmp_path, env=Environment.read())  # as every command reads the variable
    assert data.load("mnist", options.mnist_file).fingerprint == loaded.fingerprint


def test_bad_local_file_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="MNIST file not found"):
        data.load("mnist", tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(DataError, match="not an MNIST .npz with x_train, y_train, x_test, y_test"):
        data.load("mnist", tmp_path / "other.npz")


def offline(monkeypatch, tmp_path):
    import keras

    def fail():
        raise Exception("URL fetch failure: Name or service not known")

    monkeypatch.delenv(data.MNIST_ENV, raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    monkeypatch.setattr(keras.datasets.mnist, "load_data", fail)


@pytest.mark.slow
def test_offline_full_mnist_says_how_to_proceed(monkeypatch, tmp_path):
    offline(monkeypatch, tmp_path)
    with pytest.raises(DataError) as info:
        data.load("mnist")
    message = str(info.value)
    assert "--data-file PATH" in message and data.MNIST_ENV in message and "mnist-sample" in message


@pytest.mark.slow
def test_auto_falls_back_to_the_sample_and_says_so(monkeypatch, tmp_path):
    offline(monkeypatch, tmp_path)
    loaded = data.load("auto")
    assert loaded.name == "mnist-sample"
    assert loaded.notice.startswith("Full MNIST could not be downloaded (URL fetch failure: Name or service not "
                                    "known); using the embedded sample of 5,000 real MNIST images instead.")
    assert "--data-file PATH" in loaded.notice


@pytest.mark.slow
def test_auto_does_not_swap_a_named_file_that_fails_for_the_sample(monkeypatch, tmp_path):
    offline(monkeypatch, tmp_path)
    with pytest.raises(DataError, match="MNIST file not found: .*missing.npz"):
        data.load("auto", tmp_path / "missing.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip file. at all")
    monkeypatch.setenv(data.MNIST_ENV, str(tmp_path / "bad.npz"))
    with pytest.raises(DataError, match=r"bad\.npz: not an MNIST \.npz .*\(.+\)"):
        data.load("auto", Options(root=tmp_path, env=Environment.read()).mnist_file)


def test_sample_split_is_fixed_and_stratified():
    a, b = data.load_sample(), data.load_sample()
    assert a.fingerprint == b.fingerprint
    assert len(a.y_train) == 4000 and len(a.y_val) == 1000
    assert np.bincount(a.y_val).tolist() == [100] * 10
    assert a.x_train.dtype == np.uint8 and a.x_train.shape[1:] == (28, 28)


def test_the_first_images_of_the_sample_are_a_mix_of_digits():
    """--limit-train/--limit-val take the first N images: they must not be one digit."""
    sample = data.load_sample()
    limited = dataset.subset(sample, 300, 100)
    assert np.bincount(limited.y_val, minlength=10).min() >= 3
    assert np.bincount(limited.y_train, minlength=10).min() >= 10
