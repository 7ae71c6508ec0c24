"""Everything the GPU path claims, tested and measured in one command (not a test; ``docs/gpu.md`` says how to run it).

Steps, each timed, each recorded whatever happens (a failing step does not stop the others), and each skipped
with its reason when the remaining time budget cannot hold it:

1. ``device``: device name, driver, CUDA, cuDNN and torch versions.
2. ``cuda tests``: ``pytest -m cuda`` (engine fast paths against the reference in float32 and float64, loop and
   vmap, BN recomputation, the test zoo, out-of-memory halving, Hessian products, a short training run).
3. ``matrix``: on CIFAR-shaped random data (50,000 train, 10,000 test images 3x32x32) for PreResNet-20,
   PreResNet-56 and VGG-16-BN: points/s of the anchor loop, of the obvious loop and of the engine, and the
   engine's efficiency against the network's own best forward FLOP rate, all in this process.
4. ``plane56``: the 51x51 PreResNet-56 plane with exact per-point BN over all 50,000 training images plus train
   loss and test error: the rate over at least 20 points, and the whole plane when the budget holds it (else
   the time the measured rate implies, labelled as such).
5. ``lower``: the same points with TF32 allowed (``EngineConfig(tf32=True)``), under autocast in bfloat16 and
   float16 (``EngineConfig(autocast=...)``) and with the loop's evaluation pass compiled
   (``EngineConfig(compile="inductor")``): each one's speed-up over strict float32 eager (measured after its
   one-off check and compile, which are reported) and its largest deviation in loss and error.
6. ``overhead``: a 2-epoch PreResNet-20 run (plus a 1-epoch SWA branch) with SWA averaging and trajectory
   logging against the same training without them.

Everything measured goes to ``OUT/gpu_check.json`` and ``OUT/gpu_check.md`` (the table, also printed).

Usage:
    python benchmarks/gpu_check.py --out gpu-out                 # on the GPU machine: under 8 minutes
    python benchmarks/gpu_check.py --out /tmp/g --dry-run        # tiny sizes on any device (run by the tests)
"""

from __future__ import annotations

import argparse
import json
import pickle
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))

from bench_matrix import anchor, best_forward_rate, grid_points, obvious  # noqa: E402
from bench_overhead import full_run, plain_run  # noqa: E402

from landscape.bn import has_bn  # noqa: E402
from landscape.config import EngineConfig  # noqa: E402
from landscape.engine import Engine  # noqa: E402
from landscape.probe import ProbeCache  # noqa: E402
from landscape.result import flops_per_sample  # noqa: E402
from swa import TrainConfig  # noqa: E402
from swa.models import build_model  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Sizes:
    """How big each step is: the real check, or the dry run that the test suite runs on a CPU."""

    n_train: int
    n_test: int
    matrix_models: tuple[tuple[str, dict], ...]
    matrix_grid: int
    loop_points: int
    plane_side: int
    plane_probe_points: int
    overhead_train: int


FULL = Sizes(50_000, 10_000, (("preresnet", {"depth": 20}), ("preresnet", {"depth": 56}), ("vgg16_bn", {})),
             6, 3, 51, 24, 50_000)
DRY = Sizes(256, 64, (("preresnet", {"depth": 8, "width": 0.25}),), 2, 1, 3, 4, 256)


