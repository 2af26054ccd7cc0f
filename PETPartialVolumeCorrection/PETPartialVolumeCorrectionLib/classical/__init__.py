"""Classical partial volume correction (needs regions from an MRI segmentation and the PSF)."""
