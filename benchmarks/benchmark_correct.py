"""Speed and peak memory of the deep-learning correction on a 256^3, 1 mm PET volume.

Times :func:`pipeline.correct_volume` end to end (model folder loading, standard grid, intensity
scaling, patch inference, sharpen baseline) with the production architecture and random weights
(saved to a temporary folder, never into the repository). Prints one line per figure.

    python benchmarks/benchmark_correct.py                       # CPU, TensorFlow, production model
    python benchmarks/benchmark_correct.py --mode study          # the study's eight 128^3 tiles
    python benchmarks/benchmark_correct.py --inference-only --config '{"base_filters": 16}'
    KERAS_BACKEND=torch python benchmarks/benchmark_correct.py --device gpu --batch-size 8 --repeat 3

``--inference-only`` times the patch inference alone (for comparing architectures). The first run
of a process includes the backend's graph tracing; ``--repeat`` shows warm runs too. The CPU may
be shared: the load average is printed before and after, and each run's process CPU time divided
by the core count bounds its wall time on idle cores from below.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time

import numpy as np

GOAL_CPU_S, GOAL_GPU_S, GOAL_PEAK_GB = 15.0, 1.0, 4.0


def pet_phantom(size: int = 256, seed: int = 0) -> np.ndarray:
    """A head-like PET volume ``[z, y, x]`` in Bq/mL: scalp, white matter, a cortical ribbon, noise."""
    rng = np.random.default_rng(seed)
    centre = (size - 1) / 2.0
    z, y, x = np.ogrid[:size, :size, :size]
    scale = size / 256.0
    rho = np.sqrt(((x - centre) / (72 * scale)) ** 2 + ((y - centre) / (88 * scale)) ** 2
                  + ((z - centre) / (64 * scale)) ** 2).astype(np.float32)
    activity = np.where(rho <= 1.08, 2000.0, 0.0).astype(np.float32)
    activity[rho <= 1.0] = 6000.0
    activity[(rho > 0.9) & (rho <= 1.0)] = 11000.0
    activity *= rng.normal(1.0, 0.1, activity.shape).astype(np.float32)
    return np.clip(activity, 0.0, None)


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far, GB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def process_cpu_s() -> float:
    """CPU seconds (user + system, all threads) this process has used so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def gpu_peak_gb():
    """Peak GPU memory of the backend, GB, or None when not on a GPU / not reported."""
    from PETPartialVolumeCorrectionLib.model import import_keras

    backend = import_keras().config.backend()
    if backend == "torch":
        import torch
        return torch.cuda.max_memory_allocated() / 1e9 if torch.cuda.is_available() else None
    if backend == "tensorflow":
        import tensorflow as tf
        if tf.config.list_physical_devices("GPU"):
            return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 1e9
    return None


def random_model_folder(config, folder) -> None:
    """Save the architecture with random weights (its zero-initialised head randomised too)."""
    from PETPartialVolumeCorrectionLib.model import build_model, save_model

    keras_model = build_model(config)
    head = keras_model.get_layer("head")
    rng = np.random.default_rng(0)
    head.set_weights([0.01 * rng.standard_normal(w.shape).astype(np.float32) for w in head.get_weights()])
    save_model(keras_model, folder, {"name": "benchmark-random-weights", "architecture": config.to_dict()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="volume side in voxels (1 mm)")
    parser.add_argument("--mode", choices=("gaussian", "study"), default="gaussian")
    parser.add_argument("--overlap", type=int, default=None, help="window overlap, voxels (gaussian)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto")
    parser.add_argument("--config", default="{}",
                        help="JSON of ModelConfig fields overriding the production defaults")
    parser.add_argument("--repeat", type=int, default=1, help="runs in this process (the first traces)")
    parser.add_argument("--inference-only", action="store_true",
                        help="time sliding_window_inference alone on the normalised volume")
    args = parser.parse_args()

    from PETPartialVolumeCorrectionLib.geometry import Geometry
    from PETPartialVolumeCorrectionLib.model import ModelConfig, import_keras, load_model

    keras = import_keras()
    config = ModelConfig.from_dict({**ModelConfig().to_dict(), **json.loads(args.config)})
    volume = pet_phantom(args.size)
    geometry = Geometry((1.0, 1.0, 1.0))
    print(f"load average before: {os.getloadavg()[0]:.2f} (1 min) on {os.cpu_count()} CPUs", flush=True)

    with tempfile.TemporaryDirectory(prefix="pvc-benchmark-") as temporary:
        folder = os.path.join(temporary, "model")
        random_model_folder(config, folder)
        weights_mb = os.path.getsize(os.path.join(folder, "model.weights.h5")) / 1e6
        print(f"model: {json.dumps(config.to_dict())}, weights {weights_mb:.1f} MB", flush=True)
        loaded = load_model(folder, device=args.device) if args.inference_only else None
        for run in range(1, args.repeat + 1):
            cpu_start = process_cpu_s()
            if loaded is not None:
                total = time_inference_only(volume, loaded, args)
                label, device = "sliding_window_inference", loaded.device_name
            else:
                from PETPartialVolumeCorrectionLib.pipeline import correct_volume

                start = time.perf_counter()
                result = correct_volume(volume, geometry, model=folder, mode=args.mode, overlap=args.overlap,
                                        batch_size=args.batch_size, device=args.device)
                total = time.perf_counter() - start
                label, device = "correct_volume", result.settings["device"]
                for step, seconds in result.timings.items():
                    if step != "total_s":
                        print(f"  {step}: {seconds:.2f} s", flush=True)
            goal = GOAL_GPU_S if device.startswith("gpu") else GOAL_CPU_S
            print(f"{label} {args.size}^3 {args.mode} run {run} on {device} "
                  f"({keras.config.backend()}): {total:.2f} s (goal <= {goal:g} s)", flush=True)
            cpu_seconds = process_cpu_s() - cpu_start
            print(f"  CPU time of run {run}: {cpu_seconds:.2f} s (on {os.cpu_count()} idle cores the wall time "
                  f"is at least {cpu_seconds / os.cpu_count():.2f} s)", flush=True)
    print(f"peak RSS: {peak_rss_gb():.2f} GB (goal <= {GOAL_PEAK_GB:g} GB)")
    gpu_peak = gpu_peak_gb()
    if gpu_peak is not None:
        print(f"peak GPU memory: {gpu_peak:.2f} GB")
    print(f"load average after: {os.getloadavg()[0]:.2f} (1 min)")


def time_inference_only(volume, pvc_model, args) -> float:
    """Seconds of the patch inference of the min-max normalised ``volume``."""
    from PETPartialVolumeCorrectionLib.inference import sliding_window_inference

    normalised = (volume - volume.min()) / (volume.max() - volume.min())
    start = time.perf_counter()
    sliding_window_inference(normalised, pvc_model.predict_batch, mode=args.mode, overlap=args.overlap,
                             batch_size=args.batch_size)
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
