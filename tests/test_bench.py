"""The speed benchmark and the engine optimisations it keeps.

The benchmark runs for real (tiny geometry, --quick) and its JSON is checked for structure and internal
consistency; no timing is ever compared with a bar. The engine's speed-ups are checked for what must not change:
the pixels.
"""
from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from diffusers import StableDiffusionPipeline
from PIL import Image

from customizer.bench import stats, weights
from customizer.engine import stages
from customizer.engine.prompt_cache import PromptCache
from customizer.recipe import Recipe

REPO = Path(__file__).resolve().parent.parent
RUNS = 2


# ---- small pieces -------------------------------------------------------------------------------------------------
def test_percentiles_match_numpy_and_summary_is_ordered():
    rng = np.random.RandomState(0)
    for n in (1, 2, 5, 10, 11):
        xs = list(rng.rand(n) * 3)
        for q in (0, 50, 95, 100):
            assert math.isclose(stats.percentile(xs, q), float(np.percentile(xs, q)), rel_tol=1e-12)
    s = stats.summary([0.3, 0.1, 0.2, 0.5])
    assert s["n"] == 4 and s["min"] == 0.1 and s["max"] == 0.5 and math.isclose(s["p50"], 0.25)
    assert s["min"] <= s["p50"] <= s["p95"] <= s["max"]
    assert stats.median_stages([{"a": 1.0}, {"a": 3.0, "b": 2.0}, {"a": 2.0}]) == {"a": 2.0, "b": 0.0}
    with pytest.raises(ValueError):
        stats.percentile([], 50)


@pytest.mark.parametrize("argv", [["--guidance-end", "0.05"], ["--guidance-end", "1.5"], ["--steps", "0"],
                                  ["--steps", "101"]])
def test_bench_refuses_sampler_settings_the_app_would_refuse(argv, capsys):
    """Our path renders through Settings.resolve: a value outside settings.STEPS / GUIDANCE_END would pass the
    argument check and then fail every render, after minutes of cold starts."""
    from customizer import settings
    from customizer.bench import cli

    with pytest.raises(SystemExit) as exc:
        cli.main(["--quick", "--geometry", "tiny", "--random-weights", *argv])
    assert exc.value.code == 2
    lo, hi = settings.STEPS if argv[0] == "--steps" else settings.GUIDANCE_END
    assert f"{argv[0]} must be {lo:g} to {hi:g}" in capsys.readouterr().err


def test_stage_split_gives_the_rest_to_denoise():
    out = stages.split(1.0, {"text_encode": 0.1, "decode": 0.2, "control": 0.05})
    assert list(out)[:4] == list(stages.STAGES)
    assert out["image_embed"] == 0.0 and out["control"] == 0.05
    assert math.isclose(out["denoise"], 0.65) and math.isclose(sum(out.values()), 1.0)
    assert stages.split(0.1, {"decode": 0.3})["denoise"] == 0.0  # never negative


def test_stage_clock_times_only_while_recording():
    class Part:
        def work(self, x):
            return x * 2

    part, clock = Part(), stages.StageClock()
    clock.wrap(part, "work", "decode")
    assert part.work(2) == 4  # outside a recording: a plain pass-through
    sink: dict[str, float] = {}
    with clock.recording(sink):
        part.work(1)
        part.work(1)
    part.work(3)
    assert set(sink) == {"decode"} and sink["decode"] > 0


def test_prompt_cache_is_an_lru_and_caches_no_failure():
    cache, calls = PromptCache(maxsize=2), []

    def compute(v):
        return lambda: calls.append(v) or v

    assert cache.get("a", compute(1)) == 1 and cache.get("a", compute(9)) == 1
    cache.get("b", compute(2))
    cache.get("a", compute(9))          # a is now the most recent
    cache.get("c", compute(3))          # evicts b
    assert cache.get("b", compute(4)) == 4 and calls == [1, 2, 3, 4]
    with pytest.raises(RuntimeError):
        cache.get("d", lambda: (_ for _ in ()).throw(RuntimeError("encoder failed")))
    assert cache.get("d", compute(5)) == 5
    assert cache.info() == {"hits": 2, "misses": 5, "size": 2, "maxsize": 2}


