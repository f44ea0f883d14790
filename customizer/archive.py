"""Export a character as a zip, and import one back - treating every archive as hostile.

Layout: character.json + images/<sha256>.png + loras/<sha256>.safetensors (character LoRAs). Embedding caches are
not exported: they are recomputed. character.json lists candidates, references, selfies (with `accepted_at`), the
reference sheets ("sheet") and the character LoRAs with their training facts ("character_loras"); the last two are
optional: older archives have none.
Import checks everything before the Store sees it, then inserts the whole character in one transaction,
so a refused or failed import leaves no rows behind.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from PIL import Image

from . import safety
from .errors import CustomizerError, ImportRefused, SpecError
from .store import NAME_MAX, Store, clean_name

FORMAT = "customizer-character"
FORMAT_VERSION = 1
MAX_MEMBERS = 500
MAX_MEMBER_BYTES = 20 * 1024 * 1024
MAX_TOTAL_BYTES = 200 * 1024 * 1024
MAX_IMAGE_SIDE = 8192  # generated images are at most ~2048 px; a tiny PNG can claim a huge canvas
MAX_LORA_BYTES = 64 * 1024 * 1024  # a rank-8 SD1.5 character LoRA in fp16 is a few MB; the bundled one 0.34 MB
MAX_LORA_HEADER = 4 * 1024 * 1024
_IMAGE_NAME = re.compile(r"images/([0-9a-f]{64})\.png")
_LORA_NAME = re.compile(r"loras/([0-9a-f]{64})\.safetensors")
# safetensors dtype -> bytes per element (what save_lora_weights can write)
_ST_DTYPES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2}
_SHA = re.compile(r"[0-9a-f]{64}")
MAX_DEPTH = 32  # nesting of character.json: exports are a few levels deep; deeper only serves to crash a parser
SQL_INT = 2**63  # sqlite INTEGER range


def export_character(store: Store, character_id: str, owner: str = "local") -> bytes:
    ch = store.get_character(character_id, owner)

    def image_meta(r: dict, *keys: str) -> dict:
        return {"id": r["id"], "image_sha256": r["image_sha256"], "recipe": r["recipe"], **{k: r[k] for k in keys}}

    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "name": ch["name"],
        "spec": ch["spec"],
        "status": ch["status"],
        "candidates": [image_meta(k, "created_at") for k in ch["candidates"]],
        "references": [image_meta(r, "candidate_id", "locked_at", "unlocked_at") for r in ch["references"]],
        "selfies": [image_meta(s, "reference_id", "selfie", "likeness", "attempts", "accepted_at", "created_at")
                    for s in ch["selfies"]],
        "sheet": [image_meta(v, "reference_id", "view", "position", "likeness", "created_at")
                  for v in store.sheet_views(character_id, owner=owner)],
        "character_loras": [{k: lo[k] for k in ("id", "reference_id", "sha256", "facts", "created_at")}
                            for lo in ch["loras"]],
    }
    shas = sorted({r["image_sha256"] for k in ("candidates", "references", "selfies", "sheet") for r in manifest[k]})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("character.json", json.dumps(manifest, indent=2, sort_keys=True),
                    compress_type=zipfile.ZIP_DEFLATED)
        for sha in shas:  # PNGs are already compressed: store them as they are
            zf.write(store.image_path(sha), f"images/{sha}.png", compress_type=zipfile.ZIP_STORED)
        for sha in sorted({lo["sha256"] for lo in manifest["character_loras"]}):
            zf.write(store.lora_path(sha), f"loras/{sha}.safetensors", compress_type=zipfile.ZIP_DEFLATED)
    return buf.getvalue()


# ---------------------------------------------------------------- import

def _unsafe_name(name: str) -> bool:
    parts = name.split("/")
    return (name.startswith("/") or "\\" in name or re.match(r"[A-Za-z]:", name) is not None
            or ".." in parts or "\x00" in name)


def _member_limit(name: str) -> int:
    return MAX_LORA_BYTES if _LORA_NAME.fullmatch(name) else MAX_MEMBER_BYTES


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, budget: int) -> bytes:
    """Read at most the per-member / remaining-total limit: declared sizes can lie, the stream is what counts."""
    limit = min(_member_limit(info.filename), budget)
    out = bytearray()
    with zf.open(info) as f:
        while chunk := f.read(min(1 << 20, limit + 1 - len(out))):
            out += chunk
            if len(out) > limit:
                raise ImportRefused(f"{info.filename} expands beyond the size limit (zip bomb?)")
    return bytes(out)


def _check_png(name: str, sha: str, data: bytes) -> None:
    if hashlib.sha256(data).hexdigest() != sha:
        raise ImportRefused(f"{name}: contents do not match the sha256 in its name")
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.format != "PNG":
                raise ImportRefused(f"{name} is a {im.format} file, not a PNG")
            if max(im.size) > MAX_IMAGE_SIDE:
                raise ImportRefused(f"{name} is too large ({im.size[0]}x{im.size[1]} pixels)")
            im.verify()  # chunk CRCs and structure, without decoding pixels
    except ImportRefused:
        raise
    except Exception as e:  # noqa: BLE001 - PIL raises many types (incl. DecompressionBombError) for hostile files
        raise ImportRefused(f"{name} is not a valid PNG image ({type(e).__name__})") from None


def _check_lora(name: str, sha: str, data: bytes) -> None:
    """A character LoRA file: its sha256, and a well-formed safetensors layout of UNet LoRA tensors (read without
    loading anything: a hostile file must not reach torch before it has been looked at)."""
    if hashlib.sha256(data).hexdigest() != sha:
        raise ImportRefused(f"{name}: contents do not match the sha256 in its name")
    bad = ImportRefused(f"{name} is not a character LoRA (safetensors of UNet LoRA weights)")
    if len(data) < 8:
        raise bad
    size = int.from_bytes(data[:8], "little")
    if not 2 <= size <= min(MAX_LORA_HEADER, len(data) - 8):
        raise bad
    try:
        header = json.loads(data[8:8 + size].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise bad from None
    if not isinstance(header, dict):
        raise bad
    body = len(data) - 8 - size
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    if not tensors:
        raise bad
    for key, t in tensors.items():
        if not (key.startswith("unet.") and ".lora_" in key and isinstance(t, dict)):
            raise bad
        shape, offsets = t.get("shape"), t.get("data_offsets")
        if (t.get("dtype") not in _ST_DTYPES or not isinstance(shape, list) or not isinstance(offsets, list)
                or len(offsets) != 2 or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0
                                                for x in [*shape, *offsets])):
            raise bad
        count = 1
        for x in shape:
            count *= x
        if not offsets[0] <= offsets[1] <= body or offsets[1] - offsets[0] != count * _ST_DTYPES[t["dtype"]]:
            raise bad


def _require(cond: bool, reason: str) -> None:
    if not cond:
        raise ImportRefused(f"character.json: {reason}")


def _is_time(v: Any) -> bool:
    try:
        datetime.fromisoformat(v)
        return True
    except (TypeError, ValueError):
        return False


def _check_rows(m: dict, key: str, extra: dict[str, Any]) -> list[dict]:
    """Each row: id, image_sha256, recipe, plus extra fields checked by predicate."""
    rows = m.get(key)
    _require(isinstance(rows, list), f"'{key}' must be a list")
    ids = set()
    for i, r in enumerate(rows):
        where = f"{key}[{i}]"
        _require(isinstance(r, dict), f"{where} must be an object")
        _require(isinstance(r.get("id"), str) and r["id"] not in ids, f"{where}.id missing or duplicated")
        ids.add(r["id"])
        _require(isinstance(r.get("image_sha256"), str) and _SHA.fullmatch(r["image_sha256"]) is not None,
                 f"{where}.image_sha256 is not a sha256")
        _require(isinstance(r.get("recipe"), dict), f"{where}.recipe must be an object")
        # recipe fields that become typed columns: a wrong type must be refused here, not fail inside sqlite
        seed = r["recipe"].get("seed")
        _require(seed is None or (isinstance(seed, int) and not isinstance(seed, bool) and -SQL_INT < seed < SQL_INT),
                 f"{where}.recipe.seed must be a whole number")
        for key in ("model_id", "kind"):
            _require(r["recipe"].get(key) is None or isinstance(r["recipe"][key], str),
                     f"{where}.recipe.{key} must be text")
        # the prompt is shown back with the recipe: it passes the policy user-written text passes (the app's own
        # prompts, built from the catalogue and checked text, always do); the negative prompt steers away
        prompt = r["recipe"].get("prompt")
        _require(prompt is None or isinstance(prompt, str), f"{where}.recipe.prompt must be text")
        if prompt:
            safety.check_text(prompt, field=f"{where}.recipe.prompt")
        for field, ok in extra.items():
            _require(ok(r.get(field)), f"{where}.{field} is invalid")
    return rows


def _depth(value: Any) -> int:
    """Nesting depth, iteratively (a hostile file must not hit the recursion limit here)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (dict, list)):
            deepest = max(deepest, d)
            if d <= MAX_DEPTH:
                stack.extend((x, d + 1) for x in (v.values() if isinstance(v, dict) else v))
    return deepest


