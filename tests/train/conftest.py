"""Session fixtures for the training tests: a small tokenizer and train/val shards."""

import pytest

from tests.train.data import make_dataset


@pytest.fixture(scope="session")
def dataset(tmp_path_factory):
    root, tok = make_dataset(tmp_path_factory.mktemp("data"))
    return root, tok


@pytest.fixture(scope="session")
def long_dataset(tmp_path_factory):
    """Documents of ~2,000 characters (hundreds of tokens) for the long-context stage."""
    root, tok = make_dataset(tmp_path_factory.mktemp("long"), min_chars=2000)
    return root, tok
