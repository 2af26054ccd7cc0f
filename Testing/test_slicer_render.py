"""The module's side-by-side display, rendered: the views ``showResults`` sets up, drawn by
slicer-core's own slice logic (``vtkMRMLSliceLogic`` and its layer logics, what Slicer's slice views
show) in an offscreen OSMesa window, and read back as pixels.

The phantom (:func:`slicer_support.amyloid_phantom`) is corrected with RBV through the module's logic
and its own labels and PSF, so its cortex comes out brighter than the blurred input and its white
matter does not; the sharpen view is the library's sharpen baseline.
"""

import ctypes.util
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial import cKDTree

import slicer
from PETPartialVolumeCorrectionLib import slicer_support as support
from PETPartialVolumeCorrectionLib.baseline import sharpen
from slicer_test_doubles import MessagesDouble, OffscreenSliceViews, import_module_file, install_application

pytestmark = pytest.mark.skipif(ctypes.util.find_library("OSMesa") is None,
                                reason="needs libOSMesa (Debian libosmesa6; .ci/run installs it)")

INPUT, CORRECTED, SHARPEN = range(3)


@pytest.fixture(scope="module")
def display(tmp_path_factory):
    """The phantom, its RBV correction and its sharpened version as nodes of a scene set up as
    Slicer's, with the module's logic."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        module = import_module_file(monkeypatch)
        application = install_application(monkeypatch, MessagesDouble(), tmp_path_factory.mktemp("bin"))
        logic = module.PETPartialVolumeCorrectionLogic()
        scene = application.scene
        phantom = support.amyloid_phantom()
        geometry = phantom["geometry"]
        pet = logic.addVolumeNode(scene, phantom["pet"], geometry, "phantom")
        labels = logic.addVolumeNode(scene, phantom["labels"], geometry, "phantom labels", "vtkMRMLLabelMapVolumeNode")
        corrected, _ = logic.process(pet, labelNode=labels, method="rbv", fwhm_mm=phantom["fwhm_mm"],
                                     inProcess=True, showResult=False)
        sharpened = logic.addVolumeNode(scene, sharpen(phantom["pet"], geometry.spacing), geometry, "phantom_sharpen")
        yield SimpleNamespace(logic=logic, application=application, phantom=phantom, labels=labels,
                              nodes=(pet, corrected, sharpened))


def show_and_render(display, overlay=False, classical=False):
    """``showResults`` on the three volumes (``classical``: input, corrected and the label map), then
    the three views drawn; (views, pixels of each view)."""
    pet, corrected, sharpened = display.nodes
    if classical:
        display.logic.showResults(pet, corrected, None, display.labels)
    else:
        display.logic.showResults(pet, corrected, sharpened, overlay=overlay)
    views = OffscreenSliceViews(display.application.layoutManager(), display.logic.VIEW_NAMES, annotations=False)
    pixels = views.render()
    return views, [views.view_pixels(pixels, index).astype(int) for index in range(3)]


def heat_curve(display, samples=2048):
    """PET-Heat's colours (0-255 RGB) at ``samples`` evenly spaced fractions of the window."""
    transfer = display.application.scene.GetNodeByID(display.logic.PET_COLOR_NODE_ID).GetScalarsToColors()
    low, high = transfer.GetRange()
    return np.array([transfer.GetColor(value) for value in np.linspace(low, high, samples)]) * 255.0


def decode_heat(pixels, curve):
    """Per pixel: the window fraction (0-1) whose PET-Heat colour is nearest, and the distance to it."""
    distance, nearest = cKDTree(curve).query(pixels.reshape(-1, 3))
    shape = pixels.shape[:2]
    return (nearest / (len(curve) - 1)).reshape(shape), distance.reshape(shape)


def tissue_under_pixels(display, view_index, views):
    """The phantom's label under each pixel of a view (nearest voxel; -1 outside the volume), with
    each tissue eroded by one voxel so that no pixel is read from a blurred border."""
    labels = display.phantom["labels"]
    eroded = np.full(labels.shape, -1, dtype=int)
    for value in np.unique(labels):
        eroded[ndimage.binary_erosion(labels == value)] = value
    slice_node = display.application.layoutManager().sliceLogic(display.logic.VIEW_NAMES[view_index]).GetSliceNode()
    xy_to_ras = slicer.util.arrayFromVTKMatrix(slice_node.GetXYToRAS())
    ras_to_ijk = np.linalg.inv(display.logic.ijkToWorldMatrix(display.nodes[INPUT]))
    rows, columns = np.mgrid[0:views.view_height, 0:views.view_width]
    xy = np.stack([columns, views.view_height - 1 - rows, np.zeros_like(rows), np.ones_like(rows)], axis=-1)
    ijk = np.rint(xy @ (ras_to_ijk @ xy_to_ras).T).astype(int)[..., :3]
    inside = np.all((ijk >= 0) & (ijk < np.array(labels.shape[::-1])), axis=-1)
    tissue = np.full(rows.shape, -1)
    i, j, k = (ijk[..., axis][inside] for axis in range(3))
    tissue[inside] = eroded[k, j, i]
    return tissue


