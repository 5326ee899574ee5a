"""Models: shapes, output strides, feature taps, checkpoints, torchvision-layout loading, FLOPs."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from sstkd.models import (
    MODEL_NAMES,
    CheckpointMismatchError,
    MobileNetV2,
    ResNet,
    build_model,
    count_macs,
    count_parameters,
    load_checkpoint,
    load_pretrained_backbone,
    model_complexity,
    save_checkpoint,
)

FEATURES = ("layer1", "layer2", "layer3", "layer4", "head", "logits")


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _stage_size(n: int, stride: int) -> int:
    """Spatial size after the stem + stages (every stride-2 op rounds up)."""
    for _ in range(int(math.log2(stride))):
        n = _ceil_div(n, 2)
    return n


# ---- torchvision key layouts, written independently of sstkd's modules -----------------------

def _bn(prefix: str, c: int) -> dict[str, torch.Size]:
    return {f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,),
            f"{prefix}.running_var": (c,), f"{prefix}.num_batches_tracked": ()}


def torchvision_resnet_shapes(depth: int) -> dict[str, tuple]:
    """Key -> shape of torchvision's ``resnet{depth}().state_dict()``."""
    blocks = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}[depth]
    bottleneck = depth >= 50
    exp = 4 if bottleneck else 1
    s = {"conv1.weight": (64, 3, 7, 7), **_bn("bn1", 64)}
    cin = 64
    for li, (planes, n) in enumerate(zip((64, 128, 256, 512), blocks), 1):
        for b in range(n):
            p = f"layer{li}.{b}"
            if bottleneck:
                s |= {f"{p}.conv1.weight": (planes, cin, 1, 1), **_bn(f"{p}.bn1", planes),
                      f"{p}.conv2.weight": (planes, planes, 3, 3), **_bn(f"{p}.bn2", planes),
                      f"{p}.conv3.weight": (planes * 4, planes, 1, 1),
                      **_bn(f"{p}.bn3", planes * 4)}
            else:
                s |= {f"{p}.conv1.weight": (planes, cin, 3, 3), **_bn(f"{p}.bn1", planes),
                      f"{p}.conv2.weight": (planes, planes, 3, 3), **_bn(f"{p}.bn2", planes)}
            if b == 0 and (li > 1 or cin != planes * exp):
                s |= {f"{p}.downsample.0.weight": (planes * exp, cin, 1, 1),
                      **_bn(f"{p}.downsample.1", planes * exp)}
            cin = planes * exp
    s |= {"fc.weight": (1000, 512 * exp), "fc.bias": (1000,)}
    return s


def torchvision_mobilenetv2_shapes() -> dict[str, tuple]:
    """Key -> shape of torchvision's ``mobilenet_v2().state_dict()``."""
    s = {"features.0.0.weight": (32, 3, 3, 3), **_bn("features.0.1", 32)}
    cin, idx = 32, 1
    for t, c, n, _ in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                       (6, 160, 3, 2), (6, 320, 1, 1)):
        for _ in range(n):
            p, hid = f"features.{idx}.conv", cin * t
            if t == 1:
                s |= {f"{p}.0.0.weight": (hid, 1, 3, 3), **_bn(f"{p}.0.1", hid),
                      f"{p}.1.weight": (c, hid, 1, 1), **_bn(f"{p}.2", c)}
            else:
                s |= {f"{p}.0.0.weight": (hid, cin, 1, 1), **_bn(f"{p}.0.1", hid),
                      f"{p}.1.0.weight": (hid, 1, 3, 3), **_bn(f"{p}.1.1", hid),
                      f"{p}.2.weight": (c, hid, 1, 1), **_bn(f"{p}.3", c)}
            cin, idx = c, idx + 1
    s |= {"features.18.0.weight": (1280, 320, 1, 1), **_bn("features.18.1", 1280),
          "classifier.1.weight": (1000, 1280), "classifier.1.bias": (1000,)}
    return s


def _random_state(shapes: dict[str, tuple]) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {k: (torch.tensor(7) if k.endswith("num_batches_tracked")
                else torch.randn(v, generator=g)) for k, v in shapes.items()}


