import pickle

import numpy as np
import pytest
import torch

from landscape.errors import UserError
from swa.data import DataSpec, iterate_batches, load_splits
from swa.datasets import cifar_augment


def _fake_cifar(root, name, n=6, seed=0):
    rng = np.random.default_rng(seed)
    if name == "cifar10":
        files, key, classes = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"], b"labels", 10
    else:
        files, key, classes = ["train", "test"], b"fine_labels", 100
    for f in files:
        with open(root / f, "wb") as fh:
            pickle.dump({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         key: rng.integers(0, classes, n).tolist()}, fh)
    return files


@pytest.mark.parametrize("name,n_train", [("cifar10", 30), ("cifar100", 6)])
def test_fake_cifar_directory(tmp_path, name, n_train):
    _fake_cifar(tmp_path, name)
    s = load_splits(DataSpec(name, str(tmp_path)))
    assert s.train_x.shape == (n_train, 3, 32, 32) and s.test_x.shape == (6, 3, 32, 32)
    assert s.num_classes == (10 if name == "cifar10" else 100)
    # normalisation written out for one pixel
    with open(tmp_path / ("test_batch" if name == "cifar10" else "test"), "rb") as f:
        raw = pickle.load(f, encoding="bytes")[b"data"][0].reshape(3, 32, 32)
    mean = {"cifar10": 0.4914, "cifar100": 0.5071}[name]
    std = {"cifar10": 0.2470, "cifar100": 0.2673}[name]
    assert s.test_x[0, 0, 5, 7].item() == pytest.approx((raw[0, 5, 7] / 255 - mean) / std, rel=1e-5)


def test_missing_and_malformed_cifar(tmp_path):
    files = _fake_cifar(tmp_path, "cifar10")
    (tmp_path / files[2]).unlink()
    with pytest.raises(UserError, match="lacks data_batch_3.*expected files: data_batch_1"):
        load_splits(DataSpec("cifar10", str(tmp_path)))
    (tmp_path / files[2]).write_bytes(b"not a pickle")
    with pytest.raises(UserError, match="cannot read CIFAR file"):
        load_splits(DataSpec("cifar10", str(tmp_path)))
    with pytest.raises(UserError, match="needs --data-dir"):
        load_splits(DataSpec("cifar100"))
    with pytest.raises(UserError, match="unknown dataset"):
        load_splits(DataSpec("imagenet"))


def test_augmentation_is_a_padded_crop_or_its_flip():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(5, 3, 32, 32, generator=g)
    pad = torch.tensor([-1.0, -2.0, -3.0])
    out = cifar_augment(x, torch.Generator().manual_seed(9), pad)
    padded = pad.view(1, 3, 1, 1).expand(5, 3, 40, 40).clone()
    padded[:, :, 4:36, 4:36] = x
    for b in range(5):
        crops = [padded[b, :, i : i + 32, j : j + 32] for i in range(9) for j in range(9)]
        crops += [c.flip(-1) for c in crops]
        assert any(torch.equal(out[b], c) for c in crops)
    assert not torch.equal(out, x)


def test_mnist1d_default_split_sizes_and_fixed_eval_order():
    s = load_splits(DataSpec("mnist1d", num_samples=500))
    assert s.train_x.shape == (400, 40) and s.test_x.shape == (100, 40) and s.num_classes == 10
    batches = list(iterate_batches(s.train_x, s.train_y, 64))
    assert len(batches) == 7 and batches[-1][0].shape[0] == 400 - 6 * 64
    torch.testing.assert_close(torch.cat([b[0] for b in batches]), s.train_x)
    shuffled = torch.cat([b[1] for b in iterate_batches(s.train_x, s.train_y, 64, torch.Generator().manual_seed(0))])
    assert sorted(shuffled.tolist()) == sorted(s.train_y.tolist()) and not torch.equal(shuffled, s.train_y)


def test_mnist1d_is_kept_between_processes_byte_identical(tmp_path, monkeypatch):
    """The disk cache returns exactly what the generator makes; a damaged file is made again; ``off`` keeps none."""
    from swa.datasets import generate_mnist1d as _generate_mnist1d
    from swa.datasets import mnist1d as _mnist1d

    fresh = _generate_mnist1d(200, 5, 90)
    monkeypatch.setenv("SWA_LANDSCAPE_CACHE", str(tmp_path))
    first = _mnist1d.__wrapped__(200, 5, 90)  # generates and writes
    (cached,) = tmp_path.glob("mnist1d-*-n200-s5-t90.npz")
    import swa.datasets

    def no_generation(*args):
        raise AssertionError("generated again although cached")

    with monkeypatch.context() as m:
        m.setattr(swa.datasets, "generate_mnist1d", no_generation)
        second = _mnist1d.__wrapped__(200, 5, 90)  # reads, does not generate
    for a, b, c in zip(fresh, first, second):
        assert a.dtype == c.dtype and np.array_equal(a, b) and np.array_equal(a, c)
    assert len(fresh[3]) == 90 and len(fresh[1]) == 160  # 80% of 200 to train, the test set as asked
    cached.write_bytes(b"not a zip file")
    for a, b in zip(fresh, _mnist1d.__wrapped__(200, 5, 90)):
        assert np.array_equal(a, b)
    assert np.load(cached)["x"].shape == fresh[0].shape  # written again
    monkeypatch.setenv("SWA_LANDSCAPE_CACHE", "off")
    cached.unlink()
    _mnist1d.__wrapped__(200, 5, 90)
    assert not cached.exists()


def test_a_random_transform_is_drawn_anew_every_epoch_and_evaluation_uses_the_clean_view():
    """A factory's dataset whose items change between reads is read every epoch (new noise, new order, the same
    samples); the evaluation batches are its transform-free view; the global random state of a probe is kept."""
    import torch

    from swa.data import DataSpec, builtin_data
    from tests.user_factories import load_noisy

    state = torch.get_rng_state()
    data = builtin_data(DataSpec("tests.user_factories:load_noisy"), batch_size=32)
    assert torch.equal(torch.get_rng_state(), state)  # detecting the transform drew nothing from the global state
    g = torch.Generator().manual_seed(0)
    epochs = [torch.cat([x for x, _ in data.train(g)]) for _ in range(2)]
    clean = load_noisy()["train_eval"][0]
    for e in epochs:
        ids = e[:, 0].long()
        assert sorted(ids.tolist()) == list(range(len(clean)))  # every sample once
        noise = e[:, 1:] - clean[ids, 1:]
        assert 0.05 < float(noise.std()) < 0.2  # the transform is applied
    a, b = (e[e[:, 0].argsort()] for e in epochs)
    assert not torch.equal(a, b) and torch.equal(a[:, 0], b[:, 0])  # drawn anew: same samples, other noise
    ev = torch.cat([x for x, _ in data.eval_batches("train")])
    assert torch.equal(ev, clean)  # evaluation and BN recomputation use the clean view
