"""The whole pipeline on the embedded MNIST-1D data: train -> analyze all -> figures."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .config import TrainConfig
from .trainer import train

__all__ = ["DemoConfig", "demo"]


@dataclass(frozen=True)
class DemoConfig:
    """Demo settings. The defaults are chosen so that the paper's qualitative findings can show on MNIST-1D
    (README: measured over seeds): conv net with BatchNorm, budget 40 epochs, SWA branch from epoch 30 for
    20 epochs (the paper's 1.25 budget) with the cyclical schedule, one cycle per epoch."""

    epochs: int = 40
    num_samples: int = 5000
    seed: int = 0
    grid: int = 21
    directions: int = 10
    ray_steps: int = 30

    def train_config(self) -> TrainConfig:
        return TrainConfig(model="convnet_bn", dataset="mnist1d", num_samples=self.num_samples, epochs=self.epochs,
                           swa_epochs=max(1, self.epochs // 2), swa_schedule="cyclic", swa_lr=0.05, swa_lr_min=0.005,
                           swa_cycle=1.0, seed=self.seed)


def demo(config: DemoConfig, out: str | os.PathLike, progress: bool = True) -> Path:
    """Run the demo into directory ``out``; returns the path of ``index.html``."""
    from analyses import FGEConfig, PlaneConfig, RaysConfig, SegmentConfig, fge, plane, rays, segment
    from analyses.fge import describe as describe_fge
    from analyses.plane import describe as describe_plane
    from analyses.rays import describe as describe_rays
    from analyses.segment import describe as describe_segment
    from figures.report import make_figures

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    run, results = out / "run.h5", out / "run.landscape.h5"
    if results.exists():
        results.unlink()  # a new run: results of an older one would be refused
    print(f"[1/3] training ({config.epochs} epochs + SWA branch) -> {run}")
    train(config.train_config(), run, overwrite=True, progress=progress)
    print("[2/3] analyses -> " + str(results))
    print(describe_rays(rays(run, results, RaysConfig(config.directions, config.ray_steps), progress=progress)))
    print(describe_segment(segment(run, results, SegmentConfig(), progress=progress)))
    print(describe_plane(plane(run, results, PlaneConfig(grid=(config.grid, config.grid)), progress=progress)))
    print(describe_fge(fge(run, results, FGEConfig(), progress=progress)))
    print("[3/3] figures")
    return make_figures(run, results, out)