# ---- shapes ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("os_", [8, 16])
def test_registered_model_shapes_on_meta(name: str, os_: int) -> None:
    with torch.device("meta"):
        model = build_model(name, num_classes=7, output_stride=os_).train()
        for h, w in [(64, 64), (97, 75)]:
            out = model(torch.empty(2, 3, h, w), return_features=True)
            assert out.out.shape == (2, 7, h, w)
            assert out.aux.shape == (2, 7, h, w)
            assert tuple(out.features) == FEATURES
            for f, stride in zip(FEATURES[:4], (4, 8, min(16, os_), os_)):
                c = model.feature_channels[f]
                assert out.features[f].shape == (2, c, _stage_size(h, stride),
                                                  _stage_size(w, stride)), f
            assert out.features["head"].shape[1] == model.feature_channels["head"]
            assert out.features["logits"].shape[:2] == (2, 7)


@pytest.mark.parametrize("name,channels", [
    ("pspnet_resnet18", (64, 128, 256, 512, 512, 19)),
    ("deeplabv3_resnet50", (256, 512, 1024, 2048, 256, 19)),
    ("pspnet_mobilenetv2", (24, 32, 96, 320, 512, 19)),
])
def test_feature_channels(name: str, channels: tuple) -> None:
    with torch.device("meta"):
        model = build_model(name)
    assert tuple(model.feature_channels.values()) == channels


@pytest.mark.parametrize("name", ["pspnet_resnet18", "deeplabv3_mobilenetv2"])
def test_real_forward_backward_small(name: str) -> None:
    model = build_model(name, num_classes=5).train()
    x = torch.randn(2, 3, 41, 57)
    out = model(x, return_features=True)
    (out.out.mean() + out.aux.mean() + out.features["layer1"].mean()).backward()
    # the loss reaches every parameter, backbone stem to both heads: a detached branch or a
    # module left out of the forward would leave a None or all-zero gradient
    dead = [n for n, p in model.named_parameters()
            if p.grad is None or not bool(torch.isfinite(p.grad).all()) or not p.grad.any()]
    assert dead == []
    model.eval()
    with torch.no_grad():
        y = model(x)
        o = model(x, return_features=True)
    assert isinstance(y, torch.Tensor) and y.shape == (2, 5, 41, 57)
    assert o.aux is None
    torch.testing.assert_close(o.out, y)


def test_resnet_options() -> None:
    with torch.device("meta"):
        deep = ResNet(18, deep_stem=True)
        assert deep.conv3.weight.shape == (128, 64, 3, 3)
        assert deep.layer1[0].conv1.weight.shape == (64, 128, 3, 3)
        grid = ResNet(50, output_stride=8, multi_grid=(1, 2, 4))
        assert [b.conv2.dilation[0] for b in grid.layer4] == [4, 8, 16]
        plain = ResNet(50)
        assert [b.conv2.dilation[0] for b in plain.layer4] == [2, 4, 4]
        assert [b.conv2.dilation[0] for b in plain.layer3][:2] == [1, 2]
        os16 = ResNet(50, output_stride=16)
        assert os16.layer3[0].conv2.stride == (2, 2) and os16.layer4[1].conv2.dilation == (2, 2)
        gn = ResNet(18, norm_layer=lambda c: nn.GroupNorm(8, c))
        assert isinstance(gn.bn1, nn.GroupNorm)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown model 'pspnet_resnet19'"):
        build_model("pspnet_resnet19")
    with pytest.raises(ValueError, match="output_stride must be 8, 16 or 32, got 4"):
        ResNet(18, output_stride=4)
    with pytest.raises(ValueError, match="output_stride"):
        MobileNetV2(output_stride=12)
    with pytest.raises(ValueError, match="multi_grid needs 3 entries"):
        ResNet(50, multi_grid=(1, 2))
    with pytest.raises(ValueError, match="num_classes"):
        build_model("pspnet_resnet18", num_classes=0)
    with pytest.raises(ValueError, match=r"expected x of shape \(B, 3, H, W\)"):
        build_model("pspnet_resnet18")(torch.zeros(1, 1, 32, 32))


# ---- parameter counts against torchvision's published numbers ---------------------------------

@pytest.mark.parametrize("depth,tv_params,fc", [
    (18, 11_689_512, 513_000), (34, 21_797_672, 513_000),
    (50, 25_557_032, 2_049_000), (101, 44_549_160, 2_049_000)])
