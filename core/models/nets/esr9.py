"""ESR-9 (Siqueira, Magg & Wermter, AAAI 2020): a shared convolutional base and nine branches.

Attribute names (conv1..conv4, bn1..bn4, fc, fc_dimensional) are those of the official state
dicts, one file for the base and one per branch, so each loads strictly into its module.
"""

from __future__ import annotations

import torch
from torch import nn

N_BRANCHES = 9
N_EMOTIONS = 8


class SharedBase(nn.Module):
    """Four unpadded convolutions with batch norm; 96x96 input -> 128 x 20 x 20 features."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 5)
        self.conv2 = nn.Conv2d(64, 128, 3)
        self.conv3 = nn.Conv2d(128, 128, 3)
        self.conv4 = nn.Conv2d(128, 128, 3)
        self.bn1 = nn.BatchNorm2d(64)
        self.bn2 = nn.BatchNorm2d(128)
        self.bn3 = nn.BatchNorm2d(128)
        self.bn4 = nn.BatchNorm2d(128)
        self.pool = nn.MaxPool2d(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.pool(torch.relu(self.bn2(self.conv2(x))))
        x = torch.relu(self.bn3(self.conv3(x)))
        return self.pool(torch.relu(self.bn4(self.conv4(x))))


class Branch(nn.Module):
    """One ensemble member: emotion logits, and valence/arousal computed from ReLU(logits)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(128, 128, 3)
        self.conv2 = nn.Conv2d(128, 256, 3)
        self.conv3 = nn.Conv2d(256, 256, 3)
        self.conv4 = nn.Conv2d(256, 512, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(128)
        self.bn2 = nn.BatchNorm2d(256)
        self.bn3 = nn.BatchNorm2d(256)
        self.bn4 = nn.BatchNorm2d(512)
        self.fc = nn.Linear(512, N_EMOTIONS)
        self.fc_dimensional = nn.Linear(N_EMOTIONS, 2)
        self.pool = nn.MaxPool2d(2, 2)

    def forward(self, shared: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.relu(self.bn1(self.conv1(shared)))
        x = self.pool(torch.relu(self.bn2(self.conv2(x))))
        x = torch.relu(self.bn3(self.conv3(x)))
        x = torch.relu(self.bn4(self.conv4(x))).mean(dim=(2, 3))
        logits = self.fc(x)
        return logits, self.fc_dimensional(torch.relu(logits))


class ESR9(nn.Module):
    """Returns logits (B, 9, 8) and valence/arousal (B, 9, 2) of every branch."""

    def __init__(self, n_branches: int = N_BRANCHES) -> None:
        super().__init__()
        self.base = SharedBase()
        self.branches = nn.ModuleList(Branch() for _ in range(n_branches))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shared = self.base(x)
        outputs = [branch(shared) for branch in self.branches]
        logits = torch.stack([o[0] for o in outputs], dim=1)
        affect = torch.stack([o[1] for o in outputs], dim=1)
        return logits, affect
