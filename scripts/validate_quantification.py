"""Validation of the PET-only quantification on simulated subjects with known truth.

For each held-out test subject (the seeds ``pet-pvc evaluate`` tests on; random affine and elastic
deformation; asymmetry and atrophy off, so the simulator's map from the subject to MNI space is
exactly its affine + elastic one) the script

1. quantifies the simulated PET by ``quantify_volume`` (PET-only normalisation), together with the
   network's correction (the shipped model) and the MG target (the subject's own MG correction);
2. pushes the same MNI regions (GAAIN VOIs, Desikan-Killiany groups) into the subject through the
   simulator's known map (the oracle normalisation) and reads the same images there, and the true
   activity;
3. prints per subject and as medians: the error of the PET-only normalisation against the oracle
   (global cortical SUVR %, Centiloid, regional SUVR %), registration refusals, and the SUVR of input,
   network, MG and truth.

    python scripts/validate_quantification.py [--subjects 20] [--tracer florbetapir]
        [--templates CACHE.npz] [--no-network] [--grid-spacing 2]

Ctrl-C (SIGINT) stops it early and prints the summary of the subjects done.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np
from scipy import ndimage

from PETPartialVolumeCorrectionLib.errors import PVCInputError
from PETPartialVolumeCorrectionLib.quantification import TRACER_EQUATIONS, quantify_volume
from PETPartialVolumeCorrectionLib.quantification.regions import GLOBAL_CORTEX, load_regions
from PETPartialVolumeCorrectionLib.quantification.template import MNI_2MM_GEOMETRY
from PETPartialVolumeCorrectionLib.simulation import SimulationSettings, load_templates, simulate_subject, split_seeds
from PETPartialVolumeCorrectionLib.simulation.anatomy import affine_elastic_coordinates
from PETPartialVolumeCorrectionLib.simulation.subject import random_stream
from PETPartialVolumeCorrectionLib.simulation.templates import PAD_BELOW_MM

#: MNI (RAS, mm) of index (0, 0, 0) of nilearn's unpadded 1 mm ICBM 2009a grid (see
#: scripts/build_amyloid_template.py).
ICBM_1MM_ORIGIN_RAS = np.array([-98.0, -134.0, -72.0])


def oracle_regions(subject, settings, anatomy) -> dict:
    """The MNI regions pushed into the subject's grid through the simulator's known map: name -> weights
    (0-1, the masks interpolated linearly)."""
    coordinates = affine_elastic_coordinates(anatomy, subject.record["anatomy"], settings.grid_size,
                                             settings.grid_spacing_mm, random_stream(subject.seed, "elastic"))
    # template index (z, y, x), 1 mm, padded below -> MNI RAS -> index on the MNI 2 mm grid
    ras = [coordinates[2] + ICBM_1MM_ORIGIN_RAS[0], coordinates[1] + ICBM_1MM_ORIGIN_RAS[1],
           coordinates[0] - PAD_BELOW_MM + ICBM_1MM_ORIGIN_RAS[2]]
    del coordinates
    lps = np.stack([-ras[0], -ras[1], ras[2]])
    inverse = np.linalg.inv(MNI_2MM_GEOMETRY.index_to_world())
    ijk = np.tensordot(inverse[:3, :3], lps, axes=1) + inverse[:3, 3][:, None, None, None]
    points = np.stack([ijk[2], ijk[1], ijk[0]])
    return {name: ndimage.map_coordinates(mask.astype(np.float32), points, order=1, mode="constant")
            for name, mask in load_regions().report_regions().items()}


def oracle_suvr(image: np.ndarray, weights: dict, reference: str = "whole_cerebellum") -> dict:
    """SUVR per region: means of ``image`` weighted by the pushed regions (linear interpolation of the
    masks: voxels on a region's edge count by the fraction of the region there)."""
    means = {name: float(np.sum(image * w, dtype=np.float64) / np.sum(w, dtype=np.float64))
             for name, w in weights.items()}
    return {name: mean / means[reference] for name, mean in means.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0, help="base seed of the splits (as pet-pvc evaluate)")
    parser.add_argument("--tracer", default="florbetapir")
    parser.add_argument("--templates", help="simulator template cache .npz")
    parser.add_argument("--no-network", action="store_true", help="skip the network's correction")
    parser.add_argument("--grid-spacing", type=float, default=1.0,
                        help="voxel size of the simulated subjects' grid, mm (1: 1 mm 256^3; 2: 2 mm 128^3, faster)")
    args = parser.parse_args()

    settings = replace(SimulationSettings(), atrophy_probability=0.0, asymmetry_probability=0.0,
                       grid_size=int(round(256 / args.grid_spacing)), grid_spacing_mm=args.grid_spacing,
                       templates_path=args.templates)
    anatomy = load_templates(args.templates)
    model = None
    if not args.no_network:
        from PETPartialVolumeCorrectionLib.model import find_model_dir, load_model
        model = load_model(find_model_dir(None), device="cpu")
    equation = TRACER_EQUATIONS[args.tracer]
    seeds = split_seeds(0, 0, args.subjects, args.seed).test
    images_order = ["input", "network", "mg"] if model else ["input", "mg"]
    global_errors, cl_errors, regional_errors, refused, times, correlations = [], [], [], [], [], []
    suvr_table = {name: [] for name in images_order + ["truth"]}
    print(f"{'seed':>10} {'status':>8} {'corr':>5} {'mix':>4} {'SUVR est':>8} {'oracle':>7} {'err %':>6} "
          f"{'CL err':>6} {'reg med %':>9} {'net':>6} {'MG':>6} {'truth':>6} {'s':>5}", flush=True)
    try:
        for seed in seeds:
            subject = simulate_subject(seed, settings)
            corrected = {"mg": (subject.mg_target, subject.geometry)}
            if model is not None:
                from PETPartialVolumeCorrectionLib.pipeline import correct_volume
                result = correct_volume(subject.pet_1mm, subject.geometry, model=model)
                corrected = {"network": (result.corrected, result.geometry), **corrected}
            start = time.perf_counter()
            try:
                quantified = quantify_volume(subject.pet_1mm, subject.geometry, corrected, tracer=args.tracer)
            except PVCInputError as error:
                refused.append((seed, str(error)))
                print(f"{seed:>10} refused: {error}", flush=True)
                continue
            times.append(time.perf_counter() - start)
            correlations.append(quantified.normalisation.correlation)
            masks = oracle_regions(subject, settings, anatomy)
            oracle = oracle_suvr(subject.pet_1mm, masks)
            estimate = quantified.global_suvr["input"]
            global_error = 100 * (estimate - oracle[GLOBAL_CORTEX]) / oracle[GLOBAL_CORTEX]
            cl_error = equation(estimate) - equation(oracle[GLOBAL_CORTEX])
            groups = [row.region for row in quantified.rows if row.kind == "cortical group"]
            regional = [abs(100 * (quantified.row(g).suvr["input"] - oracle[g]) / oracle[g]) for g in groups]
            global_errors.append(global_error)
            cl_errors.append(cl_error)
            regional_errors.extend(regional)
            truth = oracle_suvr(subject.truth, masks)[GLOBAL_CORTEX]
            for name in images_order:
                suvr_table[name].append(quantified.global_suvr[name])
            suvr_table["truth"].append(truth)
            print(f"{seed:>10} {subject.status:>8} {quantified.normalisation.correlation:5.3f} "
                  f"{quantified.normalisation.positive_fraction:4.2f} {estimate:8.3f} {oracle[GLOBAL_CORTEX]:7.3f} "
                  f"{global_error:+6.2f} {cl_error:+6.1f} {np.median(regional):9.2f} "
                  f"{quantified.global_suvr.get('network', float('nan')):6.3f} {quantified.global_suvr['mg']:6.3f} "
                  f"{truth:6.3f} {times[-1]:5.1f}", flush=True)
    except KeyboardInterrupt:  # stopped early (SIGINT): summarise the subjects done
        print("\nstopped early")
    done = len(global_errors)
    print(f"\nsubjects asked: {len(seeds)}, quantified: {done}, refused: {len(refused)}")
    if not done:
        return
    print(f"global cortical SUVR error vs oracle: median |error| {np.median(np.abs(global_errors)):.2f} %, "
          f"median {np.median(global_errors):+.2f} %, max |error| {np.max(np.abs(global_errors)):.2f} %")
    print(f"Centiloid error vs oracle ({args.tracer}): median |error| {np.median(np.abs(cl_errors)):.2f} CL, "
          f"max {np.max(np.abs(cl_errors)):.2f} CL")
    print(f"regional SUVR error vs oracle (9 cortical groups x {done} subjects): median |error| "
          f"{np.median(regional_errors):.2f} %, 90th percentile {np.percentile(regional_errors, 90):.2f} %")
    truth = np.array(suvr_table["truth"])
    for name in images_order:
        values = np.array(suvr_table[name])
        print(f"global cortical SUVR, {name:>7} (PET-only normalisation) vs truth (true activity, oracle regions): "
              f"median error {np.median(100 * (values - truth) / truth):+.2f} %, "
              f"median |error| {np.median(np.abs(100 * (values - truth) / truth)):.2f} %")
    print(f"registration quality (correlation with the fitted template): min {np.min(correlations):.3f}, "
          f"median {np.median(correlations):.3f}, max {np.max(correlations):.3f}; warnings "
          f"{sum(c < 0.85 for c in correlations)}")
    print(f"quantify_volume time: median {np.median(times):.1f} s per subject")


if __name__ == "__main__":
    main()
