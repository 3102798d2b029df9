"""Prepare the Sunnybrook DICOM cines and expert contours (external checks only):

    python data/sunnybrook_dicom/prepare.py --output work_data/sunnybrook_dicom

The same as ``pipelines data sunnybrook_dicom``; the conversion lives in :mod:`pipelines.data.sunnybrook_dicom`.
"""

from __future__ import annotations

import sys

from pipelines.cli import main

if __name__ == "__main__":
    sys.exit(main(["data", "sunnybrook_dicom", *sys.argv[1:]]))
