"""EmoNet (Toisoul et al., Nature Machine Intelligence 2021): a FAN face-alignment network of
stacked hourglasses whose landmark heatmaps gate the features of an emotion head.

Written from the paper's published architecture; module names follow the official checkpoint's
state_dict keys (after its ``module.`` prefix is removed) so the file loads with ``strict=True``.

The official module rebinds ``nn.InstanceNorm2d`` to ``nn.BatchNorm2d`` for the whole process
at import time, so every normalisation layer of the trained network is a BatchNorm2d with running
statistics. We use BatchNorm2d directly and patch nothing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

N_LANDMARKS = 68
FEATURES = 256


def _conv3x3(in_planes: int, out_planes: int) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=1, padding=1, bias=False)


class ConvBlock(nn.Module):
    """Pre-activation residual block whose three 3x3 branches (1/2, 1/4, 1/4 of the output
    width) are concatenated; a BN-ReLU-1x1 projection matches widths when they differ."""

    def __init__(self, in_planes: int, out_planes: int) -> None:
        super().__init__()
        half, quarter = out_planes // 2, out_planes // 4
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = _conv3x3(in_planes, half)
        self.bn2 = nn.BatchNorm2d(half)
        self.conv2 = _conv3x3(half, quarter)
        self.bn3 = nn.BatchNorm2d(quarter)
        self.conv3 = _conv3x3(quarter, quarter)
        self.downsample: nn.Module | None = None
        if in_planes != out_planes:
            self.downsample = nn.Sequential(
                nn.BatchNorm2d(in_planes),
                nn.ReLU(inplace=True),
                nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=1, bias=False),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch1 = self.conv1(F.relu(self.bn1(x)))
        branch2 = self.conv2(F.relu(self.bn2(branch1)))
        branch3 = self.conv3(F.relu(self.bn3(branch2)))
        residual = x if self.downsample is None else self.downsample(x)
        return torch.cat((branch1, branch2, branch3), dim=1) + residual


class HourGlass(nn.Module):
    """Recursive hourglass of ``depth`` levels; level ``k`` owns blocks ``b1_k``, ``b2_k``, ``b3_k``
    and the innermost level also ``b2_plus_1`` (the checkpoint's naming)."""

    def __init__(self, depth: int, features: int = FEATURES) -> None:
        super().__init__()
        self.depth = depth
        for level in range(depth, 0, -1):
            self.add_module(f"b1_{level}", ConvBlock(features, features))
            self.add_module(f"b2_{level}", ConvBlock(features, features))
            if level == 1:
                self.add_module("b2_plus_1", ConvBlock(features, features))
            self.add_module(f"b3_{level}", ConvBlock(features, features))

    def _level(self, level: int, x: torch.Tensor) -> torch.Tensor:
        upper = self._modules[f"b1_{level}"](x)
        lower = self._modules[f"b2_{level}"](F.max_pool2d(x, 2, stride=2))
        if level > 1:
            lower = self._level(level - 1, lower)
        else:
            lower = self._modules["b2_plus_1"](lower)
        lower = self._modules[f"b3_{level}"](lower)
        return upper + F.interpolate(lower, scale_factor=2, mode="nearest")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._level(self.depth, x)


class EmoNet(nn.Module):
    """EmoNet with the official defaults: 2 hourglass stacks, 8 expressions, valence and arousal,
    4 emotion blocks, heatmap attention. Input (B, 3, 256, 256) RGB in [0, 1].

    ``forward`` returns ``expression`` (B, n_expression) logits, ``valence`` (B,), ``arousal``
    (B,) (raw, unbounded) and ``heatmap`` (B, 68, 64, 64) of the last stack.
    """

    def __init__(self, num_modules: int = 2, n_expression: int = 8, n_reg: int = 2,
                 n_blocks: int = 4, attention: bool = True) -> None:
        super().__init__()
        self.num_modules = num_modules
        self.n_expression = n_expression
        self.attention = attention
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = ConvBlock(64, 128)
        self.conv3 = ConvBlock(128, 128)
        self.conv4 = ConvBlock(128, FEATURES)
        for stack in range(num_modules):
            self._add_stack(stack, last=stack == num_modules - 1)
        emo_in = FEATURES * (num_modules + 1) + (0 if attention else N_LANDMARKS)
        self.conv1x1_input_emo_2 = nn.Conv2d(emo_in, FEATURES, kernel_size=1)
        blocks: list[nn.Module] = []
        for _ in range(n_blocks):
            blocks += [ConvBlock(FEATURES, FEATURES), nn.MaxPool2d(2, 2)]
        self.emo_net_2 = nn.Sequential(*blocks)
        self.avg_pool_2 = nn.AvgPool2d(4)
        self.emo_fc_2 = nn.Sequential(
            nn.Linear(FEATURES, 128), nn.BatchNorm1d(128), nn.ReLU(inplace=True),
            nn.Linear(128, n_expression + n_reg),
        )

    def _add_stack(self, stack: int, last: bool) -> None:
        self.add_module(f"m{stack}", HourGlass(depth=4))
        self.add_module(f"top_m_{stack}", ConvBlock(FEATURES, FEATURES))
        self.add_module(f"conv_last{stack}", nn.Conv2d(FEATURES, FEATURES, kernel_size=1))
        self.add_module(f"bn_end{stack}", nn.BatchNorm2d(FEATURES))
        self.add_module(f"l{stack}", nn.Conv2d(FEATURES, N_LANDMARKS, kernel_size=1))
        if not last:
            self.add_module(f"bl{stack}", nn.Conv2d(FEATURES, FEATURES, kernel_size=1))
            self.add_module(f"al{stack}", nn.Conv2d(N_LANDMARKS, FEATURES, kernel_size=1))

    def _stacks(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Run the hourglass stacks; return each stack's features and the last heatmap."""
        previous, features, heatmap = x, [], x
        for stack in range(self.num_modules):
            out = self._modules[f"top_m_{stack}"](self._modules[f"m{stack}"](previous))
            out = F.relu(self._modules[f"bn_end{stack}"](self._modules[f"conv_last{stack}"](out)))
            heatmap = self._modules[f"l{stack}"](out)
            if stack < self.num_modules - 1:
                # The trained head consumed the projected features of intermediate stacks.
                out = self._modules[f"bl{stack}"](out)
                previous = previous + out + self._modules[f"al{stack}"](heatmap)
            features.append(out)
        return features, heatmap

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(self.conv2(x), 2, stride=2)
        x = self.conv4(self.conv3(x))
        features, heatmap = self._stacks(x)
        stacked = torch.cat(features, dim=1)
        if self.attention:
            stacked = stacked * heatmap.sum(dim=1, keepdim=True)
            emo = torch.cat((x, stacked), dim=1)
        else:
            emo = torch.cat((x, stacked, heatmap), dim=1)
        emo = self.avg_pool_2(self.emo_net_2(self.conv1x1_input_emo_2(emo)))
        out = self.emo_fc_2(emo.flatten(1))
        n = self.n_expression
        return {"expression": out[:, :n], "valence": out[:, n], "arousal": out[:, n + 1],
                "heatmap": heatmap}
