"""What the camera and the hub share on the wire and on disk.

The upload protocol, retries, TLS, atomic files, folder locks.
"""
