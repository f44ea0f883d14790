"""One denoising-training step's data and loss, shared by the base (train_base) and theme-LoRA (train_lora) stages
and by the app's own character LoRA trainer (engine/character_lora.py): that is why it lives in the engine, and the
training recipes (a leaf package) import it from here.

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
    # with frozen encoders (precompute): their outputs, so a step runs the UNet alone
    caption_states: torch.Tensor | None = None   # (N, 77, D) fp16: text_encoder(caption_ids)[0]
    uncond_states: torch.Tensor | None = None    # (2, 77, D) fp16
    ref_embeds: torch.Tensor | None = None       # (people, 1, E): ip_adapter.embed(image_encoder, references)
    # each record's caption without the look (prompts.yaml selfie_from_reference), for Conditioning.appearance_drop
    ref_caption_ids: torch.Tensor | None = None
    ref_caption_states: torch.Tensor | None = None
    # (N, 1, h, w) fp16: the share of each latent cell's pixels that carry eye colour or expression
    # (training/latent_masks.py), for loss(detail_weight=)
    detail: torch.Tensor | None = None

    @classmethod
    def from_file_data(cls, data: dict, tokenize, negative: str, ref_captions: list[str] | None = None) -> Corpus:
        return cls(latents=data["latents"], latent_std=data.get("latent_std"),
                   caption_ids=tokenize(list(data["captions"])), uncond_ids=tokenize(["", negative]),
                   references=data.get("references"), ref_of=data.get("ref_of"), is_portrait=data.get("is_portrait"),
                   ref_caption_ids=tokenize(list(ref_captions)) if ref_captions is not None else None)

    def __len__(self) -> int:
        return len(self.caption_ids)

    @torch.no_grad()
    def precompute(self, text_encoder=None, image_encoder=None, device="cpu", batch: int = 256) -> Corpus:
        """Run the frozen encoders once over every caption / reference (identical captions once): later steps
        look their outputs up instead of recomputing them (fp16 text states: 20 KB a caption at hidden 128)."""
        from . import ip_adapter

        if text_encoder is not None:
            was = text_encoder.training
            text_encoder.eval()
            ids = self.caption_ids if self.ref_caption_ids is None else torch.cat([self.caption_ids,
                                                                                     self.ref_caption_ids])
            uniq, inverse = torch.unique(ids, dim=0, return_inverse=True)
            states = torch.cat([text_encoder(uniq[i:i + batch].to(device))[0].to("cpu", torch.float16)
                                for i in range(0, len(uniq), batch)])
            self.caption_states = states[inverse[:len(self.caption_ids)]]
            if self.ref_caption_ids is not None:
                self.ref_caption_states = states[inverse[len(self.caption_ids):]]
            self.uncond_states = text_encoder(self.uncond_ids.to(device))[0].to("cpu", torch.float16)
            text_encoder.train(was)
        if image_encoder is not None and self.references is not None:
            was = image_encoder.training
            image_encoder.eval()
            self.ref_embeds = torch.cat([ip_adapter.embed(image_encoder, self.references[i:i + batch], device).cpu()
                                         for i in range(0, len(self.references), batch)])
            image_encoder.train(was)
        return self


@dataclass
class Conditioning:
    caption_dropout: float = 0.1
    negative_share: float = 0.5                   # of dropped captions: the app's negative instead of ""
    ip_shares: tuple[float, float, float] | None = None   # REFERENCE / NO_ADAPTER / ZERO_EMBED; None: no adapter
    # of the samples conditioned on their reference: the share captioned without the look (Corpus.ref_caption_ids),
    # so the UNet must take hair, eyes and skin from the reference; 0 draws nothing (the batch stream is unchanged)
    appearance_drop: float = 0.0


@dataclass
class Batch:
    noisy: torch.Tensor
    noise: torch.Tensor
    timesteps: torch.Tensor
    ids: torch.Tensor
    cond: torch.Tensor | None = None
    ref_pixels: torch.Tensor | None = None
    states: torch.Tensor | None = None        # precomputed text states (instead of running the text encoder)
    ref_embeds: torch.Tensor | None = None    # precomputed reference embeddings (instead of the image encoder)
    latents: torch.Tensor | None = None       # the clean latents (x0), for targets other than the noise
    detail: torch.Tensor | None = None        # (B,1,h,w) the samples' detail maps (Corpus.detail)


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
    states = None
    if corpus.caption_states is not None:
        states = corpus.caption_states[idx].float()
        states[drop & ~use_neg] = corpus.uncond_states[0].float()
        states[drop & use_neg] = corpus.uncond_states[1].float()
    cond = ref_pixels = ref_embeds = None
    if conditioning.ip_shares is not None:
        s = conditioning.ip_shares
        r = torch.rand(batch, generator=g)
        cond = torch.where(r < s[0], REFERENCE, torch.where(r < s[0] + s[1], NO_ADAPTER, ZERO_EMBED))
        cond[corpus.is_portrait[idx] & (cond == REFERENCE)] = NO_ADAPTER
        cond[(corpus.ref_of[idx] < 0) & (cond == REFERENCE)] = NO_ADAPTER
        cond[drop] = torch.where(r[drop] < 0.5, NO_ADAPTER, ZERO_EMBED)
        if conditioning.appearance_drop > 0 and corpus.ref_caption_ids is not None:
            swap = (torch.rand(batch, generator=g) < conditioning.appearance_drop) & (cond == REFERENCE)
            ids[swap] = corpus.ref_caption_ids[idx][swap]
            if states is not None:
                states[swap] = corpus.ref_caption_states[idx][swap].float()
        rows = corpus.ref_of[idx].clamp(min=0)
        if corpus.ref_embeds is not None:
            ref_embeds = corpus.ref_embeds[rows].float().to(device)
        else:
            ref_pixels = corpus.references[rows]
    a = alphas_cumprod[timesteps].view(-1, 1, 1, 1)
    noisy = a.sqrt() * lat + (1 - a).sqrt() * noise             # = DDPMScheduler.add_noise, in fp32
    detail = corpus.detail[idx].float().to(device) if corpus.detail is not None else None   # no draw: same stream
    return Batch(noisy.to(device), noise.to(device), timesteps.to(device), ids.to(device), cond, ref_pixels,
                 states.to(device) if states is not None else None, ref_embeds, lat.to(device), detail)


def predict(unet, text_encoder, image_encoder, b: Batch, device) -> torch.Tensor:
    """The UNet's noise prediction for the batch, with each sample's image condition."""
    from . import ip_adapter

    hidden = b.states if b.states is not None else text_encoder(b.ids)[0]
    if b.cond is None:
        return unet(b.noisy, b.timesteps, hidden).sample
    emb = b.ref_embeds if b.ref_embeds is not None else ip_adapter.embed(image_encoder, b.ref_pixels, device)
    emb = emb * (b.cond == REFERENCE).to(emb.device, emb.dtype).view(-1, 1, 1)
    gate = (b.cond != NO_ADAPTER).to(device, torch.float32).view(-1, 1, 1)
    with ip_adapter.gated(unet, gate):
        return unet(b.noisy, b.timesteps, hidden, added_cond_kwargs={"image_embeds": [emb]}).sample


def min_snr_weights(alphas_cumprod: torch.Tensor, timesteps: torch.Tensor, gamma: float,
                    v_prediction: bool = False) -> torch.Tensor:
    """Min-SNR-gamma loss weights (Hang et al. 2023): min(SNR, gamma) / SNR for epsilon prediction,
    min(SNR, gamma) / (SNR + 1) for v prediction (the same weighting of the x0 error)."""
    alphas = alphas_cumprod.to(timesteps.device)[timesteps]
    snr = alphas / (1 - alphas)
    return torch.clamp(snr, max=gamma) / (snr + 1 if v_prediction else snr)


def target(b: Batch, alphas_cumprod: torch.Tensor, prediction_type: str = "epsilon") -> torch.Tensor:
    """What the UNet learns to predict: the noise (epsilon), or v = sqrt(a) noise - sqrt(1 - a) x0 (v_prediction:
    at high noise an error in v is an error of the same size in x0, where epsilon's is amplified by 1/sqrt(a) -
    the step that lays out the picture)."""
    if prediction_type == "epsilon":
        return b.noise
    if prediction_type != "v_prediction":
        raise ValueError(f"unknown prediction type {prediction_type!r}")
    a = alphas_cumprod.to(b.timesteps.device)[b.timesteps].view(-1, 1, 1, 1)
    return a.sqrt() * b.noise - (1 - a).sqrt() * b.latents


def loss(pred: torch.Tensor, b: Batch, alphas_cumprod: torch.Tensor, snr_gamma: float,
         prediction_type: str = "epsilon", detail_weight: float = 0.0) -> torch.Tensor:
    """Per-sample MSE to the target (min-SNR weighted). detail_weight > 0 (and the batch's detail maps): each latent
    cell weighs 1 + detail_weight x its detail share, normalised per sample so the loss keeps its scale."""
    err = (pred.float() - target(b, alphas_cumprod, prediction_type)).pow(2)
    if detail_weight > 0 and b.detail is not None:
        w = 1.0 + detail_weight * b.detail
        per = (err * w).mean(dim=(1, 2, 3)) / w.mean(dim=(1, 2, 3))
    else:
        per = err.mean(dim=(1, 2, 3))
    if snr_gamma > 0:
        per = per * min_snr_weights(alphas_cumprod, b.timesteps, snr_gamma, prediction_type == "v_prediction")
    return per.mean()