def test_the_three_views_show_the_same_slice_of_the_same_place(display):
    views, (input_view, corrected_view, sharpen_view) = show_and_render(display)
    layout = display.application.layoutManager()
    matrices = [slicer.util.arrayFromVTKMatrix(layout.sliceLogic(name).GetSliceNode().GetXYToRAS())
                for name in display.logic.VIEW_NAMES]
    np.testing.assert_allclose(matrices[1], matrices[0], atol=1e-6)
    np.testing.assert_allclose(matrices[2], matrices[0], atol=1e-6)
    head = [view.sum(axis=-1) > 60 for view in (input_view, corrected_view, sharpen_view)]
    assert head[0].mean() > 0.3  # the head fills the view
    for other in head[1:]:
        assert (head[0] & other).sum() / (head[0] | other).sum() > 0.9


def test_scrolling_one_view_moves_the_others_to_the_same_slice(display):
    views, before = show_and_render(display)
    layout = display.application.layoutManager()
    input_logic = layout.sliceLogic(display.logic.VIEW_NAMES[INPUT])
    offset = input_logic.GetSliceOffset() + 30.0
    input_logic.StartSliceOffsetInteraction()
    input_logic.SetSliceOffset(offset)
    input_logic.EndSliceOffsetInteraction()
    assert [layout.sliceLogic(name).GetSliceOffset() for name in display.logic.VIEW_NAMES] == pytest.approx([offset] * 3)
    after = [views.view_pixels(views.render(), index) for index in range(3)]
    for index in range(3):
        assert np.abs(after[index].astype(int) - before[index]).mean() > 5  # a new slice in every view


def test_corrected_view_is_brighter_than_the_input_in_the_cortex_and_not_in_the_white_matter(display):
    views, pixels = show_and_render(display)
    curve = heat_curve(display)
    tissue = tissue_under_pixels(display, INPUT, views)
    grey, white = (tissue == support.PHANTOM_LABELS[name] for name in ("grey matter", "white matter"))
    assert grey.sum() > 500 and white.sum() > 2000
    brightness = [decode_heat(view, curve)[0] for view in pixels]
    cortex_gain = np.mean(brightness[CORRECTED][grey] - brightness[INPUT][grey])  # in window fractions
    white_gain = np.mean(brightness[CORRECTED][white] - brightness[INPUT][white])
    assert cortex_gain > 0.02, cortex_gain  # 0.033 on 2026-12-02
    assert white_gain < 0.01, white_gain  # 0.003


def test_pixels_are_coloured_by_pet_heat_at_the_shared_window(display):
    views, pixels = show_and_render(display)
    curve = heat_curve(display)
    tissue = tissue_under_pixels(display, INPUT, views)
    pet, _, _ = display.nodes
    low = pet.GetDisplayNode().GetWindowLevelMin()
    high = pet.GetDisplayNode().GetWindowLevelMax()
    voxels = display.phantom["pet"]
    for view in pixels:
        fraction, distance = decode_heat(view, curve)
        head = view.sum(axis=-1) > 60
        assert np.percentile(distance[head], 99) < 4.0  # on PET-Heat's curve
        assert (view.max(axis=-1) - view.min(axis=-1))[head].mean() > 60  # coloured, not grey
    # the input view's white matter has the colour of its voxels' value at the shared window
    white = support.PHANTOM_LABELS["white matter"]
    expected = (np.median(voxels[display.phantom["labels"] == white]) - low) / (high - low)
    assert 0.2 < expected < 0.95
    assert np.median(decode_heat(pixels[INPUT], curve)[0][tissue == white]) == pytest.approx(expected, abs=0.03)


def test_overlay_shows_the_input_and_the_output_blended(display):
    _, plain = show_and_render(display, overlay=False)
    _, overlaid = show_and_render(display, overlay=True)
    np.testing.assert_array_equal(overlaid[INPUT], plain[INPUT])
    for output in (CORRECTED, SHARPEN):
        blended = (1 - display.logic.OVERLAY_OPACITY) * plain[INPUT] + display.logic.OVERLAY_OPACITY * plain[output]
        assert np.abs(overlaid[output] - blended).max() <= 2  # both layers, at the overlay opacity
        differs = np.abs(plain[output] - plain[INPUT]).sum(axis=-1) > 30
        assert differs.sum() > 200
        assert np.abs(overlaid[output] - plain[output]).sum(axis=-1)[differs].mean() > 10
        assert np.abs(overlaid[output] - plain[INPUT]).sum(axis=-1)[differs].mean() > 10


def test_after_a_classical_method_the_third_view_shows_the_regions_over_the_input(display):
    views, (input_view, _, third_view) = show_and_render(display, classical=True)
    tissue = tissue_under_pixels(display, INPUT, views)
    colours = display.labels.GetDisplayNode().GetColorNode()
    for name in ("grey matter", "white matter"):
        region = tissue == support.PHANTOM_LABELS[name]
        rgba = [0.0] * 4
        colours.GetColor(support.PHANTOM_LABELS[name], rgba)
        assert np.abs(np.median(third_view[region], axis=0) - np.array(rgba[:3]) * 255).max() <= 2, name
        assert np.abs(third_view[region] - input_view[region]).sum(axis=-1).mean() > 30
