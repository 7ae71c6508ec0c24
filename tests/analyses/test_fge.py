"""FGE against SWA (paper section 3.5): agreement statistics by hand, on a run, and what it refuses."""

import json

import h5py
import numpy as np
import pytest
import torch

from analyses import FGEConfig, SegmentConfig, fge, segment
from analyses.fge import agreement_stats
from landscape.config import EngineConfig
from landscape.errors import UserError
from landscape.reference import load_point
from swa import Trajectory, load_dataset, train
from swa.runs import build_run_model
from tests.analyses.helpers import ENG, QUIET, reference, reference_with
from tests.factories import tiny_config


def test_agreement_stats_on_a_hand_made_ensemble():
    p = torch.tensor([[[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]],
                      [[0.6, 0.3, 0.1], [0.5, 0.4, 0.1]],
                      [[0.2, 0.7, 0.1], [0.1, 0.2, 0.7]]], dtype=torch.float64)
    swa = torch.tensor([[0.5, 0.4, 0.1], [0.2, 0.5, 0.3]], dtype=torch.float64)
    s = agreement_stats(p, swa)
    d01 = (np.linalg.norm([0.1, -0.1, 0]) + np.linalg.norm([-0.4, 0.4, 0])) / 2
    d12 = (np.linalg.norm([0.4, -0.4, 0]) + np.linalg.norm([0.4, 0.2, -0.6])) / 2
    np.testing.assert_allclose(s["prob_diff_consecutive"], [d01, d12])
    ens = p.mean(0).numpy()  # [[0.5, 0.4, 0.1], [0.2333, 0.4667, 0.3]]
    gap = (np.linalg.norm(swa[0].numpy() - ens[0]) + np.linalg.norm(swa[1].numpy() - ens[1])) / 2
    assert s["prob_diff_swa_ensemble"] == pytest.approx(gap)
    np.testing.assert_allclose(s["agree_consecutive"], [0.5, 0.0])  # labels (0,1), (0,0), (1,2)
    assert s["agree_swa_ensemble"] == 1.0


def test_fge_on_a_run(tiny_run, results_path):
    s = fge(tiny_run, results_path, FGEConfig(scales=(1.0, 0.5)), ENG, **QUIET)
    with Trajectory(tiny_run) as t:
        idx = np.flatnonzero(t.meta("captured"))
        w, b = t.weights(idx), t.buffers(idx)
        w_mean = w.double().mean(0)
        acc_stored = t.meta("test_acc")[idx]
        b_swa = t.solution("swa")[1]
    np.testing.assert_array_equal(s["proposal_indices"], idx)
    # recompute (the default): every proposal with BN recomputed, as the reference path does
    for i in (0, len(idx) - 1):
        assert s["acc_proposals"][i] == pytest.approx(reference(tiny_run, w[i])["test"].acc, abs=1e-12)
    ref = reference(tiny_run, w_mean)
    assert s["acc_swa"] == pytest.approx(ref["test"].acc, abs=1e-12)
    # stored: proposals with their own buffers reproduce the accuracies logged during training
    stored = fge(tiny_run, results_path, FGEConfig(scales=(1.0, 0.5)), EngineConfig(**{**ENG.__dict__, "bn_mode": "stored"}),
                 **QUIET)
    np.testing.assert_allclose(stored["acc_proposals"], acc_stored, atol=1e-12)
    assert stored["acc_swa"] == pytest.approx(reference_with(tiny_run, w_mean, b_swa)["test"].acc, abs=1e-12)
    # interpolate: a shrunk proposal w_SWA + s (w_i - w_SWA) carries b_SWA + s (b_i - b_SWA), written out
    inter = fge(tiny_run, results_path, FGEConfig(scales=(0.5,)), EngineConfig(**{**ENG.__dict__, "bn_mode": "interpolate"}),
                **QUIET)
    with h5py.File(results_path, "r") as f:
        assert json.loads(f["fge"].attrs["config"])["engine"]["bn_mode"] == "interpolate"  # recorded = used
    with Trajectory(tiny_run) as t:
        model = build_run_model(t).double()
    xt = load_dataset(tiny_run, "test")[0].double()

    def probs(wi, bi):
        with torch.no_grad():
            return torch.softmax(load_point(model, wi.double(), bi.double()).eval()(xt), -1)

    p_swa = probs(w_mean, b_swa)
    shrunk = [probs(w_mean + 0.5 * (w[i].double() - w_mean), b_swa.double() + 0.5 * (b[i].double() - b_swa.double()))
              for i in range(len(idx))]
    gap = (p_swa - torch.stack(shrunk).mean(0)).norm(dim=-1).mean().item()  # the paper's ||p_SWA - p_FGE||
    assert inter["scaled_prob_diff_swa_ensemble"][0] == pytest.approx(gap, rel=1e-5)
    np.testing.assert_allclose(inter["acc_proposals"], acc_stored, atol=1e-12)
    _, y = load_dataset(tiny_run, "test")
    ens = torch.as_tensor(s["probs_proposals"]).double().mean(0)
    assert s["acc_ensemble"] == pytest.approx((ens.argmax(-1) == y).double().mean().item())
    assert s["scales"].tolist() == [1.0, 0.5] and np.isfinite(s["order_consecutive"])
    with h5py.File(results_path, "r") as f:
        assert f["fge/prob_diff_consecutive"].shape == (len(idx) - 1,)


def test_fge_needs_captured_proposals_and_results_belong_to_one_run(tmp_path, tiny_run, tiny_run_constant):
    cut = tmp_path / "cut.h5"
    lines = []

    def log(line):
        lines.append(line)
        if len(lines) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(), cut, progress=False, log=log)
    with pytest.raises(UserError, match="at least two captured proposals"):
        fge(cut, tmp_path / "r.h5", engine_config=ENG, progress=False)
    shared = tmp_path / "shared.h5"
    segment(tiny_run, shared, SegmentConfig(0, 1, 2), ENG, **QUIET)
    with pytest.raises(UserError, match="results of another run"):
        segment(tiny_run_constant, shared, SegmentConfig(0, 1, 2), ENG, **QUIET)
    with pytest.raises(UserError, match="must not be the run file"):
        segment(tiny_run, tiny_run, SegmentConfig(0, 1, 2), ENG, **QUIET)
