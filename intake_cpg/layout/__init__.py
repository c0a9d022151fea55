"""The Cell Painting Gallery's folder convention (moved to :mod:`intake_cpg.layout.templates`)."""

from .templates import *  # noqa: F403
from .templates import __all__  # noqa: F401
