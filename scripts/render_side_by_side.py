"""The README's screenshot (Resources/Screenshots/SideBySide.png): the Slicer module's result views
rendered for real, from the built-in example subject.

The example PET (simulated amyloid-positive subject, seed of ``pet-pvc example``, on its scanner's
grid) is loaded into a Slicer scene (slicer-core's MRML) and corrected by the module's logic with the
shipped model in a background ``pet-pvc`` process, as *Apply* does with the default settings; the logic's own
``showResults`` sets up the three linked views (input | PVC | sharpen, PET-Heat, one window/level).
Then one view is scrolled and zoomed as a user would, the linked views follow, and the views are
drawn by slicer-core's slice logic offscreen (OSMesa) with the slice views' bars and layer names
(``Testing/slicer_test_doubles.py``: the parts of Slicer's GUI that slicer-core lacks).

Needs the test extra (slicer-core) and Debian's libosmesa6; about a minute on a 2-core CPU::

    python scripts/render_side_by_side.py -o Resources/Screenshots/SideBySide.png
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY / "Testing"))

from slicer_test_doubles import (MessagesDouble, OffscreenSliceViews, import_module_file,  # noqa: E402
                                 install_application)

from PETPartialVolumeCorrectionLib.commands import EXAMPLE_SEED  # noqa: E402
from PETPartialVolumeCorrectionLib.simulation import SimulationSettings, simulate_subject  # noqa: E402


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--output", type=Path, default=REPOSITORY / "Resources" / "Screenshots" / "SideBySide.png",
                        help="PNG file to write (default: the README's screenshot)")
    parser.add_argument("--slice-mm", type=float, default=28.0,
                        help="axial slice shown: world S coordinate in mm (default 28: above the lateral "
                             "ventricles, through frontal, parietal and precuneus cortex)")
    parser.add_argument("--field-of-view-mm", type=float, default=175.0,
                        help="width of each view in mm (default 175: the head fills the view)")
    parser.add_argument("--view-size", type=int, nargs=2, default=(340, 410), metavar=("WIDTH", "HEIGHT"),
                        help="pixels of each view (default 340 410)")
    return parser.parse_args(argv)


def scroll_and_zoom(slice_logic, offset_mm: float, width_mm: float):
    """Move a slice view to ``offset_mm`` and zoom it to ``width_mm`` across, as interactions (which
    the views linked to it follow)."""
    slice_logic.StartSliceOffsetInteraction()
    slice_logic.SetSliceOffset(offset_mm)
    slice_logic.EndSliceOffsetInteraction()
    slice_node = slice_logic.GetSliceNode()
    width, height, _ = slice_node.GetDimensions()
    slice_logic.StartSliceNodeInteraction(slice_node.FieldOfViewFlag)
    slice_node.SetFieldOfView(width_mm, width_mm * height / width, slice_node.GetFieldOfView()[2])
    slice_logic.EndSliceNodeInteraction()


def main(argv=None) -> int:
    args = parse_arguments(argv)
    print(f"simulating the example subject (seed {EXAMPLE_SEED}, amyloid positive) ...", flush=True)
    subject = simulate_subject(EXAMPLE_SEED, replace(SimulationSettings(), positive_fraction=1.0))
    with pytest.MonkeyPatch.context() as monkeypatch, tempfile.TemporaryDirectory() as folder:
        module = import_module_file(monkeypatch)
        application = install_application(monkeypatch, MessagesDouble(), Path(folder), view_size=args.view_size)
        logic = module.PETPartialVolumeCorrectionLogic()
        pet = logic.addVolumeNode(application.scene, subject.pet_scanner, subject.scanner_geometry, "PET")
        print("correcting with the shipped model (as Apply with the default settings) ...", flush=True)
        logic.process(pet, device="cpu")
        layout = application.layoutManager()
        scroll_and_zoom(layout.sliceLogic(logic.VIEW_NAMES[0]), args.slice_mm, args.field_of_view_mm)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        OffscreenSliceViews(layout, logic.VIEW_NAMES).save_png(args.output)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
