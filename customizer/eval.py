"""Eval harness: run the app's own design -> lock -> selfie path on held-out characters and score it.

    python -m customizer.eval --out DIR [--profile bundled] [--config spaces.yaml] [--characters N]
                              [--selfies-per K] [--instruments DIR]

For N held-out characters (identity seeds with corpus.is_held_out True; their attribute combination is the one
the corpus gives that person, so deterministic) it drives customizer.service.Studio over a temporary Store, exactly
as the UI does: design (candidates), lock the first candidate, then K selfies in several scenes / expressions /
framings at the default likeness, and the same K selfies (same seeds) again with the IP-Adapter switched off.
The images are scored with the measuring instruments (customizer/training/instruments.py, trained on renderer
ground truth only), and the same characters drawn by the renderer itself are scored too (`renderer_ceiling`: what
the instruments read from perfect images, the ceiling for the model's numbers).

Writes DIR/report.json and DIR/contact_sheet.png (rows = characters: reference, then selfies; the no-IP-Adapter
selfies in DIR/contact_sheet_no_ip_adapter.png). Works against any profile; on the tiny random test model the
numbers are meaningless but every step is real.

Metrics (report.json): attribute_accuracy per attribute + mean on the portraits vs the requested spec;
theme_accuracy on every generated image; scene/expression/framing_accuracy on the selfies vs the requested shot;
identity: cosine of each selfie with its own reference (same_mean) and with the other characters' references
(different_mean), and verification_accuracy = mean of true-accept rate and true-reject rate at the threshold
giving <= 5 % false accepts between different characters (`at_instrument_threshold`: the same at the threshold
calibrated on renderer ground truth when the instruments were trained - steadier with few characters).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from .character import SelfieSpec, selfie_catalogue
from .config import REPO_ROOT, load_config
from .errors import ConfigError, CustomizerError, ModelUnavailable
from .training.corpus import PORTRAIT, _seed, identity_records, is_held_out

DEFAULT_INSTRUMENTS = REPO_ROOT / "assets" / "bundled" / "instruments"
MAX_FAR = 0.05
CELL, PAD = 128, 2
ATTRIBUTE_KEYS = ("hair_colour", "hair_style", "hair_length", "eye_colour", "skin_tone", "body_type", "outfit",
                  "theme")
SHOT_KEYS = ("scene", "expression", "framing")


# ---- what to shoot -----------------------------------------------------------------------------------------------

def held_out_characters(n: int, salt: str = "eval") -> list[dict[str, Any]]:
    """n held-out identity seeds with their corpus attributes (deterministic)."""
    out, i = [], 0
    while len(out) < n:
        s = _seed("eval-character", salt, i)
        i += 1
        if is_held_out(s):
            attrs = identity_records(s, count=1)[0].attrs
            out.append({"identity_seed": s, "spec": {k: attrs[k] for k in (*ATTRIBUTE_KEYS, "age",
                                                                             "theme_strength", "extra")}})
    return out


def shot_plan(index: int, identity_seed: int, k: int) -> list[dict[str, str]]:
    """K selfie specs per character: scenes, expressions and framings each cycle without repeats (where K allows),
    started at a different point per character so the whole run covers every choice."""
    cat = selfie_catalogue()
    rng = random.Random(f"eval-shots:{identity_seed}")
    lists = {}
    for key in SHOT_KEYS:
        choices = [c for c in cat[key].choices if c != "custom"]
        rng.shuffle(choices)
        lists[key] = choices
    return [{key: lists[key][(index + j) % len(lists[key])] for key in SHOT_KEYS} for j in range(k)]


# ---- scoring helpers ---------------------------------------------------------------------------------------------

def _acc(pairs: list[tuple[Any, Any]]) -> float | None:
    return round(sum(p == t for p, t in pairs) / len(pairs), 4) if pairs else None


def _mean(values: list[float]) -> float | None:
    return round(float(np.mean(values)), 4) if values else None


def identity_block(ref_emb: np.ndarray, selfie_emb: np.ndarray, owner: list[int],
                   calibrated: float | None = None) -> dict[str, Any]:
    """Selfie-vs-reference cosine scores: own reference (same) vs every other character's (different)."""
    from .training.instruments import verification

    same, diff = [], []
    if len(owner):
        sim = selfie_emb @ ref_emb.T
        for j, i in enumerate(owner):
            same.append(float(sim[j, i]))
            diff.extend(float(sim[j, k]) for k in range(ref_emb.shape[0]) if k != i)
    v = verification(same, diff, MAX_FAR)
    block = {"same_mean": _mean(same), "different_mean": _mean(diff),
             "margin": (round(float(np.mean(same) - np.mean(diff)), 4) if same and diff else None),
             "verification_accuracy": _r(v["accuracy"]), "threshold": v["threshold"], "tar": _r(v["tar"]),
             "far": _r(v["far"]), "n_same": v["n_same"], "n_different": v["n_different"], "max_far": MAX_FAR}
    if calibrated is not None:
        s, d = np.asarray(same), np.asarray(diff)
        tar = float((s >= calibrated).mean()) if s.size else None
        far = float((d >= calibrated).mean()) if d.size else None
        acc = (tar + 1 - far) / 2 if tar is not None and far is not None else None
        block["at_instrument_threshold"] = {"threshold": calibrated, "verification_accuracy": _r(acc),
                                            "tar": _r(tar), "far": _r(far)}
    return block


