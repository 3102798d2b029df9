"""Prepare the paired brain MR/CT slices: ``python data/brain_mr_ct/prepare.py --source PATH --output work_data/brain_mr_ct``.

The same as ``pipelines data brain_mr_ct``; the conversion lives in :mod:`pipelines.data.brain_mr_ct`.
"""

from __future__ import annotations

import sys

from pipelines.cli import main

if __name__ == "__main__":
    sys.exit(main(["data", "brain_mr_ct", *sys.argv[1:]]))
