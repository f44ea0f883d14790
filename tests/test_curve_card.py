"""The model card's learning-curve notes. The VAE's says what each continued run added. The base's leaves out the
readings of curve points whose reference-conditioned selfies were drawn with every reference of their batch at once
(before curve._draw conditioned each prompt on its own reference), and keeps everything else."""
from __future__ import annotations

from customizer.training.assemble import curve_tables
from customizer.training.curve_plot import PER_PROMPT, adapter_on_valid


def _point(step: int, **extra) -> dict:
    return {"step": step, "seconds": 3600.0 * step / 1000, "adherence_mean": 0.5,
            "eval_slice": {"attributes": 0.61, "scene": 0.93, "expression": 0.17, "framing": 0.9,
                           "verification": 0.72, "verification_no_ip_adapter": 0.75,
                           "verification_from_reference": 0.44, "verification_from_reference_no_ip_adapter": 0.48,
                           **extra}}


def test_old_points_show_their_adapter_readings_as_not_available():
    old, new = _point(1000), _point(2000, references=PER_PROMPT, verification=0.88)
    assert not adapter_on_valid(old["eval_slice"]) and adapter_on_valid(new["eval_slice"])
    card = curve_tables({"base": {"curve": [old, new]}})
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in card.splitlines() if line.startswith("| 1000") or line.startswith("| 2000")}
    # columns: CPU h, attributes, scene, expression, verification, without adapter, look-free on / off, adherence
    assert rows["1000"][1:6] == ["0.61", "n/a*", "n/a*", "n/a*", "0.75"]
    assert rows["1000"][6] == "n/a* / 0.48"
    assert rows["2000"][1:6] == ["0.61", "0.93", "0.17", "0.88", "0.75"] and rows["2000"][6] == "0.44 / 0.48"
    assert "all 16 references at once" in card
    assert "n/a*" not in curve_tables({"base": {"curve": [new]}})


def test_the_card_says_what_each_continued_vae_run_added():
    from customizer.training.assemble import vae_note

    note = vae_note({"continued": [{"from_step": 2000, "start": {"colour_weight": 2.0}},
                                   {"from_step": 3500, "start": {"colour_weight": 2.0, "region_colour_weight": 2.0}},
                                   {"from_step": 4300, "start": {"freeze_encoder": True}}]})
    assert note == (" From step 2000: continued (8x8-block colour L1 x 2.0)."
                    " From step 3500: continued (8x8-block colour L1 x 2.0, iris / expression colour L1 x 2.0)."
                    " From step 4300: continued (the decoder alone).")
    assert vae_note({}) == ""