def test_resnet_params_match_torchvision(depth: int, tv_params: int, fc: int) -> None:
    with torch.device("meta"):
        net = ResNet(depth)
    assert count_parameters(net) == tv_params - fc
    shapes = {k: tuple(v) for k, v in torchvision_resnet_shapes(depth).items() if k[:3] != "fc."}
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == shapes


def test_mobilenetv2_params_match_torchvision() -> None:
    net = MobileNetV2()
    dropped = 1_281_000 + 1280 * 320 + 2 * 1280  # classifier + features.18
    assert count_parameters(net) == 3_504_872 - dropped
    shapes = {k: v for k, v in torchvision_mobilenetv2_shapes().items()
              if not k.startswith(("classifier.", "features.18."))}
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == shapes


# ---- FLOPs -------------------------------------------------------------------------------------

def test_count_macs_by_hand() -> None:
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1, groups=4),
                        nn.Flatten(), nn.Linear(8 * 10 * 12, 5))
    expected = 10 * 12 * 8 * 27 + 10 * 12 * 8 * 18 + 960 * 5
    assert count_macs(net, (10, 12), device="cpu") == expected


@pytest.mark.parametrize("depth,gmacs", [(18, 1.814), (50, 4.089)])
def test_count_macs_matches_published_resnet(depth: int, gmacs: float) -> None:
    # torchvision's ResNet-18/50 at 224: 1.81 / 4.09 GFLOPs (multiply-adds); fc is negligible.
    with torch.device("meta"):
        net = ResNet(depth, output_stride=32)
    assert count_macs(net, (224, 224)) / 1e9 == pytest.approx(gmacs, rel=0.01)


def test_model_complexity_teacher_matches_paper() -> None:
    # Paper: PSPNet-R101 (deep stem, with auxiliary head) teacher has 70.43 M parameters.
    c = model_complexity("pspnet_resnet101", deep_stem=True)
    assert c["params"] / 1e6 == pytest.approx(70.43, abs=0.05)
    assert c["params_inference"] < c["params"] and c["gflops"] > 200


# ---- checkpoints -------------------------------------------------------------------------------

def test_checkpoint_round_trip(tmp_path) -> None:
    model = build_model("deeplabv3_mobilenetv2", num_classes=4, output_stride=16).eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
    path = tmp_path / "ckpt.pth"
    save_checkpoint(path, model, iteration=12, miou=0.5)
    loaded, info = load_checkpoint(path)
    assert info["arch"] == "deeplabv3_mobilenetv2" and info["iteration"] == 12
    assert loaded.output_stride == 16 and loaded.num_classes == 4
    x = torch.randn(1, 3, 33, 45)
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(x), model(x))
    with pytest.raises(ValueError, match="holds a 'deeplabv3_mobilenetv2' model, expected"):
        load_checkpoint(path, name="pspnet_mobilenetv2")
    # A bare state dict needs the name; a wrong class count lists the mismatched shapes.
    torch.save(model.state_dict(), tmp_path / "bare.pth")
    with pytest.raises(ValueError, match="pass name= or model="):
        load_checkpoint(tmp_path / "bare.pth")
    with pytest.raises(CheckpointMismatchError, match=r"shape mismatches \(\d+\): .*classifier"):
        load_checkpoint(tmp_path / "bare.pth", name="deeplabv3_mobilenetv2", num_classes=5,
                        output_stride=16)
    with pytest.raises(CheckpointMismatchError, match="unexpected keys .*aux_head"):
        load_checkpoint(tmp_path / "bare.pth", name="deeplabv3_mobilenetv2", num_classes=4,
                        output_stride=16, aux=False)
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_checkpoint(tmp_path / "nope.pth")
    (tmp_path / "junk.pth").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="could not read .*junk.pth"):
        load_checkpoint(tmp_path / "junk.pth")


@pytest.mark.parametrize("name,shapes", [
    ("pspnet_resnet18", lambda: torchvision_resnet_shapes(18)),
    ("deeplabv3_mobilenetv2", torchvision_mobilenetv2_shapes),
])
def test_load_torchvision_layout(tmp_path, name: str, shapes) -> None:
    state = _random_state(shapes())
    path = tmp_path / "imagenet.pth"
    torch.save(state, path)
    with pytest.warns(UserWarning, match="ignoring .* classification keys"):
        model = build_model(name, num_classes=3, pretrained_backbone=path)
    own = model.backbone.state_dict()
    for k, v in own.items():
        torch.testing.assert_close(v, state[k], msg=k)
    # Wrapped in {'state_dict': ...} with a DataParallel prefix also loads.
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    with pytest.warns(UserWarning):
        build_model(name, num_classes=3, pretrained_backbone=path)


