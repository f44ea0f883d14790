"""The Engine: one code path over diffusers pipelines for the bundled model and real Stable Diffusion.

Loads the profile's base pipeline, IP-Adapter, theme LoRAs (peft) and ControlNet (sharing weights via from_pipe),
then renders Recipes. A Recipe fully determines the image: seed -> CPU generator, scheduler rebuilt per call,
LoRA weights and IP-Adapter scale set per call. One lock: a diffusers pipeline is not safe to call concurrently.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ..availability import _split_lora, downloads_allowed, require_available
from ..config import Profile
from ..errors import ModelUnavailable
from ..recipe import Recipe
from . import control, devices, embeddings, fingerprint, schedulers, upscale

PIPELINE_CLASSES = {
    "sd15": ("StableDiffusionPipeline", "StableDiffusionControlNetPipeline"),
    "sdxl": ("StableDiffusionXLPipeline", "StableDiffusionXLControlNetPipeline"),
}


def library_versions() -> dict[str, str]:
    import diffusers
    import peft
    import transformers

    from .. import __version__

    return {"torch": torch.__version__, "diffusers": diffusers.__version__, "transformers": transformers.__version__,
            "peft": peft.__version__, "customizer": __version__}


class Engine:
    def __init__(self, profile: Profile):
        require_available(profile)
        self.profile = profile
        self.device, self.dtype = devices.pick(profile.device, profile.dtype)
        self.local_only = not downloads_allowed(profile)
        self._lock = threading.RLock()
        t0 = time.perf_counter()
        try:
            self._load()
        except ModelUnavailable:
            raise
        except (OSError, ValueError) as e:  # missing/corrupt files, failed download
            raise ModelUnavailable(f"Model profile '{profile.name}' could not be loaded: {e}") from e
        self.load_seconds = time.perf_counter() - t0
        self.versions = library_versions() | {f"weights:{k}": v for k, v in self.weights.items()}

    # ---- loading -------------------------------------------------------------------------------------------
    def _load(self) -> None:
        import diffusers

        p = self.profile
        if p.family not in PIPELINE_CLASSES:
            raise ModelUnavailable(f"profile '{p.name}': unknown family {p.family!r}; use sd15 or sdxl")
        base_cls, cn_cls = (getattr(diffusers, n) for n in PIPELINE_CLASSES[p.family])
        extra = {"safety_checker": None, "requires_safety_checker": False} if p.family == "sd15" else {}
        self.pipe = base_cls.from_pretrained(p.base_model, dtype=self.dtype, local_files_only=self.local_only,
                                             **extra)
        self.pipe.set_progress_bar_config(desc="denoising")
        self.weights = {"base": fingerprint.fingerprint(p.base_model)}
        self.base_scheduler_config = dict(self.pipe.scheduler.config)

        self.has_ip_adapter = p.ip_adapter is not None
        if p.ip_adapter:
            ipa = p.ip_adapter
            self.pipe.load_ip_adapter(ipa.path, subfolder=ipa.subfolder, weight_name=ipa.weight_name,
                                      image_encoder_folder=ipa.image_encoder_folder, local_files_only=self.local_only)
            self.weights["ip_adapter"] = fingerprint.fingerprint(
                str(Path(ipa.path, ipa.subfolder, ipa.weight_name)) if Path(ipa.path).exists() else ipa.path)

        self.theme_adapters: dict[str, str] = {}
        for theme in p.themes.values():
            if not theme.lora:
                continue
            folder, weight = _split_lora(theme.lora)
            self.pipe.load_lora_weights(folder, weight_name=weight, adapter_name=theme.adapter,
                                        local_files_only=self.local_only)
            self.theme_adapters[theme.name] = theme.adapter
            self.weights[f"lora:{theme.adapter}"] = fingerprint.fingerprint(theme.lora)

        self.pipe.to(self.device)
        self.cn_pipe = None
        if p.controlnet:
            cn = diffusers.ControlNetModel.from_pretrained(p.controlnet.model, dtype=self.dtype,
                                                           local_files_only=self.local_only).to(self.device)
            self.cn_pipe = cn_cls.from_pipe(self.pipe, controlnet=cn)  # shares UNet/VAE/encoders: no second copy
            self.cn_pipe.set_progress_bar_config(desc="denoising")
            self.weights["controlnet"] = fingerprint.fingerprint(p.controlnet.model)
        self.upscaler = (upscale.LearnedUpscaler(p.upscaler, self.device, self.dtype, self.local_only)
                         if p.upscaler else None)
        self._blank_embeds = self._encode([Image.new("RGB", (64, 64))]) if self.has_ip_adapter else None

    # ---- what the service asks ---------------------------------------------------------------------------------
    @property
    def embedding_key(self) -> str:
        """Cache key of reference embeddings: they are only valid for the same image encoder + projection."""
        return f"{self.profile.name}:{self.weights.get('ip_adapter', 'none')}"

    def theme_loras(self, theme: str, strength: float) -> dict[str, float]:
        """Adapter weights for a theme at a strength in [0, 1]; {} when the theme has no LoRA here."""
        cfg = self.profile.themes.get(theme)
        if cfg is None or theme not in self.theme_adapters:
            return {}
        return {cfg.adapter: round(float(cfg.weight) * float(strength), 4)}

    def theme_triggers(self, theme: str) -> str | None:
        cfg = self.profile.themes.get(theme)
        return cfg.triggers if cfg else None

    def encode_reference(self, image: Image.Image) -> bytes:
        """IP-Adapter embeddings of the locked reference (with the negative half for CFG), computed once."""
        if not self.has_ip_adapter:
            raise ModelUnavailable(f"profile '{self.profile.name}' has no IP-Adapter: selfies cannot use a reference")
        with self._lock:
            return embeddings.to_bytes(self._encode([image.convert("RGB")]))

    def _encode(self, images: list[Image.Image]) -> list[torch.Tensor]:
        with torch.inference_mode():
            return self.pipe.prepare_ip_adapter_image_embeds(
                ip_adapter_image=images, ip_adapter_image_embeds=None, device=self.device,
                num_images_per_prompt=1, do_classifier_free_guidance=True)

    # ---- rendering -------------------------------------------------------------------------------------------
    def render(self, recipe: Recipe, reference_embeds: bytes | None = None,
               reference_image: Image.Image | None = None) -> tuple[Image.Image, dict[str, float]]:
        """Render one recipe. Returns the image and stage timings in seconds."""
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        with self._lock, torch.inference_mode():
            pipe = self.pipe
            kwargs: dict[str, Any] = {}
            if recipe.controlnet:
                if self.cn_pipe is None:
                    raise ModelUnavailable(f"profile '{self.profile.name}' has no ControlNet")
                c = recipe.controlnet
                kwargs["image"] = control.control_image(c["control"], c.get("preset", ""), reference_image,
                                                        recipe.width, recipe.height)
                kwargs["controlnet_conditioning_scale"] = float(c.get("scale", 1.0))
                pipe = self.cn_pipe
            pipe.scheduler = schedulers.make(recipe.scheduler, self.base_scheduler_config)
            self._apply_loras(recipe.loras)
            if self.has_ip_adapter:
                pipe.set_ip_adapter_scale(float(recipe.ip_adapter_scale))
                embeds = (embeddings.from_bytes(reference_embeds, self.device, self.dtype)
                          if reference_embeds is not None else self._blank_embeds)
                kwargs["ip_adapter_image_embeds"] = embeds if recipe.guidance > 1 else embeddings.positive_half(embeds)
            elif recipe.ip_adapter_scale:
                raise ModelUnavailable(f"profile '{self.profile.name}' has no IP-Adapter")
            generator = torch.Generator("cpu").manual_seed(int(recipe.seed))
            image = pipe(prompt=recipe.prompt, negative_prompt=recipe.negative_prompt,
                         num_inference_steps=int(recipe.steps), guidance_scale=float(recipe.guidance),
                         width=int(recipe.width), height=int(recipe.height), generator=generator,
                         **kwargs).images[0]
            timings["generate"] = time.perf_counter() - t0
            if recipe.upscale:
                t1 = time.perf_counter()
                image = self._upscale(image, recipe)
                timings["upscale"] = time.perf_counter() - t1
        return image, timings

    def _apply_loras(self, loras: dict[str, float]) -> None:
        if not self.theme_adapters:
            if loras:
                raise ModelUnavailable(f"profile '{self.profile.name}' has no theme LoRAs loaded")
            return
        unknown = set(loras) - set(self.theme_adapters.values())
        if unknown:
            raise ModelUnavailable(f"LoRA adapters not loaded in profile '{self.profile.name}': {sorted(unknown)}")
        if loras:
            self.pipe.enable_lora()
            self.pipe.set_adapters(list(loras), adapter_weights=[float(w) for w in loras.values()])
        else:
            self.pipe.disable_lora()

    def _upscale(self, image: Image.Image, recipe: Recipe) -> Image.Image:
        if recipe.upscale == upscale.CLASSICAL:
            return upscale.lanczos2x(image)
        if self.upscaler is None or recipe.upscale != self.profile.upscaler:
            raise ModelUnavailable(f"upscaler {recipe.upscale!r} is not configured in profile '{self.profile.name}'")
        return self.upscaler(image, recipe.prompt, recipe.seed)
