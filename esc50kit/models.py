"""Image classifiers from torchvision, adapted to one-channel spectrograms of any length.

Input: ``(batch, 1, n_bins, frames)`` float. Output: ``(batch, n_classes)`` logits. The
builders call torchvision and replace ``conv1`` (one input channel) and ``fc`` (one output
per class); nothing is forked. Adaptive average pooling lets a 3-second training crop and a
5-second test clip go through the same weights. Architectures (``ModelConfig.arch``):

* ``resnet18``, trained from scratch: ``width=64`` is torchvision's ResNet18 (about 11.2 M
  parameters with 50 classes), ``width=32`` the half-width variant (about 2.8 M).
* ``wavecnn``: the raw-waveform M5 1-D CNN of Dai et al. (2017), on the input
  ``(batch, 1, 1, samples)`` of ``FeatureConfig(kind="waveform")``.
* ``resnet50``: transfer learning from ImageNet weights (``pretrained=True``); the RGB
  kernels of ``conv1`` are summed into one channel and the stages before ``trainable``
  are frozen.
"""
from __future__ import annotations

import pickle
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.models import ResNet, ResNet50_Weights, resnet18, resnet50
from torchvision.models.resnet import BasicBlock

ARCHS = ("resnet18", "resnet50", "wavecnn")
# Top-level children of a torchvision ResNet, input side first; ``trainable`` names a suffix.
STAGES = ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc")


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights were asked for but could not be fetched or read."""


@dataclass(frozen=True)
class ModelConfig:
    """Which network to build; stored in every checkpoint so a model can be rebuilt.

    Attributes:
        arch: ``"resnet18"``, ``"resnet50"`` or ``"wavecnn"``.
        in_channels: channels of the input spectrogram (1 for log-mel).
        width: base width (channels of the first stage) of ``resnet18``; 64 is
            torchvision's ResNet18, 32 the half-width variant. For ``wavecnn``, the
            channels of its first convolution. Ignored by ``resnet50``.
        pretrained: load ImageNet weights (``resnet50`` only).
        weights_path: a local ``state_dict`` file to use instead of downloading.
        trainable: stages left trainable when ``pretrained``; earlier ones are frozen.
        dropout: dropout before the final linear layer (0 disables it).
        stem_pool: keep the max-pooling of the ResNet stem. False removes it, so every
            stage sees twice the time and frequency resolution (a (64, 108) input reaches
            the first stage as (32, 54), not (16, 27)) at about 4 times the compute.
    """

    arch: str = "resnet18"
    n_classes: int = 50
    in_channels: int = 1
    width: int = 64
    pretrained: bool = False
    weights_path: str | None = None
    trainable: tuple[str, ...] = ("layer3", "layer4", "fc")
    dropout: float = 0.0
    stem_pool: bool = True

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"arch={self.arch!r} is unknown; choose one of {ARCHS}")
        if self.n_classes < 1 or self.in_channels < 1 or self.width < 1:
            raise ValueError(f"n_classes={self.n_classes}, in_channels={self.in_channels} and "
                             f"width={self.width} must all be positive")
        bad = [s for s in self.trainable if s not in STAGES]
        if bad:
            raise ValueError(f"trainable={self.trainable}: unknown stage(s) {bad}; use {STAGES}")
        if self.pretrained and self.arch != "resnet50":
            raise ValueError(f"pretrained=True is offered for arch='resnet50' only, not "
                             f"{self.arch!r}; train resnet18 from scratch or switch arch")
        object.__setattr__(self, "trainable", tuple(self.trainable))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "trainable": list(self.trainable)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        return cls(**{**d, "trainable": tuple(d.get("trainable", cls.trainable))})


def _set_width(net: ResNet, width: int) -> None:
    """Rebuild the stem and four stages of a BasicBlock ResNet with ``width`` base channels
    (stage ``i``: ``width * 2**i``, as torchvision's 64/128/256/512), initialised as it does."""
    net.inplanes = width
    net.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
    net.bn1 = nn.BatchNorm2d(width)
    for i in range(4):
        stage = net._make_layer(BasicBlock, width * 2**i, 2, stride=1 if i == 0 else 2)
        setattr(net, f"layer{i + 1}", stage)
    net.fc = nn.Linear(width * 8 * BasicBlock.expansion, net.fc.out_features)
    for m in net.modules():  # as torchvision's ResNet.__init__ (new batch norms are 1 and 0)
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


def adapt_conv1(conv: nn.Conv2d, in_channels: int = 1) -> nn.Conv2d:
    """A copy of ``conv`` taking ``in_channels`` inputs; RGB kernels are summed for 1 channel.

    Summing the kernels over the input channels gives, on a grey image fed as 1 channel,
    the response the RGB filter gives to that image repeated over R, G and B.

    Returns:
        nn.Conv2d with weight shape (out, in_channels, kh, kw).
    """
    new = nn.Conv2d(in_channels, conv.out_channels, kernel_size=conv.kernel_size,
                    stride=conv.stride, padding=conv.padding, bias=conv.bias is not None)
    with torch.no_grad():
        w = conv.weight  # (out, 3, kh, kw)
        if in_channels == 1:
            new.weight.copy_(w.sum(dim=1, keepdim=True))  # (out, 1, kh, kw)
        else:  # spread the mean RGB kernel over the new channels, keeping the response scale
            new.weight.copy_(w.mean(dim=1, keepdim=True).repeat(1, in_channels, 1, 1)
                             * 3 / in_channels)
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new


def _imagenet_state_dict(weights_path: str | None) -> dict[str, torch.Tensor]:
    """ImageNet ResNet-50 weights from ``weights_path`` or torchvision's weights API."""
    if weights_path is not None:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise WeightsUnavailableError(
                f"weights_path={str(path)!r} does not exist; pass a file saved with "
                "torch.save(torchvision.models.resnet50(...).state_dict(), path)")
        return torch.load(path, map_location="cpu", weights_only=True)
    weights = ResNet50_Weights.IMAGENET1K_V2
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except Exception as exc:  # URLError, OSError, hash RuntimeError: all mean "not available"
        raise WeightsUnavailableError(
            f"could not fetch the ImageNet weights {weights} from {weights.url}: {exc}. "
            "Connect to the internet once (torchvision caches them under "
            f"{torch.hub.get_dir()}/checkpoints), or pass weights_path= a local copy, or "
            "set pretrained=False to train from scratch.") from exc


def freeze_except(model: nn.Module, trainable: tuple[str, ...]) -> None:
    """Freeze every parameter outside the named top-level stages (:class:`AudioResNet` also
    keeps frozen stages in eval mode, so their batch-norm statistics stay the pretrained ones)."""
    for name, child in model.named_children():
        for p in child.parameters():
            p.requires_grad_(name in trainable)


class AudioResNet(nn.Module):
    """A torchvision ResNet ``net`` (``conv1`` and ``fc`` replaced) for ``(batch, in_channels,
    n_bins, frames)`` spectrograms, built from ``config`` (a :class:`ModelConfig`)."""

    # 2-D convolutions run faster on NHWC tensors, on CUDA and on the CPU's oneDNN alike
    # (a quarter-width ResNet18 step: 60 against 73 ms on 2 cores); see training.py.
    prefers_channels_last = True

    def __init__(self, net: ResNet, config: ModelConfig):
        super().__init__()
        self.net = net
        self.config = config
        self.frozen = tuple(name for name, child in net.named_children()
                            if any(True for _ in child.parameters())
                            and not any(p.requires_grad for p in child.parameters()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (batch, n_classes) of ``x``, shape (batch, in_channels, n_bins, frames)."""
        if x.dim() != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"expected input of shape (batch, {self.config.in_channels}, "
                             f"n_bins, frames), got {tuple(x.shape)}; add the channel axis "
                             "with x.unsqueeze(1)")
        return self.net(x)

    def train(self, mode: bool = True) -> "AudioResNet":
        super().train(mode)
        for name in self.frozen:  # pretrained statistics of frozen stages stay fixed
            getattr(self.net, name).eval()
        return self


class WaveCNN(nn.Module):
    """M5 (Dai et al., 2017, "Very deep convolutional neural networks for raw waveforms").

    Four convolutions (an 80-sample first filter with stride 4, then 3-tap ones; channels
    ``width, width, 2 * width, 4 * width``, M5 uses 128), each followed by batch norm, ReLU
    and 4x max-pooling: a 5 s clip at 16 kHz (80000 samples) is 78 steps long after the last
    stage; global average pooling then makes the length free.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        w = config.width
        chans = [config.in_channels, w, w, 2 * w, 4 * w]
        layers: list[nn.Module] = []
        for i in range(4):
            k, stride = (80, 4) if i == 0 else (3, 1)
            layers += [nn.Conv1d(chans[i], chans[i + 1], k, stride, padding=k // 2, bias=False),
                       nn.BatchNorm1d(chans[i + 1]), nn.ReLU(inplace=True), nn.MaxPool1d(4)]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.fc = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(4 * w, config.n_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv1d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (batch, n_classes) of ``x``, shape (batch, in_channels, 1, samples)."""
        if x.dim() != 4 or x.shape[1] != self.config.in_channels or x.shape[2] != 1:
            raise ValueError(f"wavecnn expects waveforms of shape (batch, "
                             f"{self.config.in_channels}, 1, samples) "
                             f"(FeatureConfig(kind='waveform')), got {tuple(x.shape)}")
        h = self.features(x[:, :, 0, :])  # (batch, 4 * width, steps)
        return self.fc(self.pool(h).flatten(1))


def build_model(config: ModelConfig, *, load_weights: bool = True) -> nn.Module:
    """Build the network a :class:`ModelConfig` describes (random init unless pretrained).

    Seed with ``torch.manual_seed`` before calling for a repeatable initialisation.

    Args:
        load_weights: fetch the pretrained weights when ``config.pretrained``; False
            builds the same (frozen) network without them, to load a checkpoint into.

    Raises:
        WeightsUnavailableError: ``pretrained=True`` and the weights cannot be had.
    """
    if config.arch == "wavecnn":
        return WaveCNN(config)
    if config.arch == "resnet18":
        net = resnet18(num_classes=config.n_classes)
        if config.width != 64:
            _set_width(net, config.width)
    else:
        net = resnet50(num_classes=config.n_classes)
        if config.pretrained and load_weights:
            state = _imagenet_state_dict(config.weights_path)
            state = {k: v for k, v in state.items() if not k.startswith("fc.")}
            missing, unexpected = net.load_state_dict(state, strict=False)
            if unexpected or set(missing) != {"fc.weight", "fc.bias"}:
                raise WeightsUnavailableError(f"the ResNet-50 weights do not fit: missing "
                                              f"{missing[:4]}, unexpected {unexpected[:4]}; "
                                              "pass a torchvision resnet50 state_dict")
    net.conv1 = adapt_conv1(net.conv1, config.in_channels)
    if not config.stem_pool:
        net.maxpool = nn.Identity()
    if config.dropout > 0:
        net.fc = nn.Sequential(nn.Dropout(config.dropout), net.fc)
    if config.pretrained:
        freeze_except(net, config.trainable)
    return AudioResNet(net, config)


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters (optionally only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by esc50kit, safely: tensors and plain values only.

    ``torch.load(weights_only=True)`` refuses pickled code, so a run folder received from
    elsewhere cannot run anything when it is loaded.

    Raises:
        ValueError: the file is not a readable checkpoint, or holds other objects; the
            message names the file.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        raise ValueError(f"{path}: not a readable esc50kit checkpoint "
                         f"({str(exc).splitlines()[0]}). esc50kit loads tensors and plain "
                         "values only; retrain, or copy the run folder again") from exc


def load_checkpoint_model(path: str | Path, *, device: str | torch.device = "cpu"):
    """Rebuild a model from a checkpoint written by :mod:`esc50kit.training`.

    The architecture comes from the checkpoint's ``model_config``; pretrained weights are
    not fetched again (the checkpoint holds every weight).

    Returns:
        tuple[AudioResNet, dict]: the model in eval mode on ``device``, and the checkpoint
        dictionary (``model_config``, ``epoch``, ``val_acc``, ...).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found; train first or check the run folder")
    ckpt = load_checkpoint(path)
    model = build_model(ModelConfig.from_dict(ckpt["model_config"]), load_weights=False)
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), ckpt
