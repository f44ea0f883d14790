"""Training recipe smoke test: every stage end to end for a few steps on the tiny geometry, resume continues from
the saved step, and the assembled base folder loads with StableDiffusionPipeline.from_pretrained and renders."""
from __future__ import annotations

import json

import pytest
import torch

from customizer.training import common, encode_corpus, train_base, train_vae
from customizer.training.corpus import is_held_out

FAST = ["--geometry", "tiny", "--batch", "2", "--log-every", "1", "--ckpt-every", "1", "--sample-every", "2"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: tiny models run on one thread


def steps_logged(run) -> list[int]:
    return [r["step"] for r in common.JsonlLog(run / common.LOG, echo=False).read() if "loss" in r]


def ckpt_step(run) -> int:
    return int(torch.load(run / common.CHECKPOINT, map_location="cpu", weights_only=False)["step"])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return tmp_path_factory.mktemp("training")


@pytest.fixture(scope="module")
def vae_dir(runs):
    out = runs / "vae"
    assert train_vae.main(["--out", str(out), "--steps", "2", *FAST]) == 0
    return out


def test_vae_trains_writes_grid_and_resumes(vae_dir):
    assert (vae_dir / "config.json").exists() and (vae_dir / "diffusion_pytorch_model.safetensors").exists()
    grid = vae_dir / "samples" / "recon_latest.png"
    assert grid.exists() and (vae_dir / "samples" / "recon_000002.png").exists()
    from PIL import Image
    w, h = Image.open(grid).size
    assert h > 2 * 32 and w > 4 * 32                     # originals and reconstructions, several columns
    assert ckpt_step(vae_dir) == 2 and steps_logged(vae_dir) == [1, 2]
    with pytest.raises(SystemExit):                       # never silently restart over an existing run
        train_vae.main(["--out", str(vae_dir), "--steps", "3", *FAST])
    with pytest.raises(SystemExit, match="another schedule"):   # more steps re-derive the LR schedule: say so
        train_vae.main(["--out", str(vae_dir), "--steps", "3", "--resume", *FAST])
    assert train_vae.main(["--out", str(vae_dir), "--steps", "3", "--resume", "--schedule-change", *FAST]) == 0
    assert ckpt_step(vae_dir) == 3 and steps_logged(vae_dir) == [1, 2, 3]
    log = common.JsonlLog(vae_dir / common.LOG, echo=False).read()
    assert [r["changed"] for r in log if r.get("event") == "schedule_change"] == [{"steps": [2, 3]}]
    cfg = json.loads((vae_dir / "config.json").read_text())
    assert cfg["_class_name"] == "AutoencoderKL" and 0 < cfg["scaling_factor"] < 100


@pytest.fixture(scope="module")
def latents(vae_dir, runs):
    out = runs / "latents.pt"
    assert encode_corpus.main(["--vae", str(vae_dir), "--n", "10", "--out", str(out), "--batch", "4"]) == 0
    return out


def test_encode_corpus(latents, vae_dir):
    data = torch.load(latents, map_location="cpu", weights_only=False)
    assert data["latents"].shape == (10, 4, 16, 16) and data["latents"].dtype == torch.float16
    assert data["latent_std"].shape == data["latents"].shape
    assert len(data["captions"]) == len(data["records"]) == 10
    assert all(not is_held_out(r["identity_seed"]) for r in data["records"])
    assert {r["kind"] for r in data["records"]} == {"portrait", "selfie"}
    assert len({r["identity_seed"] for r in data["records"]}) < 10    # several photos per person
    assert data["captions"][0] == data["records"][0]["caption"] and data["captions"][0].startswith("portrait")
    sf = json.loads((vae_dir / "config.json").read_text())["scaling_factor"]
    assert data["scaling_factor"] == pytest.approx(sf) and data["resolution"] == 32
    # the base corpus has no themes, and each person's reconstructed portrait is the IP-Adapter's reference
    assert data["theme"] == "none" and {r["attrs"]["theme"] for r in data["records"]} == {"none"}
    people = list(dict.fromkeys(r["identity_seed"] for r in data["records"]))
    assert data["references"].shape == (len(people), 3, 32, 32) and data["references"].dtype == torch.uint8
    assert data["ref_of"].tolist() == [people.index(r["identity_seed"]) for r in data["records"]]
    assert data["is_portrait"].tolist() == [r["kind"] == "portrait" for r in data["records"]]
    assert data["references"].float().std() > 5                       # a picture, not a blank


def test_theme_corpus_renders_the_theme_but_captions_without_it():
    from customizer.training.corpus import identity_records

    plain, fantasy, drawn = (identity_records(1234, theme=t) for t in ("none", "fantasy", None))
    assert [r.attrs["theme"] for r in fantasy] == ["fantasy"] * len(fantasy)
    assert [r.caption for r in fantasy] == [r.caption for r in plain]   # the LoRA, not a word, makes the theme
    assert [r.variation for r in fantasy] == [r.variation for r in drawn]


def test_base_trains_resumes_exactly_and_loads(latents, vae_dir, runs):
    def run(out, *extra):
        args = ["--latents", str(latents), "--vae", str(vae_dir), "--out", str(out), "--steps", "3", *FAST,
                "--sample-prompts", "2", *extra]
        assert train_base.main(args) == 0

    out, fresh = runs / "base", runs / "base-fresh"
    run(out, "--max-minutes", "1e-6")                     # budget spent after the first step: stops cleanly
    assert ckpt_step(out) == 1 and (out / "pipeline" / "model_index.json").exists()
    run(out, "--resume")
    assert ckpt_step(out) == 3 and steps_logged(out) == [1, 2, 3]
    assert (out / "samples" / "sample_000002.png").exists() and (out / "samples" / "sample_latest.png").exists()
    run(fresh)                                            # the same 3 steps without interruption
    a, b = (torch.load(d / common.CHECKPOINT, map_location="cpu", weights_only=False) for d in (out, fresh))
    for part in ("unet", "text_encoder", "image_encoder"):
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), f"resumed {part} differs"
    assert all(torch.equal(a["ema"]["shadow"][k], b["ema"]["shadow"][k]) for k in a["ema"]["shadow"])

    from diffusers import DDPMScheduler, StableDiffusionPipeline

    from customizer.engine import schedulers

    pipe = StableDiffusionPipeline.from_pretrained(out / "pipeline")   # plain load: fp32 compute on CPU
    assert isinstance(pipe.scheduler, DDPMScheduler) and pipe.scheduler.config.num_train_timesteps == 1000
    assert pipe.tokenizer.vocab_size == 49408
    pipe.scheduler = schedulers.make("dpmpp_2m", dict(pipe.scheduler.config))   # as the Engine does per recipe
    pipe.set_progress_bar_config(disable=True)
    image = pipe("portrait of an adult, red hair", negative_prompt=train_base.app_negative(), num_inference_steps=3,
                 guidance_scale=5.0, width=32, height=32, generator=torch.Generator().manual_seed(0)).images[0]
    assert image.size == (32, 32)


