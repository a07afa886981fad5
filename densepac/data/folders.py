"""Indexing dataset folders by file stem, shared by the depth and segmentation readers."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from densepac.errors import InputError

MAX_LISTED = 8


def listing(items: Sequence[str]) -> str:
    """The first few ``items`` joined for an error message, with a count of the rest."""
    shown = ", ".join(items[:MAX_LISTED])
    return shown + (f" and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else "")


def index_folder(folder: Path, extensions: Sequence[str], kind: str, prefer: bool = False) -> dict[str, Path]:
    """stem -> file for the files of ``folder`` with one of ``extensions`` (hidden files skipped).

    Several files with one stem are refused, or with ``prefer`` the extension listed first
    wins (e.g. a dataset holding both ``x.jpg`` and ``x.png``).
    """
    if not folder.is_dir():
        raise InputError(f"{folder}: missing {kind} folder; check the dataset root and its layout")
    rank = {ext: i for i, ext in enumerate(extensions)}
    files: dict[str, Path] = {}
    duplicates: list[str] = []
    with os.scandir(folder) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            suffix = os.path.splitext(entry.name)[1].lower()
            if suffix not in rank or entry.name.startswith(".") or not entry.is_file():
                continue
            stem = entry.name[: -len(suffix)]
            held = files.get(stem)
            if held is not None and not prefer:
                duplicates.append(stem)
            if held is None or rank[suffix] < rank[held.suffix.lower()] or not prefer:
                files[stem] = Path(entry.path)
    if duplicates:
        raise InputError(f"{folder}: several {kind} files share the stem(s) {listing(duplicates)}; keep one per stem")
    return files


def check_paired(
    root: Path, first: dict[str, Path], second: dict[str, Path], first_only: str, second_only: str
) -> None:
    """Refuse stems present in only one of two indexed folders, listing them."""
    only_first, only_second = sorted(set(first) - set(second)), sorted(set(second) - set(first))
    if only_first or only_second:
        parts = []
        if only_first:
            parts.append(f"{first_only}: {listing(only_first)}")
        if only_second:
            parts.append(f"{second_only}: {listing(only_second)}")
        raise InputError(f"{root}: unmatched stems ({'; '.join(parts)}); give every stem both files")
