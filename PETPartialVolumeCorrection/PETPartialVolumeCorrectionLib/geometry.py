"""The geometry record that travels with every array: voxel spacing, origin and direction.

World coordinates are ITK's LPS millimetres. A voxel with array index ``[k, j, i]`` lies at
``origin + direction @ (spacing * (i, j, k))``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import PVCInputError

#: Smallest and largest voxel size accepted, in mm (PET voxels are ~0.5-6 mm).
MIN_SPACING_MM = 0.05
MAX_SPACING_MM = 20.0


@dataclass(frozen=True)
class Geometry:
    """Where an image's voxels lie in the world.

    Attributes:
        spacing: voxel size in mm, ``(x, y, z)`` order (along index axes i, j, k).
        origin: world position (LPS, mm) of the centre of voxel ``[0, 0, 0]``.
        direction: 3x3 matrix whose columns are the unit directions (LPS) of the i, j, k axes.
    """

    spacing: tuple[float, float, float]
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))

    def __post_init__(self):
        object.__setattr__(self, "spacing", tuple(float(s) for s in self.spacing))
        object.__setattr__(self, "origin", tuple(float(o) for o in self.origin))
        direction = np.asarray(self.direction, dtype=float).reshape(3, 3)
        direction.setflags(write=False)
        object.__setattr__(self, "direction", direction)

    def __eq__(self, other):
        return isinstance(other, Geometry) and self.matches(other, tolerance_mm=0.0)

    @property
    def spacing_zyx(self) -> tuple[float, float, float]:
        """Voxel size in mm in array axis order ``[z, y, x]``."""
        return tuple(reversed(self.spacing))

    def index_to_world(self) -> np.ndarray:
        """4x4 matrix mapping homogeneous ``(i, j, k, 1)`` to world LPS mm."""
        matrix = np.eye(4)
        matrix[:3, :3] = self.direction @ np.diag(self.spacing)
        matrix[:3, 3] = self.origin
        return matrix

    def world_center(self, shape_zyx) -> np.ndarray:
        """World position (LPS, mm) of the centre of an array of the given ``[z, y, x]`` shape."""
        centre_ijk = (np.asarray(shape_zyx[::-1], dtype=float) - 1.0) / 2.0
        return (self.index_to_world() @ np.append(centre_ijk, 1.0))[:3]

    def extent_mm(self, shape_zyx) -> np.ndarray:
        """Field of view in mm along the index axes ``(x, y, z)``: voxel count times spacing."""
        return np.asarray(shape_zyx[::-1], dtype=float) * np.asarray(self.spacing)

    def matches(self, other: "Geometry", tolerance_mm: float = 1e-3) -> bool:
        """True when both describe the same grid (spacing, origin, direction) within tolerance."""
        return (
            np.allclose(self.spacing, other.spacing, atol=tolerance_mm)
            and np.allclose(self.origin, other.origin, atol=tolerance_mm)
            and np.allclose(self.direction, other.direction, atol=1e-6 + tolerance_mm * 1e-3)
        )

    def to_dict(self) -> dict:
        return {"spacing": list(self.spacing), "origin": list(self.origin),
                "direction": self.direction.tolist()}

    @classmethod
    def from_dict(cls, record: dict) -> "Geometry":
        return cls(record["spacing"], record["origin"], np.asarray(record["direction"]))


def _mm(values) -> str:
    return "(" + ", ".join(f"{float(v):.4g}" for v in values) + ") mm"


def check_spacing(spacing) -> None:
    """Raise :class:`PVCInputError` for zero, negative, non-finite or absurd voxel sizes (mm)."""
    values = np.asarray(spacing, dtype=float)
    if not np.all(np.isfinite(values)) or np.any(values < MIN_SPACING_MM) or np.any(values > MAX_SPACING_MM):
        raise PVCInputError(
            f"voxel spacing {_mm(values)} is not plausible for PET "
            f"(each axis must lie in [{MIN_SPACING_MM}, {MAX_SPACING_MM}] mm); check the image header"
        )


def check_geometry(geometry: Geometry, name: str = "input") -> None:
    """Raise :class:`PVCInputError` for absurd spacing (:func:`check_spacing`), a non-finite origin or
    non-finite/degenerate direction cosines."""
    check_spacing(geometry.spacing)
    if not np.all(np.isfinite(geometry.origin)):
        raise PVCInputError(f"{name}: image origin {geometry.origin} is not finite; check the image header")
    direction = geometry.direction
    if not np.all(np.isfinite(direction)) or abs(np.linalg.det(direction)) < 1e-3:
        raise PVCInputError(f"{name}: image direction cosines {direction.round(4).tolist()} are not finite or "
                            "not independent; check the image header")


def describe_grid_difference(shape_a, geometry_a: Geometry, shape_b, geometry_b: Geometry,
                             tolerance_mm: float = 1e-3) -> str:
    """What differs between two grids (shape ``[z, y, x]``, spacing, origin, direction), in words;
    empty when they are the same grid."""
    differences = []
    if tuple(shape_a) != tuple(shape_b):
        differences.append(f"shapes (z, y, x) {tuple(shape_a)} vs {tuple(shape_b)}")
    if not np.allclose(geometry_a.spacing, geometry_b.spacing, atol=tolerance_mm):
        differences.append(f"spacings {_mm(geometry_a.spacing)} vs {_mm(geometry_b.spacing)}")
    if not np.allclose(geometry_a.origin, geometry_b.origin, atol=tolerance_mm):
        differences.append(f"origins {_mm(geometry_a.origin)} vs {_mm(geometry_b.origin)}")
    if not np.allclose(geometry_a.direction, geometry_b.direction, atol=1e-6 + tolerance_mm * 1e-3):
        differences.append(f"directions {geometry_a.direction.round(4).tolist()} vs "
                           f"{geometry_b.direction.round(4).tolist()}")
    return "; ".join(differences)
