"""Typed, nested training configuration: dataclasses, YAML with ``base:``, ``--set`` overrides.

A configuration is a :class:`Config` of sections (``model``, ``data``, ``optim``, ``train``,
``eval``, ``distill`` with ``distill.weights`` and ``distill.texture``). Values are checked
against the field types when read; unknown keys and wrong types raise ``ValueError`` naming the
key path, the expected type and what came::

    cfg = load_config("cityscapes_pspnet_r101_r18", ["optim.lr=0.005"])  # or a YAML path
    cfg.optim.lr            # 0.005
    cfg.distill.weights.pi  # 10.0 (from the preset)
    cfg.to_dict()           # plain dict for checkpoints and results

Loss weights left unset (``null``) are filled from the named preset ``distill.preset``
(:data:`PRESETS`); a weight given in a file or override wins over the preset.

The configurations shipped with the package live in ``sstkd/configs/`` (:data:`CONFIG_DIR`) and
are loaded by name (``"camvid_cpu"``). Configs hold no machine paths: a dataset root left unset
(``data.root: null``) is taken from ``--set data.root=PATH`` or, when the environment variable
``SSTKD_DATA`` is set, is ``$SSTKD_DATA/<data.dataset>``.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# --------------------------------------------------------------------------- schema


@dataclass
class ModelConfig:
    """Teacher / student networks (names from ``sstkd.models.list_models()``)."""

    teacher: str = "pspnet_resnet101"
    student: str = "pspnet_resnet18"
    teacher_checkpoint: str | None = None  # trained teacher weights (required to distill)
    pretrained: str | None = None  # ImageNet backbone for the student (torchvision layout)
    output_stride: int = 8
    aux: bool = True  # auxiliary FCN head on layer3 (training only)
    aux_weight: float = 0.4  # weight of the auxiliary cross-entropy
    sync_bn: bool = False  # convert BatchNorm to SyncBatchNorm under DDP


@dataclass
class DataConfig:
    """Dataset and loader settings."""

    dataset: str = "cityscapes"
    root: str | None = None
    num_classes: int = 19
    ignore_index: int = 255
    train_split: str = "train"
    val_split: str = "val"
    crop_size: tuple[int, int] = (512, 512)  # (H, W)
    scale_range: tuple[float, float] = (0.5, 2.0)
    flip: bool = True
    batch_size: int = 8  # total over all processes (each rank loads batch_size / world_size)
    workers: int = 4
    resize: tuple[int, int] | None = None  # resize every image (H, W) before the transforms
    train_length: int = 1000  # synthetic only: samples in the train split
    val_length: int = 100  # synthetic only: samples in the val split
    image_size: int = 256  # synthetic only: mosaic side in pixels


@dataclass
class OptimConfig:
    """SGD with poly decay (``lr * (1 - it / iters) ** power``) and optional linear warm-up."""

    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    power: float = 0.9
    warmup_iters: int = 0
    warmup_factor: float = 0.1  # lr factor at step 0 of the warm-up, rising linearly to 1
    grad_clip: float = 0.0  # max global gradient norm; 0 disables clipping


@dataclass
class TrainConfig:
    """Loop length, periodic work, precision and output."""

    iters: int = 40_000
    teacher_iters: int = 0  # teacher training in `sstkd.train --pipeline` (0: same as iters)
    # `--pipeline`: students trained after distill.preset's, from the same teacher
    compare_presets: list[str] = field(default_factory=lambda: ["baseline"])
    eval_every: int = 4_000  # 0 disables periodic evaluation
    ckpt_every: int = 2_000
    log_every: int = 50
    amp: bool = True  # mixed precision; used on CUDA only
    seed: int = 0
    deterministic: bool = False
    output_dir: str = "runs/default"
    tensorboard: bool = True  # used when the tensorboard package is importable


@dataclass
class EvalConfig:
    """Periodic evaluation during training."""

    mode: str = "whole"  # 'whole' or 'slide'
    crop_size: tuple[int, int] = (512, 1024)  # sliding-window size (H, W)
    stride: tuple[int, int] = (341, 683)  # sliding-window stride (H, W)
    max_images: int = 0  # 0 evaluates the whole validation split


@dataclass
class LossWeights:
    """Loss weights; ``None`` takes the value of ``distill.preset``.

    ``pi`` pixel-wise KD, ``pa`` pair-wise affinity, ``ho`` holistic adversarial, ``cwd``
    channel-wise distillation, ``str`` structural texture (CDM), ``sta`` statistical texture
    (DTIEM).
    """

    pi: float | None = None
    pa: float | None = None
    ho: float | None = None
    cwd: float | None = None
    str: float | None = None
    sta: float | None = None


@dataclass
class TextureConfig:
    """SSTKD texture knowledge: taps, contourlet (CDM) and quantization (DTIEM) settings."""

    taps: list[str] = field(default_factory=lambda: ["layer1"])
    pfilt: str = "9-7"
    dfilt: str = "pkva"
    nlevs: list[int] = field(default_factory=lambda: [3, 3])
    num_levels: int = 32  # [ours] quantization levels N
    iters: int = 3  # [ours] Lloyd-Max steps K (0 = STLNet's equal bins)
    theta: float = 0.5  # [ours] histogram clip (1 disables denoising)
    offsets: list[tuple[int, int]] = field(default_factory=lambda: [(1, 1)])
    beta: float = 1.0  # [ours] weight of the co-occurrence term in L_sta
    str_norm: str = "standardize"  # [ours] 'standardize' | 'energy' | 'none' (losses/texture.py)
    sampler_anchors: int = 0  # [ours] DTIEM importance sampler: anchors per image (0: off)
    sampler_radius: float = 2.0  # [ours] Gaussian radius around an anchor (pixels of the tap)
    sampler_gain: float = 1.0  # [ours] extra weight at an anchor (0: off)
    backend: str | None = None  # sstkd_ops backend of both texture ops (None: auto)


@dataclass
class DistillConfig:
    """Which distillation losses run and how."""

    preset: str = "baseline"
    weights: LossWeights = field(default_factory=LossWeights)
    tau_pi: float = 1.0  # pixel-wise KD temperature
    tau_cwd: float = 4.0  # CWD temperature
    cwd_tap: str = "logits"  # feature CWD is applied to
    pa_tap: str = "head"  # feature the pair-wise loss is applied to
    pa_scale: float = 0.5  # SKD patch side as a fraction of the map side
    ho_gp: float = 10.0  # WGAN-GP gradient-penalty weight
    ho_lr: float = 4e-4
    ho_betas: tuple[float, float] = (0.9, 0.99)
    ho_use_image: bool = True
    ho_spectral_norm: bool = True
    texture: TextureConfig = field(default_factory=TextureConfig)


@dataclass
class Config:
    """The whole training configuration."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (lists, no tuples) for checkpoints, results and YAML."""
        return _plain(dataclasses.asdict(self))


