"""Packaging: configs ship as package data and load by name; no config holds a machine path.

The wheel itself is built, installed and run by ``scripts/check_wheel.sh`` (CI).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sstkd.config import CONFIG_DIR, config_path, load_config, packaged_configs
from sstkd.train import DEFAULT_CONFIG

REPO = Path(__file__).resolve().parents[1]


def test_configs_are_package_data():
    assert CONFIG_DIR == REPO / "sstkd" / "configs" and DEFAULT_CONFIG.parent == CONFIG_DIR
    assert DEFAULT_CONFIG.is_file() and not (REPO / "configs").exists()  # one copy only
    pyproject = (REPO / "pyproject.toml").read_text()
    assert '[tool.setuptools.package-data]\nsstkd = ["configs/*.yaml"]' in pyproject
    assert {"synthetic_default", "camvid_cpu", "cityscapes_pspnet_r101_r18"} <= set(
        packaged_configs())


@pytest.mark.parametrize("name", packaged_configs())
def test_no_machine_paths(name):
    data = yaml.safe_load((CONFIG_DIR / f"{name}.yaml").read_text())
    assert (data.get("data") or {}).get("root") is None
    assert (data.get("model") or {}).get("teacher_checkpoint") is None
    assert (data.get("model") or {}).get("pretrained") is None


def test_config_by_name_or_path(tmp_path, monkeypatch):
    assert config_path("camvid_cpu") == config_path("camvid_cpu.yaml") == (
        CONFIG_DIR / "camvid_cpu.yaml")
    local = tmp_path / "camvid_cpu.yaml"  # an existing file wins over the packaged name
    local.write_text("base: " + str(CONFIG_DIR / "camvid_cpu.yaml") + "\ntrain:\n  iters: 70\n")
    monkeypatch.chdir(tmp_path)
    assert load_config("camvid_cpu.yaml").train.iters == 70
    assert load_config("camvid_cpu").train.iters == 150
    mine = tmp_path / "mine.yaml"  # a user's config on top of a packaged one, by name
    mine.write_text("base: camvid_cpu\ntrain:\n  iters: 50\n")
    cfg = load_config(mine)
    assert (cfg.data.dataset, cfg.data.num_classes, cfg.train.iters) == ("camvid", 11, 50)
    with pytest.raises(ValueError, match=r"'nosuch' does not exist .* packaged config .*"
                                         r"'camvid_cpu'"):
        load_config("nosuch")
    with pytest.raises(ValueError, match="does not exist"):
        load_config("sub/camvid_cpu")  # a path is never read as a name


def test_data_root_from_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("SSTKD_DATA", raising=False)
    with pytest.raises(ValueError, match=r"'data.root' .*got None .*--set data.root=PATH, or "
                                         r"set SSTKD_DATA"):
        load_config("camvid_cpu", check_paths=True, overrides=["distill.preset=baseline"])
    (tmp_path / "camvid").mkdir()
    monkeypatch.setenv("SSTKD_DATA", str(tmp_path))
    cfg = load_config("camvid_cpu", ["distill.preset=baseline"], check_paths=True)
    assert cfg.data.root == str(tmp_path / "camvid")
    given = load_config("camvid_cpu", ["data.root=/elsewhere"])
    assert given.data.root == "/elsewhere"  # an explicit root wins
    assert load_config("synthetic_default").data.root is None  # synthetic needs none
