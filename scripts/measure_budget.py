"""Measure a profile's seconds per megapixel-step, the figure its compute budget is built on (spaces.yaml `budget:`,
customizer/budget.py).

    python scripts/measure_budget.py --profile bundled --sizes 128,192,256 --steps 8,16 --images 1,4
    python scripts/measure_budget.py --config spaces.yaml --profile sd15 --sizes 512,768 --steps 10 --images 1

Each configuration is a real design request (Studio.design: prompt, pipeline call, decode, PNG, store) on a
throw-away database, after one warm-up; it is timed --repeats times and the median kept. Prints one JSON report:
per configuration the seconds, the megapixel-steps and their ratio; `seconds_per_unit` is the largest ratio among
them (small requests carry fixed costs, so it over-estimates large ones rather than letting them through), and a
least-squares line (fixed seconds + seconds per unit) for the record. Measure on the machine that will serve.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as app.py: spin-waiting threads crawl on a shared host
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=REPO / "spaces.yaml")
    ap.add_argument("--profile", default=None)
    ap.add_argument("--sizes", default="128,256", help="square sides, comma separated")
    ap.add_argument("--steps", default="8", help="step counts, comma separated")
    ap.add_argument("--images", default="1,4", help="images per request (candidates), comma separated")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--json", type=Path, help="write the report here too")
    args = ap.parse_args(argv)

    from customizer.budget import units
    from customizer.config import load_config
    from customizer.engine.pipeline import Engine
    from customizer.service import Studio
    from customizer.store import Store

    config = load_config(args.config)
    profile = dataclasses.replace(config.profile(args.profile), budget=None)  # measure, never refuse
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    sizes = [int(x) for x in args.sizes.split(",")]
    steps_list = [int(x) for x in args.steps.split(",")]
    images_list = [int(x) for x in args.images.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "m.db", Path(tmp) / "data") as store:
        studio = Studio(config, profile, store, engine_factory=Engine)
        t0 = time.perf_counter()
        studio.design({}, seed=0, n=1)  # loads the model, warms the caches
        load = time.perf_counter() - t0
        for size in sizes:
            for steps in steps_list:
                for n in images_list:
                    adv = {"width": size, "height": size, "steps": steps}
                    studio.design({}, seed=1, n=n, advanced=adv)  # warm-up of this shape
                    times = []
                    for r in range(args.repeats):
                        t = time.perf_counter()
                        studio.design({}, seed=2 + r, n=n, advanced=adv)
                        times.append(time.perf_counter() - t)
                    u = units(size, size, steps, n)
                    sec = statistics.median(times)
                    rows.append({"size": size, "steps": steps, "images": n, "units": round(u, 4),
                                 "seconds": round(sec, 3), "seconds_per_unit": round(sec / u, 3)})
                    print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    xs, ys = [r["units"] for r in rows], [r["seconds"] for r in rows]
    fitted = None
    if len(rows) >= 2 and len(set(xs)) > 1:
        mx, my = statistics.fmean(xs), statistics.fmean(ys)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
        fitted = {"fixed_seconds": round(my - slope * mx, 3), "seconds_per_unit": round(slope, 3)}
    report = {"profile": profile.name, "model": profile.base_model.rsplit("/", 1)[-1], "load_seconds": round(load, 2),
              "rows": rows, "seconds_per_unit": max(r["seconds_per_unit"] for r in rows), "linear_fit": fitted,
              "machine": {"cpus": os.cpu_count(), "loadavg_1m": round(os.getloadavg()[0], 2)},
              "when": time.strftime("%Y-%m-%d %H:%M")}
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