# Weight of each loss when a preset turns it on. pa, ho, cwd: the SKD / IFVD / CWD defaults.
# pi, str, sta (and distill.texture.str_norm): chosen by the 3-seed sweep and ablation of
# docs/EXPERIMENTS.md sections 1-2 (SKD's pi = 10 put 7x the segmentation loss's gradient on
# the student's early stages and lost to pi = 3).
DEFAULT_WEIGHTS: dict[str, float] = {
    "pi": 3.0, "pa": 1.0, "ho": 0.1, "cwd": 3.0,
    "str": 3.0, "sta": 10.0,
}
# Named weight sets: the losses each preset turns on; every other weight is 0.
PRESETS: dict[str, tuple[str, ...]] = {
    "baseline": (),
    "kd": ("pi",),
    "skd": ("pi", "pa", "ho"),
    "cwd": ("cwd",),
    # SSTKD: pixel-wise KD + the two texture losses (METHOD.md section 5: the pair-wise and
    # holistic terms are optional; measured to cost accuracy at CPU budgets, EXPERIMENTS.md)
    "sstkd": ("pi", "str", "sta"),
    "sstkd_str": ("pi", "str"),  # ablation: structural texture only
    "sstkd_sta": ("pi", "sta"),  # ablation: statistical texture only
    "sstkd_skd": ("pi", "pa", "ho", "str", "sta"),  # on top of the whole SKD recipe
}
DATASETS_WITHOUT_ROOT = ("synthetic",)
CONFIG_DIR = Path(__file__).resolve().parent / "configs"  # the packaged configurations
DATA_ENV = "SSTKD_DATA"  # parent folder of dataset roots: $SSTKD_DATA/<data.dataset>
EVAL_MODES = ("whole", "slide")


def preset_weights(name: str) -> dict[str, float]:
    """The loss weights of preset ``name`` (all six keys)."""
    if name not in PRESETS:
        raise ValueError(f"config: key 'distill.preset' expected one of {sorted(PRESETS)}, "
                         f"got {name!r}")
    return {k: (v if k in PRESETS[name] else 0.0) for k, v in DEFAULT_WEIGHTS.items()}


# --------------------------------------------------------------------------- typing helpers


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _is_optional(tp: Any) -> tuple[bool, Any]:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return True, args[0]
    return False, tp


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _coerce(value: Any, tp: Any, key: str, from_string: bool = False) -> Any:
    """``value`` checked against (and converted to) type ``tp``; ``key`` names it in errors."""

    def fail() -> ValueError:
        return ValueError(f"config: key {key!r} expected {_type_name(tp)}, got {value!r}")

    optional, inner = _is_optional(tp)
    if optional:
        if value is None or (from_string and value.strip().lower() in ("null", "none", "~")):
            return None
        return _coerce(value, inner, key, from_string)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ValueError(f"config: key {key!r} is a section; expected a mapping of "
                             f"{sorted(f.name for f in dataclasses.fields(tp))}, got {value!r}")
        return _build(tp, value, key)
    origin = typing.get_origin(tp)
    if origin in (list, tuple):
        if from_string:
            text = value.strip()
            parsed = yaml.safe_load(text) if text.startswith(("[", "(")) else None
            if text.startswith("(") and text.endswith(")"):
                parsed = yaml.safe_load("[" + text[1:-1] + "]")
            value = parsed if parsed is not None else [v.strip() for v in text.split(",") if v]
        if not isinstance(value, (list, tuple)):
            raise fail()
        args = typing.get_args(tp)
        if origin is list:
            return [_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ValueError(f"config: key {key!r} expected {_type_name(tp)} "
                             f"({len(args)} items), got {value!r}")
        return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in
                     enumerate(zip(value, args, strict=True)))
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            if from_string:
                return value.strip().lower() in _TRUE
        raise fail()
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip().replace("_", ""))
            except ValueError:
                raise fail() from None
        raise fail()
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # also YAML 1.1's '5e-4', which PyYAML reads as a string
            try:
                return float(value.strip())
            except ValueError:
                raise fail() from None
        raise fail()
    if tp is str:
        if isinstance(value, str):
            return value
        raise fail()
    raise TypeError(f"config: unsupported field type {_type_name(tp)} for key {key!r}")


def _build(cls: type, values: Mapping[str, Any], prefix: str = "") -> Any:
    hints = _hints(cls)
    kwargs = {}
    for k, v in values.items():
        path = f"{prefix}.{k}" if prefix else str(k)
        if k not in hints:
            raise ValueError(f"config: unknown key {path!r}; expected one of {sorted(hints)}")
        kwargs[k] = _coerce(v, hints[k], path)
    return cls(**kwargs)


# --------------------------------------------------------------------------- public API


def config_from_dict(values: Mapping[str, Any], resolve: bool = True) -> Config:
    """A :class:`Config` from a nested dict (e.g. ``Config.to_dict()`` or parsed YAML).

    Args:
        values: nested mapping; missing keys keep their defaults. ``base`` is not allowed here.
        resolve: fill unset loss weights from the preset and :func:`validate`.

    Raises:
        ValueError: unknown key, wrong type or invalid value (the message names the key path).
    """
    if not isinstance(values, Mapping):
        raise ValueError(f"config: expected a mapping at the top level, got {values!r}")
    cfg = _build(Config, values)
    return resolve_config(cfg) if resolve else cfg


def _deep_merge(base: dict, update: Mapping) -> dict:
    out = dict(base)
    for k, v in update.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(
            out.get(k), dict) else v
    return out


