"""The learning curves of the model card: what each CPU hour bought, read by the eval's instruments.

Left: the VAE (train_vae "curve" events): the round trip's reading over the renderer's, per figure that caps the
model (the issue's bar is 0.95 for each). Right: the base (train_base "curve" events): the eval slice (attribute
mean, verification with and without the IP-Adapter, expression) and the adherence probe's mean read-back.
matplotlib is optional (the test extra): without it no plot is drawn and the numbers stay in training.json.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

VAE_LINES = ("eye_colour", "hair_colour", "outfit", "expression_accuracy", "verification_accuracy", "mean")
BASE_LINES = (("eval_slice", "attributes"), ("eval_slice", "verification"),
              ("eval_slice", "verification_no_ip_adapter"), ("eval_slice", "verification_from_reference"),
              ("eval_slice", "expression"), (None, "adherence_mean"))

# Curve points before 2026-12-07 drew their reference-conditioned selfies in batches of 16 with the pipeline's
# ip_adapter_image_embeds, which hands every prompt ALL of the batch's references (diffusers repeats that tensor per
# prompt): their readings of those selfies are not the model's. Points made since say "references": PER_PROMPT
# (curve._draw conditions prompt j on reference j alone); the card and the plot leave the others' readings out.
PER_PROMPT = "one per prompt"
ADAPTER_ON = ("scene", "expression", "framing", "verification", "same_minus_different", "verification_from_reference",
              "look_agreement_from_reference")


def adapter_on_valid(eval_slice: dict[str, Any]) -> bool:
    """Whether this curve point's readings of reference-conditioned selfies are the model's (see PER_PROMPT)."""
    return eval_slice.get("references") == PER_PROMPT


def _hours(rec: dict[str, Any]) -> float:
    return float(rec.get("seconds", 0.0)) / 3600


def plot_curves(stages: dict[str, Any], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    vae = stages.get("vae", {}).get("curve", [])
    base = next((st.get("curve", []) for name, st in stages.items() if name.startswith("base")), [])
    if not vae and not base:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for key in VAE_LINES:
        pts = [(_hours(r), r["ratio"].get(key)) for r in vae if r.get("ratio", {}).get(key) is not None]
        if pts:
            left.plot(*zip(*pts), marker=".", label=key.replace("_accuracy", ""))
    left.axhline(0.95, color="grey", linestyle="--", linewidth=0.8)
    left.set(title="VAE round trip / renderer", xlabel="training CPU hours", ylim=(0, 1.1))
    left.legend(fontsize=7)
    for group, key in BASE_LINES:
        pts = [(_hours(r), (r.get(group) or {}).get(key) if group else r.get(key)) for r in base
               if not (group == "eval_slice" and key in ADAPTER_ON and not adapter_on_valid(r.get(group) or {}))]
        pts = [(h, v) for h, v in pts if v is not None]
        if pts:
            right.plot(*zip(*pts), marker=".", label=f"{key}" if group is None else f"{key}")
    right.set(title="base: eval slice and adherence probe", xlabel="training CPU hours", ylim=(0, 1.05))
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
