"""A PyTorch Lightning callback that records a ``Trainer.fit`` into a run file (optional extra ``lightning``).

Install with ``pip install "swa-landscape[lightning]"``. The callback drives a :class:`~swa.recorder.Recorder`:
each training epoch before ``swa_epoch_start`` is a snapshot of the conventional run, the epoch that ends there
is w_SGD, and every later epoch is captured (averaged with equal weights into w_SWA, BN recomputed when the
fit ends). Your schedule stays yours (Lightning's own ``StochasticWeightAveraging`` callback may run beside it).

Resuming: the callback's state (:meth:`swa.recorder.Recorder.state`) goes into Lightning's checkpoints, so
``trainer.fit(module, ckpt_path=...)`` continues the run file from the checkpoint's epoch (what was recorded after
it is dropped and recorded again). Under DDP only global rank 0 records; the other ranks hold the same weights
and do nothing.

Example:
    >>> trainer = pl.Trainer(max_epochs=40, callbacks=[SWALandscape("run.h5", (train_set, test_set), 30)])  # doctest: +SKIP
    >>> trainer.fit(module, train_loader)  # doctest: +SKIP
"""

from __future__ import annotations

import os
from typing import Any

import pytorch_lightning as pl

from .recorder import Recorder

__all__ = ["SWALandscape"]


class SWALandscape(pl.Callback):
    """Record the fit: snapshots, w_SGD at ``swa_epoch_start``, captured models after it, w_SWA at the end.

    Args:
        path: Run file to create.
        data: The data in evaluation form (see :class:`~swa.recorder.Recorder`).
        swa_epoch_start: Epochs of the conventional run (w_SGD is the model after this many).
        **recorder: Further :class:`~swa.recorder.Recorder` arguments (``weight_decay``, ``bn_batch_size``, ...).
    """

    def __init__(self, path: str | os.PathLike, data: Any, swa_epoch_start: int, **recorder: Any):
        super().__init__()
        self.path, self.data, self.start, self.kwargs = path, data, swa_epoch_start, recorder
        self.recorder: Recorder | None = None
        self.resume: dict | None = None

    @property
    def state_key(self) -> str:
        """The callback's key in a Lightning checkpoint (one per run file)."""
        return self._generate_state_key(path=str(self.path))

    def state_dict(self) -> dict[str, Any]:
        """The recording's state, saved in Lightning's checkpoint (empty on ranks that do not record)."""
        return {} if self.recorder is None else self.recorder.state()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Keep a checkpoint's recording state: the fit that starts next continues the run file from it."""
        self.resume = state_dict or None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Create the run file, or reopen it where a resumed fit's checkpoint left it (global rank 0 only)."""
        if trainer.global_rank == 0:
            self.recorder = Recorder(self.path, pl_module, self.data, resume=self.resume, **self.kwargs)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Record a snapshot of the epoch's weights (and capture it into the average when it is due)."""
        if self.recorder is None:
            return
        epoch = trainer.current_epoch + 1
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else float("nan")
        loss = trainer.callback_metrics.get("train_loss")
        metrics = {"train_loss": float(loss)} if loss is not None else {}
        if epoch <= self.start:
            self.recorder.snapshot(lr=lr, epoch=epoch, iteration=trainer.global_step, branch="sgd", **metrics)
            if epoch == self.start:
                self.recorder.solution("sgd")
        else:
            self.recorder.capture(lr=lr, epoch=epoch, iteration=trainer.global_step, **metrics)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Write the solutions and mark the run finished."""
        if self.recorder is not None:
            self.recorder.close()
            self.recorder = None

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        """Mark the run failed with the exception's message, so the file says why it stopped."""
        if self.recorder is not None:
            self.recorder.close(exception)
            self.recorder = None
