"""How a selfie's likeness reads to a person: a caption with a text bar for galleries, and an HTML card per selfie
(thumbnail, bar with the target band marked, state, attempts). Formatting only: no torch, no gradio."""
from __future__ import annotations

import html
from typing import Any
from urllib.parse import quote

# state (store column likeness_state; None = made before likeness existed) -> words shown instead of a score
STATE_TEXT = {
    "scored": "",
    "unavailable": "likeness unavailable",
    "no_face": "no face found",
    "no_face_reference": "no face in the reference",
    "error": "likeness could not be measured",
    None: "likeness not measured",
}
POSITION_TEXT = {"in": "in band", "below": "below band (drift)", "above": "above band (copy)", None: ""}
BAR_CELLS = 10


def _info(item: dict) -> dict[str, Any]:
    extra = (item.get("recipe") or {}).get("extra") or {}
    info = extra.get("likeness")
    return info if isinstance(info, dict) else {}


def text_bar(score: float) -> str:
    filled = round(max(0.0, min(1.0, score)) * BAR_CELLS)
    return "▰" * filled + "▱" * (BAR_CELLS - filled)


def attempts_text(n: Any) -> str:
    return f"{n} attempts" if isinstance(n, int) and n > 1 else "1 attempt"


def likeness_text(item: dict) -> str:
    """'likeness 0.82 ▰▰▰▰▰▰▰▰▱▱ in band' or the state in words."""
    score, state = item.get("likeness"), item.get("likeness_state")
    if score is None:
        return STATE_TEXT.get(state, str(state))
    position = POSITION_TEXT.get(_info(item).get("position"), "")
    return " ".join(p for p in (f"likeness {score:.2f}", text_bar(score), position) if p)


def caption(item: dict, head: str | None = None) -> str:
    """Gallery caption: 'seed 9 · likeness 0.82 ▰▰▰▰▰▰▰▰▱▱ in band · 2 attempts'."""
    parts = [head or f"seed {item['seed']}"]
    if "likeness_state" in item or item.get("likeness") is not None:
        parts += [likeness_text(item), attempts_text(item.get("attempts"))]
    return " · ".join(parts)


def sheet_caption(view: dict) -> str:
    """Reference sheet gallery caption: 'three-quarter left · likeness 0.91 ▰▰▰▰▰▰▰▰▰▱ in band · conditions selfies'
    (or '· left out': outside the band or no face, see customizer/refsheet.py; '· for viewing' where the profile
    conditions selfies on the reference alone)."""
    role = ("conditions selfies" if view.get("conditions") else "for viewing" if view.get("viewing_only")
            else "left out")
    return " · ".join((str(view.get("view", "")), likeness_text(view), role))


def summary(item: dict) -> str:
    """One line for the 'New:' message after a selfie."""
    seconds = ((item.get("recipe") or {}).get("extra") or {}).get("seconds", 0) or 0
    return f"seed {item['seed']} ({seconds:.1f} s) - {likeness_text(item)}, {attempts_text(item.get('attempts'))}"


def file_url(path: str) -> str:
    """Gradio serves files under allowed_paths (app.py: the images folder) at gradio_api/file=<absolute path>."""
    return "gradio_api/file=" + quote(str(path))


def card(item: dict, title: str | None = None) -> str:
    score, state = item.get("likeness"), item.get("likeness_state")
    info = _info(item)
    position = info.get("position")
    kind = "lk-" + (position if score is not None and position else state or "none")
    title = title or f"seed {item['seed']}"
    bar = ""
    if score is not None:
        band = info.get("band")
        band_mark = ""
        if isinstance(band, list) and len(band) == 2:
            lo, hi = (max(0.0, min(1.0, float(x))) for x in band)
            band_mark = f'<div class="lk-band" style="left:{lo * 100:.1f}%;width:{(hi - lo) * 100:.1f}%"></div>'
        bar = (f'<div class="lk-bar" title="likeness {score:.3f}">{band_mark}'
               f'<div class="lk-fill" style="width:{max(0.0, min(1.0, score)) * 100:.1f}%"></div></div>')
    words = f"{score:.2f} {POSITION_TEXT.get(position, '')}".strip() if score is not None \
        else STATE_TEXT.get(state, str(state))
    attempts = item.get("attempts")
    path = item.get("path")
    img = f'<img src="{html.escape(file_url(path))}" alt="{html.escape(title)}">' if path else ""
    return (f'<div class="lk-card {html.escape(kind)}" data-state="{html.escape(str(state))}" '
            f'data-score="{"" if score is None else f"{score:.6f}"}" data-attempts="{attempts}">{img}'
            f'<div class="lk-title">{html.escape(title)}</div>{bar}'
            f'<div class="lk-text">{html.escape(words)}</div>'
            f'<div class="lk-attempts">{html.escape(attempts_text(attempts))}</div></div>')


def cards_html(items: list[dict], titles: list[str] | None = None, empty: str = "") -> str:
    if not items:
        return f'<div class="lk-empty">{html.escape(empty)}</div>' if empty else ""
    titles = titles or [None] * len(items)
    return '<div class="lk-cards">' + "".join(card(i, t) for i, t in zip(items, titles)) + "</div>"


CSS = """
.lk-cards {display: flex; flex-wrap: wrap; gap: 8px}
.lk-card {width: 112px; font-size: 0.8em; border: 1px solid var(--border-color-primary); border-radius: 6px;
          padding: 4px}
.lk-card img {width: 100%; aspect-ratio: 1; object-fit: cover; border-radius: 4px; display: block}
.lk-title {opacity: 0.8; margin-top: 2px}
.lk-bar {position: relative; height: 8px; background: var(--neutral-200, #ddd); border-radius: 4px;
         overflow: hidden; margin: 3px 0}
.lk-fill {position: absolute; left: 0; top: 0; bottom: 0; background: #c0392b}
.lk-band {position: absolute; top: 0; bottom: 0; background: rgba(39, 174, 96, 0.35)}
.lk-in .lk-fill {background: #27ae60}
.lk-scored .lk-fill {background: #2980b9}
.lk-above .lk-fill {background: #e67e22}
.lk-text {font-weight: 600}
.lk-no_face .lk-text, .lk-unavailable .lk-text, .lk-error .lk-text, .lk-no_face_reference .lk-text,
.lk-none .lk-text {opacity: 0.7; font-weight: normal}
"""
