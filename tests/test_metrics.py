"""Confusion-matrix metrics against hand-computed matrices."""

from __future__ import annotations

import math

import pytest
import torch

from sstkd.metrics import ConfusionMatrix, SegMetrics, format_table


def test_hand_computed_matrix() -> None:
    # target / pred over 10 pixels, 3 classes, two ignored pixels (255).
    target = torch.tensor([[0, 0, 0, 1, 1], [1, 2, 2, 255, 255]])
    pred = torch.tensor([[0, 0, 1, 1, 1], [2, 2, 0, 2, 1]])
    cm = ConfusionMatrix(3)
    cm.update(pred, target)
    expected = torch.tensor([[2, 1, 0],   # gt 0: pred 0,0,1
                             [0, 2, 1],   # gt 1: pred 1,1,2
                             [1, 0, 1]])  # gt 2: pred 2,0
    assert torch.equal(cm.mat, expected)
    r = cm.compute()
    # IoU_c = tp / (gt + pred - tp): 2/(3+3-2), 2/(3+3-2), 1/(2+2-1)
    iou = [2 / 4, 2 / 4, 1 / 3]
    assert r["iou"] == pytest.approx(iou)
    assert r["miou"] == pytest.approx(sum(iou) / 3)
    assert r["pixel_acc"] == pytest.approx(5 / 8)
    assert r["acc"] == pytest.approx([2 / 3, 2 / 3, 1 / 2])
    assert r["mean_acc"] == pytest.approx((2 / 3 + 2 / 3 + 1 / 2) / 3)
    assert r["pixels"] == 8


def test_absent_classes() -> None:
    cm = SegMetrics(4)
    # class 2 absent and never predicted -> nan, excluded; class 3 absent but predicted -> IoU 0.
    cm.update(torch.tensor([0, 1, 3, 1]), torch.tensor([0, 1, 1, 1]))
    r = cm.compute()
    assert r["iou"][0] == 1 and r["iou"][1] == pytest.approx(2 / 3)
    assert math.isnan(r["iou"][2]) and r["iou"][3] == 0
    assert r["miou"] == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert math.isnan(r["acc"][2]) and math.isnan(r["acc"][3])
    assert r["mean_acc"] == pytest.approx((1 + 2 / 3) / 2)


def test_accumulates_and_accepts_scores() -> None:
    torch.manual_seed(0)
    scores = torch.randn(2, 5, 7, 9)
    target = torch.randint(0, 5, (2, 7, 9))
    target[0, 0] = 255
    a, b = ConfusionMatrix(5), ConfusionMatrix(5)
    a.update(scores, target)
    for i in range(2):
        b.update(scores[i:i + 1].argmax(1), target[i:i + 1])
    assert torch.equal(a.mat, b.mat) and a.mat.sum() == 2 * 63 - 9
    a.all_reduce()  # no process group: a no-op
    assert torch.equal(a.mat, b.mat)
    a.reset()
    assert a.mat.sum() == 0 and math.isnan(a.compute()["miou"])


def test_custom_ignore_index() -> None:
    cm = ConfusionMatrix(2, ignore_index=-1)
    cm.update(torch.tensor([0, 1, 1]), torch.tensor([0, -1, 1]))
    assert cm.compute()["miou"] == 1.0


def test_bad_input() -> None:
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match=r"pred shape \(2,\) != target shape \(3,\)"):
        cm.update(torch.tensor([0, 1]), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="target holds value 7; expected 0..2 or 255"):
        cm.update(torch.tensor([0, 1]), torch.tensor([0, 7]))
    with pytest.raises(ValueError, match="pred holds value 3; expected 0..2"):
        cm.update(torch.tensor([3, 1]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"float scores must be \(B, 3, H, W\)"):
        cm.update(torch.randn(1, 4, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long))
    with pytest.raises(TypeError, match="target must be an integer tensor"):
        cm.update(torch.tensor([0]), torch.tensor([0.0]))
    with pytest.raises(ValueError, match="num_classes must be a positive int, got 0"):
        ConfusionMatrix(0)


def test_format_table() -> None:
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([0, 1]), torch.tensor([0, 1]))
    table = format_table(cm.compute(), ["road", "car", "sky"])
    assert "| road | 100.00 | 100.00 |" in table and "| sky | n/a | n/a |" in table
    assert "mIoU 100.00" in table


# each rank's (pred, target) pixels, commented as (target, pred) pairs; summed by hand below
_RANK_UPDATES = [
    (torch.tensor([0, 1, 1]), torch.tensor([0, 1, 0])),        # (0,0) (1,1) (0,1)
    (torch.tensor([1, 1, 0, 0]), torch.tensor([1, 0, 1, 255])),  # (1,1) (0,1) (1,0), ignored
]


def _all_reduce_worker(rank: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        cm = ConfusionMatrix(2)
        cm.update(*_RANK_UPDATES[rank])
        cm.all_reduce()
        torch.save(cm.mat, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_all_reduce_with_process_group(tmp_path) -> None:
    """Two gloo processes with different updates both end with the summed matrix."""
    import torch.multiprocessing as mp

    # spawn, not fork: a forked child can hang in an OpenMP pool the parent already used
    mp.spawn(_all_reduce_worker, args=(str(tmp_path / "pg"), str(tmp_path)), nprocs=2,
             join=True)
    expected = torch.tensor([[1, 2],    # gt 0: pred 0 (rank 0), pred 1 (rank 0, rank 1)
                             [1, 2]])   # gt 1: pred 0 (rank 1), pred 1 (rank 0, rank 1)
    for rank in (0, 1):
        mat = torch.load(tmp_path / f"rank{rank}.pt")
        assert torch.equal(mat, expected.to(mat.dtype)), (rank, mat)
