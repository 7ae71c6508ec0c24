"""A user's own module of factories, imported by path (``tests.user_factories:make_net``) in the tests."""

import torch


def make_net(width: int = 16):
    return torch.nn.Sequential(torch.nn.Linear(12, width), torch.nn.BatchNorm1d(width), torch.nn.ReLU(),
                               torch.nn.Linear(width, 3))


def other_net():
    return torch.nn.Sequential(torch.nn.Linear(12, 7), torch.nn.ReLU(), torch.nn.Linear(7, 3))


def load_data(n: int = 240, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, 12, generator=g), torch.randint(0, 3, (n,), generator=g)
    return (x[: n * 3 // 4], y[: n * 3 // 4]), (x[n * 3 // 4:], y[n * 3 // 4:])


def not_a_model():
    return {"weights": 1}


def bad_data():
    return [1, 2, 3]


def broken():
    raise ValueError("the user's factory failed")


def load_file(path: str):
    """Data a user keeps in a file: ``(train, test)`` pairs saved with ``torch.save``."""
    return torch.load(path, weights_only=True)
