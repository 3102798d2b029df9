"""Check the ACDC data (official layout) and write its datalist:

    python data/acdc/prepare.py --output work_data/acdc

The same as ``pipelines data acdc``; the conversion lives in :mod:`pipelines.data.acdc`.
"""

from __future__ import annotations

import sys

from pipelines.cli import main

if __name__ == "__main__":
    sys.exit(main(["data", "acdc", *sys.argv[1:]]))
