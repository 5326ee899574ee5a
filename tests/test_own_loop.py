"""SSTKDLoss in a plain training loop: the example runs, its numbers move the right way."""

from __future__ import annotations

import itertools
import math
import runpy
from pathlib import Path

import pytest
import torch
from torch import nn

import sstkd
from sstkd.distill import SSTKDLoss, StudentAdapter

EXAMPLE = runpy.run_path(str(Path(__file__).resolve().parents[1] / "examples"
                             / "own_training_loop.py"))


def _models():
    torch.manual_seed(0)
    return EXAMPLE["tiny_segmenter"](32), EXAMPLE["tiny_segmenter"](8)


def _hooks(*models: nn.Module) -> int:
    return sum(len(m._forward_hooks) for model in models for m in model.modules())


def test_example_runs():
    history = EXAMPLE["main"](steps=3)
    assert len(history) == 3 and set(history[0]) == {"str", "sta", "pi", "total"}


def test_texture_losses_fall_on_a_fixed_batch_and_teacher_gets_no_gradient():
    teacher, student = _models()
    torch.manual_seed(1)
    batch = (torch.randn(4, 3, 32, 32), torch.randint(0, 4, (4, 32, 32)))
    history = EXAMPLE["train"](teacher, student, itertools.repeat(batch), steps=20)
    # measured over 20 steps with the example's weights (str 3 standardized, sta 10, pi 3):
    # str to 0.51x, pi to 0.26x, sta to 0.74x of the first step
    for term, ratio in (("str", 0.7), ("pi", 0.5), ("sta", 0.9)):
        values = [h[term] for h in history]
        assert all(math.isfinite(v) and v > 0 for v in values), (term, values)
        assert sum(values[-3:]) / 3 < ratio * values[0], (term, values)
    assert all(p.grad is None for p in teacher.parameters())
    assert any(p.grad is not None for p in student.parameters())
    assert _hooks(teacher, student) == 0  # removed when the loop's `with kd:` ended


def test_statistical_term_alone_falls():
    teacher, student = _models()
    x = torch.randn(4, 3, 32, 32)
    with SSTKDLoss(student, teacher, ["layer1"], structural=0, nlevs=(2, 2), num_levels=16,
                   example_input=x) as kd:
        optimizer = torch.optim.SGD([*student.parameters(), *kd.parameters()], lr=0.05,
                                    momentum=0.9)
        teacher.eval()
        values = []
        for _ in range(20):
            with torch.no_grad():
                teacher(x)
            student(x)
            loss = kd()["total"]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            values.append(loss.item())
    assert all(math.isfinite(v) and v > 0 for v in values)
    assert sum(values[-3:]) / 3 < 0.75 * values[0], values  # ~0.4-0.6x measured


def test_parameters_are_the_adapters_and_hooks_go_on_close():
    teacher, student = _models()
    x = torch.randn(2, 3, 32, 32)
    kd = SSTKDLoss(student, teacher, {"layer1": "layer1"}, nlevs=(2,), example_input=x)
    assert _hooks(teacher, student) == 2
    (adapter,) = kd.texture.adapters.values()
    assert isinstance(adapter, StudentAdapter) and adapter.conv.weight.shape == (32, 8, 1, 1)
    assert {id(p) for p in kd.parameters()} == {id(p) for p in adapter.parameters()}
    assert student.training and teacher.training  # the dry run restored the modes
    kd.close()
    assert _hooks(teacher, student) == 0
    with pytest.raises(ValueError, match="removed by close"):
        kd()
    assert sstkd.SSTKDLoss is SSTKDLoss
    with SSTKDLoss(student, teacher, ["layer1.0"], nlevs=(2,), example_input=x) as kd:
        assert list(kd.texture.adapters) == ["layer1_0"]  # dotted module names work
        student(x), teacher(x)
        assert kd()["str"] > 0


def test_lazy_adapters_and_pixelwise_only():
    teacher, student = _models()
    x = torch.randn(2, 3, 32, 32)
    with SSTKDLoss(student, teacher, ["layer1"], statistical=0.0, nlevs=(2,)) as kd:
        assert list(kd.parameters()) == []
        teacher(x)
        with pytest.raises(ValueError, match="no student output captured at 'layer1'"):
            kd()
        teacher(x)
        student(x)
        with pytest.warns(UserWarning, match="adapters built at the first call"):
            terms = kd()
        assert set(terms) == {"str", "total"} and len(list(kd.parameters())) == 3
    with SSTKDLoss(student, teacher, ["layer1"], structural=0, statistical=0, pixelwise=2) as kd:
        s, t = student(x), teacher(x)
        terms = kd(s, t)
        assert torch.allclose(terms["total"], 2 * terms["pi"])
        with pytest.raises(ValueError, match="needs student_logits and teacher_logits"):
            kd(s)


def test_bad_arguments():
    teacher, student = _models()
    with pytest.raises(ValueError, match=r"student has no module named 'layer9'.*'layer1'"):
        SSTKDLoss(student, teacher, ["layer9"])
    with pytest.raises(ValueError, match="teacher has no module named 'conv'"):
        SSTKDLoss(student, teacher, {"layer1": "conv"})
    with pytest.raises(TypeError, match="argument 'taps' expected a list"):
        SSTKDLoss(student, teacher, "layer1")
    with pytest.raises(TypeError, match="argument 'teacher' expected an nn.Module"):
        SSTKDLoss(student, "teacher", ["layer1"])
    with pytest.raises(ValueError, match="every weight is 0"):
        SSTKDLoss(student, teacher, ["layer1"], structural=0, statistical=0)
    with pytest.raises(ValueError, match=r"weight of 'sta' expected >= 0"):
        SSTKDLoss(student, teacher, ["layer1"], statistical=-1)
    with pytest.raises(TypeError, match="unexpected keyword argument 'nlevels'"):
        SSTKDLoss(student, teacher, ["layer1"], nlevels=(2,))
    with pytest.raises(RuntimeError, match="channels"):  # the model's own error, unchanged
        SSTKDLoss(student, teacher, ["layer1"], example_input=torch.randn(1, 1, 8, 8))
    assert _hooks(teacher, student) == 0  # failed constructions leave no hooks
    with SSTKDLoss(student, teacher, ["head"], statistical=0, nlevs=(2,)) as kd:
        student(torch.randn(1, 3, 8, 8))
        teacher(torch.randn(1, 3, 8, 8))
        kd._features["student"]["head"] = (torch.zeros(1),)
        with pytest.raises(ValueError, match="student module 'head' must output a"):
            kd()
