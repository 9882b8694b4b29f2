"""The device agent: grade each capture, encode it to an ``.ert`` stream, and upload it.

No torch, no requests: numpy, the inference runtime and the standard library.
The stream is in the on-disk spool (``spool.py``) before the capture leaves the
inbox, and leaves the spool only when the hub has acknowledged the same bytes
(``upload.py``), so a power cut, a crash or a dead link never loses an image.
See ``docs/upload.md`` for the protocol.
"""
