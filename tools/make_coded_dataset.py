"""A training set that also holds each image as the hub sees it: encoded and decoded by the learned codec.

    python tools/make_coded_dataset.py DATA OUT [--rates q1 q2 q3 q4 q5] [--seed 0]

DATA is an edgeret-layout dataset (labels.csv + images/). OUT gets
``images`` (a link to DATA's), ``coded/`` (one decoded copy per image, at a rate
point drawn per image with the seed) and a labels.csv listing both, with the
same labels: the grader then learns that codec artefacts are not lesions.
Runtime only (ONNX Runtime, no torch); about 0.3 s per 512x512 image on one thread.
"""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path

import numpy as np

from edgeret.codec.ert.container import encode_stream
from edgeret.codec.session import CodecCatalog, CodecSession, modality_of
from edgeret.images.read_write import read_image, write_image
from edgeret.plugin.host import get_host


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--rates", nargs="+", default=["q1", "q2", "q3", "q4", "q5"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--copies-without-quality", action="store_true",
                        help="label the decoded copies' quality -1 (unknown): a quality head then learns "
                             "only from what the camera saw, the DR head from both")
    args = parser.parse_args()
    host = get_host()
    codec = CodecSession(CodecCatalog.of_plugin(host), host.backend("onnxruntime"), threads=1)
    with open(args.data / "labels.csv", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = list(reader)
    rng = np.random.default_rng(args.seed)
    (args.out / "coded").mkdir(parents=True, exist_ok=True)
    link = args.out / "images"
    if not link.exists():
        os.symlink((args.data / "images").resolve(), link)
    coded_rows = []
    for i, row in enumerate(rows):
        target = args.out / "coded" / Path(row[0]).name
        if not target.exists():  # resumable
            image = read_image(args.data / row[0])
            modality = modality_of(image)
            suffix = args.rates[int(rng.integers(len(args.rates)))]
            model, rate = codec.catalog.choose(modality, "factorized", f"{modality}-factorized-{suffix}")
            encoded = codec.encode(image, model, rate, source=row[0])
            write_image(target, codec.decode_bytes(encode_stream(encoded.header, encoded.payloads)).image)
        else:
            rng.integers(len(args.rates))  # keep the draw sequence when resuming
        labels = [("-1" if args.copies_without_quality and name == "quality" else value)
                  for name, value in zip(header[1:], row[1:], strict=True)]
        coded_rows.append([f"coded/{target.name}", *labels])
        if (i + 1) % 100 == 0:
            print(f"{i + 1}/{len(rows)}", flush=True)
    with open(args.out / "labels.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows + coded_rows)
    print(f"{args.out}: {len(rows)} originals + {len(coded_rows)} decoded copies")


if __name__ == "__main__":
    main()
