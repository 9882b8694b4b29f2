"""The hub: receive ``.ert`` streams from cameras, decode, grade, write DICOM, forward to a PACS.

Runs on CPU (a GPU only makes it faster). ``server.py`` speaks the upload
protocol (``docs/upload.md``), ``store.py`` keeps what arrived, durably and
once, ``dicom_out.py`` writes the DICOM object and ``pacs.py`` + ``forwarder.py``
send it to a PACS over DICOMweb (STOW-RS), retrying until the PACS has it.
"""
