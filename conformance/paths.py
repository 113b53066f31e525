"""Where the kit's data lives: the repository checkout, or the installed wheel."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_DATA = _PACKAGE / "_data"  # filled by the wheel build (pyproject: force-include)


def _locate(name: str) -> Path:
    for candidate in (_DATA / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"kit data directory {name!r} is missing from {_PACKAGE}")


def fixtures_dir() -> Path:
    return _locate("fixtures")


def reference_ext_dir() -> Path:
    return _locate("reference_ext")


def suite_dir() -> Path:
    return _PACKAGE / "suite"
