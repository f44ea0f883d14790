"""The adherence probe (customizer/bench/adherence.py) on the real bundled model: one attribute changed at a time."""
from __future__ import annotations

import json

import pytest

from customizer.bench import adherence
from customizer.character import catalogue


def test_adherence_probe_on_the_bundled_model(tmp_path, capsys):
    out = tmp_path / "adherence.json"
    assert adherence.main(["--seeds", "2", "--attributes", "hair_style,eye_colour", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == result
    assert list(result["attributes"]) == ["hair_style", "eye_colour"]
    assert (result["sampler"], result["steps"]) == ("dpmpp_2m", 8)  # the bundled profile's, as the designer renders
    for key, r in result["attributes"].items():
        n = len(catalogue()[key].choices)
        assert r["chance"] == round(1 / n, 4) and 0 <= r["accuracy"] <= 1
        assert 1 <= r["distinct_readings_per_seed"] <= n
        # the attribute word moves pixels and the UNet's prediction at least a little (0 would mean it is ignored
        # entirely, or the probe compared an image with itself)
        assert r["prompt_vs_seed"] > 0 and r["unet_response"] > 0
    assert result["mean_accuracy"] == round(sum(r["accuracy"] for r in result["attributes"].values()) / 2, 4)


@pytest.mark.parametrize("argv", [["--seeds", "1"], ["--attributes", "theme"], ["--attributes", ","]])
def test_adherence_refuses_bad_arguments(argv):
    with pytest.raises(SystemExit) as e:
        adherence.main(argv)
    assert e.value.code == 2


def test_adherence_probe_with_a_lora_records_it_and_changes_the_images(tmp_path):
    from customizer.config import REPO_ROOT

    lora = REPO_ROOT / "assets" / "bundled" / "loras" / "vintage.safetensors"
    runs = {}
    for name, extra in (("base", []), ("lora", ["--lora", str(lora)])):
        out = tmp_path / f"{name}.json"
        assert adherence.main(["--seeds", "2", "--attributes", "hair_length", "--json", str(out), *extra]) == 0
        runs[name] = json.loads(out.read_text())
    assert runs["base"]["lora"] is None and runs["lora"]["lora"] == str(lora)
    assert runs["lora"]["attributes"]["hair_length"] != runs["base"]["attributes"]["hair_length"]
