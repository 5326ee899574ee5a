"""The per-step distillation objective: segmentation loss plus every enabled KD term.

:class:`Distiller` owns the student, the SSTKD texture module (with its student adapters) and,
when the holistic term is on, the WGAN-GP critic. One call computes

    ``L = L_seg + l_pi L_pi + l_pa L_pa + l_ho L_ho + l_cwd L_cwd + l_str L_str + l_sta L_sta``

for one batch, given the frozen teacher's output (computed by the caller under ``no_grad``).
Wrapping the whole :class:`Distiller` in ``DistributedDataParallel`` synchronises the
gradients of the student and of the adapters together.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..config import DEFAULT_WEIGHTS, Config, DistillConfig
from ..losses import (
    HolisticAdversary,
    channelwise_kd_loss,
    pairwise_affinity_loss,
    pixelwise_kd_loss,
    segmentation_loss,
)
from ..models.segmentor import SegmentationOutput
from .texture import TextureDistiller

LOSS_TERMS = tuple(DEFAULT_WEIGHTS)  # ('pi', 'pa', 'ho', 'cwd', 'str', 'sta')


def _weights(cfg: DistillConfig) -> dict[str, float]:
    out = {}
    for k in LOSS_TERMS:
        w = getattr(cfg.weights, k)
        if w is None:
            raise ValueError(f"Distiller: distill.weights.{k} is unset; resolve the config "
                             "first (sstkd.config.resolve_config)")
        out[k] = float(w)
    return out


class Distiller(nn.Module):
    """Student + loss terms of one training step (see the module docstring).

    Args:
        student: the segmentation model being trained (``return_features=True`` API).
        teacher_channels: ``teacher.feature_channels`` (``None`` without a teacher, i.e. when
            every distillation weight is 0).
        cfg: the ``distill`` section (resolved weights, taps, temperatures, texture settings).
        ignore_index, aux_weight: segmentation-loss settings.
        teacher_classes / teacher_stride: the teacher's class count and output stride, checked
            against the student's for the logit-level terms.

    Raises:
        ValueError: at construction, when a term's teacher/student features cannot be aligned
            (unknown tap, different class counts or output strides, CWD on features with
            different channel counts).

    Forward:
        ``(image (B, 3, H, W), target (B, H, W), teacher_out)`` -> ``(total, terms, student_out)``
        where ``terms`` maps ``'seg'`` and each enabled term name to its *unweighted* value
        and ``'total'`` to the weighted sum.
    """

    def __init__(self, student: nn.Module, teacher_channels: dict[str, int] | None,
                 cfg: DistillConfig, ignore_index: int = 255, aux_weight: float = 0.4,
                 teacher_classes: int | None = None, teacher_stride: int | None = None):
        super().__init__()
        self.student = student
        self.cfg = cfg
        self.weights = _weights(cfg)
        self.enabled = tuple(k for k, w in self.weights.items() if w > 0)
        self.ignore_index = ignore_index
        self.aux_weight = aux_weight
        self.texture: TextureDistiller | None = None
        self.adversary: HolisticAdversary | None = None
        if not self.enabled:
            return
        if teacher_channels is None:
            raise ValueError(f"Distiller: terms {list(self.enabled)} need a teacher, got none")
        s_ch = student.feature_channels
        self._check_alignment(s_ch, teacher_channels, teacher_classes, teacher_stride)
        if "str" in self.enabled or "sta" in self.enabled:
            tx = cfg.texture
            self.texture = TextureDistiller(
                s_ch, teacher_channels, tx.taps, structural="str" in self.enabled,
                statistical="sta" in self.enabled, pfilt=tx.pfilt, dfilt=tx.dfilt,
                nlevs=tx.nlevs, num_levels=tx.num_levels, iters=tx.iters, theta=tx.theta,
                offsets=tx.offsets, beta=tx.beta, backend=tx.backend, str_norm=tx.str_norm,
                sampler_anchors=tx.sampler_anchors, sampler_radius=tx.sampler_radius,
                sampler_gain=tx.sampler_gain)
        if "ho" in self.enabled:
            self.adversary = HolisticAdversary(
                student.num_classes, use_image=cfg.ho_use_image,
                spectral_norm=cfg.ho_spectral_norm, lr=cfg.ho_lr, betas=cfg.ho_betas,
                gp_lambda=cfg.ho_gp, device=next(student.parameters()).device)

    def _check_alignment(self, s_ch: dict[str, int], t_ch: dict[str, int],
                         t_classes: int | None, t_stride: int | None) -> None:
        taps = {"pa": [self.cfg.pa_tap], "cwd": [self.cfg.cwd_tap],
                "str": list(self.cfg.texture.taps), "sta": list(self.cfg.texture.taps)}
        for term in self.enabled:
            for tap in taps.get(term, []):
                for who, ch in (("student", s_ch), ("teacher", t_ch)):
                    if tap not in ch:
                        raise ValueError(f"Distiller: term {term!r} taps feature {tap!r}, which "
                                         f"the {who} does not have; expected one of "
                                         f"{sorted(ch)}")
        if "cwd" in self.enabled and s_ch[self.cfg.cwd_tap] != t_ch[self.cfg.cwd_tap]:
            tap = self.cfg.cwd_tap
            raise ValueError(f"Distiller: CWD at tap {tap!r} needs equal channel counts, got "
                             f"student {s_ch[tap]} and teacher {t_ch[tap]} (use "
                             "distill.cwd_tap=logits)")
        logit_terms = [k for k in ("pi", "ho", "cwd") if k in self.enabled]
        if logit_terms and t_classes is not None and t_classes != self.student.num_classes:
            raise ValueError(f"Distiller: terms {logit_terms} compare logits, but the teacher "
                             f"predicts {t_classes} classes and the student "
                             f"{self.student.num_classes}")
        if logit_terms and t_stride is not None and t_stride != self.student.output_stride:
            raise ValueError(f"Distiller: terms {logit_terms} compare low-resolution logits, "
                             f"but the teacher's output stride is {t_stride} and the student's "
                             f"{self.student.output_stride}")

    def forward(self, image: torch.Tensor, target: torch.Tensor,
                teacher_out: SegmentationOutput | None = None
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor], SegmentationOutput]:
        s = self.student(image, return_features=True)
        terms: dict[str, torch.Tensor] = {
            "seg": segmentation_loss(s.out, target, s.aux, self.ignore_index, self.aux_weight)}
        if self.enabled:
            if teacher_out is None:
                raise ValueError(f"Distiller.forward: terms {list(self.enabled)} need "
                                 "teacher_out, got None")
            sf, tf = s.features, teacher_out.features
            c = self.cfg
            if "pi" in self.enabled:
                terms["pi"] = pixelwise_kd_loss(sf["logits"], tf["logits"], c.tau_pi)
            if "pa" in self.enabled:
                terms["pa"] = pairwise_affinity_loss(sf[c.pa_tap], tf[c.pa_tap], c.pa_scale)
            if "cwd" in self.enabled:
                terms["cwd"] = channelwise_kd_loss(sf[c.cwd_tap], tf[c.cwd_tap], c.tau_cwd)
            if "ho" in self.enabled:
                terms["ho"] = self.adversary.generator_loss(sf["logits"], image)
            if self.texture is not None:
                terms.update(self.texture(sf, tf))
        total = terms["seg"]
        for k in self.enabled:
            total = total + self.weights[k] * terms[k]
        terms["total"] = total
        return total, terms, s

    def critic_step(self, image: torch.Tensor, student_out: SegmentationOutput,
                    teacher_out: SegmentationOutput) -> dict[str, torch.Tensor]:
        """Update the holistic critic on (teacher, detached student) logits; ``{}`` if off."""
        if self.adversary is None:
            return {}
        return self.adversary.critic_step(teacher_out.features["logits"],
                                          student_out.features["logits"].detach(), image)

    def extra_state(self) -> dict[str, Any]:
        """What a checkpoint needs beyond ``state_dict()``: the critic and its optimizer."""
        return {} if self.adversary is None else self.adversary.state_dict()

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if self.adversary is not None:
            self.adversary.load_state_dict(state)

    def train(self, mode: bool = True) -> Distiller:
        super().train(mode)
        if self.adversary is not None:
            self.adversary.train(mode)
        return self


def build_distiller(cfg: Config, student: nn.Module, teacher: nn.Module | None = None
                    ) -> Distiller:
    """The :class:`Distiller` of a whole training config: the one way to build it.

    Args:
        cfg: a resolved :class:`~sstkd.config.Config` (``distill`` weights set).
        student: the model being trained.
        teacher: the frozen teacher (``None`` when every distillation weight is 0); only its
            feature channels, class count and output stride are read here.
    """
    return Distiller(student, teacher.feature_channels if teacher is not None else None,
                     cfg.distill, cfg.data.ignore_index, cfg.model.aux_weight,
                     teacher.num_classes if teacher is not None else None,
                     teacher.output_stride if teacher is not None else None)
