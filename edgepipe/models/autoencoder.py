"""A convolutional autoencoder: the reconstruction task's zoo model (and proof that the pipeline is not
classification-only).

Two stride-2 convolutions down to a narrow code, nearest-neighbour upsampling + convolution back up (rather
than transposed convolutions: Resize + Conv quantizes on onnxruntime's CPU kernels and builds on every
TensorRT release without checkerboard artifacts). The output is linear, in the input's normalized units.
"""

from __future__ import annotations

from torch import nn

from edgepipe.errors import EdgepipeError


def _conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True)]


class ConvAutoencoder(nn.Module):
    def __init__(self, input_shape: tuple[int, ...], num_classes: int | None = None,
                 widths: tuple[int, int] = (16, 32), code_channels: int = 8) -> None:
        super().__init__()
        channels, height, width = input_shape
        if height % 4 or width % 4:
            raise EdgepipeError(f"conv-autoencoder: input {height}x{width} is halved twice and rebuilt; use sides "
                                "divisible by 4 (dataset.image_size)")
        narrow, wide = widths
        self.encoder = nn.Sequential(*_conv_bn_relu(channels, narrow, 2), *_conv_bn_relu(narrow, wide, 2),
                                     nn.Conv2d(wide, code_channels, 1))
        self.decoder = nn.Sequential(*_conv_bn_relu(code_channels, wide), nn.Upsample(scale_factor=2),
                                     *_conv_bn_relu(wide, narrow), nn.Upsample(scale_factor=2),
                                     nn.Conv2d(narrow, channels, 3, padding=1))

    def forward(self, x):
        return self.decoder(self.encoder(x))
