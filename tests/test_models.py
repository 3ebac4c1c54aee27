"""The torchvision-based models: parameter counts, any clip length, ImageNet adaptation."""
from __future__ import annotations

import urllib.error

import pytest
import torch
import torchvision

from esc50kit.models import (
    ModelConfig,
    WeightsUnavailableError,
    build_model,
    count_parameters,
    load_checkpoint_model,
)


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_default_resnet18_parameter_count_matches_torchvision():
    model = build_model(ModelConfig(n_classes=50))
    # Computed independently: torchvision's RGB ResNet18 with 50 outputs, minus the
    # two input channels conv1 (64 filters of 7x7) no longer has.
    reference = sum(p.numel() for p in torchvision.models.resnet18(num_classes=50).parameters())
    assert count_parameters(model) == reference - 64 * 2 * 7 * 7
    assert 11.1e6 < count_parameters(model) < 11.3e6


@pytest.mark.parametrize("frames", [216, 431])  # 5 s and 10 s at hop 512, 22.05 kHz
def test_default_model_takes_any_clip_length(frames):
    model = build_model(ModelConfig(n_classes=50)).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 1, 128, frames))  # (batch, 1, mels, frames)
    assert out.shape == (2, 50)


@pytest.mark.parametrize("shape", [(1, 1, 32, 20), (3, 1, 64, 108), (2, 1, 40, 300)])
def test_half_width_variant_is_a_parameter(shape):
    model = build_model(ModelConfig(n_classes=10, width=32)).eval()
    assert model.net.layer1[0].conv1.out_channels == 32
    assert model.net.layer4[-1].conv2.out_channels == 256
    assert model.net.fc.in_features == 256
    full = count_parameters(build_model(ModelConfig(n_classes=10)))
    assert 0.2 < count_parameters(model) / full < 0.3  # conv weights scale with width**2
    with torch.no_grad():
        assert model(torch.randn(*shape)).shape == (shape[0], 10)


def test_wrong_input_rank_names_the_fix():
    model = build_model(ModelConfig(n_classes=3, width=8))
    with pytest.raises(ValueError, match="unsqueeze"):
        model(torch.randn(2, 32, 20))


@pytest.fixture(scope="module")
def fake_imagenet_weights(tmp_path_factory):
    """A random torchvision ResNet-50 state_dict saved to disk, standing in for ImageNet."""
    torch.manual_seed(123)
    state = torchvision.models.resnet50().state_dict()
    path = tmp_path_factory.mktemp("weights") / "resnet50.pth"
    torch.save(state, path)
    return path, state


def test_resnet50_imagenet_weights_are_adapted_to_one_channel(fake_imagenet_weights):
    path, state = fake_imagenet_weights
    model = build_model(ModelConfig(arch="resnet50", n_classes=10, pretrained=True,
                                    weights_path=str(path), trainable=("layer4", "fc")))
    net = model.net
    assert net.conv1.weight.shape == (64, 1, 7, 7)
    torch.testing.assert_close(net.conv1.weight, state["conv1.weight"].sum(dim=1, keepdim=True))
    torch.testing.assert_close(net.layer4[2].conv3.weight, state["layer4.2.conv3.weight"])
    assert net.fc.out_features == 10
    assert not any(p.requires_grad for p in net.layer3.parameters())
    assert not net.conv1.weight.requires_grad
    assert all(p.requires_grad for p in net.layer4.parameters())
    assert all(p.requires_grad for p in net.fc.parameters())
    model.train()
    assert not net.layer1.training and net.layer4.training  # frozen BN keeps its statistics
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 1, 64, 50)).shape == (1, 10)


def test_summed_kernel_equals_rgb_response_to_grey_image(fake_imagenet_weights):
    path, state = fake_imagenet_weights
    rgb = torchvision.models.resnet50()
    rgb.load_state_dict(state)
    model = build_model(ModelConfig(arch="resnet50", n_classes=10, pretrained=True,
                                    weights_path=str(path)))
    grey = torch.randn(1, 1, 32, 40)
    with torch.no_grad():
        torch.testing.assert_close(model.net.conv1(grey), rgb.conv1(grey.repeat(1, 3, 1, 1)),
                                   rtol=1e-4, atol=1e-4)


