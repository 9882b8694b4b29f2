"""`edgeret encode IMAGE -o FILE.ert` and `edgeret decode FILE.ert -o OUT.png` (no torch).

The codec models come from the `codec-encoder` task's weights folder (or
`--models DIR`); the backend is the device profile's first available one (or
`--backend`). Both commands print the stream size, bits per pixel and the
compression ratio against the raw pixels; decode also prints its time. Encode
sends JPEG XL in at most the learned stream's bytes when that scores higher
(`--fallback jxl`, the default; `edgeret.codec.choice`), as the camera agent does. A bad
input prints one line naming the file and exits 2, and no output file is left
behind (both outputs are written atomically, after everything succeeded).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edgeret.cli.output import print_json
from edgeret.devices.profiles import DEFAULT_DEVICE
from edgeret.errors import EdgeretError


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", type=Path, help="codec weights folder (default: the codec plugin's)")
    parser.add_argument("--backend", help="backend name (default: the device's first available)")
    parser.add_argument("--device", default=DEFAULT_DEVICE, help="device profile or alias")
    parser.add_argument("--threads", type=int, help="inference threads")
    parser.add_argument("--json", action="store_true", help="print JSON")


def configure_encode(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", type=Path, help="PNG, JPEG, TIFF or DICOM image (8 or 16 bit)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="the .ert file to write")
    parser.add_argument("--rate", help="target bits per pixel (the closest rate point is used) or a "
                                       "rate-point id such as oct-factorized-q2 or q2; default: the codec's "
                                       "default rate point (benchmarks/grading-after-codec.md)")
    parser.add_argument("--variant", choices=["factorized", "paper"], default="factorized",
                        help="learned factorized prior (several rates) or the seed paper's L=7 quantizer")
    parser.add_argument("--modality", choices=["auto", "oct", "fundus"], default="auto",
                        help="auto: grayscale is OCT, colour is fundus")
    parser.add_argument("--scale", choices=["auto", "1", "2"], default="auto",
                        help="code at full (1) or half (2) resolution; auto: half for an oversampled image "
                             "at the codec's lowest rate points (docs/bitstream.md)")
    parser.add_argument("--bundle", type=Path,
                        help="encode with this exported bundle's codec-encoder (e.g. INT8) on its device's "
                             "backend, as the camera does; the image must have the profile's size")
    parser.add_argument("--fallback", choices=["jxl", "off"],
                        help="jxl: write JPEG XL instead when, in at most the learned stream's bytes, it "
                             "scores higher (MS-SSIM); off: the learned codec only. Default: jxl, but off "
                             "when --scale 1|2 or --variant paper asks for a particular learned stream")
    _common(parser)


def configure_decode(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("stream", type=Path, help="an .ert file written by `edgeret encode`")
    parser.add_argument("-o", "--output", type=Path, required=True, help="image to write (.png, .tif)")
    parser.add_argument("--codec", help="decode with this rate point only (default: the one the header "
                                        "names); a stream from another model is refused")
    _common(parser)


def codec_catalog(args: argparse.Namespace):
    """`--models DIR`, else the codec plugin's own weights folder."""
    from edgeret.codec.session import CodecCatalog

    return CodecCatalog(args.models) if args.models else CodecCatalog.of_plugin(args.host)


def codec_session(args: argparse.Namespace):
    from edgeret.cli.backend_arg import backend_from_args
    from edgeret.codec.session import CodecSession

    backend = backend_from_args(args)
    if "onnx" not in backend.formats:
        raise EdgeretError(f"backend '{backend.name}' cannot load the codec's ONNX graphs "
                           f"(it loads: {', '.join(backend.formats)})")
    return CodecSession(codec_catalog(args), backend, threads=args.threads), backend


def bundle_encoder(args: argparse.Namespace):
    """`--bundle DIR`'s codec encoder on its device's first usable backend (or `--backend`)."""
    from edgeret.codec.bundle_encoder import BundleEncoder

    return BundleEncoder(args.bundle, codec_catalog(args), args.host.backends(), args.backend, args.threads)


def _describe(stats: dict) -> str:
    return (f"{stats['bytes']} bytes, {stats['width']}x{stats['height']}x{stats['channels']} "
            f"{stats['bit_depth']}-bit {stats['modality']}, {stats['bpp']:.4f} bpp, "
            f"compression ratio {stats['compression_ratio']:.1f}:1, codec {stats['codec']}"
            + (f", coded at 1/{stats['scale']} resolution" if stats["scale"] != 1 else ""))


