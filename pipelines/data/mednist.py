"""MedNIST-style 64x64 images (``MedNIST_64x64_500.zip``) -> one lossless PNG per image, class labels, datalist.

Run: ``pipelines data mednist --source PATH --output DIR`` or, from Python,
``pipelines.data.mednist.prepare(DIR, source=PATH)``. No download address serving this exact file has been verified,
so it is only ever looked for locally (``--source`` or ``PIPELINES_DATA``), checked by sha256.

Content. 3000 greyscale 64x64 JPEGs, 500 in each of the folders :data:`CLASSES` (``CTAbd``, ``CTChest``, ``CTHead``,
``CXR``, ``MRBrain``, ``MRBreast``); the label of an image is the index of its folder in :data:`CLASSES`. Each JPEG is
decoded once (Pillow) and written as an 8-bit PNG, so training reads exactly these pixels, whatever JPEG decoder
(and version) a later reader would have used.

Reading the archive. Nothing is extracted with a path taken from the archive: output names are built from
:data:`CLASSES` and a checked file stem. Directories, ``__MACOSX`` and ``._*`` resource forks, and members that are
not ``.jpg`` / ``.jpeg`` are ignored; a JPEG member with an absolute or ``..`` path, outside a class folder, with an
unusual file name, or that is not a 64x64 greyscale JPEG makes the whole archive an :class:`InputError`. Every image is
decoded and checked before the first file is written, so a bad archive writes nothing.

Split (``seed``, by image, stratified by class): ``n_test`` test and ``n_val`` validation images **per class**, the
rest train. The classes are equally large (enforced), so the subsets hold exactly ``n_test`` and ``n_val`` images of
every class.
"""

from __future__ import annotations

import io
import logging
import re
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image

from pipelines.data.datalist import datalist_target
from pipelines.data.sources import DatasetSource, resolve_local_source
from pipelines.data.splits import split_cases, stratified_subset
from pipelines.errors import InputError, OutputExistsError
from pipelines.io.atomic import atomic_path, atomic_write_json

__all__ = ["SOURCE", "CLASSES", "IMAGES_PER_CLASS", "IMAGE_SIZE", "case_id", "load_images", "convert", "prepare"]

logger = logging.getLogger(__name__)

SOURCE = DatasetSource(
    filename="MedNIST_64x64_500.zip",
    url="",  # no address verified to serve these exact bytes, so the file is never downloaded
    sha256="c1d78a38e913f4df02fc9d30bbcaf2be69d5d6d994140036631f89482bf635ba",
)
LICENCE = "Apache-2.0"
CLASSES = ("CTAbd", "CTChest", "CTHead", "CXR", "MRBrain", "MRBreast")  # sorted; label = position
IMAGES_PER_CLASS = 500
IMAGE_SIZE = (64, 64)  # (height, width); every image is square, so Pillow's (width, height) is the same
JPEG_SUFFIXES = (".jpg", ".jpeg")
MAX_MEMBER_BYTES = 1 << 20  # a 64x64 JPEG is a few kB; anything this large is not one of them
_SAFE_STEM = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # no separators, no leading dot (so never "." or "..")
_UNREADABLE_ZIP = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, NotImplementedError, RuntimeError,
                   zlib.error)


def case_id(class_name: str, stem: str) -> str:
    """The case id of the image ``<class_name>/<stem>.jpg``: ``<class_name>_<stem>`` (e.g. ``CTAbd_00000428``)."""
    return f"{class_name}_{stem}"


def _is_ignored(info: zipfile.ZipInfo, parts: tuple[str, ...]) -> bool:
    """Folders, macOS metadata and anything that is not a JPEG by its name."""
    if info.is_dir() or not parts or "__MACOSX" in parts or parts[-1].startswith("._"):
        return True
    return PurePosixPath(parts[-1]).suffix.lower() not in JPEG_SUFFIXES


