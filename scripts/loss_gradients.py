"""Where do the distillation terms push? Gradient norms of each loss term, per parameter group.

For a teacher checkpoint, a student checkpoint (``latest.pt``, with its trained adapters, or
``final_model.pth``, adapters untrained) and a few training batches, every
enabled term of ``--preset`` (weights from the config / ``--set``) is back-propagated alone;
the script prints the weighted term, and the gradient norm it puts on the student's backbone
stem + ``layer1`` (what the texture taps see), the rest of the student, and the SSTKD adapters.

    python scripts/loss_gradients.py --config synthetic_default \\
        --teacher runs/exp/synthetic/seed1/teacher/final_model.pth \\
        --student runs/exp/synthetic/seed1/sstkd/latest.pt --preset sstkd --batches 4
"""

from __future__ import annotations

import argparse
import statistics

import torch

from sstkd.config import load_config
from sstkd.distill import build_distiller
from sstkd.engine.trainer import build_datasets, load_teacher
from sstkd.models import build_model, load_checkpoint


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--teacher", required=True)
    p.add_argument("--student", required=True)
    p.add_argument("--preset", default="sstkd")
    p.add_argument("--batches", type=int, default=4)
    p.add_argument("--set", action="append", default=[])
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    cfg = load_config(args.config, [f"distill.preset={args.preset}",
                                    f"model.teacher_checkpoint={args.teacher}", *args.set])
    torch.manual_seed(0)
    teacher = load_teacher(cfg, torch.device("cpu"))
    state = torch.load(args.student, map_location="cpu", weights_only=True)
    if "distiller" in state:  # a training checkpoint (latest.pt): student + trained adapters
        student = build_model(cfg.model.student, cfg.data.num_classes, cfg.model.output_stride,
                              cfg.model.aux)
    else:  # final_model.pth: the adapters start untrained
        student, _ = load_checkpoint(args.student)
    d = build_distiller(cfg, student, teacher).train()
    if "distiller" in state:
        d.load_state_dict(state["distiller"])
        d.load_extra_state(state.get("extra", {}))  # the trained holistic critic
    groups = {"stem+layer1": [q for n, q in student.named_parameters()
                              if n.startswith(("backbone.stem", "backbone.conv1", "backbone.bn1",
                                               "backbone.layer1", "backbone.features.0",
                                               "backbone.features.1", "backbone.features.2",
                                               "backbone.features.3"))],
              "rest of student": None, "adapters": list(d.texture.parameters())
              if d.texture is not None else []}
    early = {id(q) for q in groups["stem+layer1"]}
    groups["rest of student"] = [q for q in student.parameters() if id(q) not in early]
    loader = torch.utils.data.DataLoader(build_datasets(cfg)[0], cfg.data.batch_size,
                                         shuffle=True)
    stats: dict[str, dict[str, list[float]]] = {}
    for i, (image, target) in enumerate(loader):
        if i == args.batches:
            break
        with torch.no_grad():
            t_out = teacher(image, return_features=True)
        _, terms, _ = d(image, target, t_out)  # one forward: every term sees the same batch
        for term in ("seg", *d.enabled):
            w = 1.0 if term == "seg" else d.weights[term]
            d.zero_grad(set_to_none=True)
            (w * terms[term]).backward(retain_graph=True)
            row = stats.setdefault(term, {})
            row.setdefault("weighted value", []).append(w * terms[term].item())
            for g, params in groups.items():
                sq = sum(float(q.grad.pow(2).sum()) for q in params if q.grad is not None)
                row.setdefault(f"|grad| {g}", []).append(sq ** 0.5)
    table = {t: {k: statistics.fmean(v) for k, v in row.items()} for t, row in stats.items()}
    cols = list(next(iter(table.values())))
    print("| term | " + " | ".join(cols) + " |")
    print("| --- |" + " ---: |" * len(cols))
    for t, row in table.items():
        print(f"| {t} | " + " | ".join(f"{row.get(c, 0):.3g}" for c in cols) + " |")
    return table


if __name__ == "__main__":
    main()