def test_random_model_cache_is_keyed_by_geometry_and_themes():
    keys = {weights._key("tiny", ()), weights._key("tiny", ("fantasy",)), weights._key("tiny-sdxl", ())}
    assert len(keys) == 3 and weights._key("tiny", ()) == weights._key("tiny", ())
    sd15 = weights.geometry("sd15")  # the real-size benchmark geometry
    assert sd15["unet"]["block_out_channels"] == [320, 640, 1280, 1280]
    assert sd15["unet"]["cross_attention_dim"] == sd15["text_encoder"]["hidden_size"] == 768


# ---- the engine's speed-ups change no pixel ------------------------------------------------------------------------
def _recipe(engine, **changes) -> Recipe:
    p = engine.profile
    return Recipe(kind="portrait", profile=p.name, model_id=p.base_model, model_revision=engine.weights["base"],
                  prompt="portrait of a person with green hair", negative_prompt="blurry", seed=11,
                  scheduler="euler", steps=2, guidance=5.0, width=32, height=32).replace(**changes)


def test_prompt_cache_skips_the_encoder_and_keeps_pixels(tiny_engine, monkeypatch):
    e = tiny_engine
    r = _recipe(e, prompt="portrait of a person with green hair, bench cache test")
    runs = []  # text-encoder forward passes: two per encoded prompt pair (prompt, negative)
    forward = e.pipe.text_encoder.forward
    monkeypatch.setattr(e.pipe.text_encoder, "forward", lambda *a, **k: runs.append(1) or forward(*a, **k))
    first, timings = e.render(r)
    assert len(runs) == 2
    again, _ = e.render(r.replace())
    assert len(runs) == 2  # served from the cache
    assert first.tobytes() == again.tobytes()
    for key in ("generate", *stages.STAGES):
        assert timings[key] >= 0
    assert timings["denoise"] > 0 and sum(timings[s] for s in stages.STAGES) <= timings["generate"] * 1.0001
    e.prompts.clear()
    assert e.render(r)[0].tobytes() == first.tobytes()  # recomputed embeddings: the same image
    assert len(runs) == 4
    e.render(r.replace(negative_prompt="lowres"))  # another negative: another entry
    assert len(runs) == 6
    e.render(r.replace(guidance=1.0))  # no CFG: no negative half, its own entry
    assert len(runs) == 7


def test_adapter_state_is_applied_only_on_change_and_themes_still_switch(tiny_engine, monkeypatch):
    e = tiny_engine
    r = _recipe(e, kind="selfie", ip_adapter_scale=0.5)
    embeds = e.encode_reference(Image.new("RGB", (64, 64), (200, 30, 30)))
    sets, scales = [], []
    set_adapters, set_scale = e.pipe.set_adapters, e.pipe.set_ip_adapter_scale
    monkeypatch.setattr(e.pipe, "set_adapters", lambda *a, **k: sets.append(a) or set_adapters(*a, **k))
    monkeypatch.setattr(e.pipe, "set_ip_adapter_scale", lambda s: scales.append(s) or set_scale(s))
    plain = e.render(r, reference_embeds=embeds)[0]
    n_scales = len(scales)
    fantasy = e.render(r.replace(loras={"fantasy": 1.0}), reference_embeds=embeds)[0]
    fantasy_again = e.render(r.replace(loras={"fantasy": 1.0}), reference_embeds=embeds)[0]
    assert len(sets) == 1  # the second themed render found the theme already applied
    vintage = e.render(r.replace(loras={"vintage": 1.0}), reference_embeds=embeds)[0]
    assert len(sets) == 2
    assert fantasy.tobytes() == fantasy_again.tobytes()
    assert fantasy.tobytes() != vintage.tobytes() != plain.tobytes()
    assert e.render(r, reference_embeds=embeds)[0].tobytes() == plain.tobytes()  # theme off again, exactly
    assert len(scales) == n_scales  # the IP-Adapter scale never changed, so it was never re-set
    assert e.render(r.replace(ip_adapter_scale=0.9), reference_embeds=embeds)[0].tobytes() != plain.tobytes()
    assert scales[n_scales:] == [0.9]
    # forgetting the state (as after a failed call) re-applies it and gives the same image
    e._lora_state = e._ip_scale = None
    assert e.render(r.replace(loras={"fantasy": 1.0}), reference_embeds=embeds)[0].tobytes() == fantasy.tobytes()