def _r(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)


def score(instr, chars: list[dict[str, Any]], calibrated: float | None) -> dict[str, Any]:
    """Scores for characters with images: chars[i] = {spec, portraits: [PIL], reference: PIL,
    selfies: [(PIL, shot dict)], selfies_no_ip: [(PIL, shot dict)] (optional)}."""
    portraits = [(im, c["spec"]) for c in chars for im in c["portraits"]]
    selfies = [(im, c["spec"], shot, i) for i, c in enumerate(chars) for im, shot in c["selfies"]]
    p_pred = instr.classify([im for im, _ in portraits])
    s_pred = instr.classify([im for im, *_ in selfies])
    heads = instr.attributes.heads
    keys = [k for k in ATTRIBUTE_KEYS if k in heads]
    per = {k: _acc([(p[k], spec[k]) for p, (_, spec) in zip(p_pred, portraits)]) for k in keys}
    selfie_attr = {k: _acc([(p[k], spec[k]) for p, (_, spec, _, _) in zip(s_pred, selfies)]) for k in keys}
    out: dict[str, Any] = {
        "attribute_accuracy": {**per, "mean": _mean([v for v in per.values() if v is not None])},
        "theme_accuracy": _acc([(p["theme"], spec["theme"]) for p, (_, spec) in zip(p_pred, portraits)]
                               + [(p["theme"], spec["theme"]) for p, (_, spec, _, _) in zip(s_pred, selfies)])
        if "theme" in heads else None,
        **{f"{k}_accuracy": _acc([(p[k], shot[k]) for p, (_, _, shot, _) in zip(s_pred, selfies)])
           for k in SHOT_KEYS if k in heads},
        "selfie_attribute_accuracy": {**selfie_attr, "mean": _mean([v for v in selfie_attr.values()
                                                                    if v is not None])},
    }
    refs = instr.embed([c["reference"] for c in chars])
    out["identity"] = identity_block(refs, instr.embed([im for im, *_ in selfies]), [i for *_, i in selfies],
                                     calibrated)
    if any(c.get("selfies_no_ip") for c in chars):
        free = [(im, shot, i) for i, c in enumerate(chars) for im, shot in c["selfies_no_ip"]]
        f_pred = instr.classify([im for im, _, _ in free])
        block = identity_block(refs, instr.embed([im for im, _, _ in free]), [i for *_, i in free], calibrated)
        block |= {f"{k}_accuracy": _acc([(p[k], shot[k]) for p, (_, shot, _) in zip(f_pred, free)])
                  for k in SHOT_KEYS if k in heads}
        out["identity_no_ip_adapter"] = block
    return out


# ---- the app path ------------------------------------------------------------------------------------------------