def _parse_manifest(raw: bytes) -> dict:
    try:
        m = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ImportRefused(f"character.json is not valid JSON: {e}") from None
    except RecursionError:
        raise ImportRefused("character.json is nested too deeply") from None
    _require(_depth(m) <= MAX_DEPTH, f"nested more than {MAX_DEPTH} levels deep")
    _require(isinstance(m, dict), "must be a JSON object")
    _require(m.get("format", FORMAT) == FORMAT, "not a character export")
    if m.get("format_version") != FORMAT_VERSION:
        raise ImportRefused(f"unsupported format version {m.get('format_version')!r} (this app reads "
                            f"{FORMAT_VERSION})")
    _require(isinstance(m.get("name"), str), "'name' must be text")
    _require(isinstance(m.get("spec"), dict), "'spec' must be an object")
    _require(m.get("status") in ("draft", "locked"), "'status' must be 'draft' or 'locked'")
    is_opt_time = lambda v: v is None or _is_time(v)  # noqa: E731
    cands = _check_rows(m, "candidates", {"created_at": _is_time})
    cand_ids = {k["id"] for k in cands}
    refs = _check_rows(m, "references", {
        "locked_at": _is_time, "unlocked_at": is_opt_time,
        "candidate_id": lambda v: v is None or (isinstance(v, str) and v in cand_ids),
    })
    ref_ids = {r["id"] for r in refs}
    selfies = _check_rows(m, "selfies", {
        "created_at": _is_time, "reference_id": lambda v: isinstance(v, str) and v in ref_ids,
        "selfie": lambda v: isinstance(v, dict),
        "likeness": lambda v: v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)
                                            and 0 <= v <= 1),  # NaN fails the comparison too
        "attempts": lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v < SQL_INT,
        "accepted_at": is_opt_time,
    })
    m.setdefault("sheet", [])
    sheet = _check_rows(m, "sheet", {
        "created_at": _is_time, "reference_id": lambda v: isinstance(v, str) and v in ref_ids,
        "view": lambda v: isinstance(v, str) and 0 < len(v) <= NAME_MAX and v.isprintable(),
        "position": lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v < SQL_INT,
        "likeness": lambda v: v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1),
    })
    _require(len({(v["reference_id"], v["view"]) for v in sheet}) == len(sheet), "a sheet view repeats")
    m.setdefault("character_loras", [])
    loras = m["character_loras"]
    _require(isinstance(loras, list), "'character_loras' must be a list")
    for i, lo in enumerate(loras):
        where = f"character_loras[{i}]"
        _require(isinstance(lo, dict), f"{where} must be an object")
        _require(isinstance(lo.get("id"), str), f"{where}.id missing")
        _require(lo.get("reference_id") in ref_ids, f"{where}.reference_id is invalid")
        _require(isinstance(lo.get("sha256"), str) and _SHA.fullmatch(lo["sha256"]) is not None,
                 f"{where}.sha256 is not a sha256")
        _require(isinstance(lo.get("facts"), dict), f"{where}.facts must be an object")
        _require(_is_time(lo.get("created_at")), f"{where}.created_at is invalid")
    active = [r for r in refs if r.get("unlocked_at") is None]
    _require(len(active) <= 1, "more than one active reference")
    _require((m["status"] == "locked") == bool(active), "status does not match the references")
    rows = cands + refs + selfies + sheet + loras
    _require(len({r["id"] for r in rows}) == len(rows),
             "ids repeat across candidates, references, selfies, sheet and character LoRAs")
    return m


