"""The held-out study (issue 22): the demo default and the verdict criteria, frozen, on seeds and data never used.

The demo's default was chosen among 20 configurations on training seeds 0-2 and the standard MNIST-1D set
(``data_seed`` 42, 800 test samples; ``benchmarks/sweep_demo.py``). Here the same configuration, with the criteria of
:mod:`analyses.findings` as committed before this study ran, is trained on

* ten training seeds never used before (100-109) on ``data_seed`` 42,
* three training seeds (0-2) on each of two other data sets (``data_seed`` 7 and 13),

every run with a test set of 2000 samples (the same 3200 training samples per set) and the controls
(``train --controls``: a budget-matched SGD and a null SGD from the fork). Each run gets the analyses the findings use,
as the demo runs them (raw and filter-normalised rays, the segment, FGE), on the SWA-SGD pair and on the null pair
(``analyze --null``). ``compare`` then judges each group, and all sixteen runs together.

Runs are kept under ``--out`` and reused (a finished run is not trained again); two train side by side at one
thread each. ``--write`` puts the generated verdicts into docs/findings.md and the README.

Usage:
    python benchmarks/heldout_study.py --out /tmp/heldout [--jobs 2] [--write]
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from findings_readme import replace_block  # benchmarks/ is the script's directory, first on sys.path

GROUPS = {"held-out seeds 100-109, data_seed 42": (42, range(100, 110)),
          "seeds 0-2, data_seed 7": (7, range(3)),
          "seeds 0-2, data_seed 13": (13, range(3))}
"""Group name to (data_seed, training seeds)."""
TEST_SAMPLES = 2000


def run_one(data_seed: int, seed: int, out: str) -> tuple[int, int, float]:
    """Train one run with its controls and analyse it and its null pair; returns its wall time (0: done before)."""
    import torch

    torch.set_num_threads(1)
    from analyses.batch import run_analyses, with_settings
    from analyses.catalog import judged
    from analyses.common import default_engine_config
    from swa import train
    from swa.trajectory import NULL_ROLES, Trajectory
    from swa_landscape import DemoConfig

    d = Path(out) / f"data{data_seed}" / f"seed{seed}"
    d.mkdir(parents=True, exist_ok=True)
    run, done = d / "run.h5", d / "done"
    if done.exists():
        return data_seed, seed, 0.0
    t0 = time.perf_counter()
    base = DemoConfig(seed=seed)
    cfg = base.train_config().replace(data_seed=data_seed, test_samples=TEST_SAMPLES, controls=True)
    train(cfg, run, overwrite=True, progress=False, log=lambda s: None)
    configs = with_settings(judged(), {"rays": {"directions": base.directions, "steps": base.ray_steps}})
    for roles in (None, NULL_ROLES):
        with Trajectory(run, roles) as t:
            if t.results_path.exists():
                t.results_path.unlink()
            run_analyses(t, t.results_path, configs, default_engine_config(t), progress=False, log=lambda s: None)
    done.touch()
    return data_seed, seed, time.perf_counter() - t0


def report(out: Path) -> tuple[str, str]:
    """The generated Markdown: per group (and all runs) ``compare``'s verdicts with intervals and the null control;
    and a short summary for the README."""
    from analyses.compare import compare

    blocks, summary = [], []
    groups = {name: [out / f"data{ds}" / f"seed{s}" / "run.h5" for s in seeds] for name, (ds, seeds) in GROUPS.items()}
    groups["all 16 runs"] = [r for runs in list(groups.values()) for r in runs]
    for name, runs in groups.items():
        runs = [r for r in runs if (r.parent / "done").exists()]
        if not runs:
            continue
        c = compare(runs)
        c.write_csv(out / f"compare-{len(blocks)}.csv")
        blocks.append(f"### {name} ({len(runs)} runs)\n\n{c.format_markdown()}\n")
        words = "; ".join(f"{v.finding.title}: **{v.word}**" + _why(v) for v in c.verdicts)
        summary.append(f"- {name} ({len(runs)} runs): {words}.")
    return "\n".join(blocks), "\n".join(summary)


def _why(v) -> str:
    """What a verdict rests on, in a few words: the claims that did not hold, and those the null control flags."""
    parts = [f"{m.claim.key} {m.word}" for m in v.claims if m.word != "holds"]
    parts += [f"{k} also holds on the null pair" for k in v.not_discriminating]
    return f" ({'; '.join(parts)})" if parts else ""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="heldout-study", help="directory of the runs (reused)")
    p.add_argument("--jobs", type=int, default=2, help="runs trained side by side, one thread each")
    p.add_argument("--table-only", action="store_true", help="only judge the finished runs")
    p.add_argument("--write", action="store_true", help="write the verdicts into docs/findings.md and README.md")
    args = p.parse_args()
    out = Path(args.out)
    if not args.table_only:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        with ProcessPoolExecutor(args.jobs) as ex:
            futs = [ex.submit(run_one, ds, s, str(out)) for ds, seeds in GROUPS.values() for s in seeds]
            for f in futs:
                ds, s, dt = f.result()
                print(f"data_seed {ds} seed {s}: {dt:.0f} s", flush=True)
    full, summary = report(out)
    print(full)
    print(summary)
    if args.write:
        root = Path(__file__).resolve().parents[1]
        for page, text in ((root / "docs" / "findings.md", full), (root / "README.md", summary)):
            replace_block(page, "heldout", f"`python benchmarks/heldout_study.py --write` (generated):\n\n{text}")


if __name__ == "__main__":
    main()