def test_offline_imagenet_request_fails_with_what_to_do(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsUnavailableError, match="weights_path"):
        build_model(ModelConfig(arch="resnet50", n_classes=10, pretrained=True))


def test_missing_weights_file_is_named(tmp_path):
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        build_model(ModelConfig(arch="resnet50", n_classes=5, pretrained=True,
                                weights_path=str(tmp_path / "nope.pth")))


def test_pretrained_resnet18_is_refused():
    with pytest.raises(ValueError, match="resnet50"):
        ModelConfig(arch="resnet18", pretrained=True)


def test_checkpoint_round_trip(tmp_path):
    cfg = ModelConfig(n_classes=4, width=8)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    torch.save({"model": model.state_dict(), "model_config": cfg.to_dict(), "epoch": 3},
               tmp_path / "ckpt.pt")
    again, ckpt = load_checkpoint_model(tmp_path / "ckpt.pt")
    x = torch.randn(2, 1, 16, 30)
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x))
    assert ckpt["epoch"] == 3 and again.config == cfg
    with pytest.raises(FileNotFoundError, match="not found"):
        load_checkpoint_model(tmp_path / "missing.pt")


# ---------------------------------------------------------------- the raw-waveform comparison


@pytest.mark.parametrize("samples", [8000, 40000, 40123])  # 1 s, 5 s at 8 kHz, and an odd length
def test_wavecnn_takes_waveforms_of_any_length(samples):
    model = build_model(ModelConfig(arch="wavecnn", n_classes=10, width=16)).eval()
    with torch.no_grad():
        out = model(torch.randn(3, 1, 1, samples))  # (batch, 1, 1, samples)
    assert out.shape == (3, 10)


def test_wavecnn_parameter_count_follows_its_layers():
    w, k = 64, 10
    model = build_model(ModelConfig(arch="wavecnn", n_classes=k, width=w))
    convs = 80 * 1 * w + 3 * w * w + 3 * w * 2 * w + 3 * 2 * w * 4 * w  # no conv biases
    norms = 2 * (w + w + 2 * w + 4 * w)  # batch-norm scale and shift
    assert count_parameters(model) == convs + norms + 4 * w * k + k


def test_wavecnn_refuses_spectrograms_and_round_trips(tmp_path):
    cfg = ModelConfig(arch="wavecnn", n_classes=4, width=8)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    with pytest.raises(ValueError, match="kind='waveform'"):
        model(torch.randn(2, 1, 64, 108))
    torch.save({"model": model.state_dict(), "model_config": cfg.to_dict()}, tmp_path / "w.pt")
    again, _ = load_checkpoint_model(tmp_path / "w.pt")
    x = torch.randn(2, 1, 1, 4000)
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x))


def test_stem_pool_off_keeps_twice_the_resolution():
    x = torch.randn(2, 1, 64, 108)
    pooled = build_model(ModelConfig(n_classes=5, width=8)).eval()
    kept = build_model(ModelConfig(n_classes=5, width=8, stem_pool=False)).eval()
    assert count_parameters(pooled) == count_parameters(kept)  # pooling has no weights
    with torch.no_grad():
        a = pooled.net.layer1(pooled.net.maxpool(pooled.net.relu(pooled.net.bn1(pooled.net.conv1(x)))))
        b = kept.net.layer1(kept.net.maxpool(kept.net.relu(kept.net.bn1(kept.net.conv1(x)))))
        assert a.shape[-2:] == (16, 27) and b.shape[-2:] == (32, 54)
        assert kept(x).shape == (2, 5)


class _NotAWeight:
    """A pickled object of this class would run code on load; a checkpoint must not hold one."""


def test_checkpoints_load_tensors_only_and_name_a_bad_file(tmp_path):
    from esc50kit.models import load_checkpoint, load_checkpoint_model

    good = tmp_path / "good.pt"
    model = build_model(ModelConfig(n_classes=3, width=8))
    torch.save({"model_config": model.config.to_dict(), "model": model.state_dict(),
                "history": [{"epoch": 1, "val_acc": 0.5}]}, good)
    loaded, ckpt = load_checkpoint_model(good)
    assert ckpt["history"][0]["val_acc"] == 0.5 and loaded.config.n_classes == 3
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"model": _NotAWeight()}, unsafe)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:100])
    for path in (unsafe, truncated):
        with pytest.raises(ValueError, match=path.name):
            load_checkpoint(path)