def test_lora_fuser_matches_peft_branch_and_restores_exactly():
    """Fused weights give (to float rounding) what peft's unfused branch gives, linear and conv layers alike; restoring
    gives back the very base weights, so a later unthemed render is bit-identical to one that never saw a theme."""
    import torch
    from diffusers import UNet2DConditionModel
    from peft import LoraConfig

    from customizer.engine.architectures import geometry
    from customizer.engine.lora_fuse import LoraFuser

    torch.manual_seed(0)
    unet = UNet2DConditionModel(in_channels=4, out_channels=4, **geometry("tiny")["unet"]).eval()
    for name, seed in (("a", 1), ("b", 2)):
        torch.manual_seed(seed)
        unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_v", "conv1", "conv2"],
                                    init_lora_weights=False), adapter_name=name)
    x, enc = torch.randn(2, 4, 16, 16), torch.randn(2, 77, 32)

    def out():
        with torch.inference_mode():
            return unet(x, 10, encoder_hidden_states=enc).sample

    unet.disable_adapters()
    plain = out()
    fuser = LoraFuser(unet)
    assert any(isinstance(m.get_base_layer(), torch.nn.Conv2d) for m in fuser.layers)
    for name in ("a", "b", "a"):
        fuser.restore()  # the reference below is peft's branch over the base weights
        unet.enable_adapters()
        unet.set_adapters([name], weights=[0.7])
        branch = out()
        assert (branch - plain).abs().max() > 1e-3  # the LoRA does something
        fuser.fuse(name, 0.7)
        unet.disable_adapters()
        assert torch.allclose(out(), branch, atol=1e-5)
    fused_a = out()
    fuser.restore()
    assert torch.equal(out(), plain)
    unet.enable_adapters()
    unet.set_adapters(["a"], weights=[0.7])
    fuser.fuse("a", 0.7)
    unet.disable_adapters()
    assert torch.equal(out(), fused_a)  # the same fused state, whatever came before


# ---- the benchmark itself ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    cmd = [sys.executable, "-m", "customizer.bench", "--json", "--quick", "--geometry", "tiny", "--steps", "2",
           "--runs", str(RUNS), "--warmup", "1", "--ablation-rounds", "1", "--sd15", "--sd15-geometry", "tiny",
           "--sd15-steps", "1,3", "--cache-dir", str(tmp / "cache"), "--out", str(tmp / "results.json"),
           "--report", "--markdown", str(tmp / "BENCHMARKS.md"), "--plot", str(tmp / "plot" / "stages.png"),
           "--threads", "1"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout), tmp, proc.stderr


def _check_summary(s: dict, n: int) -> None:
    assert s["n"] == n
    assert 0 < s["min"] <= s["p50"] <= s["p95"] <= s["max"]
    assert s["min"] <= s["mean"] <= s["max"]


