"""MobileFaceNet (Chen et al. 2018) as used by EmotiEffLib's ``mbf_va_mtl``: 112x112 -> 512-d.

The submodule names (``layers``, ``conv_sep``, ``features``) and the order inside each
``nn.Sequential`` follow the checkpoint's state-dict keys (the cavaface layout EmotiEffLib
trained with: blocks (1, 4, 6, 2), width scale 2, 512-d GDC embedding). The emotion model wraps
it as ``features`` followed by ``fc = Linear(512, 10)``.
"""

from __future__ import annotations

import torch
from torch import nn


def conv_bn(in_c: int, out_c: int, kernel: int, stride: int, padding: int, groups: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_c, out_c, kernel, stride=stride, padding=padding, groups=groups, bias=False),
        nn.BatchNorm2d(out_c),
    ]


class ConvBnPrelu(nn.Module):
    def __init__(self, in_c: int, out_c: int, kernel: int = 1, stride: int = 1, padding: int = 0, groups: int = 1) -> None:
        super().__init__()
        self.layers = nn.Sequential(*conv_bn(in_c, out_c, kernel, stride, padding, groups), nn.PReLU(out_c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class ConvBn(nn.Module):
    """Linear (no activation) convolution block."""

    def __init__(self, in_c: int, out_c: int, kernel: int = 1, stride: int = 1, padding: int = 0, groups: int = 1) -> None:
        super().__init__()
        self.layers = nn.Sequential(*conv_bn(in_c, out_c, kernel, stride, padding, groups))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class Bottleneck(nn.Module):
    """Expand (1x1) -> depthwise 3x3 -> project (1x1), with a skip connection when ``residual``."""

    def __init__(self, in_c: int, out_c: int, hidden: int, stride: int, residual: bool) -> None:
        super().__init__()
        self.residual = residual
        self.layers = nn.Sequential(
            ConvBnPrelu(in_c, hidden),
            ConvBnPrelu(hidden, hidden, kernel=3, stride=stride, padding=1, groups=hidden),
            ConvBn(hidden, out_c),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.layers(x)
        return x + y if self.residual else y


class BottleneckStack(nn.Module):
    def __init__(self, channels: int, hidden: int, count: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(*(Bottleneck(channels, channels, hidden, 1, True) for _ in range(count)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class GlobalDepthwiseEmbedding(nn.Module):
    """GDC head: 7x7 depthwise conv over the final map, then a bias-free linear + BN1d."""

    def __init__(self, embedding: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            ConvBn(512, 512, kernel=7, groups=512),
            nn.Flatten(),
            nn.Linear(512, embedding, bias=False),
            nn.BatchNorm1d(embedding),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class MobileFaceNet(nn.Module):
    def __init__(self, embedding: int = 512, blocks: tuple[int, int, int, int] = (1, 4, 6, 2), scale: int = 2) -> None:
        super().__init__()
        c1, c2 = 64 * scale, 128 * scale
        if blocks[0] != 1:
            raise ValueError("only the one-block stem of the EmotiEffLib checkpoint is built here")
        self.layers = nn.ModuleList([
            ConvBnPrelu(3, c1, kernel=3, stride=2, padding=1),
            ConvBnPrelu(c1, c1, kernel=3, padding=1, groups=64),
            Bottleneck(c1, c1, 128, stride=2, residual=False),
            BottleneckStack(c1, 128, blocks[1]),
            Bottleneck(c1, c2, 256, stride=2, residual=False),
            BottleneckStack(c2, 256, blocks[2]),
            Bottleneck(c2, c2, 512, stride=2, residual=False),
            BottleneckStack(c2, 256, blocks[3]),
        ])
        self.conv_sep = ConvBnPrelu(c2, 512)
        self.features = GlobalDepthwiseEmbedding(embedding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.features(self.conv_sep(x))


class MobileFaceNetHead(nn.Module):
    """EmotiEffLib's mbf model: ``features`` (MobileFaceNet) then ``fc`` (512 -> n outputs)."""

    def __init__(self, n_outputs: int = 10) -> None:
        super().__init__()
        self.features = MobileFaceNet()
        self.fc = nn.Linear(512, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))
