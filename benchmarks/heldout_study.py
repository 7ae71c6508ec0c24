"""The held-out studies: the demo default and the verdict criteria, frozen, on seeds and data never used.

**Study 2** (the default, ``--study 2``): the criteria of :mod:`analyses.findings` as they stand now (paired null,
signed-rank intervals for the segment, the flat region's statistics, the FGE order claim, the averaging control),
committed before any of its runs was trained, judged on training seeds 300-309 on a new MNIST-1D draw
(``data_seed`` 2026) and 310-312 on another (``data_seed`` 911); each run's rays along its own directions (seeded by
the training seed). Everything else as study 1.

**Study 1** (``--study 1``), as it ran before the criteria changed:

The demo's default was chosen among 20 configurations on training seeds 0-2 and the standard MNIST-1D set
(``data_seed`` 42, 800 test samples; ``benchmarks/sweep_demo.py``). Here the same configuration, with the criteria of
:mod:`analyses.findings` as committed before this study ran, is trained on

* ten training seeds never used before (100-109) on ``data_seed`` 42,
* three training seeds (0-2) on each of two other data sets (``data_seed`` 7 and 13),

every run with a test set of 2000 samples (the same 3200 training samples per set) and the controls
(``train --controls``: a budget-matched SGD and a null SGD from the fork). Each run gets the analyses the findings use,
as the demo runs them (raw and filter-normalised rays, the segment, FGE), on the SWA-SGD pair and on the null pair
(``analyze --null``). ``compare`` then judges each group, and all the study's runs together.

Runs are kept under ``--out`` and reused (a finished run is not trained again); two train side by side at one
thread each. ``--write`` puts the generated verdicts into docs/findings.md and the README.

Usage:
    python benchmarks/heldout_study.py --out /tmp/heldout2 [--study 2] [--jobs 2] [--write]
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from findings_readme import replace_block  # benchmarks/ is the script's directory, first on sys.path

STUDIES = {
    1: ({"held-out seeds 100-109, data_seed 42": (42, range(100, 110)),
         "seeds 0-2, data_seed 7": (7, range(3)),
         "seeds 0-2, data_seed 13": (13, range(3))}, "heldout", False),
    2: ({"seeds 300-309, data_seed 2026": (2026, range(300, 310)),
         "seeds 310-312, data_seed 911": (911, range(310, 313))}, "heldout2", True),
}
"""Study to (group name to (data_seed, training seeds), marker of its block in the docs, rays seeded per run)."""
TEST_SAMPLES = 2000


def run_one(data_seed: int, seed: int, out: str, own_directions: bool) -> tuple[int, int, float]:
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
    rays = {"directions": base.directions, "steps": base.ray_steps, **({"seed": seed} if own_directions else {})}
    configs = with_settings(judged(), {"rays": rays})
    for roles in (None, NULL_ROLES):
        with Trajectory(run, roles) as t:
            if t.results_path.exists():
                t.results_path.unlink()
            run_analyses(t, t.results_path, configs, default_engine_config(t), progress=False, log=lambda s: None)
    done.touch()
    return data_seed, seed, time.perf_counter() - t0


def report(out: Path, groups: dict) -> tuple[str, str]:
    """The generated Markdown: per group (and all runs) ``compare``'s verdicts with intervals and the null control;
    and a short summary for the README."""
    from analyses.compare import compare

    blocks, summary = [], []
    groups = {name: [out / f"data{ds}" / f"seed{s}" / "run.h5" for s in seeds] for name, (ds, seeds) in groups.items()}
    groups[f"all {sum(map(len, groups.values()))} runs"] = [r for runs in list(groups.values()) for r in runs]
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
    parts += [f"{k} not larger than on the null pair" for k in v.not_discriminating]
    return f" ({'; '.join(parts)})" if parts else ""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="heldout-study", help="directory of the runs (reused)")
    p.add_argument("--study", type=int, default=2, choices=sorted(STUDIES), help="which study (default: 2)")
    p.add_argument("--jobs", type=int, default=2, help="runs trained side by side, one thread each")
    p.add_argument("--table-only", action="store_true", help="only judge the finished runs")
    p.add_argument("--write", action="store_true", help="write the verdicts into docs/findings.md and README.md")
    args = p.parse_args()
    out = Path(args.out)
    groups, marker, own = STUDIES[args.study]
    took = ""
    if not args.table_only:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        t0 = time.perf_counter()
        with ProcessPoolExecutor(args.jobs) as ex:
            futs = [ex.submit(run_one, ds, s, str(out), own) for ds, seeds in groups.values() for s in seeds]
            for f in futs:
                ds, s, dt = f.result()
                print(f"data_seed {ds} seed {s}: {dt:.0f} s", flush=True)
        took = f"; {len(futs)} runs in {(time.perf_counter() - t0) / 60:.1f} minutes, {args.jobs} side by side"
        (out / "took.txt").write_text(took)  # --table-only reports it too
        print(f"study {args.study}{took}")
    elif (out / "took.txt").exists():
        took = (out / "took.txt").read_text()
    full, summary = report(out, groups)
    print(full)
    print(summary)
    if args.write:
        root = Path(__file__).resolve().parents[1]
        pages = [(root / "docs" / "findings.md", full)] + ([(root / "README.md", summary)] if args.study == 2 else [])
        for page, text in pages:
            replace_block(page, marker, f"`python benchmarks/heldout_study.py --study {args.study} --write` (generated"
                                        f"{took}):\n\n{text}")


if __name__ == "__main__":
    main()
