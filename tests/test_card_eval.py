"""The eval's ceiling table goes into an assembled model's card and training.json, once, before the parts."""
import json

import pytest

from customizer.eval import ceiling_table
from customizer.training import card_eval


def _report():
    rep = {"renderer_ceiling": {"attribute_accuracy": {"mean": 0.9, "eye_colour": 0.8}, "theme_accuracy": 1.0,
                                "expression_accuracy": 0.6, "identity": {"verification_accuracy": 0.95}},
           "vae_roundtrip_ceiling": {"attribute_accuracy": {"mean": 0.72, "eye_colour": 0.78},
                                     "theme_accuracy": 0.7, "expression_accuracy": 0.6,
                                     "identity": {"verification_accuracy": 0.93}},
           "attribute_accuracy": {"mean": 0.5, "eye_colour": 0.3}, "theme_accuracy": 0.9, "expression_accuracy": 0.2,
           "identity": {"verification_accuracy": 0.7}, "identity_no_ip_adapter": {"verification_accuracy": 0.65},
           "n_characters": 12, "n_selfies": 48, "seconds": 100.0}
    return {"ceiling_table": ceiling_table(rep), **rep}


def test_ceiling_section_lands_before_the_parts_with_the_bars_and_is_replaced_not_repeated(tmp_path):
    (tmp_path / "README.md").write_text("# Bundled model\n\nintro\n\n## Parts (1 MB)\n\n| part | size |\n")
    (tmp_path / "training.json").write_text(json.dumps({"size_mb": 1.0}))
    card_eval.write_into_card(tmp_path, _report(), "python -m customizer.eval --characters 12", "vae.png")
    card_eval.write_into_card(tmp_path, _report(), "python -m customizer.eval --characters 12", "vae.png")
    text = (tmp_path / "README.md").read_text()
    assert text.count(card_eval.BEGIN) == 1 and text.count("## Per-stage ceiling") == 1
    assert text.index("## Per-stage ceiling") < text.index("## Parts")
    assert "| mean | 0.90 | 0.72 | 0.50 | 0.80 | 0.56 (under bar) |" in text          # VAE bar is per attribute
    assert "| eye_colour | 0.80 | 0.78 | 0.30 | 0.97 (bar met) | 0.38 |" in text
    assert "| theme | 1.00 | 0.70 | 0.90 | 0.70 | 0.90 (bar met) |" in text
    assert "IP-Adapter 0.70, with it off 0.65" in text and "![VAE round trip](vae.png)" in text
    facts = json.loads((tmp_path / "training.json").read_text())
    assert facts["size_mb"] == 1.0 and facts["eval"]["verification_no_ip_adapter"] == 0.65
    assert [r["figure"] for r in facts["eval"]["ceiling_table"]][7] == "mean"


def test_a_report_without_the_ceiling_is_refused(tmp_path):
    (tmp_path / "README.md").write_text("# card\n")
    with pytest.raises(SystemExit, match="ceiling_table"):
        card_eval.write_into_card(tmp_path, {"n_characters": 2}, "cmd")