def run_encode(args: argparse.Namespace) -> int:
    from edgeret.codec.choice import choose
    from edgeret.codec.session import modality_of, stream_stats
    from edgeret.images.read_write import read_image
    from edgeret.link.atomic import write_bytes_atomic

    image = read_image(args.image)
    if image.ndim == 3 and image.shape[2] not in (3, 4):  # a volume: (N, H, W)
        from edgeret.errors import InputError

        raise InputError(args.image, f"holds {image.shape[0]} frames; encode one B-scan or photo per file")
    if args.bundle is not None:
        encoded, backend_name = _encode_with_bundle(args, image)
        decoder = None  # the hub's fp32 decoder graph, loaded only if JPEG XL is tried
    else:
        session, backend = codec_session(args)
        modality = modality_of(image, args.modality)
        model, rate = session.catalog.choose(modality, args.variant, args.rate)
        encoded = session.encode(image, model, rate, source=str(args.image), scale=args.scale)
        backend_name, decoder = backend.name, session

    def decode(enc):
        nonlocal decoder
        if decoder is None:
            from edgeret.codec.session import CodecSession

            decoder = CodecSession(None, args.host.backend("onnxruntime"), threads=args.threads)
        return decoder.decode(enc.header, enc.payloads, enc.model, enc.rate).image

    choice = choose(image, encoded, decode, fallback=_fallback(args), source=str(args.image))
    stream = choice.stream
    write_bytes_atomic(args.output, stream)
    stats = {**stream_stats(len(stream), choice.header), "output": str(args.output), "backend": backend_name,
             "encode_ms": encoded.seconds * 1000, "rate_nominal_bpp": encoded.rate.nominal_bpp,
             "codec_choice": choice.meta()}
    if args.json:
        print_json(stats)
    else:
        print(f"{args.output}: {_describe(stats)}; encoded in {stats['encode_ms']:.1f} ms on {backend_name}"
              + _choice_line(choice.meta()))
    return 0


def _fallback(args: argparse.Namespace) -> str:
    """An explicit learned-codec option (a forced coding scale, the paper variant) asks for that very
    stream, so it is not swapped for JPEG XL unless --fallback jxl says so."""
    if args.fallback:
        return args.fallback
    return "off" if args.scale != "auto" or args.variant != "factorized" else "jxl"


def _choice_line(choice: dict) -> str:
    """Why this codec was written, when JPEG XL was tried."""
    if choice.get("note"):
        return f"; {choice['note']}"
    if not choice.get("jxl"):
        return ""
    learned, jxl = choice["learned"], choice["jxl"]
    metric = "ms_ssim" if learned.get("ms_ssim") is not None else "psnr"
    sent, name = "JPEG XL" if choice["sent"] == "jxl" else "learned", metric.upper().replace("_", "-")
    return (f"; {sent} chosen ({name} learned {learned[metric]} in {learned['bytes']} B, "
            f"JPEG XL {jxl[metric]} in {jxl['bytes']} B; "
            f"choice took {choice['seconds']['total'] * 1000:.0f} ms)")


def _encode_with_bundle(args: argparse.Namespace, image):
    encoder = bundle_encoder(args)
    encoded = encoder.encode(image, encoder.rate(args.rate), source=str(args.image), scale=args.scale)
    return encoded, f"{encoder.backend} ({encoder.precision} bundle)"


def run_decode(args: argparse.Namespace) -> int:
    from edgeret.codec.ert.container import MAX_STREAM
    from edgeret.codec.session import stream_stats
    from edgeret.errors import InputError
    from edgeret.images.read_write import write_image

    path = args.stream
    try:
        if path.is_dir():
            raise InputError(path, "is a folder, expected an .ert file")
        if path.stat().st_size > MAX_STREAM:
            raise InputError(path, f"file is larger than any .ert stream (limit {MAX_STREAM} bytes)")
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except OSError as e:
        raise InputError(path, f"cannot read file ({e.strerror})") from None
    if args.output.suffix.lower() in (".jpg", ".jpeg"):
        raise InputError(args.output, "decode writes lossless .png or .tif, not JPEG")
    session, backend = codec_session(args)
    decoded = session.decode_bytes(data, source=str(path), codec=args.codec)
    write_image(args.output, decoded.image)
    stats = {**stream_stats(len(data), decoded.header), "output": str(args.output),
             "backend": backend.name, "decode_ms": decoded.seconds * 1000}
    if args.json:
        print_json(stats)
    else:
        print(f"{args.output}: from {path}: {_describe(stats)}; decoded in {stats['decode_ms']:.1f} ms "
              f"on {backend.name}")
    return 0
