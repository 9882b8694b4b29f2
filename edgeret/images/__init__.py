"""Images in and out.

Reading and writing files and DICOM, size limits, grey exports, preprocessing, tiling.
"""