def test_bench_json_structure_and_consistency(bench):
    r, tmp, _ = bench
    assert json.loads((tmp / "results.json").read_text()) == r  # --json prints what it keeps
    assert r["schema"] == 1 and r["machine"]["cores"] >= 1 and r["options"]["runs"] == RUNS
    b = r["bundled"]
    assert b["weights"]["source"] == "random" and b["weights"]["geometry"] == "tiny"
    assert Path(b["weights"]["path"]).parent == tmp / "cache"
    for side in ("ours", "baseline"):
        for kind in ("portrait", "selfie"):
            _check_summary(b[side]["latency"][kind], RUNS)
            st = b[side]["stages"][kind]
            assert set(stages.STAGES) <= set(st) and st["denoise"] > 0 and min(st.values()) >= 0
        _check_summary(b[side]["latency"]["candidates4"], 1)
        assert b[side]["peak_rss_mb"] > 100 and b[side]["device"]["device"] == "cpu"
    for kind, ratio in b["ratio"].items():
        assert math.isclose(ratio, b["ours"]["latency"][kind]["p50"] / b["baseline"]["latency"][kind]["p50"])
    # the baseline as the issue defines it: a call that leaves num_inference_steps at diffusers' default
    d = b["default_call"]
    assert d["steps"] == inspect.signature(StableDiffusionPipeline.__call__).parameters["num_inference_steps"].default
    assert d["steps"] != r["bundled"]["settings"]["steps"] and d["scheduler"] == b["settings"]["baseline_scheduler"]
    for kind in ("portrait", "selfie"):
        _check_summary(d["latency"][kind], RUNS)
        assert math.isclose(b["ratio_default_call"][kind],
                            b["ours"]["latency"][kind]["p50"] / d["latency"][kind]["p50"])
    assert b["ours"]["stages"]["selfie"]["store"] >= 0  # ours is the whole Studio call
    # the baseline recomputes the reference embedding on every selfie; ours reads the cached one
    assert b["baseline"]["stages"]["selfie"]["image_embed"] > 0
    c = b["ours"]["cold_start"]
    assert 0 < c["python_to_entry_s"] <= c["studio_ready_s"] < c["engine_ready_s"] < c["first_portrait_s"]
    assert 0 < c["engine_load_s"] < c["engine_ready_s"]
    pc = b["baseline"]["cold_start"]
    assert 0 < pc["pipeline_ready_s"] < pc["first_portrait_s"]
    assert [p["preload"] for p in b["cold_start_page"]] == [False] and b["cold_start_page"][0]["page_ready_s"] > 0
    # every timed portrait and selfie has a new prompt (the 4 candidates of a design are one batched call now,
    # encoding their shared prompt once), so the cache missed at least once per timed run
    pc = b["ours"]["prompt_cache"]
    assert pc["misses"] >= 2 * RUNS and 0 < pc["size"] <= pc["maxsize"]
    ba = b["engine_before_after"]
    assert ba["reproducible"] is True and ba["before"]["n"] == ba["after"]["n"] == ba["interval"]["n"] == RUNS
    assert ba["fused_lora"] is True and ba["max_pixel_diff_vs_before"] >= 0
    # the profile guides every step; the interval probe (CFG on the first half) is timed beside it and shows
    assert b["settings"]["guidance_end"] == 1.0
    iv = ba["interval"]
    assert (iv["guidance_end"], iv["cfg_steps"], iv["steps"]) == (0.5, 1, 2) and iv["mean_pixel_diff_vs_after"] > 0
    assert math.isclose(iv["over_after"], iv["p50"] / ba["after"]["p50"])


def test_bench_floor_and_flops(bench):
    r, _, _ = bench
    f = r["bundled"]["floor"]
    rate = f["matmul"]["flops_per_s"]
    assert rate > 1e8 and math.isclose(rate, 2 * f["matmul"]["n"] ** 3 / f["matmul"]["best_s"])
    for kind in ("portrait", "selfie"):
        k = f[kind]
        assert k["flops"] > 0 and math.isclose(k["floor_s"], k["flops"] / rate)
        assert math.isclose(k["ratio_to_floor"], r["bundled"]["ours"]["latency"][kind]["p50"] / k["floor_s"])
        assert 0 < k["per_module"]["UNet2DConditionModel"] < k["flops"]
        assert "CLIPVisionModelWithProjection" not in k["per_module"]  # no image encoder in our renders
    # a selfie's IP-Adapter attention is real work; at a portrait's scale 0 diffusers skips it
    assert f["selfie"]["per_module"]["UNet2DConditionModel"] > f["portrait"]["per_module"]["UNet2DConditionModel"]


