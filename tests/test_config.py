"""Configuration: shipped configs, YAML includes, overrides, presets and bad-input errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from sstkd.config import (
    DEFAULT_WEIGHTS,
    PRESETS,
    Config,
    check_config_paths,
    config_from_dict,
    load_config,
    preset_weights,
    save_config,
)

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "sstkd" / "configs").glob("*.yaml"))


def test_configs_are_shipped():
    names = {p.name for p in CONFIGS}
    for n in ("synthetic_default.yaml", "cityscapes_pspnet_r101_r18.yaml",
              "voc_pspnet_r101_r18.yaml", "ade20k_pspnet_r101_r18.yaml",
              "camvid_pspnet_r101_r18.yaml"):
        assert n in names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_loads_and_round_trips(path, tmp_path):
    cfg = load_config(path)
    assert all(getattr(cfg.distill.weights, k) is not None for k in DEFAULT_WEIGHTS)
    out = tmp_path / "cfg.yaml"
    save_config(cfg, out)
    assert load_config(out) == cfg
    assert config_from_dict(cfg.to_dict()) == cfg


def test_cityscapes_is_the_paper_protocol():
    cfg = load_config(Path(__file__).resolve().parents[1] / "sstkd" / "configs"
                      / "cityscapes_pspnet_r101_r18.yaml")
    assert (cfg.model.teacher, cfg.model.student) == ("pspnet_resnet101", "pspnet_resnet18")
    assert cfg.data.crop_size == (512, 512) and cfg.data.batch_size == 8
    assert cfg.data.scale_range == (0.5, 2.0) and cfg.data.num_classes == 19
    assert cfg.train.iters == 40000
    o = cfg.optim
    assert (o.lr, o.power, o.weight_decay, o.momentum) == (0.01, 0.9, 5e-4, 0.9)


def test_defaults_and_presets():
    cfg = load_config()
    assert cfg.distill.preset == "baseline"
    assert all(getattr(cfg.distill.weights, k) == 0.0 for k in DEFAULT_WEIGHTS)
    assert preset_weights("kd") == {"pi": 3.0, "pa": 0.0, "ho": 0.0, "cwd": 0.0, "str": 0.0,
                                    "sta": 0.0}
    assert preset_weights("sstkd") == {"pi": 3.0, "pa": 0.0, "ho": 0.0, "cwd": 0.0, "str": 3.0,
                                       "sta": 10.0}
    assert preset_weights("sstkd_skd")["pa"] == 1.0 and preset_weights("sstkd_skd")["ho"] == 0.1
    assert preset_weights("skd")["ho"] == 0.1 and preset_weights("cwd")["cwd"] == 3.0
    assert preset_weights("sstkd_str")["sta"] == 0.0 and preset_weights("sstkd_str")["str"] == 3.0
    assert set(PRESETS) >= {"baseline", "kd", "skd", "cwd", "sstkd", "sstkd_str", "sstkd_sta",
                            "sstkd_skd"}
    # a weight given explicitly wins over the preset
    cfg = load_config(None, ["distill.preset=skd", "distill.weights.pa=0.5"])
    assert (cfg.distill.weights.pi, cfg.distill.weights.pa) == (3.0, 0.5)


def test_overrides_parse_with_field_types():
    cfg = load_config(None, [
        "optim.lr=0.005", "train.iters=100", "train.amp=false", "data.crop_size=[256, 128]",
        "data.scale_range=0.75,1.5", "distill.texture.taps=[layer1,layer2]",
        "distill.texture.offsets=[[1, 1], [0, 1]]", "model.teacher_checkpoint=t.pt",
        "optim.warmup_iters=10", "optim.weight_decay=1e-4",
    ])
    assert cfg.optim.lr == 0.005 and isinstance(cfg.optim.lr, float)
    assert cfg.train.iters == 100 and cfg.train.amp is False
    assert cfg.data.crop_size == (256, 128) and cfg.data.scale_range == (0.75, 1.5)
    assert cfg.distill.texture.taps == ["layer1", "layer2"]
    assert cfg.distill.texture.offsets == [(1, 1), (0, 1)]
    assert cfg.model.teacher_checkpoint == "t.pt" and cfg.optim.weight_decay == 1e-4
    assert load_config(None, ["model.teacher_checkpoint=null"]).model.teacher_checkpoint is None


def test_base_include(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "base.yaml").write_text("optim:\n  lr: 0.02\n  power: 1.0\ntrain:\n  iters: 9\n")
    (tmp_path / "sub" / "child.yaml").write_text(
        "base: ../base.yaml\noptim:\n  lr: 0.03\ndistill:\n  preset: kd\n")
    cfg = load_config(tmp_path / "sub" / "child.yaml", ["train.iters=7"])
    assert (cfg.optim.lr, cfg.optim.power, cfg.train.iters) == (0.03, 1.0, 7)
    assert cfg.distill.weights.pi == DEFAULT_WEIGHTS["pi"]
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ValueError, match="include cycle"):
        load_config(tmp_path / "a.yaml")


@pytest.mark.parametrize("override,msg", [
    ("optim.lr=abc", "config: key 'optim.lr' expected float, got 'abc'"),
    ("optim.lrr=0.1", "unknown key 'optim.lrr'"),
    ("nosuch.key=1", "unknown key 'nosuch'"),
    ("train.iters=1.5", "key 'train.iters' expected int, got '1.5'"),
    ("train.amp=maybe", "key 'train.amp' expected bool"),
    ("data.crop_size=[1,2,3]", r"key 'data.crop_size' expected tuple\[int, int\] \(2 items\)"),
    ("optim=1", "key 'optim' is a section"),
    ("optim.lr", "override must look like"),
    ("distill.preset=foo", "key 'distill.preset' expected one of"),
    ("optim.lr=-1", "key 'optim.lr' expected > 0"),
    ("model.student=pspnet_resnet7", "key 'model.student' expected one of"),
    ("model.teacher=pspnet_resnet34@x", "key 'model.teacher' expected a width suffix"),
    ("model.student=pspnet_resnet18@0", "key 'model.student' expected a width suffix"),
    ("distill.texture.str_norm=l1", "key 'distill.texture.str_norm' expected 'energy'"),
    ("distill.texture.backend=gpu", "key 'distill.texture.backend' expected null, 'auto'"),
    ("data.scale_range=[2.0,1.0]", "key 'data.scale_range' expected 0 < low <= high"),
])
def test_bad_overrides(override, msg):
    with pytest.raises(ValueError, match=msg):
        load_config(None, [override])


def test_width_suffix_and_texture_keys_accepted():
    cfg = load_config(None, ["model.student=pspnet_resnet18@0.25",
                             "model.teacher=pspnet_resnet34@0.5",
                             "distill.texture.str_norm=standardize",
                             "distill.texture.backend=reference"])
    assert (cfg.model.student, cfg.model.teacher) == ("pspnet_resnet18@0.25", "pspnet_resnet34@0.5")
    assert cfg.distill.texture.str_norm == "standardize"
    assert load_config().distill.texture.str_norm == "standardize"  # the default
    assert cfg.distill.texture.backend == "reference"


def test_bad_yaml_values(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  lr: abc\n")
    with pytest.raises(ValueError, match="config: key 'optim.lr' expected float, got 'abc'"):
        load_config(bad)
    bad.write_text("train:\n  amp: 1\n")
    with pytest.raises(ValueError, match="key 'train.amp' expected bool, got 1"):
        load_config(bad)
    bad.write_text("data:\n  unknown: 1\n")
    with pytest.raises(ValueError, match="unknown key 'data.unknown'"):
        load_config(bad)
    bad.write_text("model: 3\n")
    with pytest.raises(ValueError, match="key 'model' is a section"):
        load_config(bad)
    with pytest.raises(ValueError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_check_paths(tmp_path):
    with pytest.raises(ValueError, match="key 'data.root' expected an existing directory"):
        load_config(None, ["data.root=/no/such/dir"], check_paths=True)
    ok = load_config(None, ["data.dataset=synthetic"], check_paths=True)
    assert isinstance(ok, Config)
    with pytest.raises(ValueError, match="'model.teacher_checkpoint' is required by preset 'kd'"):
        load_config(None, ["data.dataset=synthetic", "distill.preset=kd"], check_paths=True)
    cfg = load_config(None, [f"data.root={tmp_path}", "model.teacher_checkpoint=/no/t.pt",
                             "distill.preset=kd"])
    with pytest.raises(ValueError, match="'model.teacher_checkpoint' expected an existing file"):
        check_config_paths(cfg)