def test_load_torchvision_layout_errors(tmp_path) -> None:
    state = _random_state(torchvision_resnet_shapes(18))
    broken = dict(state)
    del broken["layer2.0.downsample.0.weight"]
    broken["layer9.extra"] = torch.zeros(1)
    torch.save(broken, tmp_path / "broken.pth")
    with pytest.warns(UserWarning), pytest.raises(
            CheckpointMismatchError,
            match=r"missing keys \(1\): layer2.0.downsample.0.weight[\s\S]*unexpected keys "
                  r"\(1\): layer9.extra"):
        load_pretrained_backbone(ResNet(18), tmp_path / "broken.pth")
    torch.save(state, tmp_path / "r18.pth")
    with pytest.warns(UserWarning), pytest.raises(CheckpointMismatchError,
                                                  match="missing keys .*conv2.weight"):
        build_model("pspnet_resnet18", deep_stem=True, pretrained_backbone=tmp_path / "r18.pth")
    with pytest.warns(UserWarning), pytest.raises(CheckpointMismatchError,
                                                  match=r"shape mismatches \(\d+\): layer1"):
        load_pretrained_backbone(ResNet(50), tmp_path / "r18.pth")
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_pretrained_backbone(ResNet(18), tmp_path / "missing.pth")


@pytest.mark.parametrize("name, layer1, head", [
    ("pspnet_resnet18@0.25", 16, 128),      # 64 x 0.25, head 512 x 0.25
    ("pspnet_resnet34@0.5", 32, 256),
    ("deeplabv3_resnet50@0.5", 128, 128),   # bottleneck: 32 planes x 4; ASPP 256 x 0.5
    ("pspnet_mobilenetv2@0.5", 16, 256),    # 24 x 0.5 = 12 -> rounded to 16
    ("pspnet_resnet18@1.5", 96, 768),
])
def test_width_multiplier(name: str, layer1: int, head: int) -> None:
    model = build_model(name, num_classes=5)
    assert model.name == name
    assert model.feature_channels["layer1"] == layer1
    assert model.feature_channels["head"] == head
    base = build_model(name.split("@")[0], num_classes=5)
    width = float(name.split("@")[1])
    ratio = count_parameters(model) / count_parameters(base)
    assert 0.5 * width ** 2 < ratio < 2.0 * width ** 2  # parameters scale with width^2
    model.train()
    out = model(torch.randn(2, 3, 32, 32), return_features=True)
    assert out.out.shape == (2, 5, 32, 32)
    assert {k: v.shape[1] for k, v in out.features.items() if k in model.feature_channels} == \
        {k: c for k, c in model.feature_channels.items() if k in out.features}


def test_width_one_is_the_plain_model_and_round_trips(tmp_path) -> None:
    assert build_model("pspnet_resnet18@1", 3).name == "pspnet_resnet18"
    torch.manual_seed(0)
    model = build_model("pspnet_resnet18@0.25", num_classes=3).eval()
    path = tmp_path / "narrow.pth"
    save_checkpoint(path, model, iteration=1, miou=0.1)
    loaded, info = load_checkpoint(path)
    assert info["arch"] == "pspnet_resnet18@0.25" and loaded.name == "pspnet_resnet18@0.25"
    x = torch.randn(1, 3, 24, 24)
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(x), model(x))


@pytest.mark.parametrize("name, match", [
    ("pspnet_resnet18@0", "width suffix of 'pspnet_resnet18@0' must be a number in"),
    ("pspnet_resnet18@abc", "width suffix of 'pspnet_resnet18@abc' must be a number in"),
    ("pspnet_resnet18@5", "must be a number in \\(0, 4\\]"),
    ("pspnet_resnet19@0.5", "unknown model 'pspnet_resnet19@0.5'"),
])
def test_width_suffix_errors(name: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_model(name, 3)


def test_width_reduced_model_refuses_imagenet_weights(tmp_path) -> None:
    with pytest.raises(ValueError, match="pretrained_backbone needs a width-1 model"):
        build_model("pspnet_resnet18@0.5", 3, pretrained_backbone=tmp_path / "r18.pth")