def test_bench_ablations(bench):
    a = bench[0]["bundled"]["ablations"]
    v = a["variants"]
    assert {"default", "channels_last", "classic_attention", "lora_off", "lora_fused"} <= set(v)
    assert v["default"]["vs_default"] == 1.0 and v["default"]["max_abs_diff"] == 0.0
    assert v["lora_off"]["max_abs_diff"] > 1e-3  # the theme LoRA really is active in the default variant
    for x in v.values():
        assert x["p50_s"] > 0 and x["min_s"] <= x["p50_s"] and x["cpu_p50_s"] > 0
        assert math.isclose(x["vs_default"], x["p50_s"] / v["default"]["p50_s"])
        assert math.isclose(x["cpu_vs_default"], x["cpu_p50_s"] / v["default"]["cpu_p50_s"])
    b4 = a["batch4"]
    assert isinstance(b4["bit_identical"], bool) and b4["per_image_batched_cpu_s"] > 0
    assert math.isclose(b4["vs_single"], b4["per_image_batched_cpu_s"] / b4["per_image_single_cpu_s"])
    assert a["fused_qkv"]["fused_cpu_s"] > 0 and a["fused_qkv"]["unfused_cpu_s"] > 0


def test_bench_sd15_part_composes_consistently(bench):
    s = bench[0]["sd15"]
    assert s["weights"]["geometry"] == "tiny" and s["full"] is False and s["device"]["device"] == "cpu"
    assert set(s["ratio"]) == {"1", "3"}
    for side in ("ours", "baseline"):
        lat, one = s[side]["latency"], s[side]["one_step_stages"]
        assert lat["1"]["method"].startswith("composed")
        assert math.isclose(lat["3"]["p50"] - lat["1"]["p50"], 2 * one["denoise"], rel_tol=1e-9)
    assert "CLIPVisionModelWithProjection" in s["baseline"]["per_module_one_step"]
    assert "CLIPVisionModelWithProjection" not in s["ours"]["per_module_one_step"]
    unet = s["ours"]["per_module_one_step"]["UNet2DConditionModel"]
    assert s["floor"]["3"]["flops"] == s["floor"]["1"]["flops"] + 2 * unet
    for n in ("1", "3"):
        assert math.isclose(s["ratio"][n], s["ours"]["latency"][n]["p50"] / s["baseline"]["latency"][n]["p50"])


def test_bench_report_and_plot(bench):
    r, tmp, stderr = bench
    md = (tmp / "BENCHMARKS.md").read_text()
    assert "ours / plain" in md and "## Stable Diffusion 1.5 geometry" in md and "## Bars of issue 5" in md
    assert f"{r['bundled']['ratio']['selfie']:.2f}" in md
    assert "ours/baseline" in stderr and "ours/default" in stderr  # the summary printed at the terminal
    assert f"than the default diffusers call ({r['bundled']['default_call']['steps']} steps" in md
    try:
        import matplotlib  # noqa: F401  (the plot's only dependency; not one of the app's)
    except ImportError:
        assert "pip install matplotlib" in md and not (tmp / "plot" / "stages.png").exists()
        return
    assert "![Latency per stage](plot/stages.png)" in md
    with Image.open(tmp / "plot" / "stages.png") as im:
        assert im.format == "PNG" and im.width > 400 and im.height > 300
        assert np.asarray(im.convert("L")).std() > 10  # bars drawn, not a blank canvas