def _checked(where: str, check: Callable[[dict], dict] | None, value: dict) -> dict:
    if check is None:
        return value
    try:
        return check(value)
    except CustomizerError as e:  # SpecError, SafetyError: the archive's content is refused, with the reason
        raise ImportRefused(f"character.json: {where}: {e}") from None


def _read_archive(data: bytes | str | Path) -> dict[str, bytes]:
    """Every member of a character archive, read within the limits: names, count, sizes (declared and actually
    read) and the members an archive may hold are checked before anything is trusted."""
    src = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else Path(data)
    if isinstance(src, Path) and not src.is_file():
        raise ImportRefused(f"no such file: {src.name}")
    try:
        zf = zipfile.ZipFile(src)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise ImportRefused("not a zip archive") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_MEMBERS:
            raise ImportRefused(f"too many files in the archive ({len(infos)} > {MAX_MEMBERS})")
        seen: set[str] = set()
        for info in infos:
            n = info.filename
            if _unsafe_name(n):
                raise ImportRefused(f"unsafe file name in archive: {n[:100]!r}")
            if n in seen:
                raise ImportRefused(f"duplicate file name in archive: {n[:100]!r}")
            seen.add(n)
            if (n not in ("character.json", "images/", "loras/") and not _IMAGE_NAME.fullmatch(n)
                    and not _LORA_NAME.fullmatch(n)):
                raise ImportRefused(f"unexpected file in archive: {n[:100]!r}")
            if info.flag_bits & 0x1:
                raise ImportRefused(f"{n} is encrypted")
            limit = _member_limit(n)
            if info.file_size > limit:
                raise ImportRefused(f"{n} is too large ({info.file_size} bytes > {limit})")
        if sum(i.file_size for i in infos) > MAX_TOTAL_BYTES:
            raise ImportRefused(f"archive expands to more than {MAX_TOTAL_BYTES} bytes")
        if "character.json" not in seen:
            raise ImportRefused("character.json is missing")

        budget = MAX_TOTAL_BYTES
        contents: dict[str, bytes] = {}
        try:
            for info in infos:
                if info.is_dir():
                    continue
                contents[info.filename] = _read_member(zf, info, budget)
                budget -= len(contents[info.filename])
        except ImportRefused:
            raise
        except Exception as e:  # noqa: BLE001 - bad CRC, truncated stream, unsupported compression, ...
            raise ImportRefused(f"damaged archive: {type(e).__name__}: {e}") from None
    return contents


