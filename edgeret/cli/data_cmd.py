"""`edgeret data synth|check`: make phantom datasets, validate any dataset folder."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from edgeret.cli.output import print_json, print_table
from edgeret.errors import EdgeretError


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_action", metavar="ACTION", required=True)
    synth = sub.add_parser("synth", help="write a labelled phantom dataset (images/ + labels.csv)")
    synth.add_argument("--modality", required=True, choices=["fundus", "oct"])
    synth.add_argument("--n", type=int, required=True, help="number of images")
    synth.add_argument("--seed", type=int, default=0, help="set seed (train < 100, test >= 100)")
    synth.add_argument("--out", type=Path, required=True, help="new or empty folder")
    synth.add_argument("--size", type=int, default=512, help="fundus image size (square)")
    synth.add_argument("--height", type=int, default=640, help="OCT B-scan height")
    synth.add_argument("--width", type=int, default=1024, help="OCT B-scan width")
    synth.add_argument("--bit-depth", type=int, choices=[8, 16], default=8, help="OCT bit depth")
    synth.add_argument("--quality-mix", help="e.g. good=0.9,usable=0.07,poor=0.03")
    synth.add_argument("--grade-mix", help="fundus DR grades, e.g. 0=0.5,1=0.1,2=0.2,3=0.1,4=0.1")
    synth.add_argument("--workers", type=int, default=2)
    check = sub.add_parser("check", help="detect a dataset's layout and validate it")
    check.add_argument("folder", type=Path)
    check.add_argument("--layout", help="force a layout instead of detecting it")
    check.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    return _synth(args) if args.data_action == "synth" else _check(args)


def _synth(args: argparse.Namespace) -> int:
    from edgeret.build.data.synth import SynthRequest, parse_mix, synthesize
    from edgeret.build.progress import progress_bar

    if not 16 <= args.size <= 4096 or not 16 <= args.height <= 4096 or not 16 <= args.width <= 4096:
        raise EdgeretError("image sizes must be between 16 and 4096 pixels")
    quality = parse_mix(args.quality_mix, ("good", "usable", "poor"), "--quality-mix") \
        if args.quality_mix else None
    grades = parse_mix(args.grade_mix, (0, 1, 2, 3, 4), "--grade-mix") if args.grade_mix else None
    request = SynthRequest(
        modality=args.modality, n=args.n, seed=args.seed, out=args.out, size=args.size,
        height=args.height, width=args.width, bit_depth=args.bit_depth,
        quality_mix=quality, grade_mix=grades, workers=args.workers,
    )
    bar = iter(progress_bar(range(args.n), f"synth {args.modality}"))
    out = synthesize(request, progress=lambda _: next(bar, None))
    next(bar, None)  # let the bar print its final line
    print(f"wrote {args.n} {args.modality} images and labels.csv to {out}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from edgeret.build.data.datasets import load_dataset

    dataset = load_dataset(args.folder, layout=args.layout)
    summary = {
        name: dict(sorted(Counter(str(s.labels.get(name)) for s in dataset.samples).items()))
        for name in dataset.label_names
        if len({s.labels.get(name) for s in dataset.samples}) <= 12  # skip ids, seeds
    }
    if args.json:
        print_json({"folder": str(args.folder), "layout": dataset.layout, "images": len(dataset),
                    "label_names": dataset.label_names, "label_counts": summary})
        return 0
    print(f"{args.folder}: layout '{dataset.layout}', {len(dataset)} images, all files present")
    rows = [(name, ", ".join(f"{k}: {v}" for k, v in counts.items()))
            for name, counts in summary.items()]
    if rows:
        print_table(("label", "counts"), rows)
    return 0
