"""results.json -> BENCHMARKS.md (tables) + one stage plot.

    python -m customizer.bench.report [bench/results.json] [--markdown BENCHMARKS.md] [--plot bench/stages.png]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from ..config import REPO_ROOT
from .plot import write_plot

# Why each ablation variant is or is not in the engine (the numbers beside it are the run's own).
VERDICTS = {
    "default": "stock diffusers: SDPA attention, contiguous tensors, peft's unfused LoRA branch",
    "channels_last": "not used: no steady gain on CPU, and it changes the float rounding",
    "classic_attention": "not used: diffusers' SDPA processors (the default) are as fast or faster",
    "threads_1": "a deployment setting, not code: one thread wins only when a neighbour takes the other core",
    "lora_off": "reference point: the cost of an active theme LoRA",
    "lora_fused": "used (one active theme): a themed step costs what an unthemed one does; the fused weights "
                  "are rebuilt from a pristine copy, so renders stay reproducible (float rounding differs from "
                  "peft's unfused branch: a few pixel levels vs stock diffusers)",
}


# What the numbers point at but this code does not do (yet), and why.
LEFT = [
    "- **Batched candidates**: done. The candidates of one design (n > 1) are rendered in one pipeline call "
    "(`Engine.render_batch`); each recipe records its batch (`batch: {seeds, index}`) and `reproduce` re-runs "
    "the whole batch, so it stays bit-exact. Left: batching selfies, whose likeness retries are sequential.",
    "- **CFG on fewer steps**: built (`guidance_end`, engine/guidance.py, tested with IP-Adapter, ControlNet, SDXL "
    "and batches) and timed above (about 0.85 of a selfie at 0.5), but on the bundled model every cut lowers "
    "framing and scene accuracy (*Guidance interval*), so it is a setting, not the default. Enough to reach the 2x "
    "bar only if quality is given up.",
    "- **A tiny VAE decoder**: needs weights that cannot be downloaded here (or training). On the bundled model "
    "decode is about 7% of a selfie; at SD1.5 size on a CPU the VAE decode alone is a quarter of a 4-step selfie.",
    "- **The 2x bar at equal steps**: what is left of a bundled selfie is the UNet (about 85%), several times the "
    "FLOP floor (above): small convolutions and 256-token attention on 2 threads, and per-module overhead. Tried "
    "by hand, not adopted: bf16 on an AVX512-BF16 CPU saves 5-11% of a UNet step and changes the pixels; "
    "torch.jit trace + freeze + optimize_for_inference about 10-20% per UNet step (noisy, on a shared CPU), but it "
    "bakes the fused theme weights, LoRA and IP-Adapter scales and batch size into the graph (a re-trace of "
    "several seconds on every theme, likeness or batch change) and changes the float rounding.",
    "- **Threads**: on a CPU shared with another job one torch thread beats two (see `threads_1`); on an idle 2-core "
    "machine two should win. A deployment setting (`OMP_NUM_THREADS`), not a code default.",
    "- **diffusers' own per-call overhead**: `Attention.forward` runs `inspect.signature` on every call and "
    "`pipeline._execution_device` walks every module (together about 5% of a bundled render in a profile); an "
    "upstream matter.",
    "- **torch.compile on CPU**: tried by hand on the bundled UNet: about 4 minutes to compile on these 2 cores for "
    "about 10% per step; not worth the cold start.",
    "- **OMP_WAIT_POLICY**: a deployment setting with opposite effects. On these 2 otherwise idle cores PASSIVE "
    "made plain diffusers' 50-step call about 3x slower (4.3 s vs 1.46 s per image, bench/steps_quality.py run "
    "with and without it); on a CPU shared with other processes the default spin-waiting made a training step "
    "6-20x slower (customizer/training/README.md), so the training stages and the character-LoRA process set "
    "PASSIVE and the app leaves the default.",
    "- **GPU (bf16/fp16, torch.compile or CUDA graphs, the H100 bar)**: no GPU was lent to this task; "
    "`--sd15-full` times real N-step calls with warm-up and repetitions and is the default on cuda.",
]


def _interval(settings: dict) -> str:
    """' (ours on the first k of n steps ...)' where our path runs a guidance interval (settings.guidance_end)."""
    from ..recipe import cfg_steps

    end = settings.get("guidance_end")
    keep = cfg_steps(int(settings["steps"]), end)
    if end is None or keep >= int(settings["steps"]):
        return ""
    return f" (ours on the first {keep} of {settings['steps']} steps only: guidance_end {end:g})"


def _interval_row(ba: dict) -> list[str]:
    iv = ba.get("interval")
    if not iv:
        return []
    return [_row(f"after, CFG on the first {iv['cfg_steps']} of {iv['steps']} steps (not the default)",
                 _s(iv["p50"]), _s(iv["p95"]))]


def _interval_note(ba: dict) -> str:
    iv = ba.get("interval")
    if not iv:
        return ""
    return (f" The guidance interval ({iv['guidance_end']:g}) takes {iv['over_after']:.2f} of *after*'s time and "
            f"changes the image by {iv['mean_pixel_diff_vs_after']:.1f} of 255 on average; what that costs in "
            "quality: *Guidance interval* below.")


def _s(x: float) -> str:
    return f"{x:.3f}" if x < 10 else f"{x:.1f}"


def _row(*cells: Any) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _bars(r: dict[str, Any]) -> list[str]:
    out = []
    b = r.get("bundled")
    if b:
        sel = b["ours"]["latency"]["selfie"]["p50"]
        out.append(f"- bundled selfie <= 0.5 s p50: **{'met' if sel <= 0.5 else 'not met'}** ({_s(sel)} s)")
        speed = 1 / b["ratio"]["selfie"]
        line = (f"- bundled selfie >= 2x faster than plain diffusers at our step count: "
                f"**{'met' if speed >= 2 else 'not met'}** ({speed:.2f}x)")
        if "ratio_default_call" in b:
            d = 1 / b["ratio_default_call"]["selfie"]
            line += (f"; than the default diffusers call ({b['default_call']['steps']} steps, "
                     f"`{b['default_call']['scheduler']}`): **{'met' if d >= 2 else 'not met'}** ({d:.2f}x)")
        out.append(line)
        pages = [c["page_ready_s"] for c in b.get("cold_start_page", []) if not c["preload"]]
        if pages:
            out.append(f"- app cold start to first ready page <= 10 s: **{'met' if pages[0] <= 10 else 'not met'}** "
                       f"({pages[0]:.1f} s)")
    s = r.get("sd15")
    gpu = s and s["device"]["device"] == "cuda"
    out.append("- SD1.5 512x512 4-step selfie <= 60 ms p50 on an H100 and >= 2x plain fp16: "
               + (f"p50 {_s(s['ours']['latency']['4']['p50'])} s, {1 / s['ratio']['4']:.2f}x" if gpu and "4" in
                  s["ratio"] else "**not measured** (no GPU in this run)"))
    return out


def load_steps(side_dir: Path) -> dict[str, Any]:
    """The step-count evidence kept beside results.json: steps-quality.json (bench/steps_quality.py) and
    eval-steps.json (python -m customizer.eval --steps N), the guidance-interval evidence guidance-quality.json
    (bench/steps_quality.py with sampler:steps:guidance_end configurations) and the guidance-scale evidence
    eval-guidance.json (python -m customizer.eval --guidance G); any may be missing."""
    out = {}
    for key, name in (("quality", "steps-quality.json"), ("eval", "eval-steps.json"),
                      ("guidance", "guidance-quality.json"), ("scale", "eval-guidance.json")):
        if (side_dir / name).is_file():
            out[key] = json.loads((side_dir / name).read_text())
    return out


def _steps_section(steps: dict[str, Any]) -> list[str]:
    if not steps:
        return []
    lines = ["## Steps: does quality hold with fewer?", "",
             "The bundled profile runs 8 DPM++ 2M steps. The measuring instruments (weak: README, *The bundled "
             "model*) score 6, 8 and 12 steps alike. DDPM at diffusers' default 50 steps scores a little higher on "
             "the attributes than any 6-12 step sampler below (7 heads x n images each; a difference of 0.04 is "
             "about 1.5 standard errors), the same on theme and scene.", ""]
    e = steps.get("eval")
    if e:
        keys = ("attribute_accuracy_mean", "theme_accuracy", "scene_accuracy", "expression_accuracy",
                "identity_same_mean", "verification_accuracy")
        lines += [f"`{e['command']}`" + (f" ({e['note']})" if e.get("note") else "") + ":", "",
                  _row("steps", *keys), _row(*["---"] * (len(keys) + 1))]
        lines += [_row(n, *[v[k] for k in keys]) for n, v in e["steps"].items()] + [""]
    q = steps.get("quality")
    if q:
        keys = ("attribute_mean", "theme", "scene", "framing", "expression", "seconds_per_image")
        lines += [f"`python -m customizer.bench.steps_quality`: plain diffusers on the same {q['n']} held-out "
                  "selfie prompts and seeds (no reference image), only the scheduler and the step count changed:",
                  "", _row("sampler", *keys), _row(*["---"] * (len(keys) + 1))]
        lines += [_row(name, *[v[k] for k in keys]) for name, v in q["configs"].items()] + [""]
    g = steps.get("guidance")
    if g:
        keys = ("cfg_steps", "attribute_mean", "theme", "scene", "framing", "expression")
        lines += ["### Guidance interval: CFG on the first steps only", "",
                  "`guidance_end` (spaces.yaml per profile, or the *Advanced* settings) runs classifier-free guidance "
                  "on the first fraction of the steps and the rest on the positive prompt alone, at half the UNet "
                  "batch (engine/guidance.py). Measured with `python -m customizer.bench.steps_quality` on the same "
                  f"{g['n']} held-out selfie prompts and seeds" + (f" ({g['note']})" if g.get("note") else "") + ":",
                  "", _row("configuration", *keys), _row(*["---"] * (len(keys) + 1))]
        lines += [_row(name, *[v[k] for k in keys]) for name, v in g["configs"].items()] + [
            "", "On the bundled model every cut costs prompt adherence the instruments can see: framing drops as soon "
            "as the last two steps lose CFG, scene from half the steps on; attributes and theme hold. Six steps with "
            "CFG on all of them cost what eight with a cut at 0.5 do and keep framing and scene. So the bundled "
            "profile keeps `guidance_end: 1.0` (every step): the interval is there for profiles and users that "
            "want it, not a default this evidence supports.", ""]
    c = steps.get("scale")
    if c:
        keys = ("attribute_accuracy_mean", "hair_length", "body_type", "eye_colour", "theme_accuracy",
                "scene_accuracy", "expression_accuracy", "verification_accuracy")
        lines += ["### Guidance scale", "", f"`{c['command']}`" + (f" ({c['note']})" if c.get("note") else "") + ":",
                  "", _row("guidance", *keys), _row(*["---"] * (len(keys) + 1))]
        lines += [_row(g, *[v[k] for k in keys]) for g, v in c["guidance"].items()] + [""]
        lines += [c["conclusion"], ""] if c.get("conclusion") else []
    return lines


def markdown(r: dict[str, Any], plot_rel: str | None, steps: dict[str, Any] | None = None) -> str:
    m = r["machine"]
    lines = ["# Benchmarks", "",
             "Generated by `python -m customizer.bench.report` from `bench/results.json`, which "
             "`python -m customizer.bench --json` writes (see README, *Benchmarks*). Timings are reported, never "
             "asserted by the tests.", ""]
    if r.get("note"):
        lines += [f"> {r['note']}", ""]
    lines += [f"Run {r['created']}: `{r['command']}` ({r['wall_s'] / 60:.1f} min). Machine: {m['cpu']}, "
              f"{m['usable_cores']} usable cores, torch {m['torch']}, diffusers {m['diffusers']}; load average "
              f"{m['load_average_start'][0]:.1f} at start, {m.get('load_average_end', [0])[0]:.1f} at the end.", ""]
    b = r.get("bundled")
    if b:
        st, w = b["settings"], b["weights"]
        lines += ["## Bundled profile", "",
                  f"Weights: **{w['source']}** ({w.get('note') or w.get('fingerprint', '')}). {st['size']}x{st['size']}"
                  f" px, {st['steps']} steps, guidance {st['guidance']}{_interval(st)}; ours `{st['scheduler']}`, "
                  "plain diffusers the "
                  f"folder's default `{st['baseline_scheduler']}`. Device: {b['ours']['device']['device']} "
                  f"{b['ours']['device']['dtype']}. Both paths render the same prompts, seeds and theme LoRA "
                  "(fantasy 0.6); every timed portrait and selfie has a new prompt. *Ours* is the whole Studio call "
                  "(render + PNG + SQLite); plain diffusers is the pipeline call alone. Candidates of 4: one batched "
                  "pipeline call on both sides (ours records the batch in each recipe, so each still reproduces "
                  "bit for bit).", "",
                  _row("seconds", "ours p50", "ours p95", "plain p50", "plain p95", "ours / plain"),
                  _row(*["---"] * 6)]
        for kind, label in (("portrait", "portrait"), ("selfie", "selfie"), ("candidates4", "candidates of 4")):
            o, p = b["ours"]["latency"][kind], b["baseline"]["latency"][kind]
            lines.append(_row(f"{label} (n={o['n']})", _s(o["p50"]), _s(o["p95"]), _s(p["p50"]), _s(p["p95"]),
                              f"{b['ratio'][kind]:.2f}"))
        d = b.get("default_call")
        if d:
            lines += ["", f"The default diffusers call (the same inputs, but the pipeline's default "
                      f"{d['steps']} steps of `{d['scheduler']}`), right after each plain call above:", "",
                      _row("seconds", "default call p50", "default call p95", "ours / default call"),
                      _row(*["---"] * 4)]
            for kind in d["latency"]:
                lines.append(_row(f"{kind} (n={d['latency'][kind]['n']})", _s(d["latency"][kind]["p50"]),
                                  _s(d["latency"][kind]["p95"]), f"{b['ratio_default_call'][kind]:.2f}"))
        lines += ["", "Median seconds per stage (denoise = UNet steps + scheduler + pipeline overhead):", "",
                  _row("stage", "portrait ours", "portrait plain", "selfie ours", "selfie plain"), _row(*["---"] * 5)]
        for stage in ("text_encode", "image_embed", "denoise", "decode", "store"):
            lines.append(_row(stage, *[_s(b[side]["stages"][kind].get(stage, 0.0)) if stage in
                                       b[side]["stages"][kind] else "-"
                                       for kind in ("portrait", "selfie") for side in ("ours", "baseline")]))
        lines += ["", f"![Latency per stage]({plot_rel})" if plot_rel else
                  "(stage plot not drawn: `pip install matplotlib`, then `python -m customizer.bench.report`)", ""]
        c, pc = b["ours"]["cold_start"], b["baseline"]["cold_start"]
        pages = ", ".join(f"{'with --preload' if x['preload'] else 'model loaded on first use'} "
                          f"{x['page_ready_s']:.1f} s" for x in b.get("cold_start_page", []))
        lines += [f"**Cold start** (fresh process): Studio ready {c['studio_ready_s']:.1f} s, engine loaded "
                  f"{c['engine_ready_s']:.1f} s (of which the model load {c['engine_load_s']:.1f} s, the rest "
                  f"Python + torch + diffusers imports), first portrait {c['first_portrait_s']:.1f} s; "
                  "plain diffusers: "
                  f"pipeline ready {pc['pipeline_ready_s']:.1f} s, first portrait {pc['first_portrait_s']:.1f} s. "
                  + (f"`python app.py` to an answering page: {pages}. " if pages else "")
                  + f"**Peak RSS**: ours {b['ours']['peak_rss_mb']:.0f} MB, plain diffusers "
                  f"{b['baseline']['peak_rss_mb']:.0f} MB.", ""]
        f = b["floor"]
        rate = f["matmul"]["flops_per_s"]
        lines += [f"**FLOP floor**: fp32 {f['matmul']['n']}x{f['matmul']['n']} matmul at {rate / 1e9:.1f} GFLOP/s "
                  f"({f['matmul']['threads']} threads). Portrait {f['portrait']['flops'] / 1e9:.2f} GFLOP -> floor "
                  f"{_s(f['portrait']['floor_s'])} s, ours {f['portrait']['ratio_to_floor']:.1f}x the floor; selfie "
                  f"{f['selfie']['flops'] / 1e9:.2f} GFLOP -> floor {_s(f['selfie']['floor_s'])} s, ours "
                  f"{f['selfie']['ratio_to_floor']:.1f}x the floor.", ""]
        ba = b.get("engine_before_after")
        if ba:
            lines += ["### This change's engine optimisations, before/after", "",
                      "One themed selfie recipe, interleaved in one process. *Before* is the engine as it was "
                      "(peft's unfused LoRA branch, set_adapters and the IP-Adapter scale re-applied on every "
                      "render, CFG on every step); *after* is the engine now, as a user's next selfie finds it "
                      "(theme already fused). "
                      "Both encode the prompt: a new selfie has a new prompt. In the engine now: "
                      + "; ".join(f"`{k}`: {v}" for k, v in r["engine_optimisations"].items()) + ".",
                      "", _row("engine render", "p50 s", "p95 s"), _row("---", "---", "---"),
                      _row("before", _s(ba["before"]["p50"]), _s(ba["before"]["p95"])),
                      _row("after", _s(ba["after"]["p50"]), _s(ba["after"]["p95"])),
                      *_interval_row(ba), "",
                      f"after / before = **{ba['after_over_before']:.3f}**. Same recipe rendered again after: "
                      f"identical pixels **{ba['reproducible']}**; largest pixel difference to *before* "
                      f"{ba['max_pixel_diff_vs_before']} of 255 (fused LoRA rounds differently).{_interval_note(ba)} "
                      "Prompt cache over "
                      f"the timed runs: {b['ours']['prompt_cache']['hits']} hits, "
                      f"{b['ours']['prompt_cache']['misses']} misses (hits = a prompt seen before).", ""]
        a = b.get("ablations")
        if a:
            lines += ["### Candidate optimisations (ablations)", "",
                      f"One UNet step of the bundled model (CFG batch, IP-Adapter on, theme LoRA active), "
                      f"{a['rounds']} interleaved rounds x {a['steps_per_round']} steps, {a['threads']} threads. Wall "
                      "clock is what a user waits; CPU time (all threads of the process) is the steadier figure on a "
                      "shared CPU. max |diff|: of the UNet output vs the default (0 = bit-identical).", "",
                      _row("variant", "wall s/step p50", "wall min", "wall vs default", "CPU vs default",
                           "max abs diff", "verdict"), _row(*["---"] * 7)]
            for name, v in a["variants"].items():
                lines.append(_row(name, _s(v["p50_s"]), _s(v["min_s"]), f"{v['vs_default']:.2f}",
                                  f"{v['cpu_vs_default']:.2f}", f"{v['max_abs_diff']:.1e}", VERDICTS.get(name, "")))
            bt, q = a["batch4"], a["fused_qkv"]
            lines += ["", f"- **Batching candidates** (4 images in one UNet call): {bt['vs_single']:.2f}x the CPU time "
                      f"per image of one at a time, but bit-identical to a single render: **{bt['bit_identical']}** "
                      f"(max diff {bt['max_abs_diff']:.1e}). Used for candidates: each recipe records its batch "
                      "(seeds, index) and 'reproduce from recipe' re-runs that batch, so it still matches bit for bit.",
                      f"- **Fused QKV** (`fuse_qkv_projections`, on a UNet without IP-Adapter/LoRA): "
                      f"{q['vs_unfused']:.2f}x the CPU time. Not used: it replaces the IP-Adapter attention processors "
                      "and bypasses the peft LoRA layers.", ""]
    s = r.get("sd15")
    if s:
        lines += ["## Stable Diffusion 1.5 geometry (random weights)", "",
                  f"{s['size']}x{s['size']}, guidance {s['guidance']}, IP-Adapter scale {s['ip_adapter_scale']}; "
                  f"device {s['device']['device']} {s['device']['dtype']}; ours `dpmpp_2m`, plain diffusers "
                  f"`{s['baseline']['scheduler']}`. Ours loads in {s['ours']['load_s']:.0f} s and embeds the "
                  f"reference once in {s['ours']['reference_embed_s']:.1f} s (at lock time, not per selfie).", "",
                  _row("selfie", "ours s", "plain s", "ours / plain", "GFLOP", "floor s", "ours / floor", "method"),
                  _row(*["---"] * 8)]
        for n, ratio in s["ratio"].items():
            fl = s["floor"][n]
            lines.append(_row(f"{n} steps", _s(s["ours"]["latency"][n]["p50"]), _s(s["baseline"]["latency"][n]["p50"]),
                              f"{ratio:.2f}", f"{fl['flops'] / 1e9:.0f}", _s(fl["floor_s"]),
                              f"{fl['ratio_to_floor']:.1f}", s["ours"]["latency"][n]["method"]))
        one_o, one_b = s["ours"]["one_step_stages"], s["baseline"]["one_step_stages"]
        lines += ["", "One measured 1-step selfie, seconds per stage: " + "; ".join(
            f"{k} ours {_s(one_o.get(k, 0))} / plain {_s(one_b.get(k, 0))}" for k in
            ("text_encode", "image_embed", "denoise", "decode")) + f". Matmul rate "
            f"{s['floor']['matmul']['flops_per_s'] / 1e9:.1f} GFLOP/s.", ""]
    lines += _steps_section(steps or {})
    lines += ["## Bars of issue 5", ""] + _bars(r) + ["", "## Left on the table", "", *LEFT, ""]
    return "\n".join(lines)


def write_report(results: dict[str, Any], md_path: Path, plot_path: Path) -> tuple[Path, Path | None]:
    """The plot needs matplotlib (not an app dependency); without it the tables are still written."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("bench report: matplotlib is not installed; writing the tables without the plot", file=sys.stderr)
        md_path.write_text(markdown(results, None, load_steps(md_path.parent / "bench")))
        return md_path, None
    write_plot(results, plot_path)
    md_path.write_text(markdown(results, os.path.relpath(plot_path, md_path.parent),
                                load_steps(md_path.parent / "bench")))
    return md_path, plot_path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m customizer.bench.report", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", type=Path, nargs="?", default=REPO_ROOT / "bench" / "results.json")
    ap.add_argument("--markdown", type=Path, default=REPO_ROOT / "BENCHMARKS.md")
    ap.add_argument("--plot", type=Path, default=REPO_ROOT / "bench" / "stages.png")
    args = ap.parse_args(argv)
    md, plot = write_report(json.loads(args.results.read_text()), args.markdown, args.plot)
    print(f"wrote {md}" + (f" and {plot}" if plot else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
