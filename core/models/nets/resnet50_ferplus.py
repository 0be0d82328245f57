"""The Multitask-CNN of Deng, Chen & Shi (FG 2020 ABAW): a caffe-style ResNet-50 ("resnet50_ferplus_dag",
imported from MatConvNet by albanie's pytorch-benchmarks, FER+ pre-trained) with three heads.

Written from the published architecture. Module names follow the official student checkpoints:
``backbone.model.<caffe layer name>`` for the ResNet-50 (e.g. ``conv3_1_1x1_reduce_bn``) and
``classifier.{0,1,2}.{bn0,fc_0,bn1,fc_1}`` for the expression (7), action-unit (8) and
valence/arousal (2 x 20 bins) heads. Caffe-style means: stride 2 sits in the first 1x1 convolution
of a stage, convolutions have no bias, the stem max-pool rounds up (ceil mode). The FER+
classifier was replaced by identity and the 7x7 average pool by a global one for 112-px input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# (stage index, blocks, bottleneck width, output width) as in the caffe layer names conv2_x..conv5_x.
STAGES: tuple[tuple[int, int, int, int], ...] = (
    (2, 3, 64, 256), (3, 4, 128, 512), (4, 6, 256, 1024), (5, 3, 512, 2048),
)
FEATURE_DIM = 2048
HIDDEN = 128
EXPR_CLASSES = 7
AU_COUNT = 8
VA_BINS = 20


class Resnet50FerPlus(nn.Module):
    """The backbone with flat caffe layer names; returns (B, 2048) pooled features."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1_7x7_s2 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.conv1_7x7_s2_bn = nn.BatchNorm2d(64)
        self.pool1_3x3_s2 = nn.MaxPool2d(kernel_size=3, stride=2, padding=0, ceil_mode=True)
        self.blocks: list[tuple[str, bool]] = []
        in_planes = 64
        for stage, count, width, out_planes in STAGES:
            for index in range(1, count + 1):
                name = f"conv{stage}_{index}"
                stride = 2 if index == 1 and stage > 2 else 1
                self._add_block(name, in_planes, width, out_planes, stride, project=index == 1)
                self.blocks.append((name, index == 1))
                in_planes = out_planes
        self.pool5_7x7_s1 = nn.AdaptiveAvgPool2d(1)

    def _add_block(self, name: str, in_planes: int, width: int, out_planes: int, stride: int,
                   project: bool) -> None:
        layers = {
            "1x1_reduce": nn.Conv2d(in_planes, width, kernel_size=1, stride=stride, bias=False),
            "1x1_reduce_bn": nn.BatchNorm2d(width),
            "3x3": nn.Conv2d(width, width, kernel_size=3, padding=1, bias=False),
            "3x3_bn": nn.BatchNorm2d(width),
            "1x1_increase": nn.Conv2d(width, out_planes, kernel_size=1, bias=False),
            "1x1_increase_bn": nn.BatchNorm2d(out_planes),
        }
        if project:
            layers["1x1_proj"] = nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)
            layers["1x1_proj_bn"] = nn.BatchNorm2d(out_planes)
        for suffix, layer in layers.items():
            self.add_module(f"{name}_{suffix}", layer)

    def _block(self, name: str, project: bool, x: torch.Tensor) -> torch.Tensor:
        layer = self._modules
        out = F.relu(layer[f"{name}_1x1_reduce_bn"](layer[f"{name}_1x1_reduce"](x)))
        out = F.relu(layer[f"{name}_3x3_bn"](layer[f"{name}_3x3"](out)))
        out = layer[f"{name}_1x1_increase_bn"](layer[f"{name}_1x1_increase"](out))
        shortcut = layer[f"{name}_1x1_proj_bn"](layer[f"{name}_1x1_proj"](x)) if project else x
        return F.relu(shortcut + out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1_3x3_s2(F.relu(self.conv1_7x7_s2_bn(self.conv1_7x7_s2(x))))
        for name, project in self.blocks:
            x = self._block(name, project, x)
        return self.pool5_7x7_s1(x).flatten(1)


class Head(nn.Module):
    """BN -> Linear(2048, 128) -> ReLU -> BN -> Linear(128, n): one task's output layer."""

    def __init__(self, n_out: int, in_dim: int = FEATURE_DIM, hidden: int = HIDDEN) -> None:
        super().__init__()
        self.bn0 = nn.BatchNorm1d(in_dim)
        self.fc_0 = nn.Linear(in_dim, hidden)
        self.bn1 = nn.BatchNorm1d(hidden)
        self.fc_1 = nn.Linear(hidden, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_1(self.bn1(F.relu(self.fc_0(self.bn0(x)))))


class _Backbone(nn.Module):
    """Holds the ResNet under ``model`` so that keys read ``backbone.model.*``."""

    def __init__(self) -> None:
        super().__init__()
        self.model = Resnet50FerPlus()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class MultitaskCNN(nn.Module):
    """One student. Input (B, 3, 112, 112) RGB, 0..255 minus the VGGFace2 mean.

    Returns raw outputs: ``expr`` (B, 7) logits, ``au`` (B, 8) logits, ``va`` (B, 40) logits
    (valence bins then arousal bins).
    """

    def __init__(self) -> None:
        super().__init__()
        self.backbone = _Backbone()
        self.classifier = nn.ModuleList([Head(EXPR_CLASSES), Head(AU_COUNT), Head(2 * VA_BINS)])

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.backbone(x)
        expr, au, va = (head(features) for head in self.classifier)
        return {"expr": expr, "au": au, "va": va}
