"""The Advanced settings of the Design tab and the Selfie studio: sampler, steps, guidance, size, negative prompt,
upscale - with the sliders' maxima kept to what the compute budget allows and the estimate on the line below."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gradio as gr

from ..errors import CustomizerError
from ..packs import pack_kind
from ..settings import SIZE

if TYPE_CHECKING:  # the UI is handed a Studio; importing service would reach the engine
    from ..service import Studio


def default_negative() -> str:
    from ..prompts import default_negative as negative

    return negative()


def budget_line(studio: Studio, kind: str, steps: int, width: int, height: int, upscale: bool, count: int) -> str:
    """The cost of a request with these settings against the profile's budget, one line under Advanced."""
    from .. import budget

    cfg = studio.budget
    if cfg is None:
        return ""
    attempts = studio.attempts_per_selfie
    lines = []
    plans = [("candidates", count, count)] if kind == "design" else [
        ("selfies", count * attempts, 1), ("expression pack", len(pack_kind().values) * attempts, 1)]
    for label, images, per_render in plans:
        est = budget.estimate(cfg, width, height, steps, images, upscale)
        try:
            budget.check(cfg, label, width, height, steps, images, upscale, per_render=per_render)
            verdict = "fits"
        except CustomizerError:
            verdict = "**over the limit**"
        lines.append(f"{label}: up to {est.units:.3g} megapixel-steps, about {est.seconds:.2g} s - {verdict}")
    return ("Compute budget: " + "; ".join(lines) + f" (limit {cfg.max_render_seconds:g} s per render, "
            f"{cfg.max_seconds:g} s per request)")


def size_max(studio: Studio) -> int:
    profile = studio.profile
    return min(SIZE[1], max(1024, 2 * profile.width, 2 * profile.height),
               studio.budget.max_side if studio.budget else SIZE[1])


@dataclass
class Advanced:
    """The Advanced accordion's components (one per tab that renders)."""
    sampler: gr.Dropdown
    steps: gr.Slider
    guidance: gr.Slider
    guidance_end: gr.Slider
    width: gr.Slider
    height: gr.Slider
    negative: gr.Textbox
    upscale: gr.Checkbox
    estimate: gr.Markdown

    @property
    def inputs(self) -> list[gr.components.Component]:
        return [self.sampler, self.steps, self.guidance, self.guidance_end, self.width, self.height, self.negative,
                self.upscale]

    def read(self, values: dict) -> dict[str, Any]:
        """The settings dict the Studio takes, from a handler's {component: value}."""
        return {"sampler": values[self.sampler], "steps": int(values[self.steps]),
                "guidance": float(values[self.guidance]), "guidance_end": float(values[self.guidance_end]),
                "width": int(values[self.width]), "height": int(values[self.height]),
                "negative": values[self.negative], "upscale": bool(values[self.upscale])}


def advanced_controls(studio: Studio, prefix: str, kind: str, count: int) -> Advanced:
    """The Advanced settings; the sliders' maxima are what the compute budget allows (kept up to date by
    follow_budget), with the estimate on the line under them."""
    profile = studio.profile
    fit = studio.budget_fit(kind, profile.width, profile.height, profile.steps, count)
    side = min(size_max(studio), fit.size_max)
    samplers = [(label, name) for name, label in studio.samplers().items()]
    with gr.Accordion("Advanced", open=False):
        with gr.Row():
            sampler = gr.Dropdown(samplers, value=profile.scheduler, label="Sampler")
            steps = gr.Slider(1, fit.steps_max, value=min(profile.steps, fit.steps_max), step=1,
                              label="Steps", elem_id=f"{prefix}-steps")
            guidance = gr.Slider(0, 20, value=profile.guidance, step=0.5, label="Guidance")
            guidance_end = gr.Slider(0.1, 1.0, value=profile.guidance_end, step=0.05,
                                     label="Guidance on the first ... of the steps",
                                     info="1 = every step; less is faster, the late steps matter least")
        with gr.Row():
            width = gr.Slider(SIZE[0], side, value=profile.width, step=8, label="Width", elem_id=f"{prefix}-width")
            height = gr.Slider(SIZE[0], side, value=profile.height, step=8, label="Height",
                               elem_id=f"{prefix}-height")
            upscale = gr.Checkbox(False, label="Upscale 2x",
                                  info="learned upscaler if the profile has one, else Lanczos")
        negative = gr.Textbox(default_negative(), label="Negative prompt", lines=2,
                              info="safety terms are always added", elem_id=f"{prefix}-negative")
        estimate = gr.Markdown(budget_line(studio, kind, profile.steps, profile.width, profile.height, False, count),
                               elem_id=f"{prefix}-budget", elem_classes="status-line")
    return Advanced(sampler, steps, guidance, guidance_end, width, height, negative, upscale, estimate)


def follow_budget(studio: Studio, kind: str, adv: Advanced, count: gr.Slider) -> None:
    """Whenever steps, size, upscale or the count change: the other sliders' maxima become what still fits the
    compute budget, and the estimate line is redrawn (outside the queue: no render waits on it)."""
    limit = size_max(studio)

    def update(values: dict) -> dict:
        steps, width, height = int(values[adv.steps]), int(values[adv.width]), int(values[adv.height])
        upscale, n = bool(values[adv.upscale]), int(values[count])
        fit = studio.budget_fit(kind, width, height, steps, n, upscale)
        side = min(limit, fit.size_max)
        return {adv.steps: gr.update(maximum=fit.steps_max), adv.width: gr.update(maximum=side),
                adv.height: gr.update(maximum=side), count: gr.update(maximum=fit.images_max),
                adv.estimate: budget_line(studio, kind, steps, width, height, upscale, n)}

    watched = [adv.steps, adv.width, adv.height, adv.upscale, count]
    for control in watched:
        control.change(update, set(watched), [adv.steps, adv.width, adv.height, count, adv.estimate], queue=False,
                       show_progress="hidden", api_visibility="undocumented")


def run_controls(studio: Studio, kind: str, count_label: str, count: int, count_id: str):
    """The row under a tab's own inputs - seed, randomize, how many (up to what the budget allows) - and the
    Advanced settings, kept within the budget together (design and selfie tabs share it)."""
    profile = studio.profile
    with gr.Row():
        seed = gr.Number(value=1234, precision=0, label="Seed")
        randomize = gr.Checkbox(True, label="Randomize seed")
        most = studio.budget_fit(kind, profile.width, profile.height, profile.steps, 1).images_max
        how_many = gr.Slider(1, most, value=count, step=1, label=count_label, elem_id=count_id)
    adv = advanced_controls(studio, kind, kind, count)
    follow_budget(studio, kind, adv, how_many)
    return seed, randomize, how_many, adv
