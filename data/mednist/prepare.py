"""Prepare MedNIST (6 classes of 64x64 images): ``python data/mednist/prepare.py --source PATH --output work_data/mednist``.

The same as ``pipelines data mednist``; the conversion lives in :mod:`pipelines.data.mednist`.
"""

from __future__ import annotations

import sys

from pipelines.cli import main

if __name__ == "__main__":
    sys.exit(main(["data", "mednist", *sys.argv[1:]]))
