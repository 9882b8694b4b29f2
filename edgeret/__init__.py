"""edgeret: retinal-imaging AI inside fundus cameras and OCT devices.

The runtime (this package without extras) needs no torch. Plugin authors
start with `edgeret.hookimpl` and the registration types in
`edgeret.plugin.registrations`; see docs/plugins.md.
"""

from edgeret.plugin.hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["hookimpl", "__version__"]
