"""PETPartialVolumeCorrectionLib: partial volume correction (PVC) of brain amyloid PET.

A pure Python library (no Slicer, no Qt; Keras is imported only where a model is built or loaded).

Conventions used everywhere in the library
- Arrays are numpy arrays indexed ``[k, j, i]`` (slice, row, column), i.e. ``[z, y, x]``, as
  SimpleITK's ``GetArrayFromImage`` and Slicer's ``arrayFromVolume`` return them.
- Per-axis physical quantities (voxel spacing, PSF FWHM, image size) are given in ``(x, y, z)``
  order, i.e. along the image index axes ``(i, j, k)``, as ITK, NIfTI headers and PETPVC give them.
- World coordinates are ITK's LPS millimetres (:class:`~.geometry.Geometry`); the Slicer face
  converts to RAS.
- Activity is kept in the units stored in the file (Bq/mL, SUV, ...).
"""

__version__ = "0.1.0"
