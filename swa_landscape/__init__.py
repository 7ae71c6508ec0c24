"""swa-landscape: loss-landscape geometry around Stochastic Weight Averaging (the command line, the report, the demo).

The library itself is in the packages ``landscape`` (points and the evaluation engine), ``swa`` (training and run
files), ``analyses`` and ``figures``; this package ties them into the ``swa-landscape`` command
(:mod:`swa_landscape.cli`), the HTML report (:mod:`swa_landscape.report`) and the demo (:mod:`swa_landscape.demo`).
"""

from landscape.files import toolkit_version

from .cli import build_parser, main
from .demo import DemoConfig, demo

__all__ = ["DemoConfig", "__version__", "build_parser", "demo", "main"]

__version__ = toolkit_version()