def generate(studio, studio_no_ip, chars: list[dict[str, Any]], selfies_per: int, candidates: int,
             likeness: float, log: Callable[[str], None]) -> list[dict[str, Any]]:
    """Design -> lock first candidate -> selfies (and the same selfies without the IP-Adapter) through Studio."""
    from .service import SEED_MAX

    out = []
    for i, ch in enumerate(chars):
        s = ch["identity_seed"]
        t0 = time.perf_counter()
        design = studio.design(ch["spec"], seed=_seed("eval-design", s) % SEED_MAX, n=candidates,
                               name=f"eval-{i:03d}")
        cid = design["character"]["id"]
        ref = studio.lock(cid, design["candidates"][0]["id"])
        shots = shot_plan(i, s, selfies_per)
        with_ip, without = [], []
        for j, shot in enumerate(shots):
            seed = _seed("eval-selfie", s, j) % SEED_MAX
            rec = studio.selfie(cid, {**shot, "likeness": likeness}, seed=seed, count=1)[0]
            with_ip.append((_open(rec["path"]), shot))
            if studio_no_ip is not None:
                rec = studio_no_ip.selfie(cid, {**shot, "likeness": 0.0}, seed=seed, count=1)[0]
                assert rec["recipe"]["ip_adapter_scale"] == 0.0
                without.append((_open(rec["path"]), shot))
        out.append({**ch, "character_id": cid, "portraits": [_open(c["path"]) for c in design["candidates"]],
                    "reference": _open(ref["path"]), "selfies": with_ip, "selfies_no_ip": without,
                    "shots": shots})
        log(f"character {i + 1}/{len(chars)}: {len(design['candidates'])} portrait(s), {len(with_ip)} selfies"
            f"{' (+ no IP-Adapter)' if without else ''} in {time.perf_counter() - t0:.1f}s")
    return out


def _open(path: str) -> Image.Image:
    with Image.open(path) as im:
        return im.convert("RGB")


