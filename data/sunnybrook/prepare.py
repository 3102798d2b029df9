"""Prepare the Sunnybrook LV myocardium data: ``python data/sunnybrook/prepare.py --output work_data/sunnybrook``.

The same as ``pipelines data sunnybrook``; the conversion lives in :mod:`pipelines.data.sunnybrook`.
"""

from __future__ import annotations

import sys

from pipelines.cli import main

if __name__ == "__main__":
    sys.exit(main(["data", "sunnybrook", *sys.argv[1:]]))
