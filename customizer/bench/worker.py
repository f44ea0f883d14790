"""One measured path in a fresh process: `python -m customizer.bench.worker KIND JOB.json OUT.json T0`.

T0 is the parent's clock just before it started this process, so cold starts include Python's own start-up.
"""
from __future__ import annotations

import json
import os
import sys
import time


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main(argv: list[str]) -> int:
    kind, job_path, out_path, t0 = argv[0], argv[1], argv[2], float(argv[3])
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # random or bundled weights only: never the hub
    with open(job_path) as f:
        job = json.load(f)
    if kind == "ours_cold":
        from .cold import ours as run
    elif kind == "plain_cold":
        from .cold import plain as run
    elif kind == "compare":
        from .compare import run
    elif kind == "sd15":
        from .sd15 import run
    else:
        raise SystemExit(f"unknown bench job {kind!r}")
    result = run(job, t0, log)
    with open(out_path, "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
