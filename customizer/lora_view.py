"""How the character LoRA reads in the Selfie studio: the training job as a progress bar, and a line about the LoRA
selfies use. Formatting only: no torch, no gradio."""
from __future__ import annotations

import html
from typing import Any

STATE_TEXT = {"queued": "waiting for the trainer", "running": "training", "done": "trained",
              "cancelled": "cancelled", "failed": "failed"}
CSS = """
.lora-job {display: flex; align-items: center; gap: 0.6em; font-size: 0.9em}
.lora-job progress {flex: 1; height: 0.9em}
.lora-job.lora-failed {color: #b00020}
"""


def status_html(job: dict[str, Any] | None) -> str:
    """A progress bar with the job's state, step, loss and time ('' when there is no job)."""
    if not job:
        return ""
    state = job.get("state", "")
    parts = [STATE_TEXT.get(state, state)]
    if job.get("steps") and state in ("running", "done", "cancelled"):
        parts.append(f"step {job.get('step', 0)} of {job['steps']}")
    if job.get("loss") is not None:
        parts.append(f"loss {job['loss']:.4f}")
    if job.get("seconds"):
        parts.append(f"{job['seconds']:.0f} s")
    message = job.get("message") or ""
    if message and message not in ("done", "cancelled") and not message.startswith("step "):
        parts.append(message)
    fraction = max(0.0, min(1.0, float(job.get("progress") or 0.0)))
    text = html.escape(" · ".join(parts))
    return (f'<div class="lora-job lora-{html.escape(state)}" data-state="{html.escape(state)}">'
            f'<progress value="{fraction:.3f}" max="1"></progress><span>{text}</span></div>')


def info_markdown(info: dict[str, Any] | None) -> str:
    """'Character LoRA: trained on 6 images (400 steps, 118 s) - selfies use it' or how to get one."""
    if not info:
        return ""
    n = info.get("training_images", 0)
    lora = info.get("lora")
    if lora is None:
        return (f"No character LoRA yet. **Train** one on the reference, its sheet and the selfies you accepted "
                f"({n} images now).")
    facts = lora.get("facts") or {}
    trained = len(facts.get("images") or [])
    seconds = facts.get("seconds")
    took = f", {seconds:.0f} s" if isinstance(seconds, (int, float)) else ""
    newer = f" You now have {n} images: train again to include the new ones." if n != trained else ""
    return (f"Character LoRA: trained on {trained} images ({facts.get('steps', '?')} steps{took}); selfies use it "
            f"while *Use character LoRA* is on.{newer}")
