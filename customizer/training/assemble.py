"""Assemble the bundled model folder from finished training runs, with its model card.

    python -m customizer.training.assemble --vae runs/vae --base runs/base --lora runs/lora_fantasy \\
        --lora runs/lora_vintage --instruments runs/instruments --out assets/bundled [--max-mb 60]

Copies base/pipeline (the StableDiffusionPipeline folder), base/ip_adapter (image_encoder/ +
ip_adapter.safetensors), each LoRA run's <theme>.safetensors to loras/ and the measuring instruments
(train_instruments: the eval harness's and the app's likeness scorer's default location) to instruments/, then writes
README.md (the model card: parts and sizes, hardware, steps and wall time of every stage from the runs' logs, the
commands that reproduce it) and training.json (the same facts, machine-readable). Refuses a folder over --max-mb:
everything under assets/ ships in the repository.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from ..upscaler_folder import CONFIG as UPSCALER_CONFIG
from ..upscaler_folder import WEIGHTS as UPSCALER_WEIGHTS
from ..upscaler_folder import is_sr_folder
from .common import LOG, JsonlLog


def stage_facts(run: Path) -> dict:
    """What a run's log says: its start record (device, sizes, hyper-parameters), steps done, training seconds."""
    records = JsonlLog(run / LOG, echo=False).read()
    start = next((r for r in records if r.get("event") == "start"), {})
    steps = [r for r in records if "loss" in r]
    resumes = sum(r.get("event") == "resume" for r in records)
    evals = [r for r in records if "eval_l1" in r]
    return {
        "run": run.name,
        "start": start,
        "steps_done": steps[-1]["step"] if steps else 0,
        "train_seconds": steps[-1]["seconds"] if steps else 0.0,
        "final_loss": steps[-1]["loss"] if steps else None,
        "sessions": 1 + resumes,
        **({"eval_l1": evals[-1]["eval_l1"]} if evals else {}),
        # the learning curve: what the eval's instruments read at each point (train_vae / train_base "curve")
        **({"curve": curves} if (curves := [r for r in records if r.get("event") == "curve"]) else {}),
    }


BASE = "base + ip_adapter"


def continued(previous: dict, run: dict) -> dict:
    """A base run warm-started from an assembled model (train_base --init-from), as one stage with that model's
    base: steps, seconds and sessions add up, and the run's curve points go on from the previous ones (so the card's
    learning curve is one line over all the CPU hours spent)."""
    steps, seconds = previous["steps_done"], previous["train_seconds"]
    return {**run, "run": f"{previous['run']} + {run['run']}", "start": previous["start"],
            "continued": [*previous.get("continued", []), {"from_step": steps, "start": run["start"]}],
            "steps_done": steps + run["steps_done"], "train_seconds": round(seconds + run["train_seconds"], 2),
            "sessions": previous["sessions"] + run["sessions"],
            "curve": [*previous.get("curve", []),
                      *({**c, "step": c["step"] + steps, "seconds": c["seconds"] + seconds}
                        for c in run.get("curve", [])
                        # a run's step-0 point reads the weights it started from: the previous run's last point
                        if c["step"] > 0 or not previous.get("curve"))]}


def stages_of(vaes: list[Path], bases: list[Path], loras: list[tuple[str, Path]], encoders: dict[str, Path],
              previous: dict | None) -> dict:
    """Every stage's facts from its run's log; vaes and bases: runs in order, each warm-started from the one before
    (one stage each); with `previous` (an assembled model's training.json, whose runs the first ones continued) the
    stages without a run here keep that model's facts, and those with runs add up to them."""
    stages = dict(previous["stages"]) if previous else {}
    vae = stages.get("vae")
    for v in vaes:
        vae = continued(vae, stage_facts(v)) if vae is not None else stage_facts(v)
    if vae is not None:
        stages["vae"] = vae
    stages.update({name: stage_facts(run) for name, run in encoders.items()})
    run = stages[BASE] if previous else None
    for b in bases:
        run = continued(run, stage_facts(b)) if run is not None else stage_facts(b)
    stages[BASE] = run
    stages.update({f"lora {t}": stage_facts(r) for t, r in loras})
    order = ["vae", "text_encoder", "image_encoder", "image_encoder_look", BASE]
    return {k: stages[k] for k in [*order, *sorted(set(stages) - set(order))] if k in stages}


def folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def _copytree(src: Path, dst: Path) -> None:
    if not src.is_dir():
        raise SystemExit(f"missing {src}: finish that training stage first")
    shutil.copytree(src, dst)


