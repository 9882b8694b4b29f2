"""The cheap checks of an uploaded stream, before the hub answers: everything but decoding.

Header and its CRC, every payload chunk's CRC, the codec installed and the
stream written by its model, the header's size within the hub's pixel limit,
latent shapes and entropy tables that fit the model (a JPEG XL stream: the
codestream's own size header against the ``.ert`` header). Nothing is
allocated for the declared image: a 200-byte stream that declares gigapixels
is refused here. What only decoding can find (an entropy-coded payload that
passes its CRC but does not decode, a JPEG XL codestream libjxl refuses) is
found by a worker after the answer and recorded as the capture's failure.
"""

from __future__ import annotations

from edgeret.codec.ert.container import Header, decode_header, decode_stream
from edgeret.codec.session import CodecSession
from edgeret.errors import EdgeretError


class StreamProblem(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def check_stream(codec: CodecSession, stream: bytes, *, source: str, max_pixels: int) -> Header:
    """The stream's header, or StreamProblem with the HTTP status the camera should see."""
    try:
        header, _, _ = decode_header(stream, source=source)
    except EdgeretError as exc:
        raise StreamProblem(422, str(exc)) from None
    if header.height * header.width > max_pixels:
        raise StreamProblem(413, f"{source}: declares a {header.width}x{header.height} image, more than "
                                 f"this hub's limit of {max_pixels} pixels")
    if header.classical:
        return _check_classical(stream, header, source)
    try:
        model, rate = codec.lookup(header, source)
        header, _ = decode_stream(stream, source=source, expect=rate.identity)  # every chunk's CRC
    except EdgeretError as exc:
        raise StreamProblem(422, str(exc)) from None
    if header.modality != model.modality or header.channels != model.channels:
        raise StreamProblem(422, f"{source}: header says {header.channels}-channel {header.modality}, codec "
                                 f"'{rate.id}' codes {model.channels}-channel {model.modality} images")
    shapes = model.latent_shapes(header.height, header.width, header.scale)
    if [lat.shape for lat in header.latents] != shapes:
        raise StreamProblem(422, f"{source}: latent shapes do not fit a {header.width}x{header.height} image")
    if [lat.table_id for lat in header.latents] != [t.table_id for t in rate.tables]:
        raise StreamProblem(422, f"{source}: entropy tables are not those of codec '{rate.id}'")
    return header


def _check_classical(stream: bytes, header: Header, source: str) -> Header:
    from edgeret.codec.classical import jxl_size, unavailable_reason

    reason = unavailable_reason()
    if reason:  # the hub's installation, not the stream, is at fault: the camera keeps it and retries
        raise StreamProblem(503, f"{source}: this hub cannot decode {header.codec} streams yet ({reason})")
    try:
        header, payloads = decode_stream(stream, source=source)
        size = jxl_size(payloads[0])
    except EdgeretError as exc:
        raise StreamProblem(422, str(exc)) from None
    except (ValueError, IndexError) as exc:
        raise StreamProblem(422, f"{source}: JPEG XL codestream: {exc}") from None
    if size != (header.height, header.width):
        raise StreamProblem(422, f"{source}: JPEG XL codestream is {size[1]}x{size[0]}, the header says "
                                 f"{header.width}x{header.height}")
    return header
