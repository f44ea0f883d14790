"""The Engine: one code path over diffusers pipelines for the bundled model and real Stable Diffusion.

Loads the profile's base pipeline, IP-Adapter, theme LoRAs (peft) and ControlNet (sharing weights via from_pipe),
then renders Recipes. A Recipe fully determines the image: seed -> CPU generator, scheduler rebuilt per call,
LoRA weights and IP-Adapter scale set per call. One lock: a diffusers pipeline is not safe to call concurrently.
Several seeds of the same inputs can render in one call (render_batch: a design's candidates); a batched image is
not bit-identical to its seed alone, so its recipe records the batch and render() re-runs the whole batch.

Speed (measured by `python -m customizer.bench`, see BENCHMARKS.md): prompt embeddings come from an LRU
(prompt_cache.py) and reference embeddings from the store's cache - the pipeline gets the very tensors it would have
computed; LoRA / IP-Adapter state is only re-applied when a recipe changes it; a lone active theme LoRA is fused into
the UNet weights (lora_fuse.py; a profile can say `fuse_lora: false`). Fusing rounds differently from peft's unfused
branch (at most a pixel level here), but always the same way, so recipes keep reproducing bit for bit.

Character LoRAs (engine/character_lora.py trains them) are loaded on demand as extra peft adapters named after their
file's sha256 (charlora.adapter_name), a few at a time (least recently used unloaded first), and combined with the
theme LoRA through set_adapters. Two active adapters run as peft branches; a lone one is fused as above.
"""
from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ..availability import _split_lora, downloads_allowed, require_available
from ..charlora import adapter_name, is_character_adapter
from ..charlora import settings as charlora_settings
from ..config import Profile, public_ref
from ..errors import ModelUnavailable
from ..recipe import Recipe
from . import control, devices, embeddings, fingerprint, lora_fuse, prompt_cache, quiet, schedulers, stages, upscale
from .guidance import GuidanceCut

