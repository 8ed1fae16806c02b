"""MTCNN face detector stages from facenet-pytorch 2.6.0: the fully convolutional P-Net and the O-Net.

The networks are rebuilt here layer for layer (the same state-dict keys as facenet-pytorch's
``PNet``/``ONet``), and the released ``data/pnet.pt`` / ``data/onet.pt`` state dicts are read with
``torch.load(weights_only=True)`` straight from the verified wheel. facenet-pytorch itself is not
installed or imported.

Inputs are RGB images scaled as MTCNN does, ``(pixel - 127.5) / 128``, in NCHW float32.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeai.corpus.fetch import CorpusError, open_member
from edgeai.corpus.inputs import face_crops, sample_photos

PACKAGE = "facenet-pytorch"


def _load_state(member: str) -> Any:
    import torch

    try:
        return torch.load(open_member(PACKAGE, member), map_location="cpu", weights_only=True)
    except Exception as e:  # weights_only refuses anything but tensors and plain containers
        raise CorpusError(f"{member} in {PACKAGE} is not a plain state dict ({type(e).__name__}: "
                          f"{str(e).splitlines()[0][:200]})") from e


def _pnet_class() -> Any:
    from torch import nn

    class PNet(nn.Module):
        """MTCNN P-Net: 12x12 receptive field, stride 2; any H, W >= 12."""

        input_names = ("image",)
        output_names = ("box_regression", "face_probability")

        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 10, kernel_size=3)
            self.prelu1 = nn.PReLU(10)
            self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
            self.conv2 = nn.Conv2d(10, 16, kernel_size=3)
            self.prelu2 = nn.PReLU(16)
            self.conv3 = nn.Conv2d(16, 32, kernel_size=3)
            self.prelu3 = nn.PReLU(32)
            self.conv4_1 = nn.Conv2d(32, 2, kernel_size=1)
            self.softmax4_1 = nn.Softmax(dim=1)
            self.conv4_2 = nn.Conv2d(32, 4, kernel_size=1)

        def forward(self, image: Any) -> Any:
            x = self.prelu1(self.conv1(image))
            x = self.pool1(x)
            x = self.prelu2(self.conv2(x))
            x = self.prelu3(self.conv3(x))
            return self.conv4_2(x), self.softmax4_1(self.conv4_1(x))

    return PNet


def _onet_class() -> Any:
    from torch import nn

    class ONet(nn.Module):
        """MTCNN O-Net: a 48x48 face candidate -> box offsets, 5 landmarks, face probability."""

        input_names = ("image",)
        output_names = ("box_regression", "landmarks", "face_probability")

        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 32, kernel_size=3)
            self.prelu1 = nn.PReLU(32)
            self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
            self.prelu2 = nn.PReLU(64)
            self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv3 = nn.Conv2d(64, 64, kernel_size=3)
            self.prelu3 = nn.PReLU(64)
            self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
            self.conv4 = nn.Conv2d(64, 128, kernel_size=2)
            self.prelu4 = nn.PReLU(128)
            self.dense5 = nn.Linear(1152, 256)
            self.prelu5 = nn.PReLU(256)
            self.dense6_1 = nn.Linear(256, 2)
            self.softmax6_1 = nn.Softmax(dim=1)
            self.dense6_2 = nn.Linear(256, 4)
            self.dense6_3 = nn.Linear(256, 10)

        def forward(self, image: Any) -> Any:
            x = self.pool1(self.prelu1(self.conv1(image)))
            x = self.pool2(self.prelu2(self.conv2(x)))
            x = self.pool3(self.prelu3(self.conv3(x)))
            x = self.prelu4(self.conv4(x))
            # facenet-pytorch flattens in (W, H, C) order: the weights were converted from Caffe.
            x = x.permute(0, 3, 2, 1).contiguous()
            x = self.prelu5(self.dense5(x.reshape(x.shape[0], -1)))
            return self.dense6_2(x), self.dense6_3(x), self.softmax6_1(self.dense6_1(x))

    return ONet


def pnet() -> Any:
    """P-Net with the released weights, in eval mode."""
    module = _pnet_class()()
    module.load_state_dict(_load_state("facenet_pytorch/data/pnet.pt"))
    return module.eval()


def onet() -> Any:
    """O-Net with the released weights, in eval mode."""
    module = _onet_class()()
    module.load_state_dict(_load_state("facenet_pytorch/data/onet.pt"))
    return module.eval()


def pnet_example() -> tuple[Any, dict[str, np.ndarray]]:
    """P-Net and two real photos (scikit-learn's sample images, downscaled to 128x192)."""
    return pnet(), {"image": sample_photos(size=(128, 192))}


def onet_example() -> tuple[Any, dict[str, np.ndarray]]:
    """O-Net and 48x48 crops: a real face (jittered boxes) and non-face patches."""
    return onet(), {"image": face_crops(48)}