def renderer_images(chars: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same characters and shots drawn by the corpus renderer (ground truth): the instruments' ceiling."""
    from .training.render import Identity, Variation, render

    out = []
    for ch in chars:
        s = ch["identity_seed"]
        ident = Identity.sample(s)
        attrs = dict(ch["spec"])
        ref = render(attrs, ident, Variation.sample(_seed("eval-ref", s), **PORTRAIT))
        shots = [(render(attrs, ident, Variation.sample(_seed("eval-shot", s, j), **shot)), shot)
                 for j, shot in enumerate(ch["shots"])]
        out.append({"spec": ch["spec"], "portraits": [ref], "reference": ref, "selfies": shots})
    return out


def contact_sheet(rows: list[list[Image.Image]], cols: int) -> Image.Image:
    sheet = Image.new("RGB", (PAD + cols * (CELL + PAD), PAD + max(1, len(rows)) * (CELL + PAD)), (24, 24, 28))
    for r, images in enumerate(rows):
        for c, im in enumerate(images[:cols]):
            sheet.paste(im.resize((CELL, CELL), Image.LANCZOS) if im.size != (CELL, CELL) else im,
                        (PAD + c * (CELL + PAD), PAD + r * (CELL + PAD)))
    return sheet


def run_eval(out: Path, profile_name: str | None = None, config_path: str | Path | None = None,
             characters: int = 8, selfies_per: int = 4, instruments: str | Path | None = None,
             candidates: int = 1, likeness: float | None = None, no_ip_pass: bool = True,
             renderer_ceiling: bool = True, log: Callable[[str], None] = print) -> dict[str, Any]:
    from .availability import require_available
    from .service import Studio
    from .store import Store
    from .training.instruments import Instruments

    t_start = time.perf_counter()
    out = Path(out)
    config = load_config(config_path)
    profile = config.profile(profile_name)
    require_available(profile)
    inst_dir = Path(instruments) if instruments else DEFAULT_INSTRUMENTS
    instr = Instruments.load(inst_dir)
    meta = json.loads((inst_dir / "identity.json").read_text(encoding="utf-8")).get("meta", {})
    calibrated = (meta.get("verification") or {}).get("threshold")
    likeness = SelfieSpec().likeness if likeness is None else float(likeness)
    chars = held_out_characters(characters)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="customizer-eval-") as tmp:
        store = Store(Path(tmp) / "characters.db", Path(tmp) / "data")
        try:
            studio = Studio(config, profile, store)
            studio_no_ip = None
            if no_ip_pass and profile.ip_adapter is not None:
                # same engine and store, a profile whose likeness band is [0, 0]: IP-Adapter scale 0
                off = dataclasses.replace(profile, extra={**profile.extra, "ip_scale": [0.0, 0.0]})
                studio_no_ip = Studio(config, off, store, engine_factory=lambda _p: studio.engine)
            t_gen = time.perf_counter()
            made = generate(studio, studio_no_ip, chars, selfies_per, candidates, likeness, log)
            gen_seconds = time.perf_counter() - t_gen
            engine_info = studio.status()
        finally:
            store.close()
    scores = score(instr, made, calibrated)
    if "identity_no_ip_adapter" not in scores and no_ip_pass:
        # no IP-Adapter in this profile: the selfies above already had none
        scores["identity_no_ip_adapter"] = {**scores["identity"], "note": "profile has no IP-Adapter"}
    report: dict[str, Any] = {
        "profile": profile.name, "config": str(config.path), "instruments": str(inst_dir),
        "n_characters": len(made), "n_selfies": sum(len(c["selfies"]) for c in made),
        "n_portraits": sum(len(c["portraits"]) for c in made), "selfies_per_character": selfies_per,
        "likeness": likeness, "ip_adapter_scale": studio.likeness_to_scale(likeness) if profile.ip_adapter else 0.0,
        **scores,
    }
    if renderer_ceiling:
        ceiling = score(instr, renderer_images(made), calibrated)
        report["renderer_ceiling"] = {k: ceiling[k] for k in ("attribute_accuracy", "theme_accuracy",
                                                             "scene_accuracy", "expression_accuracy",
                                                             "framing_accuracy", "identity") if k in ceiling}
    report["characters"] = [{"identity_seed": c["identity_seed"], "spec": c["spec"], "shots": c["shots"]}
                            for c in made]
    report["engine"] = engine_info
    report["generation_seconds"] = round(gen_seconds, 1)
    cols = 1 + selfies_per
    contact_sheet([[c["reference"]] + [im for im, _ in c["selfies"]] for c in made], cols).save(
        out / "contact_sheet.png")
    if any(c["selfies_no_ip"] for c in made):
        contact_sheet([[c["reference"]] + [im for im, _ in c["selfies_no_ip"]] for c in made], cols).save(
            out / "contact_sheet_no_ip_adapter.png")
    report["seconds"] = round(time.perf_counter() - t_start, 1)
    (out / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m customizer.eval", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path, help="output directory (report.json, contact_sheet.png)")
    ap.add_argument("--profile", default=None, help="model profile (default: the config's default_profile)")
    ap.add_argument("--config", default=None, help="spaces.yaml (default: the repo's, or $CUSTOMIZER_CONFIG)")
    ap.add_argument("--characters", type=int, default=8, help="held-out characters")
    ap.add_argument("--selfies-per", type=int, default=4, help="selfies per character")
    ap.add_argument("--candidates", type=int, default=1, help="portrait candidates per character (1-4)")
    ap.add_argument("--likeness", type=float, default=None, help="selfie likeness (default: the app's default)")
    ap.add_argument("--instruments", default=None, help=f"instruments folder (default: {DEFAULT_INSTRUMENTS})")
    ap.add_argument("--no-ip-pass", action="store_true", help="skip the IP-Adapter-off selfies")
    args = ap.parse_args(argv)
    if args.characters < 2:
        ap.error("--characters must be at least 2 (identity needs other characters to compare with)")
    if args.selfies_per < 1:
        ap.error("--selfies-per must be at least 1")
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    try:
        report = run_eval(args.out, args.profile, args.config, args.characters, args.selfies_per,
                          args.instruments, args.candidates, args.likeness, not args.no_ip_pass, log=log)
    except (ConfigError, ModelUnavailable, FileNotFoundError, CustomizerError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    ident, free = report["identity"], report.get("identity_no_ip_adapter", {})
    log(f"attributes (portraits) mean {report['attribute_accuracy']['mean']}  theme {report['theme_accuracy']}  "
        f"scene {report.get('scene_accuracy')}  expression {report.get('expression_accuracy')}")
    log(f"identity same {ident['same_mean']} different {ident['different_mean']} verification "
        f"{ident['verification_accuracy']}; without IP-Adapter same {free.get('same_mean')} verification "
        f"{free.get('verification_accuracy')}")
    log(f"wrote {args.out / 'report.json'} and contact_sheet.png in {report['seconds']}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
