"""One PNG: where the time of one image goes (text encode, image embed, denoise, decode, store), baseline vs ours,
one panel per scenario (their scales differ by orders of magnitude)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

STAGES = [("text_encode", "text encode", "#4c72b0"), ("image_embed", "image embed", "#dd8452"),
          ("denoise", "denoise", "#55a868"), ("decode", "decode", "#c44e52"),
          ("store", "store (PNG + SQLite)", "#8172b3")]


def scenarios(results: dict[str, Any]) -> list[tuple[str, dict[str, float], dict[str, float]]]:
    """(title, baseline stages, ours stages) in seconds per image."""
    out = []
    b = results.get("bundled")
    if b:
        for kind in ("portrait", "selfie"):
            out.append((f"bundled {kind}", b["baseline"]["stages"][kind], b["ours"]["stages"][kind]))
    s = results.get("sd15")
    if s:
        for n in s["ratio"]:
            def at(side: dict[str, Any], n: str = n) -> dict[str, float]:
                if side["latency"][n]["method"] == "measured" and "stages" in side:
                    return side["stages"][n]
                one = dict(side["one_step_stages"])  # composed: the measured step, n times
                one["denoise"] = one["denoise"] * int(n)
                return one
            how = ("" if s["ours"]["latency"][n]["method"] == "measured"
                   else f" (composed: fixed stages + {n} x one measured step)")
            out.append((f"SD1.5 geometry selfie, {n} steps{how}", at(s["baseline"]), at(s["ours"])))
    return out


def write_plot(results: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = scenarios(results)
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 1.6 + 1.3 * len(panels)), squeeze=False)
    for ax, (title, base, ours) in zip(axes[:, 0], panels):
        for row, stages in enumerate((base, ours)):
            left = 0.0
            for key, label, colour in STAGES:
                width = float(stages.get(key, 0.0))
                ax.barh(row, width, left=left, color=colour, label=label if row == 0 else None)
                left += width
            ax.text(left, row, f" {left:.3g} s", va="center", fontsize=8)
        ax.set_yticks([0, 1], ["plain diffusers", "ours"])
        ax.set_title(title, fontsize=10, loc="left")
        ax.set_xlabel("seconds per image (median of each stage)")
        ax.set_xlim(0, max(sum(base.values()), sum(ours.values())) * 1.25)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(STAGES), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
