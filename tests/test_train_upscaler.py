"""train_upscaler end to end on the tiny random VAE, a few steps on 32 px pairs: it writes the upscaler folder the
engine loads, the held-out report and grid; a run stopped and resumed ends on exactly the weights of a run
straight through, and reuses its pairs."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from customizer.engine import sr_net
from customizer.training import common, train_upscaler

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: tiny models run on one thread

FAST = ["--size", "32", "--crop", "16", "--batch", "2", "--pairs", "6", "--eval-images", "3", "--grid", "2",
        "--channels", "8", "--layers", "3", "--log-every", "1", "--eval-every", "2", "--ckpt-every", "2",
        "--lr", "3e-3", "--warmup", "0", "--threads", "1"]


def run(out, vae, *extra) -> int:
    return train_upscaler.main(["--out", str(out), "--vae", str(vae), *FAST, *extra])


def events(out, name: str) -> list[dict]:
    return [r for r in common.JsonlLog(out / common.LOG, echo=False).read() if r.get("event") == name]


def test_trains_reports_and_resumes_exactly(tmp_path, tiny_model_dir):
    vae = tiny_model_dir / "vae"
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert run(straight, vae, "--steps", "4") == 0

    up = sr_net.SRUpscaler(straight)
    out = up.upscale(Image.new("RGB", (32, 32), (90, 40, 200)))
    assert out.size == (64, 64)
    meta = json.loads((straight / sr_net.CONFIG).read_text())
    assert meta["trained_on"]["pairs"] == 6 and meta["trained_on"]["steps"] == 4
    assert meta["trained_on"]["size"] == [32, 64]
    trained = sr_net.load(straight)
    assert trained.tail.weight.abs().sum() > 0   # it learned a residual (the fresh net's last layer is zero)

    rep = json.loads((straight / train_upscaler.REPORT).read_text())
    assert rep["step"] == 4 and rep["held_out_pictures"] == 3 and rep["size"] == [32, 64]
    for name in ("bicubic", "lanczos2x", "learned"):
        fig = rep["figures"][name]
        assert np.isfinite(fig["psnr"]) and fig["psnr"] > 5 and fig["edge_l1"] >= 0 and fig["sharpness"] > 0
    assert rep["seconds_per_image"]["learned"] > 0 and rep["seconds_per_image"]["lanczos2x"] > 0
    assert [c["step"] for c in rep["curve"]] == [0, 2, 4]
    with Image.open(straight / train_upscaler.GRID) as grid:   # 2 rows x 4 columns of 64 px (+ 2 px padding)
        assert grid.size == (4 * 66 + 2, 2 * 66 + 2)

    with pytest.raises(SystemExit, match="--resume"):
        run(straight, vae, "--steps", "4")

    assert run(split, vae, "--steps", "4", "--stop-at", "2") == 0
    assert json.loads((split / train_upscaler.REPORT).read_text())["step"] == 2
    assert run(split, vae, "--steps", "4", "--resume") == 0
    assert len(events(split, "pairs_made")) == 1 and len(events(split, "resume")) == 1   # the pairs were reused
    a, b = sr_net.load(straight).state_dict(), sr_net.load(split).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    steps = [r["step"] for r in common.JsonlLog(split / common.LOG, echo=False).read() if "loss" in r]
    assert steps == [1, 2, 3, 4]

    with pytest.raises(SystemExit, match="another schedule"):
        run(split, vae, "--steps", "6", "--resume")
