"""U-Net discriminator with spectral norm, state-dict compatible with Real-ESRGAN's release
(``conv0`` .. ``conv9``; spectral-norm convs store ``weight_orig``, ``weight_u``, ``weight_v``),
so GAN training can start from a released discriminator. Inputs need sides divisible by 8."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm


class UNetDiscriminatorSN(nn.Module):
    def __init__(self, in_channels: int = 3, channels: int = 64, skip_connection: bool = True):
        super().__init__()
        self.skip_connection = skip_connection
        c = channels

        def sn_conv(cin: int, cout: int, kernel: int, stride: int) -> nn.Module:
            return spectral_norm(nn.Conv2d(cin, cout, kernel, stride, 1, bias=False))

        self.conv0 = nn.Conv2d(in_channels, c, 3, 1, 1)
        # encoder: three stride-2 steps
        self.conv1 = sn_conv(c, 2 * c, 4, 2)
        self.conv2 = sn_conv(2 * c, 4 * c, 4, 2)
        self.conv3 = sn_conv(4 * c, 8 * c, 4, 2)
        # decoder: back up with skips from the encoder
        self.conv4 = sn_conv(8 * c, 4 * c, 3, 1)
        self.conv5 = sn_conv(4 * c, 2 * c, 3, 1)
        self.conv6 = sn_conv(2 * c, c, 3, 1)
        self.conv7 = sn_conv(c, c, 3, 1)
        self.conv8 = sn_conv(c, c, 3, 1)
        self.conv9 = nn.Conv2d(c, 1, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2] % 8 or x.shape[-1] % 8:
            raise ValueError(f"the U-Net discriminator needs height and width divisible by 8, got {tuple(x.shape[-2:])}")

        def act(t):
            return F.leaky_relu(t, 0.2)

        def up(t):
            return F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=False)

        x0 = act(self.conv0(x))
        x1 = act(self.conv1(x0))
        x2 = act(self.conv2(x1))
        x3 = act(self.conv3(x2))
        x4 = act(self.conv4(up(x3)))
        if self.skip_connection:
            x4 = x4 + x2
        x5 = act(self.conv5(up(x4)))
        if self.skip_connection:
            x5 = x5 + x1
        x6 = act(self.conv6(up(x5)))
        if self.skip_connection:
            x6 = x6 + x0
        return self.conv9(act(self.conv8(act(self.conv7(x6)))))
