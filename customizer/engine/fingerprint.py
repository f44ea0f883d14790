"""Identify the exact weights behind a recipe: hub commit hash, or sha256 over a local folder's files."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

WEIGHT_SUFFIXES = {".safetensors", ".bin", ".json", ".txt", ".model"}


def _hash_files(paths: list[Path], root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(str(p.relative_to(root)).encode())
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return "sha256:" + h.hexdigest()[:32]


def local_fingerprint(path: str | Path) -> str:
    p = Path(path)
    if p.is_file():
        return _hash_files([p], p.parent)
    roots = [p]
    index = p / "model_index.json"
    if index.is_file():  # a pipeline folder: only its own components (not ip_adapter/, loras/ beside them)
        components = [k for k, v in json.loads(index.read_text()).items() if isinstance(v, list) and v[0]]
        roots = [p / c for c in components if (p / c).is_dir()]
    files = [f for r in roots for f in r.rglob("*") if f.is_file() and f.suffix in WEIGHT_SUFFIXES]
    if index.is_file():
        files.append(index)
    return _hash_files(files, p)


def fingerprint(ref: str, local_files_only: bool = True) -> str:
    """'sha256:...' for local folders/files, the snapshot commit for hub repos (or 'unknown')."""
    if os.path.exists(ref):
        return local_fingerprint(ref)
    try:
        from huggingface_hub import snapshot_download

        return "hub:" + Path(snapshot_download(ref, local_files_only=True)).name
    except Exception:  # noqa: BLE001 - not cached yet or not a repo: the recipe still names the id
        return "unknown"
