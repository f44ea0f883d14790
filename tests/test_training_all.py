"""The whole recipe runner (customizer.training.all) end to end on a tiny recipe: every stage's real CLI in a
subprocess, resume across invocations, and the assembled folder loads in the app's Engine."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from customizer.training import all as runner

FAST = ["--geometry", "tiny", "--batch", "2", "--log-every", "1", "--ckpt-every", "1", "--sample-every", "100"]
TINY = {"tiny": {
    "vae": ["--steps", "2", *FAST],
    "latents": ["--n", "8", "--batch", "4"],
    "base": ["--steps", "2", *FAST, "--sample-prompts", "2", "--save-dtype", "fp32"],
    "theme_latents": ["--n", "6", "--batch", "4"],
    "lora": ["--steps", "1", *FAST, "--sample-prompts", "1"],
    "themes": ["fantasy"],       # no instruments stage: tests/test_instruments.py covers that CLI
    # encoders pre-trained on their own, frozen in the base stage
    "text_encoder": ["--steps", "2", *FAST, "--captions", "40", "--held-out", "16"],
    "image_encoder": ["--steps", "1", *FAST, "--batch", "1", "--eval-people", "4"],
}}


def run_all(tmp_path, *extra):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(TINY))
    cmd = [sys.executable, "-m", "customizer.training.all", "--runs", str(tmp_path / "runs"), "--budget", "tiny",
           "--recipe", str(recipe), "--out", str(tmp_path / "bundled"), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_runner_trains_every_stage_resumes_and_assembles(tmp_path):
    first = run_all(tmp_path, "--stage-minutes", "1e-6")   # budget gone at once: vae stops after one step
    assert first.returncode == 3, first.stderr[-2000:]
    assert "run again to continue" in first.stderr and runner.checkpoint_step(tmp_path / "runs" / "vae") == 1

    second = run_all(tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "[done] vae" not in second.stderr                 # it was unfinished, so it continued
    runs = tmp_path / "runs"
    assert runner.checkpoint_step(runs / "vae") == 2 and runner.checkpoint_step(runs / "base") == 2
    base_start = json.loads((runs / "base" / "log.jsonl").read_text().splitlines()[0])
    assert base_start["frozen_text_encoder"] == str(runs / "text_encoder")
    assert base_start["frozen_image_encoder"] == str(runs / "image_encoder")
    assert json.loads((runs / "latents_fantasy.json").read_text())["theme"] == "fantasy"
    out = tmp_path / "bundled"
    assert (out / "loras" / "fantasy.safetensors").exists() and (out / "ip_adapter" / "ip_adapter.safetensors").exists()
    assert (out / "README.md").exists() and not (out / "instruments").exists()

    plan = runner.plan(runs, "tiny", out, tmp_path / "recipe.yaml")
    assert [s.name for s in plan if not s.done] == ["assemble"]  # everything else is finished and kept

    from customizer.config import _profile
    from customizer.engine.pipeline import Engine

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    from tiny_profiles import tiny_profile_yaml

    raw = tiny_profile_yaml(out, controlnet=None)
    raw["themes"] = {"fantasy": {"lora": f"{out}/loras/fantasy.safetensors", "adapter": "fantasy", "triggers": ""}}
    engine = Engine(_profile("assembled", raw, out))
    assert engine.has_ip_adapter and engine.theme_adapters == {"fantasy": "fantasy"}


def test_retrained_vae_invalidates_latents(tmp_path):
    vae = tmp_path / "vae"
    vae.mkdir()
    (vae / "config.json").write_text(json.dumps({"scaling_factor": 0.5}))
    lat = tmp_path / "latents.pt"
    lat.write_bytes(b"x")
    lat.with_suffix(".json").write_text(json.dumps({"scaling_factor": 0.5}))
    assert runner.latents_current(lat, vae)
    (vae / "config.json").write_text(json.dumps({"scaling_factor": 0.25}))
    assert not runner.latents_current(lat, vae)


def test_plan_trains_the_instruments_of_their_own_after_the_joint_ones(tmp_path):
    plan = runner.plan
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"t": {**TINY["tiny"], "instruments": ["--steps", "3"],
                                            "expression": ["--closeup-steps", "2", "--steps", "4"],
                                            "appearance": ["--portrait-steps", "1", "--steps", "1"]}}))
    stages = plan(tmp_path / "runs", "t", tmp_path / "out", recipe)
    names = [s.name for s in stages]
    # the instruments first: they read renderer ground truth only, and the learning curves need them
    assert names[:3] == ["instruments", "appearance", "expression"] and names[-1] == "assemble"
    assert stages[1].module == "train_appearance" and stages[1].args[2:] == ["--portrait-steps", "1", "--steps", "1"]
    expr = stages[2]
    assert expr.module == "train_expression" and not expr.done and not expr.resumable
    assert expr.args[:2] == ["--out", str(tmp_path / "runs" / "instruments")]
    # done once the folder's expression.json records both stages' steps (6 in all)
    inst = tmp_path / "runs" / "instruments"
    inst.mkdir(parents=True)
    (inst / "expression.json").write_text(json.dumps({"meta": {"stages": [{"steps": 2}, {"steps": 3}]}}))
    assert not plan(tmp_path / "runs", "t", tmp_path / "out", recipe)[2].done
    (inst / "expression.json").write_text(json.dumps({"meta": {"stages": [{"steps": 2}, {"steps": 4}]}}))
    assert plan(tmp_path / "runs", "t", tmp_path / "out", recipe)[2].done


def test_plan_freezes_pretrained_encoders_in_the_base_and_fills_the_instruments_folder(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"t": {**TINY["tiny"], "base": ["--steps", "2", "--curve-instruments",
                                                                     runner.INSTRUMENTS]}}))
    runs = tmp_path / "runs"
    stages = {s.name: s for s in runner.plan(runs, "t", tmp_path / "out", recipe)}
    names = list(stages)
    assert names.index("text_encoder") < names.index("base") and names.index("image_encoder") < names.index("base")
    base = stages["base"].args
    assert base[base.index("--text-encoder") + 1] == str(runs / "text_encoder")
    assert base[base.index("--image-encoder") + 1] == str(runs / "image_encoder")
    assert base[base.index("--curve-instruments") + 1] == str(runs / "instruments")
    assert "--text-encoder" in stages["assemble"].args and stages["text_encoder"].resumable


def test_plan_continues_the_encoder_with_look_heads_and_the_base_from_its_run(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"t": {**TINY["tiny"], "base": ["--steps", "2"],
                                            "image_encoder_look": ["--steps", "2", "--look-heads", "skin_tone"],
                                            "base_continued": ["--steps", "3", "--appearance-drop", "0.5"]}}))
    runs = tmp_path / "runs"
    stages = {s.name: s for s in runner.plan(runs, "t", tmp_path / "out", recipe)}
    names = list(stages)
    assert names.index("base") < names.index("image_encoder_look") < names.index("base_continued") \
        < names.index("lora fantasy")
    look = stages["image_encoder_look"].args
    assert look[look.index("--init-from") + 1] == str(runs / "image_encoder")
    assert look[look.index("--out") + 1] == str(runs / "image_encoder_look")
    cont = stages["base_continued"].args
    assert cont[cont.index("--init-from") + 1] == str(runs / "base")
    assert cont[cont.index("--out") + 1] == str(runs / "base_continued")
    assert cont[cont.index("--image-encoder") + 1] == str(runs / "image_encoder_look")
    first = stages["base"].args                          # the first base keeps the encoder it was trained on
    assert first[first.index("--image-encoder") + 1] == str(runs / "image_encoder")
    lora = stages["lora fantasy"].args
    assert lora[lora.index("--base") + 1] == str(runs / "base_continued")
    asm = stages["assemble"].args
    assert [asm[i + 1] for i, a in enumerate(asm) if a == "--base"] == [str(runs / "base"),
                                                                        str(runs / "base_continued")]
    assert asm[asm.index("--image-encoder-look") + 1] == str(runs / "image_encoder_look")


def test_plan_chains_every_base_continuation_in_recipe_order_and_adds_the_detail_maps(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"t": {**TINY["tiny"], "base": ["--steps", "2"],
                                            "base_continued": ["--steps", "3"],
                                            "base_look": ["--steps", "2", "--adapter-lr-mult", "5"],
                                            "base_detail": ["--steps", "2", "--detail-weight", "10"]}},
                                     sort_keys=False))
    runs = tmp_path / "runs"
    stages = {s.name: s for s in runner.plan(runs, "t", tmp_path / "out", recipe)}
    names = list(stages)
    assert names.index("latents") < names.index("latent masks") < names.index("base_continued") \
        < names.index("base_look") < names.index("base_detail") < names.index("lora fantasy")
    assert stages["latent masks"].args[:2] == ["--latents", str(runs / "latents.pt")]
    for key, before in (("base_continued", "base"), ("base_look", "base_continued"), ("base_detail", "base_look")):
        args = stages[key].args
        assert args[args.index("--init-from") + 1] == str(runs / before)
        assert args[args.index("--out") + 1] == str(runs / key)
    lora = stages["lora fantasy"].args
    assert lora[lora.index("--base") + 1] == str(runs / "base_detail")
    asm = stages["assemble"].args
    assert [asm[i + 1] for i, a in enumerate(asm) if a == "--base"] == [
        str(runs / k) for k in ("base", "base_continued", "base_look", "base_detail")]
    recipe.write_text(yaml.safe_dump({"t": {**TINY["tiny"], "base": ["--steps", "2"],
                                            "base_look": ["--steps", "2"]}}))
    assert "latent masks" not in {s.name for s in runner.plan(runs, "t", tmp_path / "out", recipe)}


def test_plan_continues_the_vae_and_makes_every_latent_file_with_the_continued_one(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"t": {**TINY["tiny"], "vae_continued": ["--steps", "2", "--colour-weight",
                                                                              "2", "--curve-instruments",
                                                                              runner.INSTRUMENTS]}}))
    runs = tmp_path / "runs"
    stages = {s.name: s for s in runner.plan(runs, "t", tmp_path / "out", recipe)}
    names = list(stages)
    assert names.index("vae") < names.index("vae_continued") < names.index("latents")
    cont = stages["vae_continued"]
    assert cont.module == "train_vae" and cont.resumable and not cont.done
    assert cont.args[cont.args.index("--init-from") + 1] == str(runs / "vae")
    assert cont.args[cont.args.index("--out") + 1] == str(runs / "vae_continued")
    assert cont.args[cont.args.index("--curve-instruments") + 1] == str(runs / "instruments")
    for name in ("latents", "base", "latents fantasy"):    # everything downstream reads the continued VAE
        args = stages[name].args
        assert args[args.index("--vae") + 1] == str(runs / "vae_continued"), name
    asm = stages["assemble"].args
    assert [asm[i + 1] for i, a in enumerate(asm) if a == "--vae"] == [str(runs / "vae"), str(runs / "vae_continued")]


def test_plan_chains_every_vae_continuation_in_recipe_order(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"t": {**TINY["tiny"], "vae_continued": ["--steps", "2"],
                                            "vae_region": ["--steps", "3", "--region-colour-weight", "2"]}},
                                     sort_keys=False))
    runs = tmp_path / "runs"
    stages = {s.name: s for s in runner.plan(runs, "t", tmp_path / "out", recipe)}
    names = list(stages)
    assert names.index("vae") < names.index("vae_continued") < names.index("vae_region") < names.index("latents")
    region = stages["vae_region"].args
    assert region[region.index("--init-from") + 1] == str(runs / "vae_continued")
    assert region[region.index("--out") + 1] == str(runs / "vae_region")
    for name in ("latents", "base", "latents fantasy"):    # everything downstream reads the last VAE
        args = stages[name].args
        assert args[args.index("--vae") + 1] == str(runs / "vae_region"), name
    asm = stages["assemble"].args
    assert [asm[i + 1] for i, a in enumerate(asm) if a == "--vae"] == [
        str(runs / k) for k in ("vae", "vae_continued", "vae_region")]


def test_plan_trains_the_upscaler_on_the_last_vae_and_assembles_it(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"t": {**TINY["tiny"], "vae_continued": ["--steps", "2"],
                                            "upscaler": ["--steps", "4", "--pairs", "8"]}}))
    runs = tmp_path / "runs"
    stages = {s.name: s for s in runner.plan(runs, "t", tmp_path / "out", recipe)}
    up = stages["upscaler"]
    assert up.module == "train_upscaler" and up.resumable and not up.done
    assert up.args[up.args.index("--vae") + 1] == str(runs / "vae_continued")
    assert up.args[up.args.index("--out") + 1] == str(runs / "upscaler")
    asm = stages["assemble"].args
    assert asm[asm.index("--upscaler") + 1] == str(runs / "upscaler")
    (runs / "upscaler").mkdir(parents=True)
    (runs / "upscaler" / "log.jsonl").write_text(json.dumps({"event": "final", "step": 4}) + "\n")
    assert {s.name: s for s in runner.plan(runs, "t", tmp_path / "out", recipe)}["upscaler"].done
    recipe.write_text(yaml.safe_dump({"t": TINY["tiny"]}))
    plan = runner.plan(runs, "t", tmp_path / "out", recipe)
    assert "upscaler" not in {s.name for s in plan} and "--upscaler" not in plan[-1].args
