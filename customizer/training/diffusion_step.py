"""One denoising-training step's data and loss, shared by the base (train_base) and theme-LoRA (train_lora) stages.

A batch is a pure function of (seed, step): which latents, their posterior sample, the noise, the timesteps, caption
dropout for classifier-free guidance, and each sample's image condition for the IP-Adapter - one of the three
states the app produces: 0 = the person's reference at scale 1 (a selfie), 1 = no adapter (scale 0: designer
portraits, likeness 0), 2 = the all-zero embedding (the negative half of CFG). A portrait is never conditioned on
itself (that teaches copying, not identity); a dropped caption gets no reference either (CFG's unconditional).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

REFERENCE, NO_ADAPTER, ZERO_EMBED = 0, 1, 2


@dataclass
class Corpus:
    """An encode_corpus file, tokenized: everything a step draws from."""
    latents: torch.Tensor
    latent_std: torch.Tensor | None
    caption_ids: torch.Tensor
    uncond_ids: torch.Tensor            # [""] and [the app's negative prompt]
    references: torch.Tensor | None     # uint8 (people, 3, H, W)
    ref_of: torch.Tensor | None         # record -> row of references (-1: none)
    is_portrait: torch.Tensor | None

    @classmethod
    def from_file_data(cls, data: dict, tokenize, negative: str) -> Corpus:
        return cls(latents=data["latents"], latent_std=data.get("latent_std"),
                   caption_ids=tokenize(list(data["captions"])), uncond_ids=tokenize(["", negative]),
                   references=data.get("references"), ref_of=data.get("ref_of"), is_portrait=data.get("is_portrait"))

    def __len__(self) -> int:
        return len(self.caption_ids)


@dataclass
class Conditioning:
    caption_dropout: float = 0.1
    negative_share: float = 0.5                   # of dropped captions: the app's negative instead of ""
    ip_shares: tuple[float, float, float] | None = None   # REFERENCE / NO_ADAPTER / ZERO_EMBED; None: no adapter


@dataclass
class Batch:
    noisy: torch.Tensor
    noise: torch.Tensor
    timesteps: torch.Tensor
    ids: torch.Tensor
    cond: torch.Tensor | None = None
    ref_pixels: torch.Tensor | None = None


def parse_shares(text: str) -> tuple[float, float, float]:
    shares = tuple(float(x) for x in text.split(","))
    if len(shares) != 3 or min(shares) < 0 or abs(sum(shares) - 1) > 1e-6:
        raise ValueError("IP-Adapter state shares need three non-negative numbers summing to 1")
    return shares  # type: ignore[return-value]


def draw(corpus: Corpus, g: torch.Generator, batch: int, conditioning: Conditioning, alphas_cumprod: torch.Tensor,
         device) -> Batch:
    """The step's batch (all randomness from g, in a fixed order), moved to device."""
    idx = torch.randint(len(corpus), (batch,), generator=g)
    lat = corpus.latents[idx].float()
    if corpus.latent_std is not None:
        lat = lat + corpus.latent_std[idx].float() * torch.randn(lat.shape, generator=g)
    noise = torch.randn(lat.shape, generator=g)
    timesteps = torch.randint(0, len(alphas_cumprod), (batch,), generator=g)
    ids = corpus.caption_ids[idx].clone()
    drop = torch.rand(batch, generator=g) < conditioning.caption_dropout
    use_neg = torch.rand(batch, generator=g) < conditioning.negative_share
    ids[drop & ~use_neg] = corpus.uncond_ids[0]
    ids[drop & use_neg] = corpus.uncond_ids[1]
    cond = ref_pixels = None
    if conditioning.ip_shares is not None:
        s = conditioning.ip_shares
        r = torch.rand(batch, generator=g)
        cond = torch.where(r < s[0], REFERENCE, torch.where(r < s[0] + s[1], NO_ADAPTER, ZERO_EMBED))
        cond[corpus.is_portrait[idx] & (cond == REFERENCE)] = NO_ADAPTER
        cond[(corpus.ref_of[idx] < 0) & (cond == REFERENCE)] = NO_ADAPTER
        cond[drop] = torch.where(r[drop] < 0.5, NO_ADAPTER, ZERO_EMBED)
        ref_pixels = corpus.references[corpus.ref_of[idx].clamp(min=0)]
    a = alphas_cumprod[timesteps].view(-1, 1, 1, 1)
    noisy = a.sqrt() * lat + (1 - a).sqrt() * noise             # = DDPMScheduler.add_noise, in fp32
    return Batch(noisy.to(device), noise.to(device), timesteps.to(device), ids.to(device), cond, ref_pixels)


def predict(unet, text_encoder, image_encoder, b: Batch, device) -> torch.Tensor:
    """The UNet's noise prediction for the batch, with each sample's image condition."""
    from . import ip_adapter

    hidden = text_encoder(b.ids)[0]
    if b.cond is None:
        return unet(b.noisy, b.timesteps, hidden).sample
    emb = ip_adapter.embed(image_encoder, b.ref_pixels, device)
    emb = emb * (b.cond == REFERENCE).to(emb.device, emb.dtype).view(-1, 1, 1)
    gate = (b.cond != NO_ADAPTER).to(device, torch.float32).view(-1, 1, 1)
    with ip_adapter.gated(unet, gate):
        return unet(b.noisy, b.timesteps, hidden, added_cond_kwargs={"image_embeds": [emb]}).sample


def min_snr_weights(alphas_cumprod: torch.Tensor, timesteps: torch.Tensor, gamma: float) -> torch.Tensor:
    """Min-SNR-gamma loss weights for epsilon prediction: min(SNR, gamma) / SNR (Hang et al. 2023)."""
    alphas = alphas_cumprod.to(timesteps.device)[timesteps]
    snr = alphas / (1 - alphas)
    return torch.clamp(snr, max=gamma) / snr


def loss(pred: torch.Tensor, b: Batch, alphas_cumprod: torch.Tensor, snr_gamma: float) -> torch.Tensor:
    per = (pred.float() - b.noise).pow(2).mean(dim=(1, 2, 3))
    if snr_gamma > 0:
        per = per * min_snr_weights(alphas_cumprod, b.timesteps, snr_gamma)
    return per.mean()
