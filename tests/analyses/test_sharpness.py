"""The sharpness analysis on a run with BatchNorm: what it stores, against the engine and the definitions by hand."""

import json
import math

import h5py
import numpy as np
import pytest
import torch

from analyses import SharpnessConfig, sharpness
from analyses.compare import compare
from analyses.sharpness import perturbed_mask
from landscape.errors import UserError
from landscape.sharpness import scales
from swa import Trajectory
from swa.runs import build_run_model
from tests.analyses.helpers import ENG, QUIET

CFG = SharpnessConfig(points=("swa", "sgd", "t=0.5"), rhos=(0.05, 0.2), samples=4, report_rho=0.2, worst_rho=0.01,
                      steps=3, m=100, batches=2)


def test_sharpness_on_a_run(tiny_run, results_path):
    out = sharpness(tiny_run, results_path, CFG, ENG, **QUIET)
    assert list(out) == ["swa", "sgd", "t=0.5"]
    for name, s in out.items():
        np.testing.assert_array_equal(s["rhos"], [0.05, 0.2])
        for kind in ("adaptive", "raw"):
            inc = s[f"{kind}_increases"]
            assert inc.shape == (2, 4) and np.isfinite(inc).all()
            np.testing.assert_allclose(s[f"{kind}_mean"], inc.mean(1), rtol=1e-12)
            np.testing.assert_allclose(s[f"{kind}_se"], inc.std(1, ddof=1) / 2, rtol=1e-12)
            for key in ("inf", "2"):
                b = s[f"worst_{kind}_{key}_batches"]
                assert b.shape == (2,) and s[f"worst_{kind}_{key}"] == pytest.approx(b.mean())
                assert (b >= -1e-6).all()  # the ascent keeps its best iterate: never below the start at 0
        assert s["batch_size"] == 100 and s["batches"] == 2 and s["perturbed"] == s["parameters"]
        assert s["radius_2"] == pytest.approx(0.01 * math.sqrt(s["perturbed"]))
    with h5py.File(results_path, "r") as f:
        g = f["sharpness/swa"]
        assert g.attrs["loss"] == "cross-entropy" and g.attrs["perturbed_weights"] == "all"
        assert json.loads(g.attrs["config"])["engine"]["dtype"] == "float64"
    again = sharpness(tiny_run, results_path, CFG, ENG, **QUIET)  # finished points are read back, not redone
    np.testing.assert_array_equal(again["swa"]["adaptive_increases"], out["swa"]["adaptive_increases"])
    c = compare([(tiny_run, results_path)])
    assert c.values["sharpness_swa_adaptive"][0] == pytest.approx(out["swa"]["adaptive_mean"][1])
    assert c.values["sharpness_sgd_worst_inf"][0] == pytest.approx(out["sgd"]["worst_adaptive_inf"])


def test_the_mask_leaves_bn_and_biases_alone(tiny_run):
    with Trajectory(tiny_run) as t:
        model = build_run_model(t)
        w, _ = t.solution("swa")
    mask = perturbed_mask(model, exclude_bn_bias=True)
    names = [n for n, p in model.named_parameters() for _ in range(p.numel())]
    bn = {n for n, m in model.named_modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)}
    for name, keep in zip(names, mask.tolist()):
        assert keep == (not name.endswith("bias") and name.rsplit(".", 1)[0] not in bn), name
    assert perturbed_mask(model, False).all() and 0 < int(mask.sum()) < mask.numel()
    assert (scales(w, mask, True)[~mask] == 0).all()


def test_l2_and_exclusion_are_stored_and_bad_settings_refused(tiny_run, results_path):
    cfg = SharpnessConfig(points=("swa",), rhos=(0.1,), samples=2, report_rho=0.1, worst_rho=0.0, l2=True,
                          exclude_bn_bias=True)
    s = sharpness(tiny_run, results_path, cfg, ENG, **QUIET)["swa"]
    with Trajectory(tiny_run) as t:
        wd, (w, _) = t.config["weight_decay"], t.solution("swa")
    with h5py.File(results_path, "r") as f:
        g = f["sharpness/swa"]
        assert g.attrs["loss"].startswith("cross-entropy + 0.5 wd") and g.attrs["perturbed_weights"].startswith("all but")
        assert "worst_adaptive_inf" not in g  # worst_rho 0: no worst case
    assert s["base_loss"] > 0.5 * wd * float(w.double().pow(2).sum())  # the L2 term is in the loss
    for bad, msg in ((dict(report_rho=0.3), "must be one of rhos"), (dict(rhos=(0.1, -1.0)), "must be positive"),
                     (dict(points=("w3",)), "sharpness point 'w3'"), (dict(samples=1), "samples must be at least 2")):
        with pytest.raises(UserError, match=msg):
            SharpnessConfig(**{"rhos": (0.1,), "report_rho": 0.1, **bad})
