"""Any objective and batch structure through the engine, against a plain reference written out here.

A zoo of tasks besides classification over ``(inputs, class)`` tensors: a regression MLP with BatchNorm (mean
squared error on ``[N, 3]`` targets), a causal transformer language model (embeddings, attention, LayerNorm, tied
output) on padded integer tokens, a two-input model fed dict batches (``model(**batch)``), a model returning an
output object with ``.logits``, and an objective defined here (label-smoothed cross-entropy). Each is evaluated by
the engine (loop and vmap, float32 and float64) and by the obvious code: copy the point in, recompute BN as
``update_bn`` does, evaluate batch by batch with the formula written out. Bad objectives and targets are refused in
one line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from landscape.config import EngineConfig
from landscape.engine import Engine
from landscape.errors import UserError
from landscape.layout import flatten
from landscape.objective import Classification, LanguageModel, Objective, Regression, objective_from
from landscape.points import PointSet
from tests.landscape.zoo import at_point_with_bn

BN_BATCH = 16
TOL = {torch.float32: 1e-5, torch.float64: 1e-10}
VOCAB, SEQ, PAD = 11, 9, 0


class RegressionMLP(nn.Module):
    """Two hidden layers with BatchNorm, three outputs."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.Tanh(), nn.Linear(16, 16),
                                 nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TinyCausalLM(nn.Module):
    """One pre-norm transformer block: token and position embeddings, causal self-attention, MLP, final LayerNorm,
    output tied to the token embedding."""

    def __init__(self, d: int = 16):
        super().__init__()
        self.tok, self.pos = nn.Embedding(VOCAB, d), nn.Embedding(SEQ, d)
        self.ln1, self.ln2, self.ln_f = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        n, length = tokens.shape
        h = self.tok(tokens) + self.pos(torch.arange(length, device=tokens.device))
        q, k, v = self.qkv(self.ln1(h)).chunk(3, -1)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
        causal = torch.ones(length, length, dtype=torch.bool, device=tokens.device).tril()
        att = att.masked_fill(~causal, float("-inf")).softmax(-1)
        h = h + self.proj(att @ v)
        h = h + self.mlp(self.ln2(h))
        return self.ln_f(h) @ self.tok.weight.T  # tied output [N, L, V]


class TwoInputs(nn.Module):
    """Fed dict batches: ``model(signal=..., side=...)``, BN on the joined features."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(5, 8), nn.Linear(2, 8)
        self.bn = nn.BatchNorm1d(16)
        self.head = nn.Linear(16, 4)

    def forward(self, signal: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.bn(torch.cat([self.a(signal), self.b(side)], -1))))


@dataclass
class Output:
    """What a HuggingFace-style model returns: an object with ``logits`` (and more)."""

    logits: torch.Tensor
    hidden: torch.Tensor


class ObjectOutput(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(5, 12), nn.BatchNorm1d(12), nn.SiLU())
        self.head = nn.Linear(12, 4)

    def forward(self, x: torch.Tensor) -> Output:
        h = self.body(x)
        return Output(self.head(h), h)


class LabelSmoothing(Objective):
    """A user's objective: label-smoothed cross-entropy, its error the classification error."""

    name = "label-smoothing"
    error = "error"
    labels = {"loss": "smoothed cross-entropy", "error": "error"}

    def __init__(self, eps: float = 0.1):
        self.eps = eps

    def per_sample(self, pred, target):
        logp = pred.log_softmax(-1)
        nll = -logp.gather(-1, target.expand(pred.shape[0], -1)[..., None])[..., 0]
        return {"loss": ((1 - self.eps) * nll - self.eps * logp.mean(-1), None),
                "error": ((pred.argmax(-1) != target).double(), None)}


def _regression_data(g, n):
    x = torch.randn(n, 6, generator=g, dtype=torch.float64) * 1.5 + 0.3
    return x, torch.randn(n, 3, generator=g, dtype=torch.float64)


def _tokens(g, n):
    tokens = torch.randint(1, VOCAB, (n, SEQ), generator=g)
    lengths = torch.randint(3, SEQ + 1, (n,), generator=g)
    pad = torch.arange(SEQ)[None] >= lengths[:, None]
    inputs = tokens.masked_fill(pad, PAD)
    return inputs, tokens.masked_fill(pad, -100)  # padding is not scored


