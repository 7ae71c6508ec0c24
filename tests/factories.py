"""Small seeded factories for tests."""

from __future__ import annotations

from swa import TrainConfig


def tiny_config(**kw) -> TrainConfig:
    """A run of a few seconds on 400 MNIST-1D training samples."""
    base = dict(model="convnet_bn", model_kwargs={"width": 8}, num_samples=500, epochs=4, batch_size=64,
                swa_start=2, swa_epochs=2, swa_cycle=0.5, lr=0.05, swa_lr=0.05, swa_lr_min=0.005, seed=0, device="cpu")
    base.update(kw)
    return TrainConfig(**base)
