"""The bundled model's second design on the tiny geometry: encoders pre-trained on their own and frozen, a UNet
step on precomputed text states and reference embeddings, the VAE's detail-weighted loss and learning curve, the
schedule check on resume, and the VAE round-trip ceiling."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from customizer.training import common, encode_corpus, train_base, train_vae

FAST = ["--geometry", "tiny", "--batch", "2", "--log-every", "1", "--ckpt-every", "1", "--sample-every", "2"]
INSTRUMENTS = "assets/bundled/instruments"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def log_events(run, event):
    return [r for r in common.JsonlLog(run / common.LOG, echo=False).read() if r.get("event") == event]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return tmp_path_factory.mktemp("second-design")


@pytest.fixture(scope="module")
def vae_dir(runs):
    out = runs / "vae"
    assert train_vae.main(["--out", str(out), "--steps", "2", *FAST, "--detail-weight", "10",
                           "--region-colour-weight", "1", "--curve-instruments", INSTRUMENTS,
                           "--curve-characters", "2"]) == 0
    return out


@pytest.fixture(scope="module")
def latents(vae_dir, runs):
    out = runs / "latents.pt"
    assert encode_corpus.main(["--vae", str(vae_dir), "--n", "10", "--out", str(out), "--batch", "4"]) == 0
    return out


@pytest.fixture(scope="module")
def text_encoder_run(runs):
    from customizer.training import train_text_encoder

    out = runs / "text_encoder"
    assert train_text_encoder.main(["--out", str(out), "--steps", "3", *FAST, "--captions", "60",
                                    "--held-out", "16"]) == 0
    return out


@pytest.fixture(scope="module")
def image_encoder_run(runs):
    from customizer.training import train_image_encoder

    out = runs / "image_encoder"
    assert train_image_encoder.main(["--out", str(out), "--steps", "2", *FAST, "--batch", "1", "--workers", "0",
                                     "--eval-people", "4", "--instruments", INSTRUMENTS]) == 0
    return out


def test_detail_mask_marks_the_eyes_and_mouth_only():
    from customizer.training.corpus import PORTRAIT, Record
    from customizer.training.detail_mask import detail_mask, detail_masks
    from customizer.training.render import Variation, default_attrs

    rec = Record(0, 1234, default_attrs(), Variation.sample(5, **PORTRAIT), "portrait", "")
    mask = detail_mask(rec, 128)
    assert mask.shape == (128, 128) and set(np.unique(mask)) == {0.0, 1.0}
    irises, expression = detail_masks(rec, 128)
    assert np.array_equal(np.maximum(irises, expression), mask)    # the union is the single mask
    assert 0 < irises.sum() < expression.sum()                      # the irises are a few pixels of the face
    assert 0.005 < mask.mean() < 0.1                     # small marks, not the picture
    rows = np.nonzero(mask.any(axis=1))[0]
    assert 30 < rows.mean() < 100                         # on the face of a close-up, not the background corners


def test_vae_detail_weight_and_learning_curve_are_logged(vae_dir):
    start = log_events(vae_dir, "start")[0]
    assert start["detail_weight"] == 10.0 and start["region_colour_weight"] == 1.0
    steps = [r for r in common.JsonlLog(vae_dir / common.LOG, echo=False).read() if "loss" in r]
    assert all(0 <= r["detail_l1"] and 0 <= r["region_colour"] for r in steps)
    curve = log_events(vae_dir, "curve")
    assert [c["step"] for c in curve] == [0, 2]
    for c in curve:
        assert {"eye_colour", "mean", "expression_accuracy", "verification_accuracy"} <= set(c["roundtrip"])
        assert c["min_ratio"] == min(v for v in c["ratio"].values() if v is not None)


def test_region_colour_prices_the_mean_colour_of_each_mask_wherever_it_lands():
    x = torch.zeros(1, 3, 8, 8)
    x[0, :, 2, 2] = 1.0                                        # a one-pixel "iris" at (2, 2)
    moved = torch.zeros(1, 3, 8, 8)
    moved[0, :, 2, 3] = 1.0                                    # the same colour one pixel over
    grey = torch.full((1, 3, 8, 8), 0.0)
    masks = torch.zeros(1, 2, 8, 8)
    masks[0, 0, 1:4, 1:5] = 1                                  # the region around it; the second mask is empty
    assert train_vae.region_colour_l1(x, x, masks) == 0
    assert train_vae.region_colour_l1(moved, x, masks) == 0    # a per-pixel L1 would charge this twice
    assert (moved - x).abs().sum() > 0
    lost = train_vae.region_colour_l1(grey, x, masks)          # the colour gone: 1 / 12 of the region, per channel
    assert float(lost) == pytest.approx(1 / 12)


def test_vae_warm_start_copies_every_tensor_of_the_same_shape(vae_dir, tmp_path):
    from diffusers import AutoencoderKL

    from customizer.engine.architectures import geometry

    geo = geometry("tiny")
    wider = AutoencoderKL(in_channels=3, out_channels=3, **{**geo["vae"], "latent_channels": 8})
    copied = train_vae.warm_start(wider, vae_dir)
    src = AutoencoderKL.from_pretrained(vae_dir).state_dict()
    own = wider.state_dict()
    assert 0 < copied < len(own)                          # the latent-side convolutions differ in shape
    same = [k for k in src if own[k].shape == src[k].shape]
    assert len(same) == copied and all(torch.equal(own[k], src[k]) for k in same)


def test_freeze_encoder_trains_the_decoder_alone_and_keeps_the_latents(vae_dir, tmp_path):
    from diffusers import AutoencoderKL

    out = tmp_path / "decoder"
    args = ["--out", str(out), *FAST, "--init-from", str(vae_dir), "--freeze-encoder", "--lr", "1e-2"]
    assert train_vae.main([*args, "--steps", "2"]) == 0
    before, after = AutoencoderKL.from_pretrained(vae_dir), AutoencoderKL.from_pretrained(out)
    old, new = before.state_dict(), after.state_dict()
    enc = [k for k in old if k.startswith(train_vae.ENCODER_PREFIXES)]
    dec = [k for k in old if k not in enc]
    assert enc and all(torch.equal(old[k], new[k]) for k in enc)
    assert any(not torch.equal(old[k], new[k]) for k in dec)          # the decoder did learn
    assert after.config.scaling_factor == before.config.scaling_factor
    assert log_events(out, "start")[0]["trained_params"] == sum(new[k].numel() for k in dec)
    with pytest.raises(SystemExit, match="made with --freeze-encoder"):
        train_vae.main(["--out", str(out), *FAST, "--lr", "1e-2", "--steps", "3", "--resume", "--schedule-change"])
    with pytest.raises(SystemExit):
        train_vae.main(["--out", str(tmp_path / "no-init"), *FAST, "--steps", "1", "--freeze-encoder"])


def test_patch_critic_trains_beside_the_decoder_and_resumes_only_with_it(vae_dir, tmp_path):
    out = tmp_path / "critic"
    args = ["--out", str(out), *FAST, "--init-from", str(vae_dir), "--freeze-encoder", "--adv-weight", "0.5"]
    assert train_vae.main([*args, "--steps", "2"]) == 0
    steps = [r for r in common.JsonlLog(out / common.LOG, echo=False).read() if "loss" in r]
    assert all(r["adv_lambda"] > 0 and "d_loss" in r and "g_loss" in r for r in steps)
    state = common.load_checkpoint(out / common.CHECKPOINT, restore_rng=False)
    assert state["critic"] and state["critic_opt"]["state"]        # the critic stepped and is kept for a resume
    assert train_vae.main([*args, "--steps", "3", "--resume", "--schedule-change"]) == 0
    with pytest.raises(SystemExit, match="adv-weight"):
        train_vae.main([*args[:-2], "--steps", "4", "--resume", "--schedule-change"])


def test_patch_critic_scores_patches_and_its_losses_pull_apart():
    from customizer.training.patch_critic import PatchCritic, critic_loss, generator_loss

    critic = PatchCritic(width=8)
    real, fake = torch.rand(2, 3, 64, 64), torch.zeros(2, 3, 64, 64, requires_grad=True)
    assert critic(real).shape == (2, 1, 8, 8)
    critic_loss(critic, real, fake).backward()
    assert fake.grad is None                                   # the critic's loss never moves the decoder
    generator_loss(critic, fake).backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0


def test_resume_refuses_a_changed_schedule_unless_told(vae_dir):
    args = ["--out", str(vae_dir), *FAST, "--resume", "--detail-weight", "10"]
    with pytest.raises(SystemExit, match="another schedule"):
        train_vae.main([*args, "--steps", "3", "--lr", "1e-3"])
    assert train_vae.main([*args, "--steps", "3", "--schedule-change"]) == 0
    change = log_events(vae_dir, "schedule_change")
    assert change and change[-1]["changed"]["steps"] == [2, 3] and change[-1]["step"] == 2


def test_text_encoder_learns_the_caption_labels_and_saves(text_encoder_run):
    from transformers import CLIPTextModel

    from customizer.training.train_text_encoder import label_space

    report = json.loads((text_encoder_run / "report.json").read_text())
    assert report["steps"] == 3 and set(report["held_out_accuracy"]) == {*label_space(), "min"}
    assert set(label_space()["scene"]) >= {"unstated"} and label_space()["kind"] == ["portrait", "selfie"]
    enc = CLIPTextModel.from_pretrained(text_encoder_run / "text_encoder")
    assert enc.config.hidden_size == 32


def test_labels_follow_what_the_caption_states():
    from customizer.training.corpus import identity_records
    from customizer.training.train_text_encoder import label_space, labels_of

    heads = label_space()
    names = list(heads)
    portrait, selfie = identity_records(1234)[:2]
    lp, ls = labels_of(portrait, heads), labels_of(selfie, heads)
    assert heads["scene"][lp[names.index("scene")]] == "unstated"
    assert heads["kind"][lp[names.index("kind")]] == "portrait"
    assert heads["scene"][ls[names.index("scene")]] == selfie.variation.scene
    assert heads["hair_colour"][lp[names.index("hair_colour")]] == portrait.attrs["hair_colour"]
    assert heads["hair_colour"][lp[names.index("hair_colour")]] in portrait.caption


def test_image_encoder_report_measures_it_and_the_judge_on_the_same_pairs(image_encoder_run):
    report = json.loads((image_encoder_run / "report.json").read_text())
    enc, judge = report["held_out"]["encoder"], report["held_out"]["instrument"]
    assert enc["n_people"] == judge["n_people"] == 4
    assert enc["verification"]["n_same"] == judge["verification"]["n_same"] > 0
    assert (image_encoder_run / "image_encoder" / "config.json").exists()


def test_image_encoder_look_heads_and_warm_start(image_encoder_run, runs):
    from safetensors.torch import load_file

    from customizer.training import train_image_encoder

    out = runs / "image_encoder_look"
    # lr 0: the saved encoder is exactly the one it started from, so the warm start shows
    assert train_image_encoder.main(["--out", str(out), "--steps", "2", *FAST, "--batch", "1", "--workers", "0",
                                     "--eval-people", "4", "--lr", "0", "--init-from", str(image_encoder_run),
                                     "--look-heads", "hair_colour,eye_colour,skin_tone"]) == 0
    start = log_events(out, "start")[0]
    assert start["look_heads"] == ["hair_colour", "eye_colour", "skin_tone"] and start["init_from"]
    steps = [r for r in common.JsonlLog(out / common.LOG, echo=False).read() if "loss" in r]
    assert all(0 <= r["eye_colour_accuracy"] <= 1 for r in steps)
    a = load_file(image_encoder_run / "image_encoder" / "model.safetensors")
    b = load_file(out / "image_encoder" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(SystemExit, match="unknown"):
        train_image_encoder.main(["--out", str(runs / "image_encoder_bad"), "--steps", "1", *FAST,
                                  "--look-heads", "hair_colour,nose"])


def test_reference_look_probe_reads_each_attribute_against_its_majority(latents, image_encoder_run):
    from customizer.bench import reference_look

    report = reference_look.measure(latents, [image_encoder_run])
    block = report["encoders"][str(image_encoder_run)]
    assert report["people"] == 2 and set(reference_look.ATTRIBUTES) <= set(block)
    assert all(0 <= block[k]["probe"] <= 1 and 0 < block[k]["majority"] <= 1 for k in reference_look.ATTRIBUTES)
    # the probe itself: a label the features state exactly is read back, one they do not is at most the majority
    x = torch.randn(400, 8)
    told = reference_look.probe(x, ["a" if v > 0 else "b" for v in x[:, 0].tolist()])
    assert told["probe"] >= 0.95
    noise = reference_look.probe(torch.randn(400, 8), ["a" if v > 0 else "b" for v in torch.randn(400).tolist()])
    assert noise["probe"] <= 0.7


def test_precomputed_encoders_give_the_same_prediction_as_running_them(latents, text_encoder_run):
    from transformers import CLIPTextModel, CLIPTokenizer

    from customizer.engine.architectures import geometry
    from customizer.engine import diffusion_step, ip_adapter

    geo = geometry("tiny")
    te = CLIPTextModel.from_pretrained(text_encoder_run / "text_encoder").eval()
    tok = CLIPTokenizer.from_pretrained(text_encoder_run / "tokenizer")
    enc = ip_adapter.build_image_encoder(geo, 2).eval()
    data = torch.load(latents, map_location="cpu", weights_only=False)

    def tokenize(texts):
        return tok(texts, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids

    live = diffusion_step.Corpus.from_file_data(data, tokenize, "bad")
    pre = diffusion_step.Corpus.from_file_data(data, tokenize, "bad").precompute(te, enc)
    cond = diffusion_step.Conditioning(0.5, 0.5, (0.6, 0.2, 0.2))
    alphas = train_base.noise_scheduler().alphas_cumprod
    a = diffusion_step.draw(live, torch.Generator().manual_seed(3), 6, cond, alphas, "cpu")
    b = diffusion_step.draw(pre, torch.Generator().manual_seed(3), 6, cond, alphas, "cpu")
    assert torch.equal(a.noisy, b.noisy) and torch.equal(a.cond, b.cond)      # same draws, same order
    assert b.states is not None and b.ref_embeds is not None and b.ref_pixels is None
    from customizer.engine.architectures import build_components

    unet = build_components(geo, 0)["unet"]
    ip_adapter.attach(unet, geo, 1)
    with torch.no_grad():
        pa = diffusion_step.predict(unet, te, enc, a, "cpu")
        pb = diffusion_step.predict(unet, None, None, b, "cpu")
    assert torch.allclose(pa, pb, atol=2e-3)             # fp16-stored text states: close, not bit-equal


def test_appearance_drop_captions_only_reference_selfies_without_the_look(latents, text_encoder_run):
    from transformers import CLIPTextModel, CLIPTokenizer

    from customizer.character import catalogue
    from customizer.engine import diffusion_step
    from customizer.training.corpus import reference_captions

    data = torch.load(latents, map_location="cpu", weights_only=False)
    bare = reference_captions(data["records"], themed=True)
    cat = catalogue()
    for rec, full, text in zip(data["records"], data["captions"], bare):
        if rec["kind"] != "selfie":
            assert text == full                          # a portrait is never conditioned on a reference
            continue
        for key in ("hair_colour", "eye_colour", "skin_tone"):
            fragment = cat[key].choices[rec["attrs"][key]]
            assert fragment in full and fragment not in text, key
        assert cat["outfit"].choices[rec["attrs"]["outfit"]] in text
    te = CLIPTextModel.from_pretrained(text_encoder_run / "text_encoder").eval()
    tok = CLIPTokenizer.from_pretrained(text_encoder_run / "tokenizer")

    def tokenize(texts):
        return tok(texts, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids

    plain = diffusion_step.Corpus.from_file_data(data, tokenize, "bad").precompute(te)
    swapped = diffusion_step.Corpus.from_file_data(data, tokenize, "bad", bare).precompute(te)
    alphas = train_base.noise_scheduler().alphas_cumprod
    shares = (0.6, 0.2, 0.2)
    a = diffusion_step.draw(plain, torch.Generator().manual_seed(5), 64, diffusion_step.Conditioning(0.1, 0.5, shares),
                            alphas, "cpu")
    b = diffusion_step.draw(swapped, torch.Generator().manual_seed(5), 64,
                            diffusion_step.Conditioning(0.1, 0.5, shares, 1.0), alphas, "cpu")
    assert torch.equal(a.cond, b.cond)                # the same conditions; the extra draw comes after them
    ref = b.cond == diffusion_step.REFERENCE
    assert ref.any() and (~ref).any()
    assert not torch.equal(a.ids[ref], b.ids[ref]) and torch.equal(a.ids[~ref], b.ids[~ref])
    with torch.no_grad():
        want = te(b.ids[ref])[0]
    assert torch.allclose(b.states[ref], want, atol=2e-3)   # the looked-up states are the encoder's, fp16-stored
    # share 0 draws nothing: the batch stream of a run without it is unchanged
    c = diffusion_step.draw(swapped, torch.Generator().manual_seed(5), 64,
                            diffusion_step.Conditioning(0.1, 0.5, shares, 0.0), alphas, "cpu")
    assert torch.equal(a.ids, c.ids) and torch.equal(a.noisy, c.noisy) and torch.equal(a.cond, c.cond)


def test_base_on_frozen_encoders_trains_the_unet_alone_and_saves_them_unchanged(
        latents, vae_dir, text_encoder_run, image_encoder_run, runs):
    from transformers import CLIPTextModel, CLIPVisionModelWithProjection

    out = runs / "base"
    assert train_base.main(["--latents", str(latents), "--vae", str(vae_dir), "--out", str(out), "--steps", "2",
                            *FAST, "--sample-prompts", "2", "--save-dtype", "fp32", "--text-encoder",
                            str(text_encoder_run), "--image-encoder", str(image_encoder_run), "--global-text",
                            "--curve-every", "2", "--curve-instruments", INSTRUMENTS,
                            "--curve-characters", "2"]) == 0
    start = log_events(out, "start")[0]
    assert start["trained_params"] == start["params"]["unet (with IP-Adapter)"]   # the UNet (+ adapter) alone
    saved = CLIPTextModel.from_pretrained(out / "pipeline" / "text_encoder").state_dict()
    pre = CLIPTextModel.from_pretrained(text_encoder_run / "text_encoder").state_dict()
    assert all(torch.equal(saved[k], pre[k]) for k in pre)
    saved = CLIPVisionModelWithProjection.from_pretrained(out / "ip_adapter" / "image_encoder").state_dict()
    pre = CLIPVisionModelWithProjection.from_pretrained(image_encoder_run / "image_encoder").state_dict()
    assert all(torch.equal(saved[k], pre[k]) for k in pre)
    unet_cfg = json.loads((out / "pipeline" / "unet" / "config.json").read_text())
    assert unet_cfg["addition_embed_type"] == "text"       # global text conditioning, in the saved config
    curve = log_events(out, "curve")
    assert [c["step"] for c in curve] == [2]
    sl = curve[0]["eval_slice"]
    assert {"attributes", "verification", "verification_no_ip_adapter", "scene", "expression",
            "verification_from_reference", "verification_from_reference_no_ip_adapter"} <= set(sl)
    for key in ("look_agreement_from_reference", "look_agreement_from_reference_no_ip_adapter"):
        assert set(sl[key]) == {"hair_colour", "hair_style", "hair_length", "eye_colour", "skin_tone", "mean"}
        assert all(0 <= v <= 1 for v in sl[key].values())
    assert set(curve[0]["adherence"]) == {"hair_colour", "hair_style", "hair_length", "eye_colour", "skin_tone",
                                          "outfit", "body_type"}
    assert (out / "curve" / "sheets" / "curve_000002.png").exists()


def test_vae_roundtrip_ceiling_scores_renderer_and_round_trip(vae_dir):
    from customizer.bench import vae_roundtrip

    grid = vae_dir.parent / "roundtrip.png"
    report = vae_roundtrip.measure([vae_dir], __import__("pathlib").Path(INSTRUMENTS), 2, 1, grid=grid)
    from PIL import Image

    with Image.open(grid) as im:                          # renderer row + one round-trip row, 4 pictures each
        assert im.size == (2 + 4 * 130, 2 + 2 * 130)
    block = report["vaes"][str(vae_dir)]
    assert block["latent_channels"] == 4
    ratio = block["ratio"]
    assert set(ratio) == set(vae_roundtrip.FIGURES)
    r, v = report["renderer"]["attribute_accuracy"]["mean"], block["vae_roundtrip"]["attribute_accuracy"]["mean"]
    assert ratio["attribute_accuracy.mean"] == (round(v / r, 4) if r else None)


def test_assembled_model_card_keeps_the_encoders_and_learning_curves(
        vae_dir, text_encoder_run, image_encoder_run, runs):
    from customizer.training import assemble

    base = runs / "base"
    if not (base / "pipeline").exists():
        pytest.skip("needs the frozen-encoder base run of this module")
    out = runs / "bundled"
    facts = assemble.assemble(vae_dir, base, [], out, max_mb=60,
                              encoders={"text_encoder": text_encoder_run, "image_encoder": image_encoder_run})
    assert list(facts["stages"]) == ["vae", "text_encoder", "image_encoder", "base + ip_adapter"]
    assert facts["stages"]["base + ip_adapter"]["curve"][0]["step"] == 2
    assert [c["step"] for c in facts["stages"]["vae"]["curve"]] == [0, 2]   # resumed to 3 above, without a curve
    saved = json.loads((out / "training.json").read_text())
    assert saved["stages"]["text_encoder"]["steps_done"] == 3
    assert (out / "learning_curve.png").exists()
    assert "learning_curve.png" in (out / "README.md").read_text()


def test_assemble_counts_a_continued_vae_on_the_card_and_leaves_out_the_fast_tokenizer_file(vae_dir, runs, tmp_path):
    from transformers import CLIPTokenizer

    from customizer.training import assemble

    base = runs / "base"
    if not (base / "pipeline").exists():
        pytest.skip("needs the frozen-encoder base run of this module")
    more = runs / "vae-more"
    assert train_vae.main(["--out", str(more), *FAST, "--steps", "2", "--init-from", str(vae_dir),
                           "--colour-weight", "2", "--curve-instruments", INSTRUMENTS, "--curve-characters", "2"]) == 0
    assert all("colour" in r for r in common.JsonlLog(more / common.LOG, echo=False).read() if "loss" in r)
    out = tmp_path / "bundled"
    facts = assemble.assemble([vae_dir, more], base, [], out, max_mb=60)
    vae = facts["stages"]["vae"]
    assert vae["steps_done"] == train_vae_steps(vae_dir) + 2 and vae["continued"][0]["start"]["colour_weight"] == 2
    steps = [c["step"] for c in vae["curve"]]     # the continued run's step-0 point is the first run's last one
    first = [c["step"] for c in assemble.stage_facts(vae_dir)["curve"]]
    assert steps == [*first, vae["steps_done"]]
    assert "continued (8x8-block colour L1 x 2.0)" in (out / "README.md").read_text()
    # the fast tokenizer's file is left out (it repeats vocab.json + merges.txt) and the tokens are the same
    assert not (out / "tokenizer" / "tokenizer.json").exists() and (base / "pipeline/tokenizer/tokenizer.json").exists()
    slow = CLIPTokenizer.from_pretrained(out / "tokenizer")
    full = CLIPTokenizer.from_pretrained(base / "pipeline" / "tokenizer")
    for text in ("portrait of an adult, long wavy red hair, green eyes", "freckles and round glasses ✨ éà"):
        assert slow(text).input_ids == full(text).input_ids


def test_assemble_ships_an_upscaler_run_and_counts_it_on_the_card(vae_dir, runs, tmp_path):
    from customizer.engine import sr_net
    from customizer.training import assemble

    base = runs / "base"
    if not (base / "pipeline").exists():
        pytest.skip("needs the frozen-encoder base run of this module")
    up = tmp_path / "upscaler_run"
    net = sr_net.SRNet(channels=4, layers=2)
    torch.nn.init.normal_(net.tail.weight, std=0.01)
    sr_net.save(net, up)
    (up / "pairs.pt").write_bytes(b"run-only cache: not shipped")
    log = common.JsonlLog(up / common.LOG, echo=False)
    log.write(event="start", device="cpu", batch=4, steps=3)
    log.write(step=3, loss=0.05, seconds=1.5)
    log.write(event="final", step=3)
    out = tmp_path / "bundled"
    facts = assemble.assemble([vae_dir], base, [], out, max_mb=60, upscaler=up)
    assert sorted(p.name for p in (out / "upscaler").iterdir()) == [sr_net.CONFIG, sr_net.WEIGHTS]
    shipped = sr_net.load(out / "upscaler")
    x = torch.rand(1, 3, 8, 8)
    assert torch.allclose(shipped(x), net.half().float()(x), atol=1e-6)
    assert facts["stages"]["upscaler"]["steps_done"] == 3 and "upscaler" in facts["parts_mb"]
    assert "| upscaler | cpu | 3 x batch 4 |" in (out / "README.md").read_text()
    # a new base on the assembled model, no new upscaler run: the model's upscaler stays, files and facts, even
    # when --out is the model's own folder
    assert assemble.main(["--continue-from", str(out), "--base", str(base), "--out", str(out)]) == 0
    assert (out / "upscaler" / sr_net.WEIGHTS).read_bytes() == (up / sr_net.WEIGHTS).read_bytes()
    again = json.loads((out / "training.json").read_text())
    assert again["stages"]["upscaler"] == facts["stages"]["upscaler"] and "upscaler" in again["parts_mb"]


def train_vae_steps(run):
    return max(r["step"] for r in common.JsonlLog(run / common.LOG, echo=False).read() if "loss" in r)


def test_a_base_continued_from_an_assembled_model_adds_up_on_its_card(
        latents, vae_dir, text_encoder_run, image_encoder_run, runs):
    from customizer.training import assemble

    model = runs / "bundled"
    if not (model / "training.json").exists():
        pytest.skip("needs the model assembled above")
    previous = json.loads((model / "training.json").read_text())
    before = previous["stages"]["base + ip_adapter"]
    run = runs / "base-continued"
    assert train_base.main(["--latents", str(latents), "--vae", str(model / "vae"), "--out", str(run), "--steps", "2",
                            *FAST, "--sample-prompts", "1", "--save-dtype", "fp32", "--text-encoder", str(model),
                            "--image-encoder", str(model / "ip_adapter"), "--global-text", "--init-from", str(model),
                            "--appearance-drop", "0.5", "--curve-every", "2", "--curve-instruments", INSTRUMENTS,
                            "--curve-characters", "2"]) == 0
    assert log_events(run, "start")[0]["appearance_drop"] == 0.5
    facts = assemble.assemble(None, run, [], runs / "bundled-continued", max_mb=60, previous=previous)
    base = facts["stages"]["base + ip_adapter"]
    assert base["steps_done"] == before["steps_done"] + 2 and base["sessions"] == before["sessions"] + 1
    assert base["train_seconds"] >= before["train_seconds"]
    # one learning curve over both runs: the continued run's points go on from the model's last step
    assert [c["step"] for c in base["curve"]] == [*(c["step"] for c in before["curve"]), before["steps_done"] + 2]
    assert base["continued"][0]["from_step"] == before["steps_done"]
    assert base["continued"][0]["start"]["warm_start"]["init_from"] == str(model)
    for stage in ("vae", "text_encoder", "image_encoder"):     # the stages without a run keep the model's facts
        assert facts["stages"][stage] == previous["stages"][stage]
    # the same chain from the run folders themselves (the recipe's base_continued stage)
    chained = assemble.assemble(vae_dir, [runs / "base", run], [], runs / "bundled-chained", max_mb=60)
    assert chained["stages"]["base + ip_adapter"]["steps_done"] == base["steps_done"]
    assert [c["step"] for c in chained["stages"]["base + ip_adapter"]["curve"]] == [c["step"] for c in base["curve"]]
    with pytest.raises(SystemExit, match="--continue-from"):
        assemble.assemble(None, run, [], runs / "bundled-nothing", max_mb=60)


def test_init_from_an_assembled_model_starts_from_its_weights_and_refuses_another_shape(
        latents, vae_dir, text_encoder_run, image_encoder_run, runs, tmp_path):
    from safetensors.torch import load_file

    common_args = ["--latents", str(latents), "--vae", str(vae_dir), *FAST, "--sample-prompts", "1",
                   "--save-dtype", "fp32", "--text-encoder", str(text_encoder_run), "--image-encoder",
                   str(image_encoder_run), "--global-text"]
    first = runs / "base-to-assemble"
    assert train_base.main([*common_args, "--out", str(first), "--steps", "2"]) == 0
    model = tmp_path / "assembled"          # the layout assemble.py writes (unet/ and ip_adapter/ side by side)
    model.mkdir()
    (model / "unet").symlink_to(first / "pipeline" / "unet")
    (model / "ip_adapter").symlink_to(first / "ip_adapter")
    # lr 0: the continued run's weights stay exactly what it started from, so the saved files show the start
    warm = runs / "base-warm"
    assert train_base.main([*common_args, "--out", str(warm), "--steps", "1", "--lr", "0", "--seed", "7",
                            "--init-from", str(model)]) == 0
    from_run = runs / "base-warm-from-run"   # a train_base run folder (pipeline/unet/) starts a run the same way
    assert train_base.main([*common_args, "--out", str(from_run), "--steps", "1", "--lr", "0", "--seed", "7",
                            "--init-from", str(first)]) == 0
    for rel in ("pipeline/unet/diffusion_pytorch_model.safetensors", "ip_adapter/ip_adapter.safetensors"):
        a, b, c = load_file(first / rel), load_file(warm / rel), load_file(from_run / rel)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) and torch.equal(a[k], c[k]) for k in a), rel
    start = log_events(warm, "start")[0]
    assert start["warm_start"]["init_from"] == str(model) and start["warm_start"]["adapter_tensors"] > 0
    cold = runs / "base-cold"               # the same run without --init-from draws other weights
    assert train_base.main([*common_args, "--out", str(cold), "--steps", "1", "--lr", "0", "--seed", "7"]) == 0
    a = load_file(first / "pipeline/unet/diffusion_pytorch_model.safetensors")
    b = load_file(cold / "pipeline/unet/diffusion_pytorch_model.safetensors")
    assert not all(torch.equal(a[k], b[k]) for k in a)
    no_global = [a for a in common_args if a != "--global-text"]
    with pytest.raises(SystemExit, match="another shape"):
        train_base.main([*no_global, "--out", str(runs / "base-other"), "--steps", "1", "--init-from", str(model)])


def test_crop_windows_are_deterministic_and_land_on_the_details():
    from customizer.training.common import RenderStream

    faces = RenderStream(0, 128, 64, detail=True, crop=32, face_share=1.0)
    anywhere = RenderStream(0, 128, 64, detail=True, crop=32, face_share=0.0)
    x, m = faces[5]
    assert x.shape == (3, 32, 32) and m.shape == (2, 32, 32)  # irises, expression
    assert torch.equal(x, RenderStream(0, 128, 64, detail=True, crop=32, face_share=1.0)[5][0])   # resumable
    on_face = np.mean([float(faces[i][1].mean() > 0) for i in range(12)])
    at_random = np.mean([float(anywhere[i][1].mean() > 0) for i in range(12)])
    assert on_face == 1.0 and at_random < on_face
    # four windows of one picture: the same drawing, other places (or the same place, by chance)
    a, b = faces[8][0], faces[9][0]
    assert not torch.equal(a, b) and faces[12][0].shape == a.shape


def test_stop_at_keeps_the_schedule_of_the_full_run(latents, vae_dir, text_encoder_run, runs):
    out = runs / "base-stop"
    args = ["--latents", str(latents), "--vae", str(vae_dir), "--out", str(out), "--steps", "4", *FAST,
            "--sample-prompts", "1", "--sample-every", "100", "--no-ip-adapter", "--text-encoder",
            str(text_encoder_run)]
    assert train_base.main([*args, "--stop-at", "1"]) == 0
    state = torch.load(out / common.CHECKPOINT, map_location="cpu", weights_only=False)
    assert state["step"] == 1 and state["schedule"]["steps"] == 4
    assert train_base.main([*args, "--resume"]) == 0          # the same schedule: no --schedule-change needed
    assert torch.load(out / common.CHECKPOINT, map_location="cpu", weights_only=False)["step"] == 4


def test_vae_stop_at_ends_early_on_the_full_schedule_and_the_runner_counts_it_done(runs, tmp_path):
    from customizer.training.all import target_step

    out = runs / "vae-stop"
    args = ["--out", str(out), "--steps", "6", *FAST, "--warmup", "0"]
    assert train_vae.main([*args, "--stop-at", "2"]) == 0
    state = torch.load(out / common.CHECKPOINT, map_location="cpu", weights_only=False)
    assert state["step"] == 2 and state["schedule"]["steps"] == 6
    lrs = [r["lr"] for r in common.JsonlLog(out / common.LOG, echo=False).read() if "lr" in r]
    # the learning rate of step 2 is the 6-step cosine's, not a 2-step one's
    assert lrs[-1] == pytest.approx(common.lr_at(1, 5e-4, 0, 6), rel=1e-3) != common.lr_at(1, 5e-4, 0, 2)
    assert target_step(["--steps", "6", "--stop-at", "2"]) == 2 and target_step(["--steps", "6"]) == 6


def test_v_prediction_target_is_diffusers_velocity_and_its_min_snr_weighs_x0_alike():
    from diffusers import DDPMScheduler

    from customizer.engine import diffusion_step

    ddpm = train_base.noise_scheduler("v_prediction")
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(4, 8, 4, 4, generator=g), torch.randn(4, 8, 4, 4, generator=g)
    t = torch.tensor([0, 300, 700, 999])
    b = diffusion_step.Batch(noisy=ddpm.add_noise(x0, noise, t), noise=noise, timesteps=t, ids=torch.zeros(4, 1),
                             latents=x0)
    v = diffusion_step.target(b, ddpm.alphas_cumprod, "v_prediction")
    assert torch.allclose(v, DDPMScheduler.get_velocity(ddpm, x0, noise, t), atol=1e-5)
    assert torch.equal(diffusion_step.target(b, ddpm.alphas_cumprod, "epsilon"), noise)
    # an x0 error d is an epsilon error sqrt(a/(1-a)) d and a v error d/sqrt(1-a): the weights price the same x0
    # error alike, w_eps * a/(1-a) == w_v / (1-a), i.e. w_v == w_eps * a
    a = ddpm.alphas_cumprod[t]
    w_eps = diffusion_step.min_snr_weights(ddpm.alphas_cumprod, t, 5.0)
    w_v = diffusion_step.min_snr_weights(ddpm.alphas_cumprod, t, 5.0, v_prediction=True)
    assert torch.allclose(w_v, w_eps * a, rtol=1e-4) and not torch.allclose(w_v, w_eps)
    with pytest.raises(ValueError, match="unknown prediction type"):
        diffusion_step.target(b, ddpm.alphas_cumprod, "sample")


def test_base_saves_its_prediction_type_and_resumes_only_with_it(latents, vae_dir, text_encoder_run, runs):
    from diffusers import StableDiffusionPipeline

    out = runs / "base-v"
    args = ["--latents", str(latents), "--vae", str(vae_dir), "--out", str(out), "--steps", "2", *FAST,
            "--sample-prompts", "1", "--sample-every", "100", "--no-ip-adapter", "--text-encoder",
            str(text_encoder_run)]
    assert train_base.main([*args, "--prediction-type", "v_prediction", "--stop-at", "1"]) == 0
    with pytest.raises(SystemExit, match="prediction-type v_prediction"):
        train_base.main([*args, "--resume"])
    assert train_base.main([*args, "--resume", "--prediction-type", "v_prediction"]) == 0
    pipe = StableDiffusionPipeline.from_pretrained(out / "pipeline", safety_checker=None, requires_safety_checker=False)
    assert pipe.scheduler.config.prediction_type == "v_prediction"


def test_adapter_lr_mult_gives_the_adapter_its_own_rate_and_resumes_only_with_it(
        latents, vae_dir, text_encoder_run, image_encoder_run, runs):
    out = runs / "base-adapter-lr"
    args = ["--latents", str(latents), "--vae", str(vae_dir), "--out", str(out), "--steps", "3", *FAST,
            "--sample-prompts", "1", "--sample-every", "100", "--text-encoder", str(text_encoder_run),
            "--image-encoder", str(image_encoder_run), "--lr", "1e-4", "--warmup", "0"]
    assert train_base.main([*args, "--adapter-lr-mult", "10", "--stop-at", "2"]) == 0
    assert log_events(out, "start")[0]["adapter_lr_mult"] == 10
    groups = common.load_checkpoint(out / common.CHECKPOINT)["opt"]["param_groups"]
    assert [g.get("lr_mult", 1.0) for g in groups] == [1.0, 10.0]
    assert groups[1]["lr"] == pytest.approx(10 * groups[0]["lr"]) and groups[0]["lr"] > 0
    with pytest.raises(SystemExit, match="adapter-lr-mult 10"):
        train_base.main([*args, "--resume"])
    assert train_base.main([*args, "--resume", "--adapter-lr-mult", "10"]) == 0


def test_adapter_param_group_holds_the_adapter_and_nothing_else():
    from customizer.engine import ip_adapter
    from customizer.engine.architectures import build_components, geometry

    geo = geometry("tiny")
    unet = build_components(geo)["unet"]
    ip_adapter.attach(unet, geo, 0)
    trained = torch.nn.ModuleDict({"unet": unet})
    plain, adapter = train_base.param_groups(trained, 5.0)
    names = {id(p): k for k, p in unet.named_parameters()}
    got = sorted(names[id(p)] for p in adapter["params"])
    assert got and all(k.startswith("encoder_hid_proj.") or ".to_k_ip." in k or ".to_v_ip." in k for k in got)
    assert any(".to_v_ip." in k for k in got) and any(k.startswith("encoder_hid_proj.") for k in got)
    assert len(plain["params"]) + len(adapter["params"]) == len(list(unet.parameters())) and adapter["lr_mult"] == 5
    assert len(train_base.param_groups(trained, 1.0)) == 1     # the default: one group, as before


def test_detail_maps_mark_the_face_cells_and_weigh_the_loss(latents, vae_dir, text_encoder_run, runs):
    from customizer.engine import diffusion_step
    from customizer.training import latent_masks

    with pytest.raises(SystemExit, match="latent_masks"):
        train_base.main(["--latents", str(latents), "--vae", str(vae_dir), "--out", str(runs / "base-detail"),
                         "--steps", "1", *FAST, "--no-ip-adapter", "--text-encoder", str(text_encoder_run),
                         "--detail-weight", "5"])
    path = latent_masks.compute(latents, log=lambda m: None)
    assert path == latent_masks.masks_path(latents) and path.is_file()
    data = torch.load(latents, weights_only=False)
    maps = latent_masks.load(path, data["captions"])
    assert maps.shape == (len(data["captions"]), 1, *data["latents"].shape[-2:])
    assert 0 < float(maps.float().mean()) < 0.2 and float(maps.max()) <= 1      # a few cells: eyes, brows, mouth
    with pytest.raises(SystemExit, match="another latent file"):
        latent_masks.load(path, list(data["captions"])[::-1])
    # the loss: detail_weight 0 (or no maps) is the plain MSE; weighted, an error on a detail cell costs more
    b = diffusion_step.Batch(noisy=torch.zeros(1, 1, 2, 2), noise=torch.zeros(1, 1, 2, 2),
                             timesteps=torch.tensor([10]), ids=torch.zeros(1, 1, dtype=torch.long),
                             detail=torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]]))
    alphas = torch.linspace(0.99, 0.01, 100)
    on_detail = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    off_detail = torch.tensor([[[[0.0, 1.0], [0.0, 0.0]]]])
    plain = [diffusion_step.loss(p, b, alphas, 0.0) for p in (on_detail, off_detail)]
    assert plain[0] == plain[1] == diffusion_step.loss(on_detail, b, alphas, 0.0, detail_weight=0.0)
    weighted = [diffusion_step.loss(p, b, alphas, 0.0, detail_weight=3.0) for p in (on_detail, off_detail)]
    assert weighted[0] == pytest.approx(4 * weighted[1]) and weighted[1] < plain[1] < weighted[0]
    out = runs / "base-detail"
    assert train_base.main(["--latents", str(latents), "--vae", str(vae_dir), "--out", str(out), "--steps", "1",
                            *FAST, "--sample-every", "100", "--no-ip-adapter", "--text-encoder",
                            str(text_encoder_run), "--detail-weight", "5", "--resume"]) == 0
    assert log_events(out, "start")[0]["detail_weight"] == 5