@pytest.fixture(scope="module")
def base_ip(latents, vae_dir, runs):
    out = runs / "base-ip"
    assert train_base.main(["--latents", str(latents), "--vae", str(vae_dir), "--out", str(out), "--steps", "2",
                            *FAST, "--sample-prompts", "2", "--save-dtype", "fp32"]) == 0
    return out


def test_ip_adapter_trained_with_the_base_loads_in_diffusers_and_conditions(base_ip, latents):
    out = base_ip
    ckpt = torch.load(out / common.CHECKPOINT, map_location="cpu", weights_only=False)
    assert ckpt["ip_adapter"] is True and any("to_k_ip" in k for k in ckpt["unet"])
    from PIL import Image

    grid = Image.open(out / "samples" / "sample_latest.png")
    assert grid.size[1] > 4 * 32                        # references + 2 seeds without + 2 seeds with the adapter

    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(out / "pipeline")
    assert pipe.unet.encoder_hid_proj is None           # the base UNet is saved without the adapter
    pipe.load_ip_adapter(out / "ip_adapter", subfolder="", weight_name="ip_adapter.safetensors",
                         image_encoder_folder="image_encoder")
    pipe.set_progress_bar_config(disable=True)
    data = torch.load(latents, map_location="cpu", weights_only=False)
    ref = Image.fromarray(data["references"][0].permute(1, 2, 0).numpy())

    def render(scale, image):
        pipe.set_ip_adapter_scale(scale)
        return pipe("selfie of an adult", num_inference_steps=2, guidance_scale=5.0, width=32, height=32,
                    ip_adapter_image=image, output_type="pt", generator=torch.Generator().manual_seed(0)).images

    # diffusers' own image path (feature extractor + image encoder) equals the training path's embedding
    from customizer.engine import ip_adapter as ipa

    embeds = pipe.prepare_ip_adapter_image_embeds(ip_adapter_image=[ref], ip_adapter_image_embeds=None,
                                                  device="cpu", num_images_per_prompt=1,
                                                  do_classifier_free_guidance=False)[0]
    enc = pipe.image_encoder
    assert torch.allclose(embeds, ipa.embed(enc, data["references"][:1], "cpu"), atol=1e-5)
    with_ref, without = render(1.0, ref), render(0.0, ref)
    assert (with_ref - without).abs().max() > 1e-4      # the reference changes the picture at scale 1


