"""Shared test setup: offline Hugging Face, two threads, a tiny model fixture."""

import os

import pytest
import torch

from tests.helpers import tiny_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch.set_num_threads(2)


@pytest.fixture
def model():
    return tiny_model()
