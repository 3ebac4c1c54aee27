"""Shared fixtures: a fake ESC-50 tree of real WAV files, built once per test session."""
from __future__ import annotations

import shutil

import pytest

from synthetic import make_synthetic_dataset


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    """A read-only synthetic ESC-50 tree: 5 classes x 10 clips, 5 folds, 2 takes per source.

    Do not modify it; copy it with ``writable_root`` to change files.
    """
    return make_synthetic_dataset(tmp_path_factory.mktemp("synthetic") / "ESC-50-synth", seed=0)


@pytest.fixture
def writable_root(synthetic_root, tmp_path):
    """A private copy of the synthetic tree that a test may change."""
    dst = tmp_path / "ESC-50-copy"
    shutil.copytree(synthetic_root, dst)
    return dst


@pytest.fixture(scope="module")
def torch_one_thread():
    """Tiny models gain nothing from threads; one thread keeps tests fast on a busy CPU."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