def _dict_data(g, n):
    return ({"signal": torch.randn(n, 5, generator=g, dtype=torch.float64),
             "side": torch.randn(n, 2, generator=g, dtype=torch.float64)}, torch.randint(0, 4, (n,), generator=g))


def _plain_data(g, n):
    return torch.randn(n, 5, generator=g, dtype=torch.float64) * 1.2, torch.randint(0, 4, (n,), generator=g)


def _mse(out, y):
    return {"loss": ((out - y) ** 2).mean(-1).sum(), "mse": ((out - y) ** 2).mean(-1).sum()}, len(y)


def _token_metrics(out, y):
    logits, target = out[:, :-1], y[:, 1:]
    valid = target != -100
    ce = F.cross_entropy(logits.reshape(-1, VOCAB), target.reshape(-1), ignore_index=-100, reduction="sum")
    wrong = ((logits.argmax(-1) != target) & valid).sum()
    return {"loss": ce, "token_error": wrong.double()}, int(valid.sum())


def _ce(out, y):
    return {"loss": F.cross_entropy(out, y, reduction="sum"), "error": (out.argmax(-1) != y).double().sum()}, len(y)


def _smoothed(out, y):
    return {"loss": F.cross_entropy(out, y, reduction="sum", label_smoothing=0.1),
            "error": (out.argmax(-1) != y).double().sum()}, len(y)


TASKS = {  # model, data, objective, the formula written out (sums and the count they are divided by)
    "regression_bn": (RegressionMLP, _regression_data, Regression, _mse),
    "causal_lm": (TinyCausalLM, _tokens, LanguageModel, _token_metrics),
    "dict_batches": (TwoInputs, _dict_data, Classification, _ce),
    "output_object": (ObjectOutput, _plain_data, Classification, _ce),
    "user_objective": (ObjectOutput, _plain_data, LabelSmoothing, _smoothed),
}


def _cast(x, dtype):
    if isinstance(x, dict):
        return {k: _cast(v, dtype) for k, v in x.items()}
    return x.to(dtype) if x.is_floating_point() else x


def _call(model, x):
    out = model(**x) if isinstance(x, dict) else model(x)
    return out.logits if isinstance(out, Output) else out


def plain_reference(model: nn.Module, w: torch.Tensor, data: dict, formula) -> dict[str, dict[str, float]]:
    """The obvious way: copy the point in, recompute BN over batches of ``BN_BATCH`` (train-mode BN only, momentum
    None, as ``update_bn``), then the formula batch by batch in eval mode."""
    x, n = data["train"][0], len(data["train"][1])
    batches = ({k: v[i:i + BN_BATCH] for k, v in x.items()} if isinstance(x, dict) else x[i:i + BN_BATCH]
               for i in range(0, n, BN_BATCH))
    m = at_point_with_bn(model, w, batches, _call)
    out = {}
    with torch.no_grad():
        for split, (xs, ys) in data.items():
            sums, count = formula(_call(m, xs), ys)
            out[split] = {k: float(v) / count for k, v in sums.items()}
    return out


def _setup(task: str, dtype: torch.dtype, seed: int):
    build, make, objective, formula = TASKS[task]
    torch.manual_seed(seed)
    model = build().to(dtype)
    g = torch.Generator().manual_seed(seed + 1)
    data = {"train": make(g, 40), "test": make(g, 24)}
    data = {s: (_cast(x, dtype), _cast(y, dtype) if y.is_floating_point() else y) for s, (x, y) in data.items()}
    w0 = flatten(list(model.parameters()))
    pts = w0 + 0.05 * w0.norm() / w0.numel() ** 0.5 * torch.randn(3, w0.numel(), generator=g, dtype=torch.float64
                                                                   ).to(dtype)
    return model, data, pts, objective(), formula


