"""The Lightning callback records a real ``Trainer.fit`` into a run file that the analyses accept."""

import pytest
import torch

from swa import Trajectory

pl = pytest.importorskip("pytorch_lightning")


class _Module(pl.LightningModule):
    def __init__(self):
        super().__init__()
        from tests.user_factories import make_net

        self.net = make_net()

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, _i):
        loss = torch.nn.functional.cross_entropy(self(batch[0]), batch[1])
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)


def test_lightning_fit_is_recorded_and_analysable(tmp_path):
    from torch.utils.data import DataLoader, TensorDataset

    from analyses import segment
    from swa.lightning import SWALandscape
    from tests.user_factories import load_data

    torch.manual_seed(0)
    (x, y), test = load_data()
    module = _Module()
    cb = SWALandscape(tmp_path / "pl.h5", ((x, y), test), swa_epoch_start=2, bn_batch_size=30)
    trainer = pl.Trainer(max_epochs=5, callbacks=[cb], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    trainer.fit(module, DataLoader(TensorDataset(x, y), batch_size=30, shuffle=True))
    with Trajectory(tmp_path / "pl.h5") as t:
        assert t.status == "complete" and list(t.meta("branch")) == ["sgd"] * 2 + ["swa"] * 3
        captured = t.weights(list(range(2, 5)))
        torch.testing.assert_close(t.solution("swa")[0], captured.mean(0), rtol=1e-5, atol=1e-6)  # equal average
        assert t.solution_scalar("swa", "n_averaged") == 3
    s = segment(tmp_path / "pl.h5", model=_Module(), data=((x, y), test), progress=False)
    assert s["t"][0] < 0 < 1 < s["t"][-1]
