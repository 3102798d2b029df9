"""Model-zoo metadata of the generative bundles: the keys MONAI's schema asks for, and the files beside it.

(MONAI's ``verify_metadata`` downloads its schema, which cannot work offline, so the keys are checked here.)
"""

from __future__ import annotations

import json

import pytest

from pipelines import api


@pytest.mark.parametrize("bundle", ["mednist_classifier", "mednist_cvae"])
def test_metadata_has_the_model_zoo_keys_and_the_configs_exist(bundle: str) -> None:
    bundle_dir = api.BUNDLES_DIR / bundle
    meta = json.loads((bundle_dir / "configs" / "metadata.json").read_text(encoding="utf-8"))
    for key in ("version", "changelog", "monai_version", "pytorch_version", "numpy_version", "task", "description",
                "authors", "copyright", "network_data_format", "intended_use", "data_source", "references",
                "eval_metrics"):
        assert key in meta, key
    assert meta["version"] in meta["changelog"]
    assert (bundle_dir / "LICENSE").is_file() and (bundle_dir / "docs" / "README.md").is_file()
    assert api.config_files(bundle_dir, ["train.json", "evaluate.json"])