# ---- quality against steps (bench/steps_quality.py) ---------------------------------------------------------------
def test_steps_quality_scores_each_sampler_on_the_same_prompts():
    from customizer.bench import steps_quality

    folder = REPO / "assets" / "bundled"
    r = steps_quality.measure(folder, [("default", 2, 1.0), ("dpmpp_2m", 2, 1.0), ("dpmpp_2m", 3, 1.0),
                                       ("dpmpp_2m", 3, 0.5)], n=2, guidance=5.0, size=128)
    assert r["n"] == 2 and list(r["configs"]) == ["DDPMScheduler@2", "DPMSolverMultistepScheduler@2",
                                                   "DPMSolverMultistepScheduler@3",
                                                   "DPMSolverMultistepScheduler@3 cfg 0.5"]
    assert [c["cfg_steps"] for c in r["configs"].values()] == [2, 2, 3, 2]
    for c in r["configs"].values():
        assert set(c) == {"sampler", "steps", "guidance_end", "cfg_steps", "attribute_mean", *steps_quality.SHOT,
                          "seconds_per_image"}
        assert c["seconds_per_image"] > 0
        assert all(0 <= c[k] <= 1 for k in ("attribute_mean", *steps_quality.SHOT))
        # n = 2: every accuracy is a count out of 2 (the attribute mean out of 14)
        assert all(c[k] * 2 == round(c[k] * 2) for k in steps_quality.SHOT)
    # the same prompts as the eval's held-out characters would get, never a training identity
    assert [p["seed"] for p in steps_quality.prompts(2, 5.0, 128)] == [1000, 1001]


def test_steps_quality_config_parsing():
    from customizer.bench.steps_quality import parse_configs

    assert parse_configs("default:50, dpmpp_2m:8, dpmpp_2m:8:0.5") == [("default", 50, 1.0), ("dpmpp_2m", 8, 1.0),
                                                                        ("dpmpp_2m", 8, 0.5)]
    for bad in ("dpmpp_2m", "dpmpp_2m:0", ":8", "x:eight", "x:8:0", "x:8:1.5", "x:8:half", "x:8:0.5:1"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_configs(bad)


def test_report_steps_section_reads_the_files_beside_the_results(bench, tmp_path):
    from customizer.bench import report

    r = bench[0]
    assert report.load_steps(tmp_path) == {} and "## Steps" not in report.markdown(r, None, {})
    (tmp_path / "eval-steps.json").write_text(json.dumps({"command": "python -m customizer.eval --steps N", "steps": {
        n: {"attribute_accuracy_mean": a, "theme_accuracy": 0.7, "scene_accuracy": 0.9, "expression_accuracy": 0.1,
            "identity_same_mean": 0.4, "verification_accuracy": 0.5} for n, a in (("12", 0.28), ("8", 0.27))}}))
    steps = report.load_steps(tmp_path)
    assert set(steps) == {"eval"}  # steps-quality.json is missing: that part is left out
    md = report.markdown(r, None, steps)
    assert "## Steps: does quality hold with fewer?" in md
    assert "| 12 | 0.28 | 0.7 |" in md and "| 8 | 0.27 | 0.7 |" in md
    assert "### Guidance interval" not in md
    (tmp_path / "guidance-quality.json").write_text(json.dumps({"n": 3, "configs": {"X@8 cfg 0.5": {
        "cfg_steps": 4, "attribute_mean": 0.16, "theme": 0.73, "scene": 0.9, "framing": 0.62, "expression": 0.07}}}))
    md = report.markdown(r, None, report.load_steps(tmp_path))
    assert "### Guidance interval" in md and "| X@8 cfg 0.5 | 4 | 0.16 | 0.73 | 0.9 | 0.62 | 0.07 |" in md
    assert md.index("## Steps") < md.index("## Bars of issue 5")
    assert "### Guidance scale" not in md
    keys = ("attribute_accuracy_mean", "hair_length", "body_type", "eye_colour", "theme_accuracy", "scene_accuracy",
            "expression_accuracy", "verification_accuracy")
    (tmp_path / "eval-guidance.json").write_text(json.dumps({
        "command": "python -m customizer.eval --guidance G", "conclusion": "keep 5.0",
        "guidance": {"5.0": dict(zip(keys, (0.74, 0.53, 0.53, 0.58, 0.75, 0.92, 0.25, 0.83)))}}))
    md = report.markdown(r, None, report.load_steps(tmp_path))
    assert "### Guidance scale" in md and "| 5.0 | 0.74 | 0.53 | 0.53 | 0.58 | 0.75 | 0.92 | 0.25 | 0.83 |" in md
    assert "keep 5.0" in md
