"""Run the whole bundled-model recipe (recipe.yaml), stage after stage, resuming wherever the last run stopped.

    python -m customizer.training.all --runs DIR [--budget small|full] [--max-minutes M] [--out assets/bundled]
                                      [--dry-run]

Stages (recipe.yaml holds their arguments): vae [-> vae continued] -> latents -> text encoder (captions
only) -> image encoder (identity only) -> base (UNet + IP-Adapter on the frozen encoders) -> theme latents -> LoRAs
-> instruments -> assemble. The encoder stages are optional: a recipe without them trains the encoders inside the
base stage. A stage counts as done when its output says so (a checkpoint at the target step, a latent file made with
the current VAE, the instruments' report); an unfinished one is continued with --resume and the minutes left of
--max-minutes, so repeating the same command across sessions finishes the model. Every stage is a subprocess running
the stage's own CLI, exactly the commands README.md documents (printed before each run).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

RECIPE = Path(__file__).with_name("recipe.yaml")
INSTRUMENTS = "{instruments}"   # in recipe.yaml: the runs' instruments folder (learning curves read them)
# in recipe.yaml: the first design's VAE (1,500 steps, 4 latent channels), which the second one warm-starts from;
# taken out of the repository's history into the runs folder when a plan needs it
FIRST_VAE = "{first_design_vae}"
FIRST_VAE_COMMIT, FIRST_VAE_PATH = "825c4a7", "assets/bundled/vae"


def first_design_vae(runs: Path) -> Path:
    """runs/first_design_vae: the AutoencoderKL folder of FIRST_VAE_COMMIT (git archive of the repository)."""
    dest = runs / "first_design_vae"
    if not (dest / "config.json").exists():
        repo = Path(__file__).resolve().parents[2]
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(repo), "archive", FIRST_VAE_COMMIT, FIRST_VAE_PATH],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "--strip-components", str(FIRST_VAE_PATH.count("/") + 1), "-C", str(dest)],
                       input=archive, check=True)
    return dest


@dataclass
class Stage:
    name: str
    module: str
    args: list[str]
    done: bool
    resumable: bool = True
    min_minutes: float = 0.0          # do not start it with less time than this (not resumable stages)
    extra: dict = field(default_factory=dict)


def _arg(args: list[str], flag: str) -> str | None:
    return args[args.index(flag) + 1] if flag in args else None


def target_step(args: list[str]) -> int:
    """Where a stage is done: its --stop-at when the recipe stops it before the end of its --steps schedule."""
    return int(_arg(args, "--stop-at") or _arg(args, "--steps"))


def checkpoint_step(run: Path) -> int:
    """The step of run/checkpoint.pt without loading the weights (read from the log's last checkpoint event)."""
    log = run / "log.jsonl"
    if not log.exists():
        return 0
    step = 0
    for line in log.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:      # a line cut by a kill: ignore
            continue
        if rec.get("event") in ("checkpoint", "final"):
            step = max(step, int(rec.get("step", 0)))
    return step


def latents_current(path: Path, vae: Path) -> bool:
    """A latent file exists and was made with this VAE's current scaling factor (a retrained VAE invalidates it)."""
    meta = path.with_suffix(".json")
    cfg = vae / "config.json"
    if not (path.exists() and meta.exists() and cfg.exists()):
        return False
    return json.loads(meta.read_text())["scaling_factor"] == json.loads(cfg.read_text())["scaling_factor"]


def instruments_steps(folder: Path) -> int:
    """Training steps behind the instruments in folder (0: none yet)."""
    report = folder / "instruments_report.json"
    return int(json.loads(report.read_text())["training"]["steps"]) if report.exists() else 0


# the classifiers of their own (two_stage.py), trained after the joint instruments into the same folder, in this
# order when the recipe names them: recipe key -> (module, its stage-1 steps argument)
OWN_INSTRUMENTS = {"appearance": ("train_appearance", "--portrait-steps"),
                   "expression": ("train_expression", "--closeup-steps")}


def own_steps(folder: Path, name: str) -> int:
    """Training steps (both stages) behind the classifier <name> of its own in folder (0: none yet)."""
    cfg = folder / f"{name}.json"
    return sum(int(s["steps"]) for s in json.loads(cfg.read_text())["meta"]["stages"]) if cfg.exists() else 0


def plan(runs: Path, budget: str, out: Path, recipe: Path = RECIPE) -> list[Stage]:
    r = yaml.safe_load(recipe.read_text(encoding="utf-8"))[budget]
    vae, base, latents = runs / "vae", runs / "base", runs / "latents.pt"
    inst = runs / "instruments"

    def fill(args: list[str]) -> list[str]:
        return [str(inst) if a == INSTRUMENTS else str(first_design_vae(runs)) if a == FIRST_VAE else a
                for a in args]

    stages: list[Stage] = []
    if "instruments" in r:     # first: they only read renderer ground truth, and the learning curves read them
        stages.append(Stage("instruments", "train_instruments", ["--out", str(inst), *r["instruments"]],
                            instruments_steps(inst) >= int(_arg(r["instruments"], "--steps")), resumable=False,
                            min_minutes=float(r.get("instruments_minutes", 0))))
        for name, (module, first) in OWN_INSTRUMENTS.items():
            if name in r:
                want = int(_arg(r[name], first)) + int(_arg(r[name], "--steps"))
                stages.append(Stage(name, module, ["--out", str(inst), *r[name]], own_steps(inst, name) >= want,
                                    resumable=False, min_minutes=float(r.get(f"{name}_minutes", 0))))
    stages.append(Stage("vae", "train_vae", ["--out", str(vae), *fill(r["vae"]), "--resume"],
                        checkpoint_step(vae) >= target_step(r["vae"])))
    vaes = [vae]
    # every vae_<name> key goes on from the VAE run before it (encoder too: the latents are made after the last)
    for key in (k for k in r if k.startswith("vae_")):
        vaes.append(runs / key)
        stages.append(Stage(key, "train_vae", ["--out", str(vaes[-1]), "--init-from", str(vaes[-2]),
                                               *fill(r[key]), "--resume"],
                            checkpoint_step(vaes[-1]) >= target_step(r[key])))
    vae = vaes[-1]
    stages.append(Stage("latents", "encode_corpus", ["--vae", str(vae), "--out", str(latents), *r["latents"]],
                        latents_current(latents, vae), resumable=False))
    base_args = ["--latents", str(latents), "--vae", str(vae), "--out", str(base)]
    for key, module, flag in (("text_encoder", "train_text_encoder", "--text-encoder"),
                              ("image_encoder", "train_image_encoder", "--image-encoder")):
        if key in r:   # pre-trained on its own, then frozen in the base stage
            run = runs / key
            stages.append(Stage(key, module, ["--out", str(run), *fill(r[key]), "--resume"],
                                checkpoint_step(run) >= target_step(r[key])))
            base_args += [flag, str(run)]
    stages.append(Stage("base", "train_base", [*base_args, *fill(r["base"]), "--resume"],
                        checkpoint_step(base) >= target_step(r["base"])))
    bases = [base]
    if "image_encoder_look" in r and "image_encoder" in r:   # the encoder goes on with the look heads
        run = runs / "image_encoder_look"
        stages.append(Stage("image_encoder_look", "train_image_encoder",
                            ["--out", str(run), "--init-from", str(runs / "image_encoder"),
                             *fill(r["image_encoder_look"]), "--resume"],
                            checkpoint_step(run) >= target_step(r["image_encoder_look"])))
        base_args[base_args.index("--image-encoder") + 1] = str(run)
    continuations = [k for k in r if k.startswith("base_")]    # in the recipe's order, each from the one before
    if any("--detail-weight" in r[k] for k in continuations):
        from .latent_masks import masks_path

        masks = masks_path(latents)
        stages.append(Stage("latent masks", "latent_masks", ["--latents", str(latents), "--workers", "2"],
                            masks.is_file(), resumable=False))   # renders only: the VAE does not change them
    for key in continuations:   # the base goes on from the previous run's weights, on a schedule of its own
        bases.append(runs / key)
        base_args[base_args.index("--out") + 1] = str(bases[-1])
        stages.append(Stage(key, "train_base",
                            [*base_args, "--init-from", str(bases[-2]), *fill(r[key]), "--resume"],
                            checkpoint_step(bases[-1]) >= target_step(r[key])))
    loras = []
    for theme in r["themes"]:
        tl, lr = runs / f"latents_{theme}.pt", runs / f"lora_{theme}"
        loras.append(lr)
        stages.append(Stage(f"latents {theme}", "encode_corpus",
                            ["--vae", str(vae), "--out", str(tl), "--theme", theme, *r["theme_latents"]],
                            latents_current(tl, vae), resumable=False))
        stages.append(Stage(f"lora {theme}", "train_lora",
                            ["--base", str(bases[-1]), "--latents", str(tl), "--theme", theme, "--out", str(lr),
                             *r["lora"], "--resume"], checkpoint_step(lr) >= target_step(r["lora"])))
    upscaler = runs / "upscaler"
    if "upscaler" in r:   # trained on the last VAE's round trips (the model's pictures are its decodes)
        stages.append(Stage("upscaler", "train_upscaler", ["--vae", str(vae), "--out", str(upscaler),
                                                          *r["upscaler"], "--resume"],
                            checkpoint_step(upscaler) >= target_step(r["upscaler"])))
    assemble_args = [*[a for v in vaes for a in ("--vae", str(v))], *[a for b in bases for a in ("--base", str(b))],
                     *[a for lr in loras for a in ("--lora", str(lr))], "--out", str(out)]
    for key in ("text_encoder", "image_encoder", "image_encoder_look"):
        if key in r:
            assemble_args += [f"--{key.replace('_', '-')}", str(runs / key)]
    if "instruments" in r:
        assemble_args += ["--instruments", str(inst)]
    if "upscaler" in r:
        assemble_args += ["--upscaler", str(upscaler)]
    stages.append(Stage("assemble", "assemble", assemble_args, False, resumable=False))
    return stages


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m customizer.training.all", description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", required=True, type=Path, help="run folders live here (outside the repository)")
    ap.add_argument("--budget", default="small", help="recipe.yaml section: small (CPU) or full (GPU)")
    ap.add_argument("--max-minutes", type=float, default=None, help="wall-clock budget of this invocation")
    ap.add_argument("--out", type=Path, default=Path("assets/bundled"), help="assembled model folder")
    ap.add_argument("--stage-minutes", type=float, default=None,
                    help="give each resumable stage at most this budget (e.g. to stop after one step in tests)")
    ap.add_argument("--recipe", type=Path, default=RECIPE, help="recipe file (default: recipe.yaml beside this)")
    ap.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    args.runs.mkdir(parents=True, exist_ok=True)
    stages = plan(args.runs, args.budget, args.out, args.recipe)
    for st in stages:
        print(f"[{'done' if st.done else 'todo'}] {st.name}", file=sys.stderr)
    if args.dry_run:
        return 0
    for st in stages:
        if st.done:
            continue
        left = None if args.max_minutes is None else args.max_minutes - (time.monotonic() - t0) / 60
        if left is not None and (left <= 0 or left < st.min_minutes):
            print(f"all: {left:.0f} min left, not enough to start {st.name}; run again to continue", file=sys.stderr)
            return 3
        cmd = [sys.executable, "-m", f"customizer.training.{st.module}", *st.args]
        if left is not None and (st.resumable or st.module == "train_instruments"):
            cmd += ["--max-minutes", f"{left:.3f}"]
        if args.stage_minutes is not None and st.resumable:
            cmd += ["--max-minutes", repr(args.stage_minutes)]   # argparse keeps the last one
        print("all: $ " + " ".join(cmd), file=sys.stderr, flush=True)
        rc = subprocess.call(cmd)
        if rc != 0:
            print(f"all: stage {st.name} failed (exit {rc})", file=sys.stderr)
            return rc
        if st.resumable and not plan(args.runs, args.budget, args.out, args.recipe)[stages.index(st)].done:
            print(f"all: {st.name} stopped before its last step (time budget); run again to continue",
                  file=sys.stderr)
            return 3
    print(f"all: done; model in {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