def test_a_batch_of_prompts_each_gets_its_own_reference(base_ip, latents):
    """curve._draw (and the sample grid) batch prompts with one reference each: image j of a batch must be what
    prompt j with reference j alone gives. The pipeline's own ip_adapter_image_embeds would hand every prompt all
    the batch's references at once (the same picture for every reference)."""
    import numpy as np
    from PIL import Image

    from customizer.training import curve

    out = base_ip
    pipe = curve._pipeline(out / "pipeline", out / "ip_adapter")
    data = torch.load(latents, map_location="cpu", weights_only=False)
    refs = [Image.fromarray(data["references"][i].permute(1, 2, 0).numpy()) for i in (0, 1)]
    assert not np.array_equal(np.asarray(refs[0]), np.asarray(refs[1]))
    prompt = ["selfie of an adult"] * 2
    g = torch.Generator().manual_seed(0)  # a 2-step adapter barely moves pixels: loud weights make each mark plain
    for proc in pipe.unet.attn_processors.values():
        for lin in (*getattr(proc, "to_k_ip", ()), *getattr(proc, "to_v_ip", ())):
            lin.weight.data = torch.randn(lin.weight.shape, generator=g)
    scale = 1.0
    batched = curve._draw(pipe, prompt, "", [3, 3], 32, scale, refs, batch=2)
    alone = [curve._draw(pipe, prompt[:1], "", [3], 32, scale, [r], batch=1)[0] for r in refs]
    px = [np.asarray(im, np.int16) for im in (*batched, *alone)]
    apart = np.abs(px[2] - px[3]).mean()
    assert apart > 1                                                                  # the references differ
    # each batched image is its own reference's (with all references mixed in, both batched images are the same
    # picture, and by the triangle inequality one of them is at least apart / 2 from its own)
    assert np.abs(px[0] - px[2]).mean() < apart / 4 and np.abs(px[1] - px[3]).mean() < apart / 4
    assert not hasattr(pipe, "__dict__") or "prepare_ip_adapter_image_embeds" not in pipe.__dict__   # restored



LORA_ARGS = ["--steps", "2", *FAST, "--sample-prompts", "2"]


@pytest.fixture(scope="module")
def lora_run(base_ip, vae_dir, runs):
    from customizer.training import train_lora

    themed = runs / "latents_fantasy.pt"
    assert encode_corpus.main(["--vae", str(vae_dir), "--n", "8", "--out", str(themed), "--batch", "4",
                               "--theme", "fantasy"]) == 0
    out = runs / "lora"
    assert train_lora.main(["--base", str(base_ip), "--latents", str(themed), "--theme", "fantasy",
                            "--out", str(out), *LORA_ARGS]) == 0
    return out


