"""A Lightning fit recorded by the callback, as a script: ``python lightning_fit.py OUT EPOCHS DEVICES [--resume]``.

With DEVICES > 1 it is a real DDP fit on the CPU (gloo): Lightning starts the other ranks by running this script
again. ``--resume`` continues from ``OUT/last.ckpt``, which every fit writes after each epoch.
"""

import sys
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository, for tests.user_factories

from swa.lightning import SWALandscape  # noqa: E402
from tests.user_factories import load_data, make_net  # noqa: E402


class Module(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = make_net()

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, _i):
        loss = torch.nn.functional.cross_entropy(self(batch[0]), batch[1])
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)


def fit(out: Path, epochs: int, devices: int = 1, resume: bool = False) -> None:
    pl.seed_everything(0, verbose=False)
    (x, y), test = load_data()
    cb = SWALandscape(out / "pl.h5", ((x, y), test), swa_epoch_start=2, bn_batch_size=30)
    trainer = pl.Trainer(max_epochs=epochs, callbacks=[cb, ModelCheckpoint(dirpath=out, save_last=True, save_top_k=0)],
                         logger=False, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
                         devices=devices, strategy="ddp" if devices > 1 else "auto")
    trainer.fit(Module(), DataLoader(TensorDataset(x, y), batch_size=30, shuffle=True),
                ckpt_path=str(out / "last.ckpt") if resume else None)


if __name__ == "__main__":
    fit(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), "--resume" in sys.argv)
