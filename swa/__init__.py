"""SWA training with whole-trajectory logging to HDF5.

Example:
    >>> from swa import TrainConfig, train, load_model
    >>> train(TrainConfig(epochs=8), "run.h5")  # doctest: +SKIP
    >>> swa_net = load_model("run.h5", "swa")  # doctest: +SKIP
"""

from .config import Averaging, SWASchedule, TrainConfig
from .data import DataSpec, TrainData
from .divergence import TrainingDiverged
from .models import MODELS, build_model
from .recorder import Recorder, import_run
from .runs import info, load_dataset, load_model
from .trainer import resume, train
from .trajectory import Trajectory

__all__ = [
    "Averaging", "DataSpec", "MODELS", "SWASchedule", "TrainConfig", "TrainData", "Trajectory", "TrainingDiverged",
    "build_model", "import_run", "info", "load_dataset", "load_model", "Recorder", "resume", "train",
]
