"""Fixtures of the analyses' tests."""

import pytest


@pytest.fixture
def results_path(tmp_path):
    return tmp_path / "res.h5"
