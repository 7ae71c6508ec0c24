"""The engine on other objectives against the obvious per-point loop a user would write (not a timed test).

Two networks: a regression MLP with BatchNorm (mean squared error on [N, 3] targets) and a small causal
transformer language model (next-token cross-entropy over padded sequences, fed as dicts). For each, a plane of
points around the initial weights is evaluated: train loss and test error at every point, BN recomputed per point.

(b) the obvious loop: ``torch.no_grad()``, ``vector_to_parameters``, ``update_bn`` over batches of 128 where there
    is BN, then the whole split per forward with the loss written out (``F.mse_loss``; ``F.cross_entropy`` with
    ``ignore_index`` over the shifted tokens);
(c) the engine with its automatic choice (construction, guard and probe included), the objective built in.

Both run in one process; the numbers of (b) and (c) are compared at every point of (b).

Usage:
    python benchmarks/bench_objectives.py [--grid 11] [--loop-points 40]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import vector_to_parameters
from torch.optim.swa_utils import update_bn

from landscape.bn import ModelCall, has_bn
from landscape.config import EngineConfig
from landscape.engine import Engine
from landscape.layout import flatten
from landscape.objective import LanguageModel, Regression
from landscape.points import PointSet
from landscape.probe import ProbeCache
from landscape.reference import load_point
from landscape.workers import tune_cpu_allocator


class CausalLM(nn.Module):
    """Token and position embeddings, two causal self-attention blocks, LayerNorm, output tied to the embedding."""

    def __init__(self, vocab: int = 64, d: int = 64, length: int = 32):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(length, d)
        self.blocks = nn.ModuleList(nn.TransformerEncoderLayer(d, 4, 4 * d, dropout=0.0, batch_first=True)
                                    for _ in range(2))
        self.ln = nn.LayerNorm(d)

    def forward(self, input_ids):
        n = input_ids.shape[1]
        h = self.tok(input_ids) + self.pos(torch.arange(n))
        mask = nn.Transformer.generate_square_subsequent_mask(n)
        for b in self.blocks:
            h = b(h, src_mask=mask, is_causal=True)
        return self.ln(h) @ self.tok.weight.T


def tasks(g: torch.Generator) -> dict:
    x = torch.randn(4000, 32, generator=g)
    y = torch.tanh(x @ torch.randn(32, 3, generator=g))
    reg = nn.Sequential(nn.Linear(32, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Linear(256, 256), nn.BatchNorm1d(256),
                        nn.ReLU(), nn.Linear(256, 3))
    tokens = torch.randint(0, 64, (640, 32), generator=g)
    targets = tokens.masked_fill(torch.arange(32) >= torch.randint(8, 33, (640, 1), generator=g), -100)
    lm = CausalLM()
    return {
        "regression MLP + BN (4000 x 32 -> 3)": (reg, {"train": (x[:3200], y[:3200]), "test": (x[3200:], y[3200:])},
                                                  Regression()),
        "causal transformer LM (640 x 32 tokens)": (lm, {"train": ({"input_ids": tokens[:512]}, targets[:512]),
                                                        "test": ({"input_ids": tokens[512:]}, targets[512:])},
                                                    LanguageModel()),
    }


def grid(model: nn.Module, n: int) -> PointSet:
    w0 = flatten(list(model.parameters()))
    basis = torch.randn(2, w0.numel(), generator=torch.Generator().manual_seed(1))
    basis = basis / basis.norm(dim=1, keepdim=True) * 0.05 * w0.norm()
    t = torch.linspace(-1, 1, n)
    return PointSet.affine(w0, basis, torch.stack(torch.meshgrid(t, t, indexing="ij"), -1).reshape(-1, 2))


@torch.no_grad()
def obvious(model, pts, splits, objective) -> tuple[float, list[tuple[float, float]]]:
    """(b): seconds per point, and (train loss, test error) at each point."""
    m = load_point(model, pts[0])
    (x, y), (xt, yt) = splits["train"], splits["test"]
    lm = isinstance(objective, LanguageModel)
    call = (lambda inp: m(**inp)) if lm else m
    batches = [ModelCall({k: v[i:i + 128] for k, v in x.items()}) if lm else x[i:i + 128]
               for i in range(0, len(y), 128)]
    out = []
    t0 = time.perf_counter()
    for w in pts:
        vector_to_parameters(w, m.parameters())
        if has_bn(m):
            update_bn(batches, m)
        m.eval()
        if lm:
            p, pt = call(x), call(xt)
            loss = F.cross_entropy(p[:, :-1].flatten(0, 1), y[:, 1:].flatten(), ignore_index=-100)
            scored = yt[:, 1:] != -100
            err = ((pt[:, :-1].argmax(-1) != yt[:, 1:]) & scored).sum() / scored.sum()
        else:
            loss, err = F.mse_loss(m(x), y), F.mse_loss(m(xt), yt)
        out.append((float(loss), float(err)))
    return (time.perf_counter() - t0) / len(pts), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", type=int, default=11)
    ap.add_argument("--loop-points", type=int, default=40)
    args = ap.parse_args()
    tune_cpu_allocator()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    rows = []
    for name, (model, splits, objective) in tasks(torch.Generator().manual_seed(0)).items():
        pts = grid(model, args.grid)
        few = pts.chunk(0, min(args.loop_points, len(pts)))
        s_b, ref = obvious(model, few, splits, objective)
        t = time.perf_counter()
        eng = Engine(model, splits, objective=objective, config=EngineConfig(), cache=ProbeCache())
        res = eng.evaluate(pts)
        s_c = (time.perf_counter() - t) / len(pts)
        k = len(ref)
        dev = max(max(abs(float(res.loss["train"][i]) - a) / abs(a), abs(float(res.error("test")[i]) - b) / max(abs(b), 1e-12))
                  for i, (a, b) in enumerate(ref[:k]))
        rows.append((name, 1 / s_b, 1 / s_c, s_b / s_c, dev, str(eng.explain().choice)))
    head = ("network", "(b) obvious loop pts/s", "(c) engine pts/s", "(c)/(b)", "max rel. difference", "engine's choice")
    print("\n| " + " | ".join(head) + " |\n|" + " --- |" * len(head))
    for r in rows:
        print(f"| {r[0]} | {r[1]:.1f} | {r[2]:.1f} | {r[3]:.2f}x | {r[4]:.1e} | {r[5]} |")


if __name__ == "__main__":
    main()
