"""What the Slicer module shows of a quantification, as plain Python: the table's columns, the bar
chart's series and the panel's summary (the module turns them into vtkMRMLTableNode and
vtkMRMLPlotSeriesNode / vtkMRMLPlotChartNode). Nothing here imports Slicer."""

from __future__ import annotations

from .quantify import INPUT, QuantificationResult

REGION_COLUMN = "Region"
VOXELS_COLUMN = "Voxels"


def suvr_column(image: str) -> str:
    return f"SUVR {image}"


def difference_column(image: str) -> str:
    return f"SUVR {image} - {INPUT}"


def table_columns(result: QuantificationResult) -> list:
    """``(name, values)`` per column, in order: Region (str), Voxels (int), SUVR of each image
    (input first), and each correction's SUVR minus the input's; one value per region."""
    columns = [(REGION_COLUMN, [row.region for row in result.rows]),
               (VOXELS_COLUMN, [row.voxels for row in result.rows])]
    columns += [(suvr_column(image), [row.suvr[image] for row in result.rows]) for image in result.images]
    columns += [(difference_column(image), list(result.suvr_difference(image).values()))
                for image in result.images if image != INPUT]
    return columns


def chart_series(result: QuantificationResult) -> dict:
    """Bar series of the regional SUVR chart: series name (the image) -> its table column."""
    return {image: suvr_column(image) for image in result.images}


def summary_text(result: QuantificationResult) -> str:
    """Global cortical SUVR and Centiloid per image, the normalisation's quality, and the notes."""
    centiloid = result.centiloid
    parts = []
    for image in result.images:
        text = f"{image}: global cortical SUVR {result.global_suvr[image]:.3f}"
        if centiloid[image] is not None:
            text += f", Centiloid {centiloid[image]:.1f}"
        parts.append(text)
    parts.append(f"Normalisation: correlation with the template {result.normalisation.correlation:.3f} "
                 f"(reference: {result.reference.replace('_', ' ')})")
    return "\n".join(parts + result.notes)
