"""Classical partial volume correction (needs regions from an MRI segmentation and the PSF).

Regional: :func:`gtm`, :func:`labbe` (-> :class:`GTMResult`). Voxel-wise: :func:`rbv`,
:func:`iterative_yang`, :func:`multi_target_correction`, :func:`mueller_gaertner`; deconvolution:
:func:`van_cittert`, :func:`richardson_lucy`; RBV/iY followed by VC or RL via their
``deconvolution="vc"|"rl"`` option. Blur the regions once with :func:`blur_regions` (or the tissue
maps with :func:`blur_tissue_maps`) and pass ``blurred_regions=`` (``blurred_tissues=``) to share
the blurs between methods. Definitions and conventions: docs/classical.md.
"""

from .deconvolution import richardson_lucy, van_cittert
from .psf import gaussian_blur
from .regional import CONDITION_NUMBER_WARNING, GTMResult, gtm, labbe
from .regions import BlurredRegions, RegionSet, blur_regions
from .voxelwise import (blur_tissue_maps, iterative_yang, mg_compartment_values, mueller_gaertner,
                        multi_target_correction, rbv)

__all__ = [
    "BlurredRegions", "CONDITION_NUMBER_WARNING", "GTMResult", "RegionSet", "blur_regions", "blur_tissue_maps",
    "gaussian_blur", "gtm", "iterative_yang", "labbe", "mg_compartment_values", "mueller_gaertner",
    "multi_target_correction", "rbv", "richardson_lucy", "van_cittert",
]