def import_character(store: Store, data: bytes | str | Path, owner: str = "local",
                     name: str | None = None, check_spec: Callable[[dict], dict] | None = None,
                     check_selfie: Callable[[dict], dict] | None = None) -> dict:
    """check_spec / check_selfie (the app's CharacterSpec / SelfieSpec validation, safety filter included) return
    the normalised dict to store or raise a CustomizerError, which refuses the import."""
    contents = _read_archive(data)
    m = _parse_manifest(contents.pop("character.json"))
    images, lora_files = {}, {}
    for member, blob in contents.items():
        if (lora := _LORA_NAME.fullmatch(member)) is not None:
            _check_lora(member, lora[1], blob)
            lora_files[lora[1]] = blob
            continue
        sha = _IMAGE_NAME.fullmatch(member)[1]  # type: ignore[index]
        _check_png(member, sha, blob)
        images[sha] = blob
    rows = m["candidates"] + m["references"] + m["selfies"] + m["sheet"]
    needed = {r["image_sha256"] for r in rows}
    missing = sorted(needed - images.keys())
    if missing:
        raise ImportRefused(f"images missing from the archive: {', '.join(s[:12] for s in missing)}")
    lora_needed = {lo["sha256"] for lo in m["character_loras"]}
    missing = sorted(lora_needed - lora_files.keys())
    if missing:
        raise ImportRefused(f"character LoRA files missing from the archive: {', '.join(s[:12] for s in missing)}")
    try:
        new_name = clean_name(name if name is not None else m["name"])
    except SpecError as e:
        if name is not None:
            raise  # the caller's own argument: their error, not the archive's
        raise ImportRefused(f"character.json: {e}") from None
    spec = _checked("spec", check_spec, m["spec"])
    for i, s in enumerate(m["selfies"]):
        s["selfie"] = _checked(f"selfies[{i}].selfie", check_selfie, s["selfie"])
    return store._import_character(
        owner=owner, name=new_name, spec=spec, images={s: images[s] for s in sorted(needed)},
        candidates=m["candidates"], references=m["references"], selfies=m["selfies"], sheet=m["sheet"],
        loras=m["character_loras"], lora_files={s: lora_files[s] for s in sorted(lora_needed)},
    )
