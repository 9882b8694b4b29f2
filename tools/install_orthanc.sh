#!/bin/sh
# Install Orthanc + its DICOMweb plugin for the PACS tests (tests/hub/test_hub_dicom.py).
# Idempotent, and never fails the build: without root or apt-get it says why it
# did not install, and the PACS tests skip with that reason.
PLUGIN=/usr/share/orthanc/plugins/libOrthancDicomWeb.so

have_orthanc() {
    { command -v Orthanc >/dev/null 2>&1 || [ -x /usr/sbin/Orthanc ]; } && [ -f "$PLUGIN" ]
}

# dicom3tools' dciodvfy checks every DICOM object the hub writes (tests/hub/test_hub_dicom.py)
if ! command -v dciodvfy >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "install_orthanc: installing dicom3tools with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q dicom3tools >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q dicom3tools >/dev/null 2>&1; } \
        || echo "install_orthanc: could not install dicom3tools; the dciodvfy test will skip"
fi
if have_orthanc; then
    echo "install_orthanc: Orthanc and the DICOMweb plugin are installed"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install_orthanc: not installing Orthanc (needs root for apt-get); the PACS tests will skip"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_orthanc: not installing Orthanc (no apt-get on this system); the PACS tests will skip"
    exit 0
fi
echo "install_orthanc: installing orthanc and orthanc-dicomweb with apt-get"
export DEBIAN_FRONTEND=noninteractive
if apt-get update -q >/dev/null && apt-get install -y -q orthanc orthanc-dicomweb >/dev/null; then
    :
else
    echo "install_orthanc: apt-get could not install orthanc orthanc-dicomweb; the PACS tests will skip"
    exit 0
fi
# The tests start their own Orthanc on free ports; the package's system service is not used.
if have_orthanc; then
    echo "install_orthanc: done"
else
    echo "install_orthanc: installed, but Orthanc or $PLUGIN is still missing; the PACS tests will skip"
fi
exit 0
