"""Small seeded factories for tests."""

from __future__ import annotations

from swa import TrainConfig


def tiny_config(**kw) -> TrainConfig:
    """A run of a few seconds on 400 MNIST-1D training samples."""
    base = dict(model="convnet_bn", model_kwargs={"width": 8}, num_samples=500, epochs=4, batch_size=64,
                swa_start=2, swa_epochs=2, swa_cycle=0.5, lr=0.05, swa_lr=0.05, swa_lr_min=0.005, seed=0, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


def plane_arrays(path) -> dict:
    """Every per-point array of ``/plane`` in a results file, and its ``done`` mask."""
    import h5py

    from analyses.common import VALUES

    with h5py.File(path, "r") as f:
        return {k: f[f"plane/{k}"][:] for k in (*VALUES, "done")}


def torchrun(n: int, *args: str, timeout: int = 300, check: bool = True):
    """Run ``swa-landscape ARGS`` as ``n`` real processes (torchrun, gloo on localhost).

    Returns stdout, or the completed process when ``check`` is False.
    """
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(n), "--master-addr", "127.0.0.1",
           "--master-port", str(port), "-m", "swa_landscape", *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if not check:
        return r
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout
