"""SSTKD's losses for your own training loop: features tapped by module name with forward hooks.

:class:`SSTKDLoss` needs no change to your models or loop. It registers forward hooks on the
named modules of any teacher and student ``nn.Module``; your loop runs both models as usual and
then calls the loss object, which reads the captured features and returns the structural
(``str``, CDM) and statistical (``sta``, DTIEM) texture terms of
:class:`~sstkd.distill.texture.TextureDistiller`, optionally the pixel-wise KD term on logits
(``pi``, :func:`~sstkd.losses.pixelwise_kd_loss`), and their weighted ``total``.

The object is an ``nn.Module`` whose parameters are exactly the student adapters (1x1 conv +
BN from the student's channels to the teacher's at each tap): give ``kd.parameters()`` to your
optimizer beside the student's, save ``kd.state_dict()`` with your checkpoints, and drop it
after training. It holds no reference to the teacher or student modules, so their parameters
never appear in ``kd.parameters()``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..losses import pixelwise_kd_loss
from .texture import TextureDistiller

TERMS = ("str", "sta", "pi")


def _module(fn: str, model: nn.Module, name: str, who: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError:
        leaf = name.rsplit(".", 1)[-1]
        near = [n for n, _ in model.named_modules() if n and n.endswith(leaf)][:8]
        top = [n for n, _ in model.named_children()]
        raise ValueError(f"{fn}: the {who} has no module named {name!r}; modules ending in "
                         f"{leaf!r}: {near or 'none'}; top-level modules: {top}") from None


class SSTKDLoss(nn.Module):
    """SSTKD's texture losses between any teacher and student, features taken by forward hooks.

    Args:
        student, teacher: the two models (any ``nn.Module``); neither is stored or changed,
            only hooks are added to the tapped modules.
        taps: modules whose outputs ``(B, C, H, W)`` are distilled: a list of names found in
            both models (``["backbone.layer1"]``), or a mapping from student module name to
            teacher module name (``{"features.3": "layer1"}``). Student maps whose size differs
            from the teacher's are resized bilinearly.
        structural, statistical, pixelwise: weights of ``str``, ``sta`` and ``pi`` in
            ``total``; a term with weight 0 is not computed. The defaults of the first two are
            the training CLI's (``sstkd.config.DEFAULT_WEIGHTS``); the CLI's pixel-wise weight
            is 3.
        tau: pixel-wise KD temperature.
        example_input: a batch for one dry forward of both models (``eval`` mode, no grad) that
            finds the channel counts and builds the adapters now, so that ``kd.parameters()``
            is complete before the optimizer is made. Without it the adapters are built at the
            first call (on the features' device), and an optimizer made earlier misses them.
        **texture: settings of :class:`~sstkd.distill.texture.TextureDistiller` (``pfilt``,
            ``dfilt``, ``nlevs``, ``num_levels``, ``iters``, ``theta``, ``offsets``, ``beta``,
            ``backend``).

    Call:
        ``kd(student_logits=None, teacher_logits=None)`` after ``student(x)`` and
        ``teacher(x)`` ran on the same batch -> dict with the unweighted enabled terms and
        ``'total'`` (weighted sum), scalars differentiable with respect to the student and the
        adapters; the teacher's features and logits are detached. Logits ``(B, K, H, W)`` are
        needed only when ``pixelwise > 0``. Each call consumes the captured features.

    Example:
        >>> from sstkd.models import build_model
        >>> t, s = build_model("pspnet_resnet34", 4), build_model("pspnet_resnet18", 4)
        >>> x = torch.randn(2, 3, 32, 32)
        >>> with SSTKDLoss(s, t, ["backbone.layer1"], nlevs=(2,), example_input=x) as kd:
        ...     with torch.no_grad():
        ...         t_out = t(x)
        ...     terms = kd(s(x), t_out)
        >>> sorted(terms)
        ['sta', 'str', 'total']
    """

    def __init__(self, student: nn.Module, teacher: nn.Module,
                 taps: Sequence[str] | Mapping[str, str], structural: float = 3.0,
                 statistical: float = 10.0, pixelwise: float = 0.0, tau: float = 1.0,
                 example_input: torch.Tensor | None = None, **texture: Any):
        super().__init__()
        fn = "SSTKDLoss"
        for arg, model in (("student", student), ("teacher", teacher)):
            if not isinstance(model, nn.Module):
                raise TypeError(f"{fn}: argument {arg!r} expected an nn.Module, got "
                                f"{type(model).__name__}")
        if isinstance(taps, str) or not isinstance(taps, (Sequence, Mapping)):
            raise TypeError(f"{fn}: argument 'taps' expected a list of module names or a "
                            f"mapping student name -> teacher name, got {taps!r}")
        pairs = dict(taps) if isinstance(taps, Mapping) else {t: t for t in taps}
        if not pairs:
            raise ValueError(f"{fn}: argument 'taps' expected at least one module name, got none")
        self.weights = {"str": float(structural), "sta": float(statistical),
                        "pi": float(pixelwise)}
        for term, w in self.weights.items():
            if not w >= 0:
                raise ValueError(f"{fn}: weight of {term!r} expected >= 0, got {w}")
        if not any(self.weights.values()):
            raise ValueError(f"{fn}: every weight is 0 (structural, statistical, pixelwise); "
                             f"expected at least one > 0")
        if not tau > 0:
            raise ValueError(f"{fn}: argument 'tau' expected > 0, got {tau}")
        self.tau = float(tau)
        # ModuleDict keys cannot hold '.': one key per pair, named after the student module
        self._keys = {s: s.replace(".", "_") for s in pairs}
        if len(set(self._keys.values())) != len(self._keys):
            raise ValueError(f"{fn}: taps {list(pairs)} give clashing adapter names "
                             f"{list(self._keys.values())}")
        self.pairs = pairs
        self._texture_kwargs = texture
        self.texture: TextureDistiller | None = None
        self._features: dict[str, dict[str, torch.Tensor]] = {"student": {}, "teacher": {}}
        taps_found = [(who, _module(fn, model, name, who), self._keys[s_name])
                      for s_name, t_name in pairs.items()
                      for who, model, name in (("student", student, s_name),
                                               ("teacher", teacher, t_name))]
        self._handles = [module.register_forward_hook(self._hook(who, key))
                         for who, module, key in taps_found]
        try:
            if (self.weights["str"] or self.weights["sta"]) and example_input is not None:
                self._dry_run(student, teacher, example_input)
            elif self.weights["str"] or self.weights["sta"]:
                # built at the first call: check the settings now rather than then
                TextureDistiller({"x": 1}, {"x": 1}, ("x",), **self._texture_settings())
        except BaseException:
            self.close()  # leave no hooks behind on a failed construction
            raise

    def _texture_settings(self) -> dict[str, Any]:
        return dict(self._texture_kwargs, structural=self.weights["str"] > 0,
                    statistical=self.weights["sta"] > 0)

    def _hook(self, who: str, key: str):
        def capture(module: nn.Module, args: Any, output: Any) -> None:
            self._features[who][key] = output
        return capture

    @torch.no_grad()
    def _dry_run(self, student: nn.Module, teacher: nn.Module, x: torch.Tensor) -> None:
        modes = [(m, m.training) for m in (*student.modules(), *teacher.modules())]
        try:
            student.eval()
            teacher.eval()
            student(x)
            teacher(x)
            self._build(self._collect())
        finally:
            for m, training in modes:
                m.training = training

    def _collect(self) -> dict[str, dict[str, torch.Tensor]]:
        feats = {}
        for who, captured in self._features.items():
            for s_name, key in self._keys.items():
                name = s_name if who == "student" else self.pairs[s_name]
                if key not in captured:
                    raise ValueError(f"SSTKDLoss: no {who} output captured at {name!r}; run "
                                     f"the {who} on the batch before calling the loss")
                x = captured[key]
                if not isinstance(x, torch.Tensor) or x.dim() != 4:
                    got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
                    raise ValueError(f"SSTKDLoss: {who} module {name!r} must output a "
                                     f"(B, C, H, W) tensor, got {got}")
            feats[who] = {key: captured[key] for key in self._keys.values()}
            captured.clear()
        return feats

    def _build(self, feats: dict[str, dict[str, torch.Tensor]]) -> None:
        s, t = feats["student"], feats["teacher"]
        ref = next(iter(s.values()))  # adapters on the features' device; float64 stays float64
        self.texture = TextureDistiller(
            {k: v.shape[1] for k, v in s.items()}, {k: v.shape[1] for k, v in t.items()},
            tuple(self._keys.values()), **self._texture_settings()).to(
                ref.device, torch.float64 if ref.dtype == torch.float64 else None)

    def forward(self, student_logits: torch.Tensor | None = None,
                teacher_logits: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if not self._handles:
            raise ValueError("SSTKDLoss: the hooks were removed by close(); make a new object")
        terms: dict[str, torch.Tensor] = {}
        if self.weights["str"] or self.weights["sta"]:
            feats = self._collect()
            if self.texture is None:
                warnings.warn("SSTKDLoss: adapters built at the first call; an optimizer made "
                              "before it does not train them (pass example_input=, or make "
                              "the optimizer now)", stacklevel=2)
                self._build(feats)
            terms.update(self.texture(feats["student"], feats["teacher"]))
        else:
            self._features["student"].clear()
            self._features["teacher"].clear()
        if self.weights["pi"]:
            if student_logits is None or teacher_logits is None:
                raise ValueError("SSTKDLoss: pixelwise > 0 needs student_logits and "
                                 "teacher_logits, got None")
            terms["pi"] = pixelwise_kd_loss(student_logits, teacher_logits.detach(), self.tau)
        terms["total"] = sum(self.weights[k] * terms[k] for k in TERMS if k in terms)
        return terms

    def close(self) -> None:
        """Remove the forward hooks from the teacher and student (the adapters are kept)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._features["student"].clear()
        self._features["teacher"].clear()

    def __enter__(self) -> SSTKDLoss:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def extra_repr(self) -> str:
        weights = ", ".join(f"{k}={w}" for k, w in self.weights.items() if w)
        return f"taps={self.pairs}, {weights}, hooks={'on' if self._handles else 'removed'}"
