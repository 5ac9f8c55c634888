"""Data sets as they are published, read as cases: name, image, mask(s) and settings of their own.

* ``paired`` (the default): a folder of images and a folder of label masks matched by file stem
  (label 0 background, 255 ignore, every other label one segment).
* ``montgomery``: the NLM Montgomery County chest X-ray set, ``CXR_png/<name>.png`` with
  ``ManualMask/leftMask/<name>.png`` and ``ManualMask/rightMask/<name>.png`` (0/255 masks). The
  right lung becomes label 1 and the left lung label 2, as in the other data; window ``xray``.
* ``covid19-ct-seg``: COVID-19-CT-Seg (Zenodo record 3757476),
  ``COVID-19-CT-Seg_20cases/<name>.nii.gz`` with ``Lung_Mask/<name>.nii.gz``, whose labels 1 (left
  lung) and 2 (right lung) are swapped to ours. The intensities are handled as in the paper's code
  (``i3uex/sam``): the ``coronacases_*`` volumes are in Hounsfield units and get the lung window
  (level -650, width 1500) before the min-max stretch, i.e. window ``ct-lung``; the
  ``radiopaedia_*`` volumes hold the grey levels of an image export, which are only stretched
  min-max, i.e. window ``xray``.

A layout's cases carry their settings (``Case.settings``, e.g. ``{"window": "ct-lung"}``); each
applies where the user left that setting on ``auto`` (:func:`~.cases.case_settings`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from .cases import MASK_EXTENSIONS, Case, MaskFile
from .errors import CaseError, SettingError
from .volumes import IMAGE_EXTENSIONS, file_stem

LAYOUT_NAMES = ("paired", "montgomery", "covid19-ct-seg")
Found = tuple[list[Case], list[CaseError]]

RIGHT_LUNG, LEFT_LUNG = 1, 2
MONTGOMERY_IMAGES, MONTGOMERY_MASKS = Path("CXR_png"), Path("ManualMask")
MONTGOMERY_SIDES = (("rightMask", RIGHT_LUNG, "right-lung"), ("leftMask", LEFT_LUNG, "left-lung"))
COVID_IMAGES, COVID_MASKS = Path("COVID-19-CT-Seg_20cases"), Path("Lung_Mask")
#: COVID-19-CT-Seg's lung labels (1 left, 2 right) as ours.
COVID_RELABEL = ((1, LEFT_LUNG), (2, RIGHT_LUNG))
#: Per source of COVID-19-CT-Seg (by file name), the window the paper's code gives it.
COVID_WINDOWS = (("coronacases", "ct-lung"), ("radiopaedia", "xray"))


def _listing(folder: Path, extensions) -> dict[str, Path]:
    """Files of ``folder`` by stem (files with none of ``extensions`` are left out)."""
    found = {file_stem(p, extensions): p for p in sorted(folder.iterdir()) if p.is_file()}
    found.pop(None, None)
    return found


def paired(images_dir, masks_dir) -> Found:
    """Cases matched by stem, and one error per image without a mask or mask without an image."""
    images_dir, masks_dir = Path(images_dir), Path(masks_dir)
    for folder in (images_dir, masks_dir):
        if not folder.is_dir():
            raise CaseError(folder, "folder not found")
    images, masks = _listing(images_dir, IMAGE_EXTENSIONS), _listing(masks_dir, MASK_EXTENSIONS)
    if not images:
        raise CaseError(images_dir, f"no images ({', '.join(IMAGE_EXTENSIONS)})")
    cases = [
        Case(stem, images[stem], (MaskFile(masks[stem]),))
        for stem in sorted(images)
        if stem in masks
    ]
    for case in cases:
        if case.image_path.resolve() == case.masks[0].path.resolve():
            raise CaseError(
                case.image_path,
                "is its own mask (--images and --masks name one folder): "
                "keep the masks in a folder of their own, or give them another extension",
            )
    problems = [
        CaseError(images[stem], f"no mask with the same name in {masks_dir}")
        for stem in sorted(images)
        if stem not in masks
    ]
    problems += [
        CaseError(masks[stem], f"no image with the same name in {images_dir}")
        for stem in sorted(masks)
        if stem not in images
    ]
    return cases, problems


def _root(data, inside: Path, what: str, expected: str) -> Path:
    """The data set's folder: ``data`` itself, or its one subfolder that holds ``inside``
    (as an archive unpacks: the Montgomery ZIP puts everything under ``MontgomerySet/``)."""
    data = Path(data)
    if not data.is_dir():
        raise CaseError(data, "folder not found")
    if (data / inside).is_dir():
        return data
    nested = [child for child in sorted(data.iterdir()) if (child / inside).is_dir()]
    if len(nested) == 1:
        return nested[0]
    raise CaseError(data, f"not the {what}: no {inside} folder in it (expected {expected})")


def montgomery(data) -> Found:
    """The Montgomery County set: one case per ``CXR_png/*.png``, its two lung masks as labels 1 and
    2."""
    root = _root(
        data,
        MONTGOMERY_IMAGES,
        "Montgomery County set",
        "CXR_png/*.png, ManualMask/leftMask/*.png and ManualMask/rightMask/*.png",
    )
    images = {p.stem: p for p in sorted((root / MONTGOMERY_IMAGES).glob("*.png")) if p.is_file()}
    if not images:
        raise CaseError(root / MONTGOMERY_IMAGES, "no images (*.png)")
    cases, problems = [], []
    for name, image in images.items():
        masks = [
            MaskFile(root / MONTGOMERY_MASKS / folder / image.name, label=label)
            for folder, label, _ in MONTGOMERY_SIDES
        ]
        missing = [
            f"{side} mask {MONTGOMERY_MASKS / folder / image.name}"
            for (folder, _, side), mask in zip(MONTGOMERY_SIDES, masks, strict=True)
            if not mask.path.is_file()
        ]
        if missing:
            problems.append(CaseError(image, f"no {' and no '.join(missing)}"))
        else:
            cases.append(Case(name, image, tuple(masks), {"window": "xray"}))
    return cases, problems


def covid19_ct_seg(data) -> Found:
    """COVID-19-CT-Seg: volumes paired with their lung masks by name, each with its source's
    window."""
    root = _root(
        data,
        COVID_IMAGES,
        "COVID-19-CT-Seg set",
        f"{COVID_IMAGES}/<name>.nii.gz and {COVID_MASKS}/<name>.nii.gz",
    )
    cases, problems = paired(root / COVID_IMAGES, root / COVID_MASKS)
    return [_covid_case(case) for case in cases], problems


def _covid_case(case: Case) -> Case:
    window = next(
        (window for prefix, window in COVID_WINDOWS if case.name.startswith(prefix)), None
    )
    return replace(
        case,
        masks=(MaskFile(case.masks[0].path, relabel=COVID_RELABEL),),
        settings={"window": window} if window else {},
    )


def find(layout: str, data=None, images=None, masks=None) -> Found:
    """The cases of a data set: ``data`` (the set's folder) for a published layout, else ``images``
    and ``masks``."""
    if layout == "paired":
        return paired(images, masks)
    if layout == "montgomery":
        return montgomery(data)
    if layout == "covid19-ct-seg":
        return covid19_ct_seg(data)
    raise SettingError(f"Unknown layout {layout!r}: choose one of {', '.join(LAYOUT_NAMES)}.")


def source(layout: str, data=None, images=None, masks=None) -> dict[str, str | None]:
    """What names the data in a results folder's settings (the paired layout keeps its earlier
    keys)."""
    if layout == "paired":
        return {"images": str(Path(images).resolve()), "masks": str(Path(masks).resolve())}
    return {"layout": layout, "data": str(Path(data).resolve())}
