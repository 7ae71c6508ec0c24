"""Shared factories: tiny seeded configs and trained runs reused across the suite."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest
import torch

from landscape.workers import tune_cpu_allocator
from swa import train
from tests.factories import tiny_config

torch.backends.cudnn.allow_tf32 = False
torch.backends.cuda.matmul.allow_tf32 = False

tune_cpu_allocator()  # what the command line does at start; engines leave the process alone

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> str:
    """A completed cyclic run with BN (2 captures per SWA epoch, 4 proposals)."""
    path = tmp_path_factory.mktemp("runs") / "tiny.h5"
    train(tiny_config(), path, progress=False, log=lambda s: None)
    return str(path)


@pytest.fixture(scope="session")
def tiny_run_constant(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("runs") / "tiny_const.h5"
    train(tiny_config(swa_schedule="constant", swa_cycle=1, snapshot_every=5), path, progress=False, log=lambda s: None)
    return str(path)


def pytest_configure(config):
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    # generated data sets kept for this session only (every process the tests start inherits it), not in the home
    os.environ["SWA_LANDSCAPE_CACHE"] = tempfile.mkdtemp(prefix="swa-landscape-test-cache-")


def pytest_unconfigure(config):
    shutil.rmtree(os.environ.get("SWA_LANDSCAPE_CACHE", ""), ignore_errors=True)
