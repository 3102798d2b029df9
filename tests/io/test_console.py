"""Console output survives an ASCII locale (the CI's LC_ALL=C without Python's UTF-8 mode)."""

from __future__ import annotations

import os
import subprocess
import sys

ASCII_LOCALE = {"LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0", "PYTHONIOENCODING": ""}


def _print_plus_minus(prepare: str) -> subprocess.CompletedProcess:
    code = f"{prepare}; print('0.84 \\u00b1 0.01')"
    env = {**os.environ, **ASCII_LOCALE}
    env.pop("PYTHONIOENCODING")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, env=env, timeout=60)


def test_plain_print_fails_under_an_ascii_locale() -> None:
    """The failure that tolerant_streams prevents is real on this interpreter."""
    result = _print_plus_minus("import sys")
    assert result.returncode != 0 and b"UnicodeEncodeError" in result.stderr


def test_tolerant_streams_escapes_instead_of_failing() -> None:
    result = _print_plus_minus("from pipelines.io.console import tolerant_streams; tolerant_streams()")
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert result.stdout == b"0.84 \\xb1 0.01\n"