def drop_fast_tokenizer_file(folder: Path) -> None:
    """tokenizer.json (3.6 MB) repeats vocab.json + merges.txt, from which CLIPTokenizer builds the same tokens
    (3,000 corpus captions compared when this was written; tests/test_training_second_design.py compares the
    assembled folder's): assets/ has a 60 MB budget."""
    if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        (folder / "tokenizer.json").unlink(missing_ok=True)


def assemble(vae: Path | list[Path] | None, base: Path | list[Path], loras: list[Path], out: Path, max_mb: float,
             instruments: Path | None = None, encoders: dict[str, Path] | None = None,
             previous: dict | None = None, calibration_people: int = 0, upscaler: Path | None = None,
             kept_upscaler: Path | None = None) -> dict:
    """vae: the VAE run, or VAE runs each continuing the one before (train_vae --init-from), for the model card
    (the weights are the base's: it was trained on that VAE's latents); base: the base run, or base runs each
    continuing the one before (the last one's weights are copied); encoders: the runs of the pre-trained, frozen
    encoders (text_encoder, image_encoder, image_encoder_look), for the model card; previous: the training.json of
    the model the first runs continued (its earlier stages); calibration_people: held-out people the IP-Adapter's
    image encoder is calibrated on as the app's likeness instrument (calibrate_likeness.py; 0 = not calibrated);
    upscaler: the train_upscaler run whose net (upscaler.json + upscaler.safetensors) goes to upscaler/;
    kept_upscaler: without such a run, the continued model's upscaler/ folder, copied as it is (its stage facts
    come with `previous`)."""
    bases = list(base) if isinstance(base, (list, tuple)) else [base]
    base = bases[-1]
    vaes = [] if vae is None else list(vae) if isinstance(vae, (list, tuple)) else [vae]
    if not vaes and previous is None:
        raise SystemExit("--vae is needed unless the base continues an assembled model (--continue-from)")
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    _copytree(base / "pipeline", tmp)
    _copytree(base / "ip_adapter", tmp / "ip_adapter")
    drop_fast_tokenizer_file(tmp / "tokenizer")
    (tmp / "loras").mkdir()
    themes = []
    for run in loras:
        files = sorted(run.glob("*.safetensors"))
        if len(files) != 1:
            raise SystemExit(f"{run} should hold exactly one <theme>.safetensors, found {[f.name for f in files]}")
        shutil.copy2(files[0], tmp / "loras" / files[0].name)
        themes.append(files[0].stem)
    if instruments is not None:
        (tmp / "instruments").mkdir()
        for f in sorted(instruments.iterdir()):
            if f.suffix in (".safetensors", ".json"):
                shutil.copy2(f, tmp / "instruments" / f.name)
    if upscaler is not None or kept_upscaler is not None:
        src = upscaler if upscaler is not None else kept_upscaler
        (tmp / "upscaler").mkdir()
        for name in (UPSCALER_CONFIG, UPSCALER_WEIGHTS):
            if not (src / name).is_file():
                raise SystemExit(f"missing {src / name}: finish the upscaler stage first")
            shutil.copy2(src / name, tmp / "upscaler" / name)
    likeness = None
    if calibration_people:
        from .calibrate_likeness import calibrate

        likeness = calibrate(tmp / "ip_adapter" / "image_encoder", calibration_people,
                             instruments=tmp / "instruments" if instruments is not None else None)
    size = folder_mb(tmp)
    if size > max_mb:
        shutil.rmtree(tmp)
        raise SystemExit(f"assembled model is {size:.1f} MB, over the {max_mb} MB budget for assets/")
    facts = {"size_mb": round(size, 2), "themes": themes,
             "parts_mb": {p.name: round(folder_mb(p) if p.is_dir() else p.stat().st_size / 1e6, 2)
                          for p in sorted(tmp.iterdir()) if p.name != "model_index.json"},
             "stages": stages_of(vaes, bases, list(zip(themes, loras)), encoders or {}, previous)}
    if upscaler is not None:
        facts["stages"]["upscaler"] = stage_facts(upscaler)
    if likeness is not None:
        facts["likeness"] = likeness
    (tmp / "training.json").write_text(json.dumps(facts, indent=2) + "\n", encoding="utf-8")
    from .curve_plot import plot_curves

    plot_curves(facts["stages"], tmp / "learning_curve.png")
    (tmp / "README.md").write_text(model_card(facts), encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return facts


def model_card(facts: dict) -> str:
    rows = []
    for name, st in facts["stages"].items():
        start = st["start"]
        hours = st["train_seconds"] / 3600
        batch = start.get("batch") or (f"{start['batches_per_step']} rendered batches" if "batches_per_step" in start
                                       else "?")
        rows.append(f"| {name} | {start.get('device', '?')} | {st['steps_done']} x batch {batch} | "
                    f"{hours:.2f} h in {st['sessions']} session(s) | "
                    f"{st['final_loss'] if st['final_loss'] is None else round(st['final_loss'], 4)} |")
    parts = "\n".join(f"| {k} | {v} MB |" for k, v in facts["parts_mb"].items())
    curves = curve_tables(facts["stages"])
    likeness = likeness_note(facts.get("likeness"))
    return f"""# Bundled model (trained by this project)

A Stable Diffusion 1.x-format model trained from scratch on this project's synthetic character renderer
(`customizer/training/render`), with an IP-Adapter and theme LoRAs ({", ".join(facts["themes"])}). It is the
`bundled` profile of `spaces.yaml`: 128x128 images, offline, on a CPU. Loads with stock diffusers:

```python
pipe = StableDiffusionPipeline.from_pretrained("assets/bundled")
pipe.load_ip_adapter("assets/bundled/ip_adapter", subfolder="", weight_name="ip_adapter.safetensors",
                     image_encoder_folder="image_encoder")
pipe.load_lora_weights("assets/bundled/loras", weight_name="fantasy.safetensors", adapter_name="fantasy")
```

Trained only on synthetic drawings of fictional adults; it knows nothing else. Theme LoRAs carry the theme by
their weight alone (the captions never contained theme words), so the app's theme strength is the adapter weight.

## Parts ({facts["size_mb"]} MB in all, fp16 weights)

| part | size |
|---|---|
{parts}

## Training (from the runs' logs)

| stage | hardware | steps | wall time (training loop) | final loss |
|---|---|---|---|---|
{chr(10).join(rows)}

{curves}{likeness}
Reproduce with one command, from the repository root (every stage resumes where it stopped, so it can be repeated
across working sessions): `python -m customizer.training.all --runs DIR --budget small`. The stages' own commands
are in `customizer/training/README.md`; `training.json` holds every stage's hyper-parameters as logged at its start.
"""


def likeness_note(cal: dict | None) -> str:
    """The app's likeness instrument (the adapter's image encoder) beside the eval's judge, on the same pairs."""
    if not cal:
        return ""
    judge = cal.get("eval_instrument_same_pairs")
    vs = (f"; the eval's identity instrument on the same pairs: {judge['accuracy']:.2f} "
          f"(same {judge['same_mean']:.2f}, different {judge['different_mean']:.2f})") if judge else ""
    return (f"## Likeness (the app's score and retries)\n\nThe app scores selfies against the locked reference with "
            f"the IP-Adapter's own image encoder (`ip_adapter/image_encoder/likeness.json`), so the eval's identity "
            f"instrument stays an independent judge of what retries buy. On {cal['people']} held-out people x "
            f"{cal['selfies_per_person']} renderer photos: same-person threshold {cal['threshold']:.3f} at "
            f"<= {cal['max_far']:.0%} false accepts, verification {cal['accuracy']:.2f} (same {cal['same_mean']:.2f}, "
            f"different {cal['different_mean']:.2f}){vs}.\n\n")


def _f(x) -> str:
    return "-" if x is None else x if isinstance(x, str) else f"{x:.2f}"


def vae_note(vae: dict) -> str:
    """Where the VAE's curve goes on with a continued run (train_vae --init-from), and what that run changed."""
    out = []
    for c in vae.get("continued", []):
        st = c["start"]
        what = [w for w, on in (("the decoder alone", st.get("freeze_encoder")),
                                (f"8x8-block colour L1 x {st.get('colour_weight')}", st.get("colour_weight")),
                                (f"iris / expression colour L1 x {st.get('region_colour_weight')}",
                                 st.get("region_colour_weight")),
                                (f"patch critic x {st.get('adv_weight')}", st.get("adv_weight"))) if on]
        out.append(f" From step {c['from_step']}: continued" + (f" ({', '.join(what)})" if what else "") + ".")
    return "".join(out)


def curve_tables(stages: dict) -> str:
    """The learning curves as tables (the picture is learning_curve.png): what each CPU hour bought."""
    from .curve_plot import ADAPTER_ON, adapter_on_valid

    out = []
    vae = stages.get("vae", {}).get("curve", [])
    if vae:
        out += ["## Learning curves", "", "![learning curves](learning_curve.png)", "",
                "VAE: the instruments' reading of held-out renders after the round trip, over their reading of the "
                "renders themselves (bar: >= 0.95 each)." + vae_note(stages["vae"]), "",
                "| step | CPU h | attributes | eye colour | hair colour | outfit | expression | verification "
                "| lowest |",
                "|---|---|---|---|---|---|---|---|---|"]
        for c in vae:
            r = c["ratio"]
            out.append(f"| {c['step']} | {c['seconds'] / 3600:.2f} | {_f(r.get('mean'))} | {_f(r.get('eye_colour'))} | "
                       f"{_f(r.get('hair_colour'))} | {_f(r.get('outfit'))} | {_f(r.get('expression_accuracy'))} | "
                       f"{_f(r.get('verification_accuracy'))} | {_f(c.get('min_ratio'))} |")
        out.append("")
    base = next((st.get("curve", []) for name, st in stages.items() if name.startswith("base")), [])
    if base:
        if not vae:
            out += ["## Learning curves", "", "![learning curves](learning_curve.png)", ""]
        out += ["Base (UNet + IP-Adapter): the eval slice (held-out characters: portrait, then a selfie conditioned "
                "on it, and the same selfie with the adapter off; then both again prompted without hair, eyes and "
                "skin, which only the reference can carry) and the adherence probe's mean read-back.", "",
                "| step | CPU h | attributes | scene | expression | verification | without adapter | "
                "prompt without the look: verification (adapter on / off) | adherence |",
                "|---|---|---|---|---|---|---|---|---|"]
        mixed = False
        for c in base:
            e = dict(c["eval_slice"])
            if not adapter_on_valid(e):      # readings of selfies that saw the whole batch's references
                mixed = True
                e.update({k: "n/a*" for k in ADAPTER_ON if k in e})
            bare = (f"{_f(e.get('verification_from_reference'))} / "
                    f"{_f(e.get('verification_from_reference_no_ip_adapter'))}"
                    if "verification_from_reference" in e else "-")
            out.append(f"| {c['step']} | {c['seconds'] / 3600:.2f} | {_f(e.get('attributes'))} | "
                       f"{_f(e.get('scene'))} | {_f(e.get('expression'))} | {_f(e.get('verification'))} | "
                       f"{_f(e.get('verification_no_ip_adapter'))} | {bare} | {_f(c.get('adherence_mean'))} |")
        if mixed:
            out += ["", "n/a*: until 2026-12-07 the curve drew its reference-conditioned selfies 16 at a time with "
                    "the pipeline's `ip_adapter_image_embeds`, which gives every prompt all 16 references at once; "
                    "those points' readings of them (scene, expression, verification with the adapter) were not the "
                    "model's and are left out. The attributes (portraits) and the adapter-off readings stand."]
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m customizer.training.assemble", description=__doc__.split("\n\n")[0])
    ap.add_argument("--vae", type=Path, action="append", default=[],
                    help="train_vae run folder (for the model card); repeat for runs that continue the one before "
                         "(train_vae --init-from), or that continue the --continue-from model's VAE")
    ap.add_argument("--continue-from", type=Path, default=None,
                    help="the assembled model the base run was warm-started from (train_base --init-from): the "
                         "stages without a run here keep its training.json facts, and the base's add up")
    ap.add_argument("--base", required=True, type=Path, action="append",
                    help="train_base run folder (pipeline/ + ip_adapter/); repeat for runs that continue the one "
                         "before (train_base --init-from): the last one's weights, all of their facts")
    ap.add_argument("--lora", action="append", type=Path, default=[], help="train_lora run folder (repeat)")
    ap.add_argument("--instruments", type=Path, default=None, help="train_instruments output folder")
    ap.add_argument("--text-encoder", type=Path, default=None, help="train_text_encoder run (model card)")
    ap.add_argument("--image-encoder", type=Path, default=None, help="train_image_encoder run (model card)")
    ap.add_argument("--image-encoder-look", type=Path, default=None,
                    help="the image encoder run continued with --look-heads (model card)")
    ap.add_argument("--upscaler", type=Path, default=None,
                    help="train_upscaler run: its learned 2x upscaler goes to upscaler/ (the profile's `upscaler`)")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--max-mb", type=float, default=60.0)
    ap.add_argument("--calibration-people", type=int, default=200,
                    help="held-out people to calibrate the image encoder as the app's likeness instrument on "
                         "(calibrate_likeness.py; 0 = skip)")
    args = ap.parse_args(argv)
    encoders = {k: v for k, v in (("text_encoder", args.text_encoder), ("image_encoder", args.image_encoder),
                                  ("image_encoder_look", args.image_encoder_look)) if v}
    previous, kept_upscaler = None, None
    if args.continue_from is not None:
        # read before assembling: --out may be the same folder
        previous = json.loads((args.continue_from / "training.json").read_text(encoding="utf-8"))
        if args.upscaler is None and is_sr_folder(args.continue_from / "upscaler"):
            kept_upscaler = args.continue_from / "upscaler"   # no new upscaler run: the continued model's stays
    facts = assemble(args.vae, args.base, args.lora, args.out, args.max_mb, args.instruments, encoders, previous,
                     args.calibration_people, args.upscaler, kept_upscaler)
    print(f"assembled {args.out}: {facts['size_mb']} MB, themes {facts['themes']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
