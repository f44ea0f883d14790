"""The shipped model (assets/bundled) through stock diffusers and through the app's own service: design -> lock ->
selfie with the real weights, themes, likeness from the shipped identity encoder, exact reproduction. It fails
rather than skips when the model is missing: `python app.py` on a fresh clone depends on it."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from customizer.config import REPO_ROOT, load_config
from customizer.engine.pipeline import Engine
from customizer.service import Studio
from customizer.store import Store

BUNDLED = REPO_ROOT / "assets" / "bundled"
SPEC = {"hair_colour": "blonde", "hair_style": "braided", "eye_colour": "blue", "skin_tone": "medium",
        "age": 40, "outfit": "hoodie"}


def _arr(path_or_image) -> np.ndarray:
    if isinstance(path_or_image, Image.Image):
        return np.asarray(path_or_image.convert("RGB"), dtype=np.float32)
    with Image.open(path_or_image) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float32)


def test_bundled_folder_is_complete_and_within_budget():
    for rel in ("model_index.json", "unet/config.json", "vae/config.json", "text_encoder/config.json",
                "tokenizer/vocab.json", "scheduler/scheduler_config.json", "ip_adapter/ip_adapter.safetensors",
                "ip_adapter/image_encoder/config.json", "loras/fantasy.safetensors", "loras/vintage.safetensors",
                "instruments/identity.safetensors", "instruments/identity.json", "instruments/expression.safetensors",
                "instruments/expression.json", "README.md", "training.json"):
        assert (BUNDLED / rel).is_file(), f"assets/bundled/{rel} is missing"
    total = sum(p.stat().st_size for p in (REPO_ROOT / "assets").rglob("*") if p.is_file())
    assert total <= 60 * 2**20, f"assets/ holds {total / 2**20:.1f} MB (budget 60 MB)"
    training = json.loads((BUNDLED / "training.json").read_text())
    assert {"vae", "base + ip_adapter", "lora fantasy", "lora vintage"} <= set(training["stages"])


def test_stock_diffusers_loads_the_bundled_model_with_adapter_and_lora():
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(BUNDLED, safety_checker=None, requires_safety_checker=False)
    pipe.load_ip_adapter(str(BUNDLED / "ip_adapter"), subfolder="", weight_name="ip_adapter.safetensors",
                         image_encoder_folder="image_encoder")
    pipe.load_lora_weights(str(BUNDLED / "loras"), weight_name="vintage.safetensors", adapter_name="vintage")
    pipe.set_progress_bar_config(disable=True)
    portrait = Image.new("RGB", (128, 128), (200, 170, 140))

    def call(weight: float) -> np.ndarray:
        pipe.set_adapters(["vintage"], adapter_weights=[weight])
        pipe.set_ip_adapter_scale(0.6)
        out = pipe("portrait photo of a woman with red hair", ip_adapter_image=portrait, num_inference_steps=6,
                   guidance_scale=5.0, height=128, width=128, generator=torch.Generator("cpu").manual_seed(0))
        return _arr(out.images[0])

    plain, themed = call(0.0), call(1.0)
    assert plain.shape == (128, 128, 3) and plain.std() > 10  # an image, not a flat field
    assert np.abs(plain - themed).mean() > 2  # the LoRA at full strength changes the picture


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    config = load_config(REPO_ROOT / "spaces.yaml")
    tmp = tmp_path_factory.mktemp("bundled-store")
    store = Store(tmp / "characters.db", tmp / "data")
    yield Studio(config, config.profile("bundled"), store, engine_factory=Engine)
    store.close()


def test_design_lock_selfie_on_the_bundled_model(studio):
    assert studio.profile.name == "bundled"
    design = studio.design(SPEC, seed=7, n=2, name="Bundled")
    a, b = design["candidates"]
    assert np.abs(_arr(a["path"]) - _arr(b["path"])).mean() > 5  # two candidates, two different people
    cid = design["character"]["id"]
    ref = studio.lock(cid, a["id"])
    selfies = studio.selfie(cid, {"scene": "beach", "expression": "laughing"}, seed=3, count=1)
    s = selfies[0]
    assert s["likeness_state"] == "scored" and s["likeness_instrument"] == "adapter"
    assert 0.0 <= s["likeness"] <= 1.0 and 1 <= s["attempts"] <= studio.profile.likeness.max_attempts
    assert s["recipe"]["ip_adapter_scale"] > 0 and s["recipe"]["reference_sha256"] == ref["image_sha256"]
    assert np.abs(_arr(s["path"]) - _arr(ref["path"])).mean() > 3  # a new picture, not the reference again
    _, same = studio.reproduce(s["image_sha256"])
    assert same
    listed = studio.get_character(cid)
    assert listed["reference"]["id"] == ref["id"] and [x["id"] for x in listed["selfies"]] == [s["id"]]


def test_theme_strength_zero_is_no_theme_on_the_bundled_model(studio):
    none = studio.design({**SPEC, "theme": "none"}, seed=11, n=1)["candidates"][0]
    off = studio.design({**SPEC, "theme": "vintage", "theme_strength": 0.0}, seed=11, n=1)["candidates"][0]
    full = studio.design({**SPEC, "theme": "vintage", "theme_strength": 1.0}, seed=11, n=1)["candidates"][0]
    assert np.abs(_arr(none["path"]) - _arr(off["path"])).mean() < 1.0
    assert np.abs(_arr(none["path"]) - _arr(full["path"])).mean() > 3


def test_shipped_expression_instrument_reads_held_out_close_ups():
    """The expression classifier (train_expression.py) on renderer ground truth it never saw: held-out people in
    close-up, every expression (measured at training: 0.94 on 105 such renders; the joint head it replaces: 0.15)."""
    from customizer.likeness.instruments import Instruments
    from customizer.training.train_expression import held_out_set

    images, ye, yf = held_out_set(per_framing=21, salt="test-expression")
    close = yf == 0  # framings in catalogue order: close-up first
    instr = Instruments.load(BUNDLED / "instruments")
    names = instr.own["expression"].heads["expression"]
    pred = [names.index(p["expression"]) for p in instr.classify([Image.fromarray(x) for x in images[close]])]
    assert float(np.mean(np.asarray(pred) == ye[close])) >= 0.7


def test_shipped_appearance_instrument_reads_held_out_portraits():
    """The appearance classifier (train_appearance.py) on held-out renderer portraits it never saw (measured at
    training: 0.91 mean on 280; the joint model's attribute heads it replaces: 0.47 on 200)."""
    from customizer.likeness.instruments import ATTRIBUTE_KEYS, Instruments
    from customizer.training.train_appearance import held_out_set

    images, labels, _ = held_out_set(n=48, salt="test-appearance")["portrait"]
    instr = Instruments.load(BUNDLED / "instruments")
    assert {instr.source(k) for k in ATTRIBUTE_KEYS} == {"appearance"}
    names = instr.heads()
    pred = instr.classify([Image.fromarray(x) for x in images])
    acc = {k: float(np.mean([names[k].index(p[k]) == y for p, y in zip(pred, labels[k])])) for k in ATTRIBUTE_KEYS}
    assert np.mean(list(acc.values())) >= 0.8, acc
    assert acc["eye_colour"] >= 0.6, acc  # the joint model's eye-colour head was at chance (0.17)


def test_loading_the_bundled_model_prints_no_library_alarms():
    """The first render used to print diffusers' "Casting directly with `to()`" (a no-op cast), "No LoRA keys
    associated to CLIPTextModel" (UNet-only LoRA files) and peft's second-adapter warning (engine/quiet.py)."""
    import subprocess
    import sys

    code = ("from customizer.config import load_config; from customizer.engine.pipeline import Engine; "
            "e = Engine(load_config().profile('bundled')); print(sorted(e.theme_adapters))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "fantasy" in run.stdout and "vintage" in run.stdout      # both theme adapters loaded
    for alarm in ("Casting directly with `to()`", "No LoRA keys associated", "Already found a `peft_config`"):
        assert alarm not in run.stderr, run.stderr[-2000:]
