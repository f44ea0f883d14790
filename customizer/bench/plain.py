"""The plain diffusers way, shared by the baseline runs: from_pretrained + load_ip_adapter + load_lora_weights,
the folder's default scheduler, prompt strings, the IP-Adapter image passed on every call (its embedding recomputed
each time). Stage times come from the engine's StageClock wrapped around the stock pipeline's own methods."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..engine import stages


class Plain:
    def __init__(self, folder: str | Path, themes: list[str], device: str, dtype):
        import torch
        from diffusers import StableDiffusionPipeline

        self.folder = Path(folder)
        self.pipe = StableDiffusionPipeline.from_pretrained(self.folder, dtype=dtype, safety_checker=None,
                                                            requires_safety_checker=False).to(device)
        self.pipe.set_progress_bar_config(disable=True)
        for theme in themes:
            self.pipe.load_lora_weights(self.folder / "loras", weight_name=f"{theme}.safetensors", adapter_name=theme)
        self.clock = stages.StageClock()
        self.clock.wrap(self.pipe, "encode_prompt", "text_encode")
        self.clock.wrap(self.pipe, "prepare_ip_adapter_image_embeds", "image_embed")
        self.clock.wrap(self.pipe.vae, "decode", "decode")
        self.clock.wrap(self.pipe.image_processor, "postprocess", "decode")
        self.has_ip = False
        self._loras: Any = None
        self.sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)

    def add_ip_adapter(self, scale: float) -> None:
        self.pipe.load_ip_adapter(self.folder / "ip_adapter", subfolder="", weight_name="ip_adapter.safetensors",
                                  image_encoder_folder="image_encoder")
        self.pipe.set_ip_adapter_scale(scale)
        self.has_ip = True

    def __call__(self, run: dict[str, Any], n: int = 1, ip_image=None, steps: int | None = None
                 ) -> tuple[float, dict[str, float]]:
        """One call as a diffusers user writes it; n > 1 batches n images with one generator each."""
        import torch

        loras = tuple(run.get("loras", {}).items())
        if loras != self._loras and self.pipe.get_list_adapters():  # a theme is set once, like a plain app would
            if loras:
                self.pipe.enable_lora()
                self.pipe.set_adapters([k for k, _ in loras], adapter_weights=[w for _, w in loras])
            else:
                self.pipe.disable_lora()
            self._loras = loras
        seed = int(run["seed"])
        generator = ([torch.Generator("cpu").manual_seed(seed + i) for i in range(n)] if n > 1
                     else torch.Generator("cpu").manual_seed(seed))
        extra = {"ip_adapter_image": ip_image} if self.has_ip else {}
        measured: dict[str, float] = {}
        self.sync()
        t0 = time.perf_counter()
        with self.clock.recording(measured):
            self.pipe(prompt=run["prompt"], negative_prompt=run["negative_prompt"],
                      num_inference_steps=int(steps or run["steps"]), guidance_scale=float(run["guidance"]),
                      width=int(run["width"]), height=int(run["height"]), generator=generator,
                      num_images_per_prompt=n, **extra)
            self.sync()
        total = time.perf_counter() - t0
        return total, stages.split(total, measured)
