"""A patch critic for the VAE's decoder (train_vae --adv-weight): an L1 decoder draws the average of what a latent
could be, so a mouth line or an iris it is unsure of comes out as a smudge; a critic that tells real 20-pixel
patches from decoded ones makes it commit to one. Hinge losses, as in the GANs behind Stable Diffusion's VAE.
It only ever sees renders and the decoder's own pictures: never the instruments, which stay the judge.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PatchCritic(nn.Module):
    """Three stride-2 convolutions: one logit per ~22 px patch (8 x 8 of them on a 64 px window)."""

    def __init__(self, width: int = 32):
        super().__init__()
        layers, cin = [], 3
        for cout in (width, 2 * width, 4 * width):
            layers += [nn.Conv2d(cin, cout, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            cin = cout
        layers.append(nn.Conv2d(cin, 1, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def critic_loss(critic: PatchCritic, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Hinge loss of the critic (fake is detached: only the critic learns from it)."""
    return F.relu(1 - critic(real)).mean() + F.relu(1 + critic(fake.detach())).mean()


def generator_loss(critic: PatchCritic, fake: torch.Tensor) -> torch.Tensor:
    """What the decoder adds to its loss: make the critic score its patches as real."""
    return -critic(fake).mean()