class Check:
    """Runs the steps under a time budget and records what each did."""

    def __init__(self, budget_s: float):
        self.t0, self.budget = time.perf_counter(), budget_s
        self.steps: dict[str, dict] = {}

    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.t0)

    def step(self, name: str, fn: Callable[[], dict], needs_s: float) -> None:
        if self.left() < needs_s:
            self.steps[name] = {"status": "skipped", "why": f"{self.left():.0f} s left, the step needs ~{needs_s:.0f} s"}
            print(f"[{name}] skipped: {self.steps[name]['why']}", flush=True)
            return
        t = time.perf_counter()
        print(f"[{name}] ...", flush=True)
        try:
            out = {"status": "ok", **fn()}
        except Exception as e:  # noqa: BLE001 - a failing step is recorded, the others still run
            out = {"status": "failed", "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-3000:]}
        out["seconds"] = round(time.perf_counter() - t, 2)
        self.steps[name] = out
        print(f"[{name}] {out['status']} in {out['seconds']} s", flush=True)


def cifar_shaped(n_train: int, n_test: int, device: torch.device, seed: int = 0):
    """Random CIFAR-shaped splits ``(x [N, 3, 32, 32], y [N])`` on ``device`` (random inputs cost what real ones do)."""
    g = torch.Generator().manual_seed(seed)
    tr = (torch.randn(n_train, 3, 32, 32, generator=g), torch.randint(0, 10, (n_train,), generator=g))
    te = (torch.randn(n_test, 3, 32, 32, generator=g), torch.randint(0, 10, (n_test,), generator=g))
    return tuple(x.to(device) for x in tr), tuple(x.to(device) for x in te)


def device_info(device: torch.device) -> dict:
    out = {"torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
           "device": str(device), "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None}
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        out.update(name=p.name, memory_gib=round(p.total_memory / 2**30, 1), capability=f"{p.major}.{p.minor}")
        try:
            smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20)
            out["driver"] = smi.stdout.strip().splitlines()[0] if smi.returncode == 0 else None
        except (OSError, subprocess.TimeoutExpired, IndexError):
            out["driver"] = None
    else:
        out["name"] = platform.processor() or "cpu"
    return out


def cuda_tests(timeout_s: float, where: str = "tests") -> dict:
    """``pytest -m cuda`` over ``where`` in a subprocess; its summary line and exit code."""
    r = subprocess.run([sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider", where],
                       capture_output=True, text=True, timeout=timeout_s, cwd=ROOT)
    lines = [ln for ln in r.stdout.strip().splitlines() if ln.strip()]
    summary = lines[-1] if lines else r.stderr.strip()[-300:]
    out = {"summary": summary, "exit_code": r.returncode}
    if r.returncode not in (0, 5):  # 5: none collected
        out.update(status="failed", tail=r.stdout[-4000:])
    return out


def matrix(sizes: Sizes, device: torch.device) -> dict:
    """Points/s of the anchor loop, the obvious loop and the engine, and the engine's efficiency, per model."""
    train, test = cifar_shaped(sizes.n_train, sizes.n_test, device)
    rows = []
    for name, kw in sizes.matrix_models:
        torch.manual_seed(0)
        model = build_model(name, num_classes=10, **kw).to(device)
        pts = grid_points(model, sizes.matrix_grid)
        few = pts.chunk(0, min(sizes.loop_points, len(pts)))
        s_a = anchor(model, few.to(device), train, test)
        s_b = obvious(model, few.to(device), train, test)
        eng = Engine(model, {"train": train, "test": test}, config=EngineConfig(device=str(device)),
                     cache=ProbeCache())
        _sync(device)
        t = time.perf_counter()
        eng.evaluate(pts)
        _sync(device)
        s_c = (time.perf_counter() - t) / len(pts)
        fps = flops_per_sample(model, train[0][:8])
        flop_point = fps * ((2 if has_bn(model) else 1) * train[0].shape[0] + test[0].shape[0])
        peak, peak_bs = best_forward_rate(model, train[0], fps)
        label = f"{name} {kw}" if kw else name
        rows.append({"model": label, "anchor_pts_s": 1 / s_a, "obvious_pts_s": 1 / s_b, "engine_pts_s": 1 / s_c,
                     "engine_vs_anchor": s_a / s_c, "engine_vs_obvious": s_b / s_c,
                     "efficiency": flop_point / s_c / peak, "best_forward_tflops": peak / 1e12,
                     "best_forward_batch": peak_bs, "choice": str(eng.explain().choice),
                     "guard_s": eng.guard_report.reference_seconds if eng.guard_report else 0.0})
    return {"rows": rows}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def plane56(sizes: Sizes, device: torch.device, check: Check, kw: dict) -> dict:
    """The 51x51 PreResNet-56 exact-BN plane: the rate over the first points, the whole plane if time allows."""
    train, test = cifar_shaped(sizes.n_train, sizes.n_test, device)
    torch.manual_seed(0)
    model = build_model("preresnet", num_classes=10, **kw).to(device)
    pts = grid_points(model, sizes.plane_side)
    eng = Engine(model, {"train": train, "test": test}, config=EngineConfig(device=str(device), strategy="auto"),
                 cache=ProbeCache())
    probe = pts.subset(list(range(sizes.plane_probe_points)))
    eng.evaluate(probe)  # construction, guard, probe and warm-up
    _sync(device)
    t = time.perf_counter()
    res = eng.evaluate(probe)
    _sync(device)
    rate = sizes.plane_probe_points / (time.perf_counter() - t)
    out = {"points": len(pts), "rate_pts_s": rate, "implied_full_plane_s": len(pts) / rate,
           "choice": str(eng.explain().choice), "loss_test_first": float(res.loss["test"][0])}
    if check.left() > 1.2 * len(pts) / rate + 60:
        t = time.perf_counter()
        eng.evaluate(pts)
        _sync(device)
        out["full_plane_s"] = time.perf_counter() - t
    else:
        out["full_plane_s"] = None
        out["note"] = "the whole plane did not fit the budget: implied_full_plane_s is the measured rate's projection"
    return out


LOWER = (("tf32", {"tf32": True}), ("bfloat16", {"autocast": "bfloat16"}), ("float16", {"autocast": "float16"}),
         ("compiled", {"compile": "inductor"}))
"""The variants of the ``lower`` step and their engine settings (float16 only on a GPU)."""


def lower(sizes: Sizes, device: torch.device, kw: dict, backend: str = "inductor") -> dict:
    """Strict float32 eager against each variant of :data:`LOWER` on the same points: speed-up (after the one-off
    check and compile, reported apart) and the largest deviations (``backend``: the compiled variant's; the dry run
    traces without generating code, to stay fast)."""
    train, test = cifar_shaped(sizes.n_train, sizes.n_test, device)
    torch.manual_seed(0)
    model = build_model("preresnet", num_classes=10, **kw).to(device)
    pts = grid_points(model, sizes.plane_side).subset(list(range(sizes.plane_probe_points)))
    out, rows = {}, []
    for name, settings in (("float32", {}), *LOWER):
        if name == "float16" and device.type != "cuda":
            continue
        settings = {**settings, "compile": backend} if "compile" in settings else settings
        eng = Engine(model, {"train": train, "test": test}, config=EngineConfig(device=str(device), **settings),
                     cache=ProbeCache())
        t = time.perf_counter()
        eng.evaluate(pts.subset([0]))  # construction, guard, the variant's own check and compile, warm-up
        _sync(device)
        once = time.perf_counter() - t
        t = time.perf_counter()
        out[name] = eng.evaluate(pts)
        _sync(device)
        seconds = time.perf_counter() - t
        if name == "float32":
            base = seconds
            continue
        a, b = out["float32"], out[name]
        rows.append({"mode": name, "speedup": base / seconds, "one_off_s": once,
                     "max_rel_loss_dev": float(max(((b.loss[s] - a.loss[s]).abs() / a.loss[s].abs()).max()
                                                   for s in a.loss)),
                     "max_error_dev": float(max((b.error(s) - a.error(s)).abs().max() for s in a.loss))})
    return {"rows": rows}


def write_cifar(root: Path, n_train: int, n_test: int) -> None:
    """Random CIFAR-10 python-pickle files (the trainer's loader reads them as it reads the real ones)."""
    rng = np.random.default_rng(0)
    per = n_train // 5
    for i, n in enumerate([per] * 5 + [n_test]):
        name = f"data_batch_{i + 1}" if i < 5 else "test_batch"
        d = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": rng.integers(0, 10, n).tolist()}
        with open(root / name, "wb") as f:
            pickle.dump(d, f)


def overhead(sizes: Sizes, device: torch.device, kw: dict) -> dict:
    """SWA averaging + trajectory logging on a 2-epoch PreResNet-20 run against the same run without them."""
    with tempfile.TemporaryDirectory() as d:
        write_cifar(Path(d), sizes.overhead_train, max(10, sizes.overhead_train // 5))
        cfg = TrainConfig(model="preresnet", model_kwargs=kw, dataset="cifar10", data_dir=d, epochs=2, swa_start=2,
                          swa_epochs=1, swa_schedule="constant", swa_cycle=1, device=str(device))
        plain, full = [], []
        for _ in range(2):
            plain.append(plain_run(cfg))
            full.append(full_run(cfg, Path(d)))
    return {"plain_s": min(plain), "full_s": min(full), "overhead": min(full) / min(plain) - 1}


def table(info: dict, steps: dict) -> str:
    """The Markdown table of everything measured."""
    lines = [f"# GPU check: {info.get('name')} ({info.get('device')}), {time.strftime('%Y-%m-%d')}", "",
             f"torch {info.get('torch')}, CUDA {info.get('cuda')}, cuDNN {info.get('cudnn')}, driver "
             f"{info.get('driver')}, Python {info.get('python')}", "",
             "| step | status | seconds | result |", "| --- | --- | --- | --- |"]
    for name, s in steps.items():
        if s["status"] != "ok":
            what = s.get("why") or s.get("error", "")
        elif name == "device":
            what = f"{s.get('name')}, {s.get('memory_gib', '-')} GiB, compute capability {s.get('capability', '-')}"
        elif name == "cuda tests":
            what = f"`{s['summary']}` (exit {s['exit_code']})"
        elif name == "plane56":
            full = f"{s['full_plane_s']:.0f} s measured" if s.get("full_plane_s") else \
                f"{s['implied_full_plane_s']:.0f} s implied by the measured rate (not run)"
            what = f"{s['rate_pts_s']:.2f} points/s; the {s['points']}-point plane: {full}; {s['choice']}"
        elif name == "lower":
            what = "; ".join(f"{r['mode']} {r['speedup']:.2f}x (one-off {r['one_off_s']:.1f} s), deviation loss "
                             f"{r['max_rel_loss_dev']:.1e} (relative), error {r['max_error_dev']:.1e}" for r in s["rows"])
        elif name == "overhead":
            what = f"{100 * s['overhead']:.1f}% ({s['full_s']:.1f} s vs {s['plain_s']:.1f} s plain)"
        else:
            what = ""
        lines.append(f"| {name} | {s['status']} | {s.get('seconds', '-')} | {what} |")
    if steps.get("matrix", {}).get("status") == "ok":
        lines += ["", "| model | anchor pts/s | obvious pts/s | engine pts/s | engine/anchor | engine/obvious | "
                      "efficiency | best forward TFLOP/s (batch) | choice | guard s |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in steps["matrix"]["rows"]:
            lines.append(f"| {r['model']} | {r['anchor_pts_s']:.2f} | {r['obvious_pts_s']:.2f} | "
                         f"{r['engine_pts_s']:.2f} | {r['engine_vs_anchor']:.2f}x | {r['engine_vs_obvious']:.2f}x | "
                         f"{100 * r['efficiency']:.0f}% | {r['best_forward_tflops']:.2f} ({r['best_forward_batch']}) | "
                         f"{r['choice']} | {r['guard_s']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="directory for gpu_check.json and gpu_check.md")
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes on whatever device there is")
    ap.add_argument("--budget", type=float, default=450.0, help="seconds for all steps (default: 450)")
    ap.add_argument("--skip-tests", action="store_true", help="leave out the pytest step")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    sizes = DRY if args.dry_run else FULL
    kw56 = {"depth": 8, "width": 0.25} if args.dry_run else {"depth": 56}
    kw20 = {"depth": 8, "width": 0.25} if args.dry_run else {"depth": 20}
    torch.backends.cudnn.benchmark = False  # the engine's numbers must not depend on autotuning
    check = Check(args.budget)
    info = device_info(device)
    check.steps["device"] = {"status": "ok", "seconds": 0.0, **info}
    if not args.skip_tests:
        where = "tests/landscape/test_cuda.py" if args.dry_run else "tests"  # the dry run: collect one file only
        check.step("cuda tests", lambda: cuda_tests(max(30.0, check.left() * 0.3), where), 20)
    check.step("matrix", lambda: matrix(sizes, device), 60 if not args.dry_run else 1)
    check.step("plane56", lambda: plane56(sizes, device, check, kw56), 60 if not args.dry_run else 1)
    check.step("lower", lambda: lower(sizes, device, kw56, "aot_eager" if args.dry_run else "inductor"),
               90 if not args.dry_run else 1)
    check.step("overhead", lambda: overhead(sizes, device, kw20), 60 if not args.dry_run else 1)
    md = table(info, check.steps)
    (out / "gpu_check.json").write_text(json.dumps(check.steps, indent=1, default=str))
    (out / "gpu_check.md").write_text(md + "\n")
    print(md)
    return 0 if all(s["status"] != "failed" for s in check.steps.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
