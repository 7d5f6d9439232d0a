"""VGG19 feature branch for FEGAN-style pixel maps, built here and filled only from a weights file
the user supplies (torchvision's ``vgg19`` state-dict layout). Never downloads: a line
inspection box is often offline, and a model must not change behind the operator's back."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from edge_inspect.errors import InputDataError

__all__ = ["VGG19Features", "load_vgg19_features"]

# torchvision's vgg19 "E" configuration up to relu3_4 (features[0:18])
_CFG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256)
#: indices in ``features`` whose outputs feed the map: relu2_2 and relu3_4
TAPS = (8, 17)
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


class VGG19Features(nn.Module):
    """Frozen VGG19 trunk up to relu3_4; input in [-1, 1] (1 or 3 channels), returns tap outputs."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for v in _CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c_in, int(v), 3, padding=1), nn.ReLU(inplace=True)]
                c_in = int(v)
        self.features = nn.Sequential(*layers)
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        h = ((x + 1.0) * 0.5 - self.mean) / self.std
        taps = []
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in TAPS:
                taps.append(h)
        return taps


def load_vgg19_features(path: Path) -> VGG19Features:
    """Build the trunk and load ``features.*`` from a torchvision-format vgg19 state dict file."""
    path = Path(path)
    if not path.is_file():
        raise InputDataError(
            f"{path}: VGG19 weights file not found; the VGG feature branch needs a torchvision-format "
            "vgg19 state dict supplied by you (edge-inspect never downloads weights)"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and runtime errors alike
        raise InputDataError(f"{path}: not a readable torch weights file ({str(exc).splitlines()[0][:160]})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    net = VGG19Features()
    wanted = net.features.state_dict()
    if not isinstance(state, dict):
        raise InputDataError(f"{path}: expected a vgg19 state dict, got {type(state).__name__}")
    sub = {k[len("features."):]: v for k, v in state.items() if isinstance(k, str) and k.startswith("features.")}
    missing = [k for k in wanted if k not in sub]
    wrong = [k for k in wanted if k in sub and tuple(sub[k].shape) != tuple(wanted[k].shape)]
    if missing or wrong:
        raise InputDataError(
            f"{path}: not a torchvision vgg19 state dict (missing {missing[:3]}, wrong shape {wrong[:3]})"
        )
    net.features.load_state_dict({k: sub[k] for k in wanted})
    return net.eval()