def read_yaml(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A YAML config file as a dict, with its ``base:`` file(s) merged underneath.

    ``base`` is a path (or list of paths, merged in order) relative to the including file, or
    the name of a packaged config (``base: synthetic_default``, see :func:`config_path`).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config: file {str(path)!r} does not exist")
    resolved = path.resolve()
    if resolved in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, resolved))
        raise ValueError(f"config: 'base' include cycle: {chain}")
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ValueError(f"config: {str(path)!r} must hold a mapping, got {type(data).__name__}")
    bases = data.pop("base", None)
    if bases is None:
        return data
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ValueError(f"config: key 'base' in {str(path)!r} expected str or list[str], "
                         f"got {bases!r}")
    merged: dict[str, Any] = {}
    for b in bases:
        local = path.parent / b
        if not local.is_file() and Path(b).parent == Path(".") and b.removesuffix(".yaml") in (
                packaged_configs()):
            local = config_path(b)
        merged = _deep_merge(merged, read_yaml(local, (*_seen, resolved)))
    return _deep_merge(merged, data)


def apply_override(cfg: Config, item: str) -> None:
    """Apply one ``key.path=value`` override in place; the value is parsed with the field type.

    Lists and tuples are written ``[a, b]``, ``(a, b)`` or ``a,b``; ``null`` clears an optional
    value.
    """
    if not isinstance(item, str) or "=" not in item:
        raise ValueError(f"config: override must look like 'section.key=value', got {item!r}")
    path, value = (s.strip() for s in item.split("=", 1))
    parts = path.split(".")
    obj: Any = cfg
    for i, name in enumerate(parts):
        hints = _hints(type(obj))
        here = ".".join(parts[: i + 1])
        if name not in hints:
            where = ".".join(parts[:i]) or "the top level"
            raise ValueError(f"config: unknown key {here!r}; expected one of {sorted(hints)} "
                             f"under {where}")
        if i == len(parts) - 1:
            if dataclasses.is_dataclass(hints[name]):
                raise ValueError(f"config: key {here!r} is a section; set one of its keys, e.g. "
                                 f"'{here}.{dataclasses.fields(hints[name])[0].name}=...'")
            setattr(obj, name, _coerce(value, hints[name], here, from_string=True))
        else:
            obj = getattr(obj, name)
            if not dataclasses.is_dataclass(obj):
                raise ValueError(f"config: key {here!r} is not a section")


def resolve_config(cfg: Config) -> Config:
    """Fill unset loss weights from ``distill.preset``, then :func:`validate`; returns ``cfg``."""
    preset = preset_weights(cfg.distill.preset)
    for k, v in preset.items():
        if getattr(cfg.distill.weights, k) is None:
            setattr(cfg.distill.weights, k, v)
    validate(cfg)
    return cfg


def packaged_configs() -> list[str]:
    """Names of the configurations shipped in :data:`CONFIG_DIR` (``"camvid_cpu"``, ...)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def config_path(name_or_path: str | Path) -> Path:
    """The YAML file of a config given as a path or as the name of a packaged config.

    An existing file wins; otherwise ``"camvid_cpu"`` or ``"camvid_cpu.yaml"`` names
    ``CONFIG_DIR / "camvid_cpu.yaml"``.

    Raises:
        ValueError: neither a file nor a packaged config name (the message lists the names).
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    packaged = CONFIG_DIR / (path.name if path.suffix == ".yaml" else f"{path.name}.yaml")
    if path.parent == Path(".") and packaged.is_file():
        return packaged
    raise ValueError(f"config: file {str(path)!r} does not exist and is not the name of a "
                     f"packaged config (one of {packaged_configs()})")


def load_config(path: str | Path | None = None, overrides: Sequence[str] = (),
                check_paths: bool = False) -> Config:
    """Load a YAML config (with ``base:`` includes), apply ``--set`` overrides, resolve, check.

    Args:
        path: YAML file or packaged config name (:func:`config_path`); ``None`` starts from
            the defaults.
        overrides: ``"section.key=value"`` strings, applied in order after the file. An unset
            ``data.root`` then becomes ``$SSTKD_DATA/<data.dataset>`` when ``SSTKD_DATA`` is set.
        check_paths: also require ``data.root`` (real datasets), ``model.teacher_checkpoint``
            and ``model.pretrained`` (when given) to exist -- what a training run needs.

    Returns:
        a resolved, validated :class:`Config`.

    Raises:
        ValueError: unknown key, wrong type, invalid value or missing path, naming the key.
    """
    cfg = (config_from_dict(read_yaml(config_path(path)), resolve=False) if path is not None
           else Config())
    for item in overrides:
        apply_override(cfg, item)
    if cfg.data.root is None and cfg.data.dataset not in DATASETS_WITHOUT_ROOT and os.environ.get(
            DATA_ENV):
        cfg.data.root = str(Path(os.environ[DATA_ENV]).expanduser() / cfg.data.dataset)
    resolve_config(cfg)
    if check_paths:
        check_config_paths(cfg)
    return cfg


def save_config(cfg: Config, path: str | Path) -> None:
    """Write ``cfg.to_dict()`` as YAML (loadable by :func:`load_config`)."""
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), encoding="utf-8")


def _model_name_problem(name: object) -> str | None:
    """What a model name should have been (``None``: fine, or the models package is absent),
    decided by the registry's own parser."""
    try:
        from sstkd.models import list_models, parse_model_name
    except ImportError:  # the models package is optional for configuration alone
        return None
    try:
        parse_model_name(name)
    except ValueError:
        if str(name).partition("@")[0] not in list_models():
            return f"one of {list_models()} (optionally '@<width>', e.g. 'pspnet_resnet18@0.5')"
        return "a width suffix '@<w>' with 0 < w <= 4"
    return None


def validate(cfg: Config) -> None:
    """Check value ranges and names; raise ``ValueError`` naming the first bad key."""

    def need(ok: bool, key: str, expected: str, got: Any) -> None:
        if not ok:
            raise ValueError(f"config: key {key!r} expected {expected}, got {got!r}")

    for key in ("teacher", "student"):
        name = getattr(cfg.model, key)
        problem = _model_name_problem(name)
        need(problem is None, f"model.{key}", problem or "", name)
    need(cfg.model.output_stride in (8, 16, 32), "model.output_stride", "8, 16 or 32",
         cfg.model.output_stride)
    need(cfg.model.aux_weight >= 0, "model.aux_weight", ">= 0", cfg.model.aux_weight)
    d = cfg.data
    need(d.num_classes >= 1, "data.num_classes", ">= 1", d.num_classes)
    need(all(s >= 1 for s in d.crop_size), "data.crop_size", "positive (H, W)", d.crop_size)
    need(0 < d.scale_range[0] <= d.scale_range[1], "data.scale_range", "0 < low <= high",
         d.scale_range)
    need(d.batch_size >= 1, "data.batch_size", ">= 1", d.batch_size)
    need(d.workers >= 0, "data.workers", ">= 0", d.workers)
    need(d.resize is None or min(d.resize) >= 1, "data.resize", "null or positive (H, W)",
         d.resize)
    for key in ("train_length", "val_length", "image_size"):
        need(getattr(d, key) >= 1, f"data.{key}", ">= 1", getattr(d, key))
    o = cfg.optim
    need(o.lr > 0, "optim.lr", "> 0", o.lr)
    need(0 <= o.momentum < 1, "optim.momentum", "in [0, 1)", o.momentum)
    need(o.weight_decay >= 0, "optim.weight_decay", ">= 0", o.weight_decay)
    need(o.power >= 0, "optim.power", ">= 0", o.power)
    need(cfg.train.iters >= 1, "train.iters", ">= 1", cfg.train.iters)
    need(0 <= o.warmup_iters < cfg.train.iters, "optim.warmup_iters",
         f"in [0, train.iters={cfg.train.iters})", o.warmup_iters)
    need(0 < o.warmup_factor <= 1, "optim.warmup_factor", "in (0, 1]", o.warmup_factor)
    need(o.grad_clip >= 0, "optim.grad_clip", ">= 0 (0 disables)", o.grad_clip)
    t = cfg.train
    need(t.teacher_iters >= 0, "train.teacher_iters", ">= 0", t.teacher_iters)
    need(all(p in PRESETS for p in t.compare_presets), "train.compare_presets",
         f"a list of presets from {tuple(PRESETS)}", t.compare_presets)
    for key in ("eval_every", "ckpt_every", "log_every"):
        need(getattr(t, key) >= 0, f"train.{key}", ">= 0", getattr(t, key))
    need(cfg.eval.mode in EVAL_MODES, "eval.mode", f"one of {EVAL_MODES}", cfg.eval.mode)
    need(all(s >= 1 for s in cfg.eval.crop_size + cfg.eval.stride), "eval.crop_size/stride",
         "positive (H, W)", (cfg.eval.crop_size, cfg.eval.stride))
    need(cfg.eval.max_images >= 0, "eval.max_images", ">= 0", cfg.eval.max_images)
    ds = cfg.distill
    preset_weights(ds.preset)
    for k in DEFAULT_WEIGHTS:
        w = getattr(ds.weights, k)
        need(w is None or w >= 0, f"distill.weights.{k}", ">= 0", w)
    for key in ("tau_pi", "tau_cwd", "ho_lr"):
        need(getattr(ds, key) > 0, f"distill.{key}", "> 0", getattr(ds, key))
    need(0 < ds.pa_scale <= 1, "distill.pa_scale", "in (0, 1]", ds.pa_scale)
    need(ds.ho_gp >= 0, "distill.ho_gp", ">= 0", ds.ho_gp)
    tx = ds.texture
    need(len(tx.taps) >= 1, "distill.texture.taps", "a non-empty list", tx.taps)
    need(len(tx.nlevs) >= 1 and all(n >= 0 for n in tx.nlevs), "distill.texture.nlevs",
         "a non-empty list of ints >= 0", tx.nlevs)
    need(tx.num_levels >= 2, "distill.texture.num_levels", ">= 2", tx.num_levels)
    need(tx.iters >= 0, "distill.texture.iters", ">= 0", tx.iters)
    need(0 < tx.theta <= 1, "distill.texture.theta", "in (0, 1]", tx.theta)
    need(tx.beta >= 0, "distill.texture.beta", ">= 0", tx.beta)
    need(tx.sampler_anchors >= 0, "distill.texture.sampler_anchors", ">= 0",
         tx.sampler_anchors)
    need(tx.sampler_radius > 0, "distill.texture.sampler_radius", "> 0", tx.sampler_radius)
    need(tx.sampler_gain >= 0, "distill.texture.sampler_gain", ">= 0", tx.sampler_gain)
    need(tx.str_norm in ("energy", "standardize", "none"), "distill.texture.str_norm",
         "'energy', 'standardize' or 'none'", tx.str_norm)
    need(tx.backend in (None, "auto", "reference", "cpu", "cuda", "triton"),
         "distill.texture.backend", "null, 'auto', 'reference', 'cpu', 'cuda' or 'triton'",
         tx.backend)


def check_config_paths(cfg: Config) -> None:
    """Require the paths a training run reads to exist; ``ValueError`` naming the key if not."""
    d = cfg.data
    if d.dataset not in DATASETS_WITHOUT_ROOT:
        if d.root is None or not Path(d.root).is_dir():
            how = "" if d.root is not None else (
                f", or set {DATA_ENV} to the folder holding {d.dataset!r}/")
            raise ValueError(f"config: key 'data.root' expected an existing directory for "
                             f"dataset {d.dataset!r}, got {d.root!r} (set it with "
                             f"--set data.root=PATH{how})")
    needs_teacher = any(getattr(cfg.distill.weights, k) for k in DEFAULT_WEIGHTS)
    ckpt = cfg.model.teacher_checkpoint
    if needs_teacher and ckpt is None:
        raise ValueError(f"config: key 'model.teacher_checkpoint' is required by preset "
                         f"{cfg.distill.preset!r} (non-zero distillation weights), got None")
    for key, p in (("model.teacher_checkpoint", ckpt), ("model.pretrained",
                                                        cfg.model.pretrained)):
        if p is not None and not Path(p).is_file():
            raise ValueError(f"config: key {key!r} expected an existing file, got {p!r}")
