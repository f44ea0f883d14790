"""`python -m customizer.bench`: run every measured path in its own fresh process and merge one JSON.

    python -m customizer.bench --json            # everything; about 7 min on 2 CPU cores (+ a one-off SD1.5 build)
    python -m customizer.bench --quick --json    # 3 runs per figure, no SD1.5, no ablation rounds to speak of
    python -m customizer.bench --report          # ... and write BENCHMARKS.md + bench/stages.png
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .. import settings
from ..config import REPO_ROOT, load_config
from . import machine, weights
from .pageready import page_ready

DEFAULT_OUT = REPO_ROOT / "bench" / "results.json"
ENGINE_OPTIMISATIONS = {
    "prompt_cache": "text-encoder outputs per (model, prompt, negative, CFG, text-LoRA) in an LRU",
    "reference_embeddings": "the locked reference's IP-Adapter embedding is computed once (at lock) and stored",
    "adapter_state": "set_adapters / disable_lora / set_ip_adapter_scale only when a recipe changes them",
    "fused_lora": "one active theme LoRA fused into the UNet weights (restored from a pristine copy on change)",
    "guidance_interval": "available, not on by default: classifier-free guidance on the first guidance_end of the "
                         "steps, the late steps on the positive prompt alone at half the UNet batch (the bundled "
                         "profile keeps every step: *Guidance interval*)",
}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m customizer.bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="print the results JSON on stdout (logs go to stderr)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"results file (default {DEFAULT_OUT})")
    ap.add_argument("--report", action="store_true", help="also write BENCHMARKS.md and the stage plot")
    ap.add_argument("--markdown", type=Path, default=REPO_ROOT / "BENCHMARKS.md")
    ap.add_argument("--plot", type=Path, default=REPO_ROOT / "bench" / "stages.png")
    ap.add_argument("--quick", action="store_true", help="3 runs per figure, 1 warm-up, no SD1.5 unless --sd15")
    ap.add_argument("--geometry", default="bundled", help="model geometry (architectures.yaml) of the bundled run")
    ap.add_argument("--random-weights", action="store_true", help="random weights even if assets/bundled exists")
    ap.add_argument("--runs", type=int, help="timed runs per latency figure (default 10, quick 3)")
    ap.add_argument("--warmup", type=int, help="untimed runs first (default 2, quick 1)")
    ap.add_argument("--candidate-reps", type=int, help="timed candidates-of-4 designs (default 3, quick 1)")
    ap.add_argument("--steps", type=int, help="denoising steps (default: the bundled profile's)")
    ap.add_argument("--guidance-end", type=float,
                    help="fraction of the steps with classifier-free guidance on our path (default: the bundled "
                         "profile's; plain diffusers always guides every step)")
    ap.add_argument("--size", type=int, help="image side in pixels (default: the geometry's resolution)")
    ap.add_argument("--threads", type=int, help="torch intra-op threads for both paths (default: torch's)")
    ap.add_argument("--cache-dir", type=Path, default=weights.CACHE, help="where random-weights folders are kept")
    ap.add_argument("--skip-page", action="store_true", help="skip the app.py page-ready cold start")
    ap.add_argument("--skip-ablations", action="store_true")
    ap.add_argument("--ablation-rounds", type=int, help="interleaved rounds per ablation (default 7, quick 2)")
    ap.add_argument("--skip-sd15", action="store_true")
    ap.add_argument("--sd15", action="store_true", help="run the SD1.5-geometry part even with --quick")
    ap.add_argument("--sd15-geometry", default="sd15", help="geometry of the real-size run (tests use 'tiny')")
    ap.add_argument("--sd15-steps", default="4,25")
    ap.add_argument("--sd15-size", type=int, help="default: the geometry's resolution (512 for sd15)")
    ap.add_argument("--sd15-full", action="store_true",
                    help="time real N-step calls with warm-up and repetitions (default on a GPU; hours on a CPU)")
    ap.add_argument("--sd15-runs", type=int, default=10)
    ap.add_argument("--note", help="a line for BENCHMARKS.md, e.g. what else was running on the machine")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds allowed per child process")
    args = ap.parse_args(argv)
    # our path renders through the app's own settings check: refuse what it would refuse, with its bounds
    for flag, value, bounds in (("--steps", args.steps, settings.STEPS),
                                ("--guidance-end", args.guidance_end, settings.GUIDANCE_END)):
        if error := settings.override_error(flag, value, bounds):
            ap.error(error)
    q = args.quick
    args.runs = args.runs or (3 if q else 10)
    args.warmup = args.warmup if args.warmup is not None else (1 if q else 2)
    args.candidate_reps = args.candidate_reps or (1 if q else 3)
    args.ablation_rounds = args.ablation_rounds or (2 if q else 7)
    args.with_sd15 = not args.skip_sd15 and (args.sd15 or not q)
    return args


def child(kind: str, job: dict[str, Any], workdir: Path, timeout: float) -> dict[str, Any]:
    """Run one job in a fresh interpreter; its stdout/stderr go to our stderr so --json stays clean."""
    job_path, out_path = workdir / f"{kind}.job.json", workdir / f"{kind}.out.json"
    job_path.write_text(json.dumps(job))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "customizer.bench.worker", kind, str(job_path), str(out_path),
                           repr(t0)], cwd=REPO_ROOT, env=env, stdout=sys.stderr, timeout=timeout)
    if proc.returncode != 0:
        raise SystemExit(f"bench: the '{kind}' run failed (exit {proc.returncode}); see the log above")
    return json.loads(out_path.read_text())


def _geometry_resolution(name: str) -> int:
    return int(weights.geometry(name).get("resolution", 512))


def bundled_part(args, workdir: Path) -> dict[str, Any]:
    folder, source = weights.bundled_model(args.geometry, args.cache_dir, not args.random_weights, log)
    base = load_config().profiles["bundled"]
    settings = {"steps": args.steps or base.steps, "guidance": base.guidance, "scheduler": base.scheduler,
                "size": args.size or _geometry_resolution(args.geometry),
                "guidance_end": base.guidance_end if args.guidance_end is None else args.guidance_end}
    raw = weights.profile_raw(folder, settings["steps"], settings["guidance"], settings["size"],
                              settings["scheduler"], settings["guidance_end"])
    themes = sorted(raw["themes"])
    log(f"bundled ({source['source']} weights, {settings['size']} px, {settings['steps']} steps): cold starts")
    ours_cold = child("ours_cold", {"workdir": str(workdir / "cold"), "profile": raw}, workdir, args.timeout)
    plain_cold = child("plain_cold", {"folder": str(folder), "themes": themes, "steps": settings["steps"],
                                      "guidance": settings["guidance"], "size": settings["size"],
                                      "loras": {"fantasy": 0.6} if "fantasy" in themes else {}},
                       workdir, args.timeout)
    log("bundled: ours vs plain diffusers, interleaved in one process")
    cmp = child("compare", {"workdir": str(workdir / "compare"), "profile": raw, "folder": str(folder),
                            "themes": themes, "runs": args.runs, "warmup": args.warmup,
                            "candidate_reps": args.candidate_reps, "threads": args.threads,
                            "ablations": not args.skip_ablations, "size": settings["size"],
                            "ablation_rounds": args.ablation_rounds, "steps_per_round": 2 if args.quick else 3},
                workdir, args.timeout)
    ours, baseline = cmp["ours"] | ours_cold, cmp["baseline"] | plain_cold
    part: dict[str, Any] = {
        "weights": source, "settings": settings | {"baseline_scheduler": baseline.pop("scheduler")},
        "ours": ours, "baseline": baseline,
        "ratio": {k: ours["latency"][k]["p50"] / baseline["latency"][k]["p50"] for k in ours["latency"]},
        "default_call": cmp["default_call"],
        "ratio_default_call": {k: ours["latency"][k]["p50"] / v["p50"]
                               for k, v in cmp["default_call"]["latency"].items()},
        "floor": cmp["floor"], "engine_before_after": cmp["engine_before_after"],
    }
    if "ablations" in cmp:
        part["ablations"] = cmp["ablations"]
    if not args.skip_page:
        log("bundled: app.py cold start to an answering page")
        part["cold_start_page"] = [page_ready(raw, workdir / "app", preload=False)]
        if not args.quick:
            part["cold_start_page"].append(page_ready(raw, workdir / "app", preload=True))
    return part


def sd15_part(args, workdir: Path) -> dict[str, Any]:
    folder, source = weights.random_model(args.sd15_geometry, args.cache_dir, (), log)
    steps = [int(s) for s in str(args.sd15_steps).split(",") if s.strip()]
    job = {"folder": str(folder), "steps": steps, "size": args.sd15_size or _geometry_resolution(args.sd15_geometry),
           "guidance": load_config().profiles["sd15"].guidance, "full": args.sd15_full, "runs": args.sd15_runs,
           "warmup": 2}
    log(f"SD1.5 geometry '{args.sd15_geometry}' at {job['size']} px, steps {steps}")
    return {"weights": source, **child("sd15", job, workdir, args.timeout)}


def summary_lines(results: dict[str, Any]) -> list[str]:
    lines = []
    b = results.get("bundled")
    if b:
        for kind, r in b["ratio"].items():
            o, p = b["ours"]["latency"][kind]["p50"], b["baseline"]["latency"][kind]["p50"]
            lines.append(f"bundled {kind:12s} ours p50 {o:7.3f} s   baseline p50 {p:7.3f} s   ours/baseline {r:5.2f}")
        for kind, r in b.get("ratio_default_call", {}).items():
            d = b["default_call"]
            lines.append(f"bundled {kind:12s} vs the default call ({d['steps']} steps) p50 "
                         f"{d['latency'][kind]['p50']:7.3f} s   ours/default {r:5.2f}")
        for kind in ("portrait", "selfie"):
            f = b["floor"][kind]
            lines.append(f"bundled {kind:12s} {f['flops'] / 1e9:7.2f} GFLOP  floor {f['floor_s']:.3f} s   "
                         f"ours/floor {f['ratio_to_floor']:.1f}")
        lines.append(f"bundled cold start: engine ready {b['ours']['cold_start']['engine_ready_s']:.1f} s, "
                     + ", ".join(f"page ({'preload' if c['preload'] else 'lazy'}) {c['page_ready_s']:.1f} s"
                                 for c in b.get("cold_start_page", [])))
    s = results.get("sd15")
    if s:
        for n, r in s["ratio"].items():
            lines.append(f"sd15 {n:>3} steps  ours {s['ours']['latency'][n]['p50']:8.2f} s   baseline "
                         f"{s['baseline']['latency'][n]['p50']:8.2f} s   ours/baseline {r:5.2f}   "
                         f"ours/floor {s['floor'][n]['ratio_to_floor']:.1f}  ({s['ours']['latency'][n]['method']})")
    return lines


def _command(argv: list[str]) -> str:
    """The command line as run, without the --note text (it is shown on its own)."""
    shown, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--note":
            skip = True
        elif not a.startswith("--note="):
            shown.append(a)
    return " ".join(["python -m customizer.bench", *shown])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.time()
    results: dict[str, Any] = {
        "schema": 1, "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": _command(sys.argv[1:] if argv is None else argv),
        "machine": machine.info(), "engine_optimisations": ENGINE_OPTIMISATIONS,
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    if args.note:
        results["note"] = args.note
    workdir = Path(tempfile.mkdtemp(prefix="customizer-bench-"))
    try:
        results["bundled"] = bundled_part(args, workdir)
        if args.with_sd15:
            results["sd15"] = sd15_part(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results["machine"]["load_average_end"] = list(os.getloadavg())
    results["wall_s"] = time.time() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    for line in summary_lines(results):
        print(line, file=sys.stderr)
    if args.report:
        from .report import write_report

        md, plot = write_report(results, args.markdown, args.plot)
        log(f"wrote {md}" + (f" and {plot}" if plot else ""))
    if args.json:
        print(json.dumps(results, indent=1))
    return 0
