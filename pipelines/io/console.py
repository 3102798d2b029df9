"""Console streams that never fail on a character the terminal's locale cannot encode."""

from __future__ import annotations

import sys


def tolerant_streams() -> None:
    """Make stdout and stderr escape what their encoding cannot represent.

    Under an ASCII locale (``LC_ALL=C`` with Python's UTF-8 mode off) printing a table with ``±`` or ``σ`` raises
    ``UnicodeEncodeError``, which would end an hour-long benchmark at its last line. With
    ``errors="backslashreplace"`` such characters print as ``\\xb1`` instead; UTF-8 consoles are unaffected.
    """
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
