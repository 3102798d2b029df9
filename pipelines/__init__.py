"""MONAI pipelines for cardiac MR segmentation, MR synthesis and MR-to-CT translation.

Entry point: ``pipelines --help`` (see :mod:`pipelines.cli`); the functions behind it live in :mod:`pipelines.api`.
"""

from __future__ import annotations

import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
