"""Training recipe smoke test: every stage end to end for a few steps on the tiny geometry, resume continues from
the saved step, and the assembled base folder loads with StableDiffusionPipeline.from_pretrained and renders."""
from __future__ import annotations

import json

import pytest
import torch

from customizer.training import common, encode_corpus, train_base, train_vae
from customizer.training.corpus import is_held_out

FAST = ["--geometry", "tiny", "--batch", "2", "--log-every", "1", "--ckpt-every", "1", "--sample-every", "2"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: immune to OpenMP spin-waiting on a loaded machine; restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
    assert train_vae.main(["--out", str(vae_dir), "--steps", "3", "--resume", *FAST]) == 0
    assert ckpt_step(vae_dir) == 3 and steps_logged(vae_dir) == [1, 2, 3]
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
    for part in ("unet", "text_encoder"):
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
