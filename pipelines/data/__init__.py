"""Dataset preparation: finding the source files, converting them to NIfTI, patient-level splits, datalists."""

from pipelines.data.datalist import load_datalist, split_items, slice_items
from pipelines.data.sources import DatasetSource, resolve_source, sha256sum
from pipelines.data.synthetic import load_synthetic, mix_synthetic
from pipelines.data.unpaired import UnpairedDataset

__all__ = ["DatasetSource", "resolve_source", "sha256sum", "load_datalist", "split_items", "slice_items", "UnpairedDataset",
           "load_synthetic", "mix_synthetic"]