quiet.install()

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
        self.prompts = prompt_cache.PromptCache()
        self._clock = stages.StageClock()
        self._lora_state: tuple | None = None  # adapters + weights last applied; None = unknown
        self._ip_scale: float | None = None
        self._character_adapters: OrderedDict[str, str] = OrderedDict()  # adapter -> file sha256, LRU order
        self._character_max = int(charlora_settings(profile)["loaded_max"])
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
            self._load_lora(folder, theme.adapter, weight_name=weight)
            self.theme_adapters[theme.name] = theme.adapter
            self.weights[f"lora:{theme.adapter}"] = fingerprint.fingerprint(theme.lora)

        self.pipe.to(self.device)
        # fuse a lone active theme into the UNet, unless a LoRA also reaches into a text encoder (disabling peft's
        # branch there would drop it)
        self._text_lora = any(getattr(getattr(self.pipe, n, None), "peft_config", None)
                              for n in ("text_encoder", "text_encoder_2"))
        self._fuser = self._make_fuser()
        self.cn_pipe = None
        if p.controlnet:
            cn = diffusers.ControlNetModel.from_pretrained(p.controlnet.model, dtype=self.dtype,
                                                           local_files_only=self.local_only).to(self.device)
            self.cn_pipe = cn_cls.from_pipe(self.pipe, controlnet=cn)  # shares UNet/VAE/encoders: no second copy
            self.cn_pipe.set_progress_bar_config(desc="denoising")
            self.weights["controlnet"] = fingerprint.fingerprint(p.controlnet.model)
        self.upscaler = (upscale.LearnedUpscaler(p.upscaler, self.device, self.dtype, self.local_only)
                         if p.upscaler else None)
        if self.upscaler is not None and self.upscaler.kind == upscale.SR_NET:  # a local folder: a few hundred KB
            self.weights["upscaler"] = fingerprint.fingerprint(p.upscaler)
        self._clock.wrap(self.pipe.vae, "decode", "decode")  # shared with cn_pipe
        for pipe in filter(None, (self.pipe, self.cn_pipe)):
            self._clock.wrap(pipe.image_processor, "postprocess", "decode")
        self._blank_embeds = self._encode([Image.new("RGB", (64, 64))]) if self.has_ip_adapter else None

    def _load_lora(self, source: Any, adapter_name: str, weight_name: str | None = None) -> None:
        """Load a LoRA (folder/repo + weight_name, or a state dict) as a named adapter. A UNet-only file goes to the
        UNet alone: load_lora_weights would also look for text-encoder keys and warn that it found none."""
        state, alphas = self.pipe.lora_state_dict(source, weight_name=weight_name, local_files_only=self.local_only)
        if any(k.startswith(("text_encoder", "lora_te")) for k in state):
            self.pipe.load_lora_weights(state, adapter_name=adapter_name)
        else:
            self.pipe.unet.load_lora_adapter(state, prefix="unet", network_alphas=alphas, adapter_name=adapter_name)

    def _make_fuser(self) -> lora_fuse.LoraFuser | None:
        """A fuser over the UNet's LoRA layers as they are now (base weights must be pristine: restore first)."""
        if (not (self.theme_adapters or self._character_adapters) or self._text_lora
                or not self.profile.fuse_lora):
            return None
        return lora_fuse.LoraFuser(self.pipe.unet)

    def _ensure_character_lora(self, sha256: str, path: str | Path) -> str:
        """Load a character LoRA file as a peft adapter (once; the least recently used beyond loaded_max are
        unloaded). The file must hold exactly the bytes its name promises. Caller holds the lock."""
        name = adapter_name(sha256)
        if name in self._character_adapters:
            if self._character_adapters[name] != sha256:  # a 64-bit prefix collision: refuse, never mix weights
                raise ModelUnavailable(f"another character LoRA is loaded as {name}")
            self._character_adapters.move_to_end(name)
            return name
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise ModelUnavailable(f"the character LoRA {sha256[:12]} is not stored here ({e.strerror})") from None
        if hashlib.sha256(data).hexdigest() != sha256:
            raise ModelUnavailable(f"the character LoRA file {sha256[:12]} is damaged")
        from safetensors.torch import load

        self._lora_state = None  # unknown from here on
        if self._fuser is not None:
            self._fuser.restore()  # pristine base weights before the layers change and a new fuser snapshots them
        state = {k: v.to(self.device) for k, v in load(data).items()}
        self._load_lora(state, name)
        self._character_adapters[name] = sha256
        while len(self._character_adapters) > self._character_max:
            old, _ = self._character_adapters.popitem(last=False)
            self.pipe.delete_adapters(old)
        # the new adapter may wrap layers no theme reached: a fuser built before would miss them
        self._fuser = self._make_fuser()
        return name

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

    def combine_embeds(self, blobs: list[bytes]) -> bytes:
        """Embeddings of several images (encode_reference each) as one multi-image input (embeddings.concat)."""
        return embeddings.concat(blobs)

    def _encode(self, images: list[Image.Image]) -> list[torch.Tensor]:
        with torch.inference_mode():
            return self.pipe.prepare_ip_adapter_image_embeds(
                ip_adapter_image=images, ip_adapter_image_embeds=None, device=self.device,
                num_images_per_prompt=1, do_classifier_free_guidance=True)

    # ---- rendering -------------------------------------------------------------------------------------------
    def render(self, recipe: Recipe, reference_embeds: bytes | None = None,
               reference_image: Image.Image | None = None,
               character_lora: str | Path | None = None) -> tuple[Image.Image, dict[str, float]]:
        """Render one recipe. Returns the image and stage timings in seconds: generate (all of it, before any
        upscale), split into text_encode, image_embed, denoise, decode (+ control when a control image is drawn).
        character_lora: the file of the recipe's character_lora_sha256 (the store's path). A recipe made in a batch
        (recipe.batch) is rendered with its whole batch and image `index` returned (the timings are the batch's):
        a batched image is only reproduced bit for bit by the same batch."""
        seeds, index = recipe.batch_seeds()
        t0 = time.perf_counter()
        with self._lock, torch.inference_mode():
            images, timings = self._generate(recipe, seeds, t0, reference_embeds, reference_image, character_lora)
            image = self._upscale_timed(images[index], recipe, timings)
        return image, timings

    def render_batch(self, recipes: list[Recipe], reference_embeds: bytes | None = None,
                     reference_image: Image.Image | None = None,
                     character_lora: str | Path | None = None) -> list[tuple[Image.Image, dict[str, float]]]:
        """Render the recipes of one batch in ONE pipeline call: recipes[i] is image i of it (its batch
        {seeds, index: i}), all inputs but the seed the same. Each image comes with the whole batch's timings
        (upscale: the sum over the batch). A single recipe without `batch` is a plain render."""
        seeds = batch_seeds(recipes)
        t0 = time.perf_counter()
        with self._lock, torch.inference_mode():
            images, timings = self._generate(recipes[0], seeds, t0, reference_embeds, reference_image,
                                             character_lora)
            images = [self._upscale_timed(image, r, timings) for image, r in zip(images, recipes)]
        return [(image, dict(timings)) for image in images]

    def _generate(self, recipe: Recipe, seeds: list[int], t0: float, reference_embeds: bytes | None,
                  reference_image: Image.Image | None,
                  character_lora: str | Path | None) -> tuple[list[Image.Image], dict[str, float]]:
        """One pipeline call for recipe's inputs, image i from a CPU generator seeded with seeds[i]; stage timings
        of the call since t0 (before any upscale). Caller holds the lock, in inference mode."""
        measured: dict[str, float] = {}
        pipe = self.pipe
        kwargs: dict[str, Any] = {}
        if recipe.controlnet:
            if self.cn_pipe is None:
                raise ModelUnavailable(f"profile '{self.profile.name}' has no ControlNet")
            c = recipe.controlnet
            t = time.perf_counter()
            kwargs["image"] = control.control_image(c["control"], c.get("preset", ""), reference_image,
                                                    recipe.width, recipe.height)
            kwargs["controlnet_conditioning_scale"] = float(c.get("scale", 1.0))
            measured["control"] = time.perf_counter() - t
            pipe = self.cn_pipe
        pipe.scheduler = schedulers.make(recipe.scheduler, self.base_scheduler_config)
        # a character adapter is only ever the recipe's own file: another one loaded here is not for it to use
        own = {adapter_name(recipe.character_lora_sha256)} if recipe.character_lora_sha256 else set()
        if {n for n in recipe.loras if is_character_adapter(n)} != own:
            raise ModelUnavailable("a recipe's character LoRA must be the one its character_lora_sha256 names")
        if own:
            if character_lora is None:
                raise ModelUnavailable("this recipe needs its character LoRA file")
            self._ensure_character_lora(recipe.character_lora_sha256, character_lora)
        self._apply_loras(recipe.loras)
        t = time.perf_counter()
        if self.has_ip_adapter:
            self._apply_ip_scale(pipe, float(recipe.ip_adapter_scale))
            embeds = (embeddings.from_bytes(reference_embeds, self.device, self.dtype)
                      if reference_embeds is not None else self._blank_embeds)
            # one image's embeddings: the pipeline repeats them for each of num_images_per_prompt
            kwargs["ip_adapter_image_embeds"] = embeds if recipe.guidance > 1 else embeddings.positive_half(embeds)
        elif recipe.ip_adapter_scale:
            raise ModelUnavailable(f"profile '{self.profile.name}' has no IP-Adapter")
        measured["image_embed"] = time.perf_counter() - t
        t = time.perf_counter()
        kwargs |= self._prompt_embeds(pipe, recipe)  # one prompt's embeddings: repeated per image, as above
        measured["text_encode"] = time.perf_counter() - t
        generators = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
        # a batched recipe always gets the list form (what its batch was made with); a single one the generator
        # itself, as every recipe before batching was
        generator = generators if recipe.batch is not None else generators[0]
        cut = GuidanceCut.for_call(pipe, recipe.cfg_steps(), int(recipe.steps))
        if cut is not None:
            kwargs |= cut.call_kwargs
        with self._clock.recording(measured), cut or nullcontext():
            images = pipe(num_inference_steps=int(recipe.steps), guidance_scale=float(recipe.guidance),
                          width=int(recipe.width), height=int(recipe.height), generator=generator,
                          num_images_per_prompt=len(seeds), **kwargs).images
        generate = time.perf_counter() - t0
        return images, {"generate": generate, **stages.split(generate, measured)}

    def _upscale_timed(self, image: Image.Image, recipe: Recipe, timings: dict[str, float]) -> Image.Image:
        """The recipe's upscale (if any) of one image, its time added to timings["upscale"]."""
        if not recipe.upscale:
            return image
        t = time.perf_counter()
        image = self._upscale(image, recipe)
        timings["upscale"] = timings.get("upscale", 0.0) + time.perf_counter() - t
        return image

    def _prompt_embeds(self, pipe, recipe: Recipe) -> dict[str, torch.Tensor]:
        """The pipeline's own encode_prompt, called as its __call__ would, through the LRU: keyword arguments
        (prompt_embeds, negative_prompt_embeds, and the pooled pair for SDXL) that replace the prompt strings."""
        cfg = recipe.guidance > 1 and pipe.unet.config.time_cond_proj_dim is None
        encoders = [getattr(pipe, n, None) for n in ("text_encoder", "text_encoder_2")]
        text_lora = tuple(recipe.loras.items()) if any(getattr(e, "peft_config", None) for e in encoders) else ()
        key = (self.weights["base"], recipe.prompt, recipe.negative_prompt, cfg, text_lora)

        def encode() -> dict[str, torch.Tensor]:
            # the engine never offloads, so the execution device is its device (pipe._execution_device walks
            # every module looking for offload hooks: 20 ms a call on the bundled model)
            out = pipe.encode_prompt(prompt=recipe.prompt, device=torch.device(self.device), num_images_per_prompt=1,
                                     do_classifier_free_guidance=cfg, negative_prompt=recipe.negative_prompt)
            names = ("prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds",
                     "negative_pooled_prompt_embeds")
            return {n: t for n, t in zip(names, out) if t is not None}

        return self.prompts.get(key, encode)

    def _apply_ip_scale(self, pipe, scale: float) -> None:
        if scale != self._ip_scale:  # pipe and cn_pipe share the UNet and so its processors
            self._ip_scale = None
            pipe.set_ip_adapter_scale(scale)
            self._ip_scale = scale

    def _apply_loras(self, loras: dict[str, float]) -> None:
        known = set(self.theme_adapters.values()) | set(self._character_adapters)
        if not known:
            if loras:
                raise ModelUnavailable(f"profile '{self.profile.name}' has no theme LoRAs loaded")
            return
        unknown = set(loras) - known
        if unknown:
            raise ModelUnavailable(f"LoRA adapters not loaded in profile '{self.profile.name}': {sorted(unknown)}")
        state = tuple((k, float(w)) for k, w in loras.items())
        if state == self._lora_state:  # peft walks every module on each call: skip when nothing changes
            return
        self._lora_state = None  # unknown until the calls below have all succeeded
        if loras:
            self.pipe.enable_lora()
            self.pipe.set_adapters(list(loras), adapter_weights=[w for _, w in state])
        if self._fuser is not None and len(state) == 1:
            self._fuser.fuse(*state[0])  # at the scale set_adapters just gave it
            self.pipe.disable_lora()     # the branch is in the weights now
        elif self._fuser is not None:
            self._fuser.restore()        # theme + character LoRA (or none): peft's branches, pristine weights
        if not loras:
            self.pipe.disable_lora()
        self._lora_state = state

    def _upscale(self, image: Image.Image, recipe: Recipe) -> Image.Image:
        if recipe.upscale == upscale.CLASSICAL:
            return upscale.lanczos2x(image)
        # recipes name a local upscaler folder "local:<name>" (config.public_ref; its weights' hash is in weights)
        if self.upscaler is None or recipe.upscale not in (self.profile.upscaler, public_ref(self.profile.upscaler)):
            raise ModelUnavailable(f"upscaler {recipe.upscale!r} is not configured in profile '{self.profile.name}'")
        return self.upscaler(image, recipe.prompt, recipe.seed)


def batch_seeds(recipes: list[Recipe]) -> list[int]:
    """The seeds of recipes that form one batch: recipes[i] is image i (recipe.batch), every input but the seed
    equal (extra holds no inputs). ValueError otherwise."""
    if not recipes:
        raise ValueError("no recipes to render")
    seeds, _ = recipes[0].batch_seeds()
    inputs = _inputs(recipes[0])
    if len(recipes) != len(seeds) or any(r.batch_seeds() != (seeds, i) or _inputs(r) != inputs
                                         for i, r in enumerate(recipes)):
        raise ValueError("recipes of one batch must be images 0..n-1 of the same batch, with the same inputs")
    return seeds


def _inputs(recipe: Recipe) -> dict[str, Any]:
    d = recipe.to_dict()
    for name in ("seed", "batch", "extra"):
        d.pop(name)
    return d
