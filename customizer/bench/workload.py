"""What both paths render: the app's own prompts for varied characters and selfies.

Every timed portrait and selfie has a different prompt (hair colour, scene, expression change from run to run), so
the prompt cache only helps where the app really repeats a prompt: the candidates of one design. The LoRA path is
exercised (theme fantasy at 0.6), as is the IP-Adapter (likeness 0.7).
"""
from __future__ import annotations

from itertools import cycle, islice
from typing import Any

HAIR = ["red", "black", "blonde", "brown", "grey", "auburn", "white", "blue", "pink"]
EYES = ["green", "brown", "blue", "grey", "hazel"]
SCENES = ["beach", "forest", "city", "cafe", "mountains", "library", "studio", "space station"]
EXPRESSIONS = ["happy", "laughing", "neutral", "surprised", "thinking", "sad", "angry"]
FRAMINGS = ["close-up", "half body"]


def spec(i: int) -> dict[str, Any]:
    return {"hair_colour": HAIR[i % len(HAIR)], "hair_style": "wavy", "eye_colour": EYES[i % len(EYES)],
            "age": 25 + (i * 7) % 40, "theme": "fantasy", "theme_strength": 0.6}


def selfies(n: int) -> list[dict[str, Any]]:
    pairs = islice(((s, e) for e in EXPRESSIONS for s in SCENES), n)
    return [{"scene": s, "expression": e, "framing": f, "likeness": 0.7}
            for (s, e), f in zip(pairs, cycle(FRAMINGS))]
