"""Put the eval's per-stage ceiling table into an assembled model's card (README.md) and training.json.

    python -m customizer.training.card_eval --report bench/eval-report.json --model assets/bundled \\
        [--command "python -m customizer.eval ..."] [--picture ../../bench/vae-roundtrip.png]

Why a step of its own: the eval needs the assembled model, so the card assemble.py writes cannot hold it yet. The
section sits between two markers and is replaced on every run, so re-running after a new eval never duplicates it.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

BEGIN, END = "<!-- eval: begin -->", "<!-- eval: end -->"
MODEL_BAR, VAE_BAR = 0.85, 0.95    # the bars: model / renderer (mean, theme, scene, expression); VAE each
MODEL_BAR_FIGURES = ("mean", "theme", "scene", "expression")
VAE_BAR_SKIP = ("theme", "scene", "framing", "mean")   # the VAE bar is per attribute, expression and verification


def _f(x) -> str:
    return "-" if x is None else f"{x:.2f}"


def _share(a, b):
    return None if a is None or not b else a / b


def ceiling_markdown(report: dict, command: str, picture: str | None = None) -> str:
    rows = report.get("ceiling_table") or []
    if not rows:
        raise SystemExit("the report has no ceiling_table: run the eval with its renderer ceiling (the default)")
    lines = [BEGIN, "## Per-stage ceiling (the eval)", "",
             f"`{command}` ({report.get('n_characters')} held-out characters, {report.get('n_selfies')} selfies, "
             f"{report.get('seconds')} s). Renderer: what the instruments read from the renderer's own pictures of "
             "the same characters and shots; VAE trip: the same pictures after this model's VAE (no UNet can draw "
             "more); model: this model's pictures. Bars: VAE trip >= 0.95 x renderer for each attribute, expression "
             "and verification; model >= 0.85 x renderer for the attribute mean, theme, scene and expression.", "",
             "| figure | renderer | VAE trip | model | VAE / renderer | model / renderer |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        name = r["figure"]
        vae_share = _share(r.get("vae_roundtrip"), r.get("renderer"))
        model_share = r.get("model_over_renderer")
        vae_cell = _f(vae_share) + ("" if name in VAE_BAR_SKIP or vae_share is None
                                    else (" (bar met)" if vae_share >= VAE_BAR else " (under bar)"))
        model_cell = _f(model_share) + ("" if name not in MODEL_BAR_FIGURES or model_share is None
                                        else (" (bar met)" if model_share >= MODEL_BAR else " (under bar)"))
        lines.append(f"| {name} | {_f(r.get('renderer'))} | {_f(r.get('vae_roundtrip'))} | {_f(r.get('model'))} | "
                     f"{vae_cell} | {model_cell} |")
    on = report.get("identity", {}).get("verification_accuracy")
    off = report.get("identity_no_ip_adapter", {}).get("verification_accuracy")
    lines += ["", f"Identity verification with the IP-Adapter {_f(on)}, with it off {_f(off)} "
                  "(bars: >= 0.85, and >= 0.25 above off)."]
    if picture:
        lines += ["", "VAE round trip, before and after (renderer / first design's VAE / this VAE):", "",
                  f"![VAE round trip]({picture})"]
    return "\n".join([*lines, END, ""])


def write_into_card(model: Path, report: dict, command: str, picture: str | None = None) -> None:
    card = model / "README.md"
    text = card.read_text(encoding="utf-8")
    if BEGIN in text and END in text:   # replace the previous eval's section
        head, rest = text.split(BEGIN, 1)
        text = head.rstrip("\n") + "\n\n" + rest.split(END, 1)[1].lstrip("\n")
    section = ceiling_markdown(report, command, picture)
    marker = "## Parts"                 # first thing a reader sees after the introduction
    text = text.replace(marker, section + "\n" + marker, 1) if marker in text else text + "\n" + section
    card.write_text(text, encoding="utf-8")
    facts_path = model / "training.json"
    facts = json.loads(facts_path.read_text(encoding="utf-8")) if facts_path.exists() else {}
    facts["eval"] = {"command": command, "ceiling_table": report["ceiling_table"],
                     "verification": report.get("identity", {}).get("verification_accuracy"),
                     "verification_no_ip_adapter": report.get("identity_no_ip_adapter", {})
                     .get("verification_accuracy"), "seconds": report.get("seconds")}
    facts_path.write_text(json.dumps(facts, indent=2) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m customizer.training.card_eval", description=__doc__.split("\n\n")[0])
    ap.add_argument("--report", required=True, type=Path, help="report.json of python -m customizer.eval")
    ap.add_argument("--model", required=True, type=Path, help="assembled model folder (README.md, training.json)")
    ap.add_argument("--command", default="python -m customizer.eval", help="the eval command that wrote the report")
    ap.add_argument("--picture", default=None, help="before/after VAE picture, relative to the model folder")
    args = ap.parse_args(argv)
    write_into_card(args.model, json.loads(args.report.read_text(encoding="utf-8")), args.command, args.picture)
    print(f"wrote the ceiling table into {args.model / 'README.md'} and training.json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
