"""The founding study's intensity normalisation and its exact inverse.

Forward (study order): min-max scale to [0, 1], then crop at the 99th percentile (values above it
are set to it). The parameters are kept so results map back to physical units (Bq/mL, SUV).

What cropping removes is kept too: the corrected volume in physical units is the network output
mapped back, plus the excess that cropping took from the brightest 1 % of voxels. Training targets
are normalised with the same parameters (:meth:`IntensityScaling.normalise_target`), so the network
learns the correction of the cropped image and ``restore(normalise_target(t)) == t``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .errors import PVCInputError

CROP_PERCENTILE = 99.0


@dataclass(frozen=True)
class IntensityScaling:
    """Min-max scaling parameters of one volume.

    Attributes:
        minimum, maximum: the volume's extreme values, in its physical units.
        crop_level: the 99th percentile of the min-max scaled volume (dimensionless, in [0, 1]).
    """

    minimum: float
    maximum: float
    crop_level: float

    @classmethod
    def fit(cls, volume: np.ndarray, crop_percentile: float = CROP_PERCENTILE) -> "IntensityScaling":
        """Parameters for ``volume`` (any shape, finite values)."""
        minimum, maximum = float(volume.min()), float(volume.max())
        if not maximum > minimum:
            raise PVCInputError(f"image is constant ({minimum:g}); cannot scale intensities")
        crop_value = float(np.percentile(volume, crop_percentile))
        crop_level = (crop_value - minimum) / (maximum - minimum)
        if crop_level <= 0.0:
            raise PVCInputError(f"the {crop_percentile:g}th percentile equals the minimum: the image is "
                                "almost empty (more than 99 % of voxels at the lowest value)")
        return cls(minimum, maximum, crop_level)

    def _scale(self, volume: np.ndarray) -> np.ndarray:
        return ((volume.astype(np.float64) - self.minimum) / (self.maximum - self.minimum)).astype(np.float32)

    def crop_excess(self, volume: np.ndarray) -> np.ndarray:
        """What cropping removes from ``volume`` in scaled units (0 below the crop level)."""
        return np.maximum(self._scale(volume) - np.float32(self.crop_level), np.float32(0.0))

    def normalise(self, volume: np.ndarray) -> np.ndarray:
        """Network input: min-max scaled to [0, 1] and cropped at ``crop_level`` (float32)."""
        return np.minimum(self._scale(volume), np.float32(self.crop_level))

    def normalise_target(self, target: np.ndarray, volume: np.ndarray) -> np.ndarray:
        """Training target for ``volume``'s corrected version ``target``: scaled with the input's
        parameters, minus the input's crop excess."""
        return self._scale(target) - self.crop_excess(volume)

    def restore(self, normalised: np.ndarray, volume: np.ndarray) -> np.ndarray:
        """Map a network output for ``volume`` back to physical units (float32)."""
        scaled = normalised.astype(np.float64) + self.crop_excess(volume)
        return (scaled * (self.maximum - self.minimum) + self.minimum).astype(np.float32)

    def to_dict(self) -> dict:
        return asdict(self)