def _index_members(archive: zipfile.ZipFile, path: str | Path) -> dict[str, dict[str, str]]:
    """Class name -> {file stem -> archive member name} of every JPEG member, checked (see the module docstring)."""
    by_class: dict[str, dict[str, str]] = {c: {} for c in CLASSES}
    for info in archive.infolist():
        name = info.filename
        parts = PurePosixPath(name.replace("\\", "/")).parts
        if _is_ignored(info, parts):
            continue
        if parts[0] == "/" or ".." in parts or ":" in parts[0]:
            raise InputError(path, f"member {name!r} has an unsafe path (absolute or with '..'); refusing the archive")
        class_name = parts[-2] if len(parts) >= 2 else ""
        if class_name not in by_class:
            raise InputError(path, f"member {name!r} is not in one of the class folders {list(CLASSES)}")
        stem = PurePosixPath(parts[-1]).stem
        if not _SAFE_STEM.fullmatch(stem):
            raise InputError(path, f"member {name!r}: unexpected file name (letters, digits, '_', '-', '.' only)")
        if stem in by_class[class_name]:
            raise InputError(path, f"member {name!r} repeats {by_class[class_name][stem]!r}")
        if info.file_size > MAX_MEMBER_BYTES:
            raise InputError(path, f"member {name!r} is {info.file_size} bytes, too large for a 64x64 JPEG")
        by_class[class_name][stem] = name
    missing = [c for c in CLASSES if not by_class[c]]
    if missing:
        raise InputError(path, f"no JPEGs in class folders {missing}; is this {SOURCE.filename}?")
    wrong = {c: len(stems) for c, stems in by_class.items() if len(stems) != IMAGES_PER_CLASS}
    if wrong:
        raise InputError(path, f"expected {IMAGES_PER_CLASS} JPEGs per class, found {wrong}")
    return by_class


def _decode(data: bytes, member: str, path: str | Path) -> np.ndarray:
    """The (64, 64) uint8 pixels of one JPEG member; :class:`InputError` naming it otherwise."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            # format, size and mode come from the header: checked before any pixel is decoded
            if image.format != "JPEG":
                raise InputError(path, f"member {member!r} is not a JPEG (found {image.format})")
            if image.size != IMAGE_SIZE[::-1]:
                raise InputError(path, f"member {member!r} is {image.width}x{image.height}, expected 64x64")
            if image.mode != "L":
                raise InputError(path, f"member {member!r} is not greyscale (mode {image.mode})")
            return np.array(image, dtype=np.uint8)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise InputError(path, f"member {member!r} is not a readable JPEG ({exc.__class__.__name__})") from exc


def load_images(path: str | Path) -> dict[str, dict[str, tuple[str, np.ndarray]]]:
    """Read and check every image of the archive.

    Returns:
        class name (in :data:`CLASSES` order) -> {file stem (sorted) -> (archive member name, (64, 64) uint8 pixels)}.

    Raises:
        InputError: one line naming ``path`` (and the member, where one is at fault): not a readable zip, a missing
            class folder, a count other than 500 per class, an unsafe or unexpected member name, or an image that is
            not a 64x64 greyscale JPEG.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            members = _index_members(archive, path)
            images: dict[str, dict[str, tuple[str, np.ndarray]]] = {}
            for class_name in CLASSES:
                images[class_name] = {}
                for stem in sorted(members[class_name]):
                    name = members[class_name][stem]
                    images[class_name][stem] = (name, _decode(archive.read(name), name, path))
            return images
    except _UNREADABLE_ZIP as exc:
        raise InputError(path, f"not a readable zip archive ({exc.__class__.__name__})") from exc


def _write_png(pixels: np.ndarray, path: Path, overwrite: bool) -> None:
    """Write 8-bit greyscale ``pixels`` as a (lossless) PNG, atomically."""
    with atomic_path(path, overwrite=overwrite, suffix=".png") as tmp:
        Image.fromarray(pixels).save(tmp, format="PNG")


def _split(labels: dict[str, int], n_val: int, n_test: int, seed: int) -> dict[str, list[str]]:
    """Test, validation and train images, ``n_test`` and ``n_val`` of each class (classes are equally large)."""
    test = stratified_subset(labels, n_test * len(CLASSES), seed=seed)
    return split_cases(sorted(labels), test, labels, n_val * len(CLASSES), seed + 1)