@pytest.mark.parametrize("strategy", ["loop", "vmap"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("task", list(TASKS))
def test_every_task_matches_the_plain_reference(task, dtype, strategy):
    model, data, pts, objective, formula = _setup(task, dtype, seed=len(task))
    eng = Engine(model, data, objective=objective,
                 config=EngineConfig(dtype=str(dtype).removeprefix("torch."), strategy=strategy,
                                     bn_batch_size=BN_BATCH, superbatch=2 * BN_BATCH))
    res = eng.evaluate(PointSet.explicit(pts))
    assert res.strategy == strategy
    for i in range(len(pts)):
        ref = plain_reference(model, pts[i], data, formula)
        for split, values in ref.items():
            for name, v in values.items():
                torch.testing.assert_close(res.metrics[split][name][i].item(), v, rtol=TOL[dtype], atol=TOL[dtype])
    err = res.error("test")
    assert torch.equal(err, res.metrics["test"][objective.error])
    if task == "causal_lm":
        torch.testing.assert_close(res.metrics["test"]["perplexity"], res.metrics["test"]["loss"].exp())


def test_classification_is_the_default_and_its_numbers_are_unchanged():
    """The default objective computes cross-entropy as ``logsumexp - logit of the target`` summed in float64, and
    the error as ``1 - accuracy``: the engine's classification numbers written out."""
    model, data, pts, _, _ = _setup("output_object", torch.float64, seed=3)
    plain = nn.Sequential(*model.body, model.head)  # the same network returning a tensor
    res = Engine(plain, data, config=EngineConfig(dtype="float64", bn_batch_size=BN_BATCH)).evaluate(
        PointSet.explicit(pts))
    obj = Engine(model, data, config=EngineConfig(dtype="float64", bn_batch_size=BN_BATCH)).evaluate(
        PointSet.explicit(pts))
    for split in data:
        assert torch.equal(res.loss[split], obj.loss[split]) and torch.equal(res.acc[split], obj.acc[split])
        assert torch.equal(res.error(split), 1.0 - res.acc[split])


class ScalarLoss(Objective):
    name = "scalar"

    def per_sample(self, pred, target):
        return {"loss": (F.cross_entropy(pred[0], target)[None], None)}


def make_scalar_loss():
    return ScalarLoss()


@pytest.mark.parametrize(("task", "objective", "message"), [
    ("regression_bn", ScalarLoss(), r"per_sample returned loss of shape \(1,\), expected one value per point and "
                                    r"sample \[\d+, \d+\]"),
    ("regression_bn", Classification(), r"classification needs class indices \[N\] \(integers\) and logits"),
    ("dict_batches", Regression(), r"regression needs floating-point targets shaped like the predictions"),
    ("output_object", LanguageModel(), r"language-model needs token targets \[N, L\]"),
], ids=["scalar-loss", "targets-for-classification", "targets-for-regression", "targets-for-lm"])
def test_bad_objectives_and_targets_are_refused_in_one_line(task, objective, message):
    model, data, pts, _, _ = _setup(task, torch.float64, seed=4)
    eng = Engine(model, data, objective=objective, config=EngineConfig(dtype="float64", bn_batch_size=BN_BATCH,
                                                                       guard=False))
    with pytest.raises(UserError, match=message):
        eng.evaluate(PointSet.explicit(pts))


def test_objectives_by_name_or_import_path_and_their_refusals():
    assert isinstance(objective_from(None), Classification)
    lm = objective_from("language-model", {"ignore_index": 0})
    assert isinstance(lm, LanguageModel) and lm.config() == {"name": "language-model",
                                                             "kwargs": {"ignore_index": 0, "shift": True}}
    assert isinstance(objective_from("tests.landscape.test_objective:make_scalar_loss"), ScalarLoss)
    with pytest.raises(UserError, match="unknown objective 'hinge'"):
        objective_from("hinge")
    with pytest.raises(UserError, match="cannot be imported: ModuleNotFoundError"):
        objective_from("no_such_pkg.mod:make")
    with pytest.raises(UserError, match="not an objective"):
        objective_from("builtins:dict")
    with pytest.raises(UserError, match="objective .regression.: Regression.. takes no arguments"):
        objective_from("regression", {"margin": 1})


def test_an_output_nothing_can_read_is_refused():
    class Strange(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(5, 4)

        def forward(self, x):
            return {"scores": self.lin(x)}

    model = Strange().double()
    g = torch.Generator().manual_seed(0)
    data = {"train": _plain_data(g, 8), "test": _plain_data(g, 8)}
    with pytest.raises(UserError, match="cannot read the model's output of type dict"):
        Engine(model, data, config=EngineConfig(dtype="float64")).evaluate(
            PointSet.explicit(flatten(list(model.parameters()))[None]))
