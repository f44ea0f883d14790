"""2x upscaling as the last step: classical Lanczos + light unsharp mask by default, a learned upscaler when the
profile names one (diffusers' latent upscaler pipeline)."""
from __future__ import annotations

from PIL import Image, ImageFilter

CLASSICAL = "lanczos2x"


def lanczos2x(image: Image.Image) -> Image.Image:
    big = image.resize((image.width * 2, image.height * 2), Image.LANCZOS)
    return big.filter(ImageFilter.UnsharpMask(radius=1.2, percent=60, threshold=2))


class LearnedUpscaler:
    """Loads on first use: most sessions never upscale."""

    def __init__(self, model: str, device: str, dtype, local_files_only: bool):
        self.model, self.device, self.dtype, self.local = model, device, dtype, local_files_only
        self._pipe = None

    def __call__(self, image: Image.Image, prompt: str, seed: int) -> Image.Image:
        import torch
        from diffusers import StableDiffusionLatentUpscalePipeline

        if self._pipe is None:
            self._pipe = StableDiffusionLatentUpscalePipeline.from_pretrained(
                self.model, dtype=self.dtype, local_files_only=self.local).to(self.device)
        gen = torch.Generator("cpu").manual_seed(seed)
        return self._pipe(prompt=prompt, image=image, num_inference_steps=20, guidance_scale=0,
                          generator=gen).images[0]