def convert(
    source: str | Path,
    output_dir: str | Path,
    overwrite: bool = False,
    n_val: int = 50,
    n_test: int = 100,
    seed: int = 0,
) -> Path:
    """Convert the zip into ``images/<CLASS>/<stem>.png`` and ``datalist.json`` under ``output_dir``.

    Args:
        source: ``MedNIST_64x64_500.zip`` (checked for content here; its sha256 is checked by :func:`prepare`).
        output_dir: where to write; an existing datalist or image is an error unless ``overwrite``.
        overwrite: replace existing outputs.
        n_val: validation images **per class** (checkpoint selection).
        n_test: test images **per class**.
        seed: seed of the test and validation draws.

    Returns:
        The path of the written datalist.

    Raises:
        ValueError: ``n_val`` or ``n_test`` negative, or together more than a class holds.
        InputError: the archive is not what it should be (see :func:`load_images`); nothing is written.
        OutputExistsError: ``datalist.json`` or an image exists and ``overwrite`` is False; nothing is written.
    """
    if min(n_val, n_test) < 0 or n_val + n_test > IMAGES_PER_CLASS:
        raise ValueError(f"n_val ({n_val}) and n_test ({n_test}) per class must be >= 0 and add up to at most "
                         f"{IMAGES_PER_CLASS}")
    output_dir = Path(output_dir)
    datalist_path = datalist_target(output_dir, overwrite)
    images = load_images(source)
    cases: list[dict[str, Any]] = []
    pixels: list[np.ndarray] = []
    for label, class_name in enumerate(CLASSES):
        for stem, (member, array) in images[class_name].items():
            cases.append({"case_id": case_id(class_name, stem), "image": f"images/{class_name}/{stem}.png",
                          "label": label, "class_name": class_name, "source_member": member})
            pixels.append(array)
    if not overwrite:  # refuse before writing anything rather than after part of the images
        existing = next((output_dir / c["image"] for c in cases if (output_dir / c["image"]).exists()), None)
        if existing is not None:
            raise OutputExistsError(existing)
    for index, (case, array) in enumerate(zip(cases, pixels)):
        _write_png(array, output_dir / case["image"], overwrite)
        if (index + 1) % IMAGES_PER_CLASS == 0:
            logger.info("%s: wrote %d PNGs", case["class_name"], IMAGES_PER_CLASS)
    labels = {c["case_id"]: c["label"] for c in cases}
    datalist = {
        "name": "mednist_64x64_500",
        "description": "3000 MedNIST-style 64x64 greyscale images, 500 per class, decoded once from the source "
        "JPEGs and stored as lossless 8-bit PNG; label = index of class_name in classes.",
        "source": {"file": SOURCE.filename, "sha256": SOURCE.sha256},
        "licence": LICENCE,
        "classes": list(CLASSES),
        "image_size": list(IMAGE_SIZE),
        "intensity_range": [0, 255],
        "split_note": "n_val / n_test are per class; the split is by image, stratified by class",
        "n_val_per_class": n_val,
        "n_test_per_class": n_test,
        "seed": seed,
        "cases": cases,
        "splits": {"seed": _split(labels, n_val, n_test, seed)},
    }
    atomic_write_json(datalist_path, datalist, overwrite=overwrite)
    logger.info("wrote %d images in %d classes and %s", len(cases), len(CLASSES), datalist_path)
    return datalist_path


def prepare(output_dir: str | Path, source: str | Path | None = None, overwrite: bool = False, **kwargs: Any) -> Path:
    """Find the local, verified source file (``source`` or ``PIPELINES_DATA``; never downloaded) and convert it.

    Raises:
        PipelineError: the file is not found; it has no verified download and must be supplied locally.
    """
    path = resolve_local_source(SOURCE, source, "no download address is verified to serve this exact file")
    return convert(path, output_dir, overwrite=overwrite, **kwargs)
