"""The preset files: ``configs/presets/*.yaml`` from a checkout or the copy packaged in the wheel.

The I/O edge of ``mfctl.jobspec.presets``: it finds and reads the files once, the pure module
validates them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import lru_cache
from pathlib import Path

from mfctl.jobspec.presets import Preset, parse_preset


def configs_dir() -> Path:
    """``configs/`` of the source tree, or the copy packaged into the wheel (``mfctl/configs``)."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "configs", here / "configs"):
        if (candidate / "presets").is_dir():
            return candidate
    raise FileNotFoundError("mfctl's configs/presets folder is missing from this installation")


@lru_cache(maxsize=1)
def load_presets() -> dict[str, Preset]:
    presets: dict[str, Preset] = {}
    for path in sorted((configs_dir() / "presets").glob("*.yaml")):
        preset = parse_preset(path.read_text(encoding="utf-8"), f"configs/presets/{path.name}")
        if preset.name != path.stem:
            raise ValueError(f"configs/presets/{path.name}: name {preset.name!r} must match the file name")
        presets[preset.name] = preset
    return presets


class _Presets(Mapping[str, Preset]):
    """``PRESETS[name]``: read on first use, not at import."""

    def __getitem__(self, name: str) -> Preset:
        return load_presets()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(load_presets())

    def __len__(self) -> int:
        return len(load_presets())


PRESETS: Mapping[str, Preset] = _Presets()


def preset_names() -> list[str]:
    return sorted(load_presets())
