"""Measuring instruments (likeness encoder, attribute classifier) and the eval harness on the tiny random model."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from customizer.likeness import instruments as ins
from customizer.training import train_instruments as ti


@pytest.fixture(scope="module")
def batch():
    return ti.make_batch(0, groups=2, ids_per_group=2, views=2, singles=2, size=128)


def test_batches_are_train_identities_with_shared_attributes(batch):
    images, labels, people = batch
    assert images.shape == (10, 128, 128, 3) and images.dtype == np.uint8
    assert labels.shape == (10, len(ins.catalogue_heads())) and people.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 5]
    # the two people of a group share the hair colour (column 0): the encoder cannot lean on it
    assert labels[0, 0] == labels[2, 0] and labels[4, 0] == labels[6, 0]
    seeds = ti.split_seeds(20, held_out=True, salt="t")
    from customizer.training.corpus import is_held_out
    assert all(is_held_out(s) for s in seeds) and len(set(seeds)) == 20


def test_models_are_small_and_shaped():
    enc, clf = ins.IdentityEncoder(), ins.AttributeClassifier()
    assert ins.n_params(enc) < 1_000_000 and ins.n_params(clf) < 1_000_000  # fp16 <= 2 MB
    x = torch.rand(3, 3, 128, 128)
    z = enc.eval()(x)
    assert z.shape == (3, 128) and torch.allclose(z.norm(dim=1), torch.ones(3), atol=1e-5)
    logits = clf.eval()(x)
    heads = ins.catalogue_heads()
    assert set(logits) == set(heads) == set(ins.ATTRIBUTE_KEYS) | set(ins.SELFIE_KEYS)
    assert all(logits[k].shape == (3, len(heads[k])) for k in heads)


def test_a_few_steps_reduce_both_losses(batch):
    trainer = ti.Trainer(lr=2e-3, augment=False, seed=0)
    results = [trainer.step(batch) for _ in range(8)]
    assert results[-1].identity_loss < results[0].identity_loss
    assert results[-1].attribute_loss < results[0].attribute_loss
    # and the augmented path runs
    x = ti.augment(ins.to_tensor(batch[0]), torch.Generator().manual_seed(0))
    assert x.shape == (10, 3, 128, 128) and 0 <= float(x.min()) and float(x.max()) <= 1


def test_save_load_round_trip_is_identical(tmp_path, batch):
    torch.manual_seed(1)
    enc, clf = ins.IdentityEncoder(), ins.AttributeClassifier()
    # move BN statistics off their defaults so the buffers are exercised too
    x = ins.to_tensor(batch[0])
    enc.train()(x)
    clf.train()(x)
    ins.save_instrument(enc, tmp_path, {"note": "test"})
    ins.save_instrument(clf, tmp_path)
    assert (tmp_path / "identity.safetensors").stat().st_size <= 2_000_000
    assert (tmp_path / "attributes.safetensors").stat().st_size <= 2_000_000
    cfg = json.loads((tmp_path / "attributes.json").read_text())
    assert cfg["heads"] == ins.catalogue_heads() and cfg["kind"] == "attributes"
    enc2, clf2 = ins.load_identity(tmp_path), ins.load_attributes(tmp_path)
    with torch.inference_mode():
        assert torch.equal(enc.eval()(x), enc2(x))
        a, b = clf.eval()(x), clf2(x)
        assert all(torch.equal(a[k], b[k]) for k in a)
    loaded = ins.Instruments.load(tmp_path)
    images = [Image.fromarray(im) for im in batch[0][:3]]
    emb = loaded.embed(images)
    assert emb.shape == (3, 128) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    preds = loaded.classify(images + [images[0].resize((32, 32))])  # any size is resized to 128
    assert len(preds) == 4 and set(preds[0]) == set(ins.catalogue_heads())
    with pytest.raises(FileNotFoundError, match="train_instruments"):
        ins.load_identity(tmp_path / "missing")


def test_verification_threshold_known_answer():
    same = [0.9, 0.8, 0.7, 0.4]
    different = [0.1] * 18 + [0.5, 0.85]
    v = ins.verification(same, different, max_far=0.05)
    # 5 % of 20 different pairs = 1 false accept allowed (the 0.85); the next one (0.5) must be rejected
    assert 0.5 < v["threshold"] <= 0.7
    assert v["far"] == pytest.approx(0.05) and v["tar"] == pytest.approx(0.75)
    assert v["accuracy"] == pytest.approx((0.75 + 0.95) / 2)
    # ties at the cut are all rejected rather than exceeding the false-accept budget
    v = ins.verification([0.6, 0.6], [0.5] * 10 + [0.2] * 10, max_far=0.05)
    assert v["far"] == 0.0 and v["tar"] == 1.0 and v["threshold"] > 0.5
    # perfectly separable: every same pair accepted, no false accepts
    v = ins.verification([0.9, 0.95], [0.1, 0.2, 0.3], max_far=0.05)
    assert v["tar"] == 1.0 and v["far"] == 0.0 and v["accuracy"] == 1.0
    # a looser budget lowers the threshold and accepts more
    assert ins.verification(same, different, max_far=0.10)["threshold"] <= 0.5


@pytest.mark.parametrize("flag,value", [("--guidance", "25"), ("--steps", "120"), ("--guidance-end", "0.05")])
def test_eval_refuses_sampler_overrides_the_app_would_refuse_at_render(tmp_path, capsys, flag, value):
    from customizer import eval as ev

    with pytest.raises(SystemExit) as e:
        ev.main(["--out", str(tmp_path), flag, value])
    assert e.value.code == 2 and f"{flag} must be" in capsys.readouterr().err


def test_eval_runs_end_to_end_on_the_tiny_model(tmp_path, tiny_config_path):
    import yaml

    from customizer import eval as ev

    cfg = yaml.safe_load(tiny_config_path.read_text())
    cfg["profiles"]["tiny"]["character_lora"] = {"steps": 4}  # the character LoRA variant: a few steps
    tiny_config_path.write_text(yaml.safe_dump(cfg))

    inst = tmp_path / "instruments"
    torch.manual_seed(0)
    ins.save_instrument(ins.IdentityEncoder(), inst)
    ins.save_instrument(ins.AttributeClassifier(), inst)
    out = tmp_path / "eval"
    rc = ev.main(["--out", str(out), "--config", str(tiny_config_path), "--profile", "tiny", "--characters", "2",
                  "--selfies-per", "2", "--instruments", str(inst), "--band", "0.0", "0.5",
                  "--max-attempts", "2", "--character-lora", "--steps", "2", "--guidance-end", "0.5",
                  "--guidance", "3.5"])
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    assert report["sampler"]["steps"] == 2 != cfg["profiles"]["tiny"]["steps"]  # --steps overrides the profile
    assert report["sampler"]["guidance_end"] == 0.5  # so does --guidance-end
    assert report["sampler"]["guidance"] == 3.5 != cfg["profiles"]["tiny"]["guidance"]  # and --guidance
    for key in ("attribute_accuracy", "theme_accuracy", "scene_accuracy", "expression_accuracy", "identity",
                "identity_no_ip_adapter", "n_characters", "n_selfies", "seconds"):
        assert key in report, key
    assert report["n_characters"] == 2 and report["n_selfies"] == 4
    # the per-stage ceiling table comes first: renderer -> the profile's VAE round trip -> model, per figure
    assert list(report)[0] == "ceiling_table"
    rows = {r["figure"]: r for r in report["ceiling_table"]}
    assert {"mean", "eye_colour", "theme", "scene", "expression", "verification"} <= set(rows)
    assert rows["mean"]["renderer"] == report["renderer_ceiling"]["attribute_accuracy"]["mean"]
    assert rows["mean"]["vae_roundtrip"] == report["vae_roundtrip_ceiling"]["attribute_accuracy"]["mean"]
    assert rows["mean"]["model"] == report["attribute_accuracy"]["mean"]
    assert rows["scene"]["model"] == report["scene_accuracy"]
    for r in rows.values():
        assert r["model_over_renderer"] is None or r["model_over_renderer"] == round(r["model"] / r["renderer"], 3)
    assert set(ins.ATTRIBUTE_KEYS) | {"mean"} <= set(report["attribute_accuracy"])
    # mean_visible leaves out what a close-up hides; those two are scored on the wide selfies instead
    acc = report["attribute_accuracy"]
    assert acc["mean_visible"] == round(float(np.mean([acc[k] for k in ins.ATTRIBUTE_KEYS
                                                        if k not in ("body_type", "outfit")])), 4)
    shots = [s for c in report["characters"] for s in c["shots"]]
    wide = report["wide_framing_attributes"]
    assert wide["n"] == sum(s["framing"] in ("half body", "full body") for s in shots)
    assert (wide["body_type"] is None) == (wide["n"] == 0)
    assert set(report["instrument_per_head"].values()) == {"attributes"}  # only the joint model here
    # the expression score per requested framing: the selfies' framings, each a fraction of its selfies
    by_framing = report["expression_accuracy_by_framing"]
    assert set(by_framing) == {s["framing"] for c in report["characters"] for s in c["shots"]}
    assert all(v in (0.0, 0.5, 1.0) for v in by_framing.values())
    for block in (report["identity"], report["identity_no_ip_adapter"]):
        for key in ("same_mean", "different_mean", "verification_accuracy"):
            assert isinstance(block[key], float), key
        assert block["n_same"] == 4 and block["n_different"] == 4
    assert report["ip_adapter_scale"] > 0
    # the held-out characters really are held out, and the two passes differ only in the IP-Adapter
    from customizer.training.corpus import is_held_out
    assert all(is_held_out(c["identity_seed"]) for c in report["characters"])
    with Image.open(out / "contact_sheet.png") as sheet:
        assert sheet.size == (2 + 3 * 130, 2 + 2 * 130)  # 2 rows; reference + 2 selfies
    assert (out / "contact_sheet_no_ip_adapter.png").is_file()
    # consistency: the same seeds through each variant; a band no random-weight render reaches forces the retry
    variants = report["consistency"]["variants"]
    assert list(variants) == ["plain", "sheet", "retries", "no_ip_adapter", "character_lora"]
    assert report["consistency"]["character_lora_training_seconds"] > 0
    assert variants["plain"]["attempts_per_selfie"] == variants["sheet"]["attempts_per_selfie"] == 1.0
    assert variants["retries"]["attempts_per_selfie"] == 2.0 and variants["retries"]["max_attempts_used"] == 2
    assert report["consistency"]["retry_policy"]["band"] == [0.0, 0.5]
    assert report["consistency"]["note"] == ev.retries_note(report["consistency"]["retry_policy"])
    # plain: the reference alone; the random encoder scores every sheet view ~1, above the band [0, 0.5], so the
    # sheet variants leave every view out (a near copy adds nothing) and are conditioned on the reference alone too
    assert variants["plain"]["conditioning_images"] <= 1.0
    assert variants["sheet"]["conditioning_images"] == variants["retries"]["conditioning_images"] == 1.0
    for v in variants.values():
        assert 0 <= v["attribute_consistency"] <= 1 and v["seconds_per_selfie"] > 0
        assert isinstance(v["same_mean"], float) and isinstance(v["scene_accuracy"], float)
    # the top-level identity is the plain variant's, the no-IP block the no_ip_adapter variant's
    assert report["identity"]["same_mean"] == variants["plain"]["same_mean"]
    assert report["identity_no_ip_adapter"]["same_mean"] == variants["no_ip_adapter"]["same_mean"]
    with Image.open(out / "contact_sheet_consistency.png") as sheet:
        assert sheet.size == (2 + 3 * 130, 2 + 10 * 130)  # 2 characters x 5 variants


# ---- the classifiers of their own (train_expression.py, train_appearance.py) ----------------------------------
def test_train_expression_runs_both_stages_and_saves(tmp_path):
    from customizer.training import train_expression as te

    rc = te.main(["--out", str(tmp_path), "--closeup-steps", "2", "--steps", "2", "--batch", "4", "--workers", "0",
                  "--eval-per-framing", "7"])
    assert rc == 0
    cfg = json.loads((tmp_path / "expression.json").read_text())
    meta = cfg["meta"]
    assert list(cfg["heads"]) == ["expression"]
    assert [(s["stage"], s["kind"], s["steps"]) for s in meta["stages"]] == [(1, "close-up", 2), (2, "all", 2)]
    framings = ins.catalogue_heads()["framing"]
    assert set(meta["held_out"]) == {"overall", "n", *framings} and meta["held_out"]["n"] == 7 * len(framings)
    assert all(0 <= meta["held_out"][f] <= 1 for f in framings)
    # the training renders: close-ups in stage 1 only, every one a training-split person, labels in range
    images, labels = te.render_batch(0, 3, te.CLOSE_UP)
    assert images.shape == (3, 128, 128, 3) and labels["expression"].min() >= 0 and labels["expression"].max() < 7
    again, _ = te.render_batch(0, 3, te.CLOSE_UP)
    assert np.array_equal(images, again)  # deterministic in the seed


def test_appearance_and_expression_instruments_replace_their_joint_heads(tmp_path):
    torch.manual_seed(0)
    inst = tmp_path / "instruments"
    ins.save_instrument(ins.IdentityEncoder(), inst)
    ins.save_instrument(ins.AttributeClassifier(), inst)
    images = [Image.fromarray((np.random.RandomState(i).rand(128, 128, 3) * 255).astype(np.uint8)) for i in range(3)]
    before = ins.Instruments.load(inst).classify(images)
    heads = ins.catalogue_heads()
    # an appearance model that can only say "green" hair, an expression model that can only say "sad"
    for name, head, label in (("appearance", "hair_colour", "green"), ("expression", "expression", "sad")):
        keys = ins.ATTRIBUTE_KEYS if name == "appearance" else ("expression",)
        model = ins.AttributeClassifier({k: heads[k] for k in keys})
        with torch.no_grad():
            model.out[ins._head_key(head)].bias[heads[head].index(label)] = 1e3
        ins.save_instrument(model, inst, {"note": name}, name=name)
    both = ins.Instruments.load(inst)
    assert list(both.own) == ["appearance", "expression"]
    after = both.classify(images)
    assert [p["hair_colour"] for p in after] == ["green"] * 3 and [p["expression"] for p in after] == ["sad"] * 3
    assert [p["scene"] for p in after] == [p["scene"] for p in before]  # the joint model still answers scene
    assert {h: both.source(h) for h in ("outfit", "theme", "expression", "framing")} == {
        "outfit": "appearance", "theme": "appearance", "expression": "expression", "framing": "attributes"}
    assert set(both.heads()) == set(heads)
    assert json.loads((inst / "expression.json").read_text())["meta"] == {"note": "expression"}


def test_train_appearance_runs_both_stages_and_saves(tmp_path):
    from customizer.training import train_appearance as ta

    rc = ta.main(["--out", str(tmp_path), "--portrait-steps", "2", "--steps", "2", "--batch", "4", "--workers", "0",
                  "--eval-n", "12"])
    assert rc == 0
    cfg = json.loads((tmp_path / "appearance.json").read_text())
    meta = cfg["meta"]
    assert list(cfg["heads"]) == list(ins.ATTRIBUTE_KEYS)
    assert [(s["stage"], s["kind"], s["steps"]) for s in meta["stages"]] == [(1, "portrait", 2), (2, "all", 2)]
    held = meta["held_out"]
    assert held["portrait"]["n"] == held["selfie"]["n"] == 12 and held["selfie_wide"]["n"] == 4  # 2 of 6 framings
    assert set(ins.ATTRIBUTE_KEYS) | {"mean", "n"} == set(held["portrait"])
    assert all(0 <= held["portrait"][k] <= 1 for k in ins.ATTRIBUTE_KEYS)
    # stage 1 renders portraits only (studio, neutral, close-up); stage 2 half portraits, half any shot
    images, labels = ta.render_batch(0, 4, ta.PORTRAITS)
    again, _ = ta.render_batch(0, 4, ta.PORTRAITS)
    assert images.shape == (4, 128, 128, 3) and np.array_equal(images, again)  # deterministic in the seed
    assert set(labels) == set(ins.ATTRIBUTE_KEYS)
    assert all(0 <= labels[k].min() and labels[k].max() < len(v) for k, v in ta.heads().items())
    mixed, _ = ta.render_batch(0, 4, None)
    assert not np.array_equal(mixed, images)


def test_the_retries_note_says_whether_the_judge_picked_the_retries():
    from customizer.eval import retries_note

    assert "optimistic by construction" in retries_note({"instrument": "identity", "band": [0.3, 0.99]})
    own = retries_note({"instrument": "adapter", "band": [0.73, 0.995]})
    assert "'adapter'" in own and "not picked by their judge" in own and "optimistic" not in own
    assert retries_note(None).startswith("no retries variant")
