"""2x upscaling as the last step: classical Lanczos + light unsharp mask by default, a learned upscaler when the
profile names one: a local folder with upscaler.json is the project's own small residual CNN (sr_net.py, trained
by customizer/training/train_upscaler.py); anything else is diffusers' latent upscaler pipeline (real SD weights)."""
from __future__ import annotations

from PIL import Image, ImageFilter

from ..upscaler_folder import is_sr_folder

CLASSICAL = "lanczos2x"
SR_NET = "sr_net"              # LearnedUpscaler.kind of a local sr_net folder
LATENT_DIFFUSION = "latent"    # LearnedUpscaler.kind of a diffusers StableDiffusionLatentUpscalePipeline


def lanczos2x(image: Image.Image) -> Image.Image:
    big = image.resize((image.width * 2, image.height * 2), Image.LANCZOS)
    return big.filter(ImageFilter.UnsharpMask(radius=1.2, percent=60, threshold=2))


def kind_of(model: str) -> str:
    """SR_NET for a local folder holding upscaler.json, else LATENT_DIFFUSION (a hub id or a diffusers folder)."""
    return SR_NET if is_sr_folder(model) else LATENT_DIFFUSION


class LearnedUpscaler:
    """Loads on first use: most sessions never upscale. `kind` (SR_NET or LATENT_DIFFUSION) is decided at once from
    the files, without loading anything."""

    def __init__(self, model: str, device: str, dtype, local_files_only: bool):
        self.model, self.device, self.dtype, self.local = model, device, dtype, local_files_only
        self.kind = kind_of(model)
        self._pipe = None

    def __call__(self, image: Image.Image, prompt: str, seed: int) -> Image.Image:
        if self.kind == SR_NET:
            return self._sr_net(image)
        import torch
        from diffusers import StableDiffusionLatentUpscalePipeline

        if self._pipe is None:
            self._pipe = StableDiffusionLatentUpscalePipeline.from_pretrained(
                self.model, dtype=self.dtype, local_files_only=self.local).to(self.device)
        gen = torch.Generator("cpu").manual_seed(seed)
        return self._pipe(prompt=prompt, image=image, num_inference_steps=20, guidance_scale=0,
                          generator=gen).images[0]

    def _sr_net(self, image: Image.Image) -> Image.Image:
        """fp32 on the CPU whatever the engine's device: tens of ms, and bytes that do not depend on the GPU."""
        if self._pipe is None:
            from .sr_net import SRUpscaler

            self._pipe = SRUpscaler(self.model)
        return self._pipe.upscale(image)