def test_theme_lora_trains_on_the_base_and_loads_with_its_strength(lora_run, base_ip, runs):
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import load_file

    from customizer.training import train_lora

    out = lora_run
    args = ["--base", str(base_ip), "--latents", str(runs / "latents_fantasy.pt"), "--theme", "fantasy",
            "--out", str(out), *LORA_ARGS]
    with pytest.raises(SystemExit):                      # a vintage LoRA from the fantasy corpus is refused
        train_lora.main([*args[:5], "vintage", "--out", str(runs / "lora-x"), *args[8:]])
    path = out / "fantasy.safetensors"
    keys = load_file(path).keys()
    assert any("conv1.lora_A" in k for k in keys) and any("to_q.lora_A" in k for k in keys)
    assert (out / "samples" / "strengths.png").exists() and ckpt_step(out) == 2

    pipe = StableDiffusionPipeline.from_pretrained(base_ip / "pipeline")
    pipe.set_progress_bar_config(disable=True)

    def render():
        return pipe("portrait of an adult", num_inference_steps=2, guidance_scale=5.0, width=32, height=32,
                    output_type="pt", generator=torch.Generator().manual_seed(0)).images

    base = render()
    pipe.load_lora_weights(out, weight_name="fantasy.safetensors", adapter_name="fantasy")
    pipe.set_adapters(["fantasy"], adapter_weights=[0.0])
    assert torch.allclose(render(), base, atol=1e-6)     # strength 0 = the base model
    pipe.set_adapters(["fantasy"], adapter_weights=[1.0])
    assert (render() - base).abs().max() > 1e-4          # strength 1 = the trained theme


def test_assembled_folder_runs_in_the_engine_with_reference_and_theme(base_ip, lora_run, vae_dir, runs):
    import sys
    from pathlib import Path

    from customizer.config import _profile
    from customizer.engine.pipeline import Engine
    from customizer.recipe import Recipe
    from customizer.training import assemble

    sys.path.insert(0, str(Path(__file__).parent))
    from tiny_profiles import tiny_profile_yaml

    out = runs / "bundled"
    facts = assemble.assemble(vae_dir, base_ip, [lora_run], out, max_mb=60, calibration_people=4)
    assert facts["themes"] == ["fantasy"] and facts["size_mb"] < 60
    # the image encoder calibrated as the app's likeness instrument, its threshold on the card
    cal = json.loads((out / "ip_adapter" / "image_encoder" / "likeness.json").read_text())
    assert cal == facts["likeness"] and cal["people"] == 4 and -1.0 <= cal["threshold"] <= 1.0
    assert set(facts["stages"]) == {"vae", "base + ip_adapter", "lora fantasy"}
    assert facts["stages"]["base + ip_adapter"]["steps_done"] == 2
    card = (out / "README.md").read_text()
    assert "| base + ip_adapter | cpu" in card and "fantasy" in card and "## Likeness" in card
    with pytest.raises(SystemExit):
        assemble.assemble(vae_dir, base_ip, [lora_run], runs / "too-big", max_mb=0.001)
    assert not (runs / "too-big").exists() and not (runs / "too-big.tmp").exists()

    raw = tiny_profile_yaml(out, controlnet=None)
    raw["themes"] = {"fantasy": {"lora": f"{out}/loras/fantasy.safetensors", "adapter": "fantasy", "triggers": "",
                                 "weight": 1.0}}
    engine = Engine(_profile("assembled", raw, out))
    common_fields = {"profile": "assembled", "model_id": str(out), "model_revision": "test"}
    ref, _ = engine.render(Recipe(kind="portrait", **common_fields, prompt="portrait of an adult", negative_prompt="",
                                  seed=1, steps=2, guidance=5.0, width=32, height=32, scheduler="dpmpp_2m",
                                  ip_adapter_scale=0.0, loras={}))
    embeds = engine.encode_reference(ref)
    shots = [engine.render(Recipe(kind="selfie", **common_fields, prompt="selfie of an adult", negative_prompt="",
                                  seed=2, steps=2, guidance=5.0, width=32, height=32, scheduler="dpmpp_2m",
                                  ip_adapter_scale=scale, loras=loras), reference_embeds=embeds)[0]
             for scale, loras in ((0.0, {}), (1.0, {}), (1.0, {"fantasy": 1.0}))]
    import numpy as np
    arrays = [np.asarray(s, dtype=np.int16) for s in shots]
    assert np.abs(arrays[0] - arrays[1]).max() > 0 and np.abs(arrays[1] - arrays[2]).max() > 0
