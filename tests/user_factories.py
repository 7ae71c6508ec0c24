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


def make_regressor(width: int = 16):
    """A regression MLP with BatchNorm: 12 inputs, 3 outputs."""
    return torch.nn.Sequential(torch.nn.Linear(12, width), torch.nn.BatchNorm1d(width), torch.nn.ReLU(),
                               torch.nn.Linear(width, 3))


def load_regression(n: int = 240, seed: int = 2):
    """Inputs [n, 12] and targets [n, 3] from a fixed random map plus noise, as (train, test) pairs."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 12, generator=g)
    y = torch.tanh(x @ torch.randn(12, 3, generator=g)) + 0.1 * torch.randn(n, 3, generator=g)
    return (x[: n * 3 // 4], y[: n * 3 // 4]), (x[n * 3 // 4:], y[n * 3 // 4:])


class CausalLM(torch.nn.Module):
    """A small causal transformer language model called as ``model(input_ids=...)``: token and position embeddings,
    one self-attention block with a causal mask, LayerNorm, the output tied to the token embedding."""

    def __init__(self, vocab: int = 11, d: int = 16, length: int = 10):
        super().__init__()
        self.tok, self.pos = torch.nn.Embedding(vocab, d), torch.nn.Embedding(length, d)
        self.block = torch.nn.TransformerEncoderLayer(d, 2, 2 * d, dropout=0.0, batch_first=True)
        self.ln = torch.nn.LayerNorm(d)

    def forward(self, input_ids):
        n = input_ids.shape[1]
        h = self.tok(input_ids) + self.pos(torch.arange(n, device=input_ids.device))
        mask = torch.nn.Transformer.generate_square_subsequent_mask(n, device=input_ids.device)
        return self.ln(self.block(h, src_mask=mask, is_causal=True)) @ self.tok.weight.T  # [N, L, V]


def load_tokens(n: int = 200, length: int = 10, vocab: int = 11, seed: int = 3):
    """Sequences counting up modulo the vocabulary from a random start, padded (-100 in the targets) after a random
    length; inputs as dicts ``{"input_ids": [n, L]}``, as (train, test) pairs."""
    g = torch.Generator().manual_seed(seed)
    start = torch.randint(1, vocab, (n, 1), generator=g)
    tokens = (start + torch.arange(length)) % (vocab - 1) + 1
    targets = tokens.masked_fill(torch.arange(length) >= torch.randint(4, length + 1, (n, 1), generator=g), -100)
    k = n * 3 // 4
    return ({"input_ids": tokens[:k]}, targets[:k]), ({"input_ids": tokens[k:]}, targets[k:])


class NoisyDataset(torch.utils.data.Dataset):
    """A training set with a random transform: Gaussian noise on every read (the first input is the sample's id)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        noise = 0.1 * torch.randn(self.x.shape[1])
        noise[0] = 0.0
        return self.x[i] + noise, self.y[i]


def load_noisy(n: int = 160):
    """The classification data of :func:`load_data` with a noisy training view and its transform-free one."""
    (x, y), test = load_data(n)
    x = torch.cat([torch.arange(len(x), dtype=torch.float32)[:, None], x[:, 1:]], 1)
    return {"train": NoisyDataset(x, y), "test": test, "train_eval": (x, y)}


def dicts_without_targets():
    """Dict batches whose targets are under no key the toolkit knows (a refusal, one line)."""
    class Items(torch.utils.data.Dataset):
        def __len__(self):
            return 8

        def __getitem__(self, i):
            return {"input_ids": torch.arange(4), "answer": torch.tensor(i)}

    return Items(), Items()
