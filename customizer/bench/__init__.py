"""Speed benchmark: our engine path against plain diffusers on the same weights, and against the FLOP floor.

    python -m customizer.bench --json              # full run, JSON on stdout (bench/results.json kept too)
    python -m customizer.bench.report              # BENCHMARKS.md + bench/stages.png from bench/results.json

The parent process (cli.py) never imports torch: every measured path runs in a fresh child (worker.py), so cold
starts are real and each path's peak RSS is its own. Timings are reported, never asserted.
"""
