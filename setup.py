"""Maps the top-level folders to import names unique to this distribution.

The folders are fixed by the product brief (`plugins/`, `exporters/`,
`devices/`), but a bare top-level `plugins` package would clash with other
distributions, so each folder is installed under an `edgeret_` name.
"""

from setuptools import find_packages, setup

ROOTS = {
    "edgeret": "edgeret",
    "edgeret_plugins": "plugins",
    "edgeret_exporters": "exporters",
    "edgeret_devices": "devices",
}

packages: list[str] = []
for import_name, folder in ROOTS.items():
    packages.append(import_name)
    packages += [f"{import_name}.{sub}" for sub in find_packages(folder)]

setup(packages=packages, package_dir=ROOTS)
