"""Certified accuracy of the digits demo under sound noise vs float noise (issue 14).

Run: ``.venv/bin/python benchmarks/sound_accuracy.py`` (``--quick``: 60 inputs). Writes
``benchmarks/results/sound_accuracy.json`` and prints the markdown table that ``docs/soundness.md`` shows.

For sigma in {0.25, 0.5}: the shipped digits CNN (ONNX, CPU), all 360 test inputs, ``n0 = 100``, ``n = 1000``,
``alpha = 0.001``, Cohen's radius (``radius="Rmono"``, ``reduction="cohen"``), through the public
``radius.certify_dataset`` with an ``OnnxSampler(noise="float")`` and an ``OnnxSampler(noise="sound",
grid=GRID)`` (default clip ``(-k, 1 + k)``, ``k = ceil(6 sigma)``). ``--grid`` defaults to ``1/256``: the digits
pixels are multiples of 1/16, hence of 1/256, and the finer noise grid adds less rounding variance
(``h^2 / 12`` per coordinate); ``--grid 1/16`` is the data's own grid. Certified accuracy at radius r = fraction
of inputs whose prediction is the label and whose radius is >= r, on the radii 0, 0.01, ..., 2.0; the largest
gap between the two curves is reported in points (1 point = 1 % of the inputs).

Monte Carlo noise: two runs of the *same* noise with different seeds already differ by several points near the
radius where most inputs pile up (``n = 1000`` caps the radius at ``sigma Phi^-1(alpha^(1/n))``, and inputs at
``p ~ 0.999`` land on either side of it). So each curve is the mean over ``--seeds`` run seeds (float: seeds
0..R-1, sound: the same seeds), and the same comparison between float noise and float noise with seeds R..2R-1
is reported as the noise floor. Single-seed gaps are reported too.

``--paired`` (a separate run, merged into the same JSON under ``"paired"``): common random numbers. One float64
Gaussian draw per noisy copy gives both the float copy ``x + sigma eps`` and its rounding to the grid,
``values[clip(k + rint(sigma eps / h), 0, G)]`` (the rounded Gaussian, by the identity in ``backends.noise``),
fed to the same ONNX session. The Monte Carlo noise then largely cancels and the gap measures what the
discretisation itself costs. This sampler is a measuring device only: it rounds in floating point, so it is
*not* the sound sampler (validity does not depend on it).

The sound certificates are also recomputed with :func:`radius.radii.r_sound_mono` and the TV bound of the
threshold rounding (``SoundNoise.tv_bound(64)``); the largest change of a radius is reported.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RADII = np.round(np.arange(0, 2.0001, 0.01), 2)
TABLE_RADII = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)


def cert_acc(certs, y, radii=RADII):
    pred = np.array([c.prediction for c in certs])
    rad = np.array([c.radius for c in certs])
    ok = pred == y[:len(certs)]
    return np.array([float(np.mean(ok & (rad >= r))) for r in radii])


class PairedSampler:
    """Float noise, or its rounding to the grid, from the same float64 Gaussian draws (see ``--paired``)."""

    def __init__(self, base, sound, rounded: bool):
        self.base, self.sound, self.rounded = base, sound, rounded
        self.sigma, self.num_classes, self.batch_size = base.sigma, base.num_classes, base.batch_size

    def counts(self, x, n, seed):
        rng = np.random.default_rng(seed)
        k = self.sound.indices(x)
        h, G = float(self.sound.grid), self.sound.levels
        out = np.zeros(self.num_classes, dtype=np.int64)
        done = 0
        while done < n:
            b = min(self.batch_size, n - done)
            noise = self.sigma * rng.standard_normal((b, *x.shape))
            if self.rounded:
                z = self.sound.values[np.clip(k + np.rint(noise / h).astype(np.int64), 0, G)]
            else:
                z = x.astype(np.float64) + noise
            out += np.bincount(self.base.logits(z.astype(np.float32)).argmax(1), minlength=self.num_classes)
            done += b
        return out


def paired(args, x, y, limit, opts):
    from backends import OnnxSampler, default_model_path
    from radius import certify_dataset

    res = {}
    for sigma in (0.25, 0.5):
        base = OnnxSampler(default_model_path(sigma), sigma=sigma, providers=["CPUExecutionProvider"],
                           session_options=opts, noise="sound", grid=args.grid)
        curves = {}
        for rounded in (False, True):
            s = PairedSampler(base, base.sound, rounded)
            cs = [cert_acc(certify_dataset(s, x, y, sigma=sigma, n0=100, n=1000, radius="Rmono",
                                           reduction="cohen", seed=seed, limit=limit, progress=False), y)
                  for seed in range(args.seeds)]
            curves["rounded" if rounded else "float"] = np.mean(cs, axis=0)
        gap = np.abs(curves["rounded"] - curves["float"]) * 100
        i = int(np.argmax(gap))
        res[str(sigma)] = {"float": curves["float"].tolist(), "rounded": curves["rounded"].tolist(),
                           "seeds": args.seeds, "grid": args.grid, "max_gap_points": float(gap.max()),
                           "max_gap_at_radius": float(RADII[i])}
        print(f"paired, sigma={sigma}, mean of {args.seeds} seeds: largest gap rounded vs float {gap.max():.2f} "
              f"points at radius {RADII[i]:.2f}")
        for r in TABLE_RADII:
            j = int(np.flatnonzero(RADII == r)[0])
            print(f"| {sigma} | {r:.2f} | {curves['float'][j] * 100:.1f} | {curves['rounded'][j] * 100:.1f} |")
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--grid", default="1/256",
                   help="grid of the sound noise (the digits lie on 1/16, hence also on 1/256; default 1/256)")
    p.add_argument("--paired", action="store_true", help="common-random-numbers comparison (merged into --out)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "sound_accuracy.json"))
    args = p.parse_args(argv)
    import onnxruntime

    from backends import OnnxSampler, default_model_path, load_digits_split
    from radius import certify_dataset
    from radius.radii import r_sound_mono

    x, y = load_digits_split("test")
    limit = 60 if args.quick else len(x)
    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads = args.threads
    if args.paired:
        out = Path(args.out)
        old = json.loads(out.read_text()) if out.exists() else {}
        t0 = time.perf_counter()
        old["paired"] = paired(args, x, y, limit, opts)
        old["paired"]["machine"] = {"load_average_at_end": os.getloadavg(), "seconds": time.perf_counter() - t0}
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(old, indent=2) + "\n")
        print(f"updated {out}")
        return
    result = {"machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                          "onnxruntime": onnxruntime.__version__, "load_average_at_start": os.getloadavg()},
              "setup": {"inputs": limit, "n0": 100, "n": 1000, "alpha": 0.001, "radius": "Rmono",
                        "reduction": "cohen", "seeds": args.seeds, "grid": args.grid},
              "sigmas": {}}
    lines = []
    for sigma in (0.25, 0.5):
        R = args.seeds
        runs = {"float": ("float", range(R)), "sound": ("sound", range(R)), "float_b": ("float", range(R, 2 * R))}
        curves, single, secs, last = {}, {}, {}, {}
        for name, (noise, seeds) in runs.items():
            kw = {"grid": args.grid} if noise == "sound" else {}
            s = OnnxSampler(default_model_path(sigma), sigma=sigma, providers=["CPUExecutionProvider"],
                            session_options=opts, noise=noise, **kw)
            t0 = time.perf_counter()
            cs = []
            for seed in seeds:
                certs = certify_dataset(s, x, y, sigma=sigma, n0=100, n=1000, radius="Rmono",
                                        reduction="cohen", seed=seed, limit=limit, progress=False)
                cs.append(cert_acc(certs, y))
            secs[name] = time.perf_counter() - t0
            curves[name], single[name] = np.mean(cs, axis=0), cs[0]
            last[name] = (certs, s)
        gap = np.abs(curves["sound"] - curves["float"]) * 100
        floor = np.abs(curves["float_b"] - curves["float"]) * 100
        gap1 = np.abs(single["sound"] - single["float"]) * 100
        floor1 = np.abs(single["float_b"] - single["float"]) * 100
        certs, s = last["sound"]
        tv = s.sound.tv_bound(int(np.prod(x.shape[1:])))
        dr = max(abs(r_sound_mono(c.p_a_lower, sigma, tv) - c.radius) for c in certs if c.prediction >= 0)
        i, i0 = int(np.argmax(gap)), int(np.argmax(floor))
        result["sigmas"][str(sigma)] = {
            "radii": RADII.tolist(), "float": curves["float"].tolist(), "sound": curves["sound"].tolist(),
            "float_other_seeds": curves["float_b"].tolist(), "seeds": R,
            "max_gap_points": float(gap.max()), "max_gap_at_radius": float(RADII[i]),
            "noise_floor_max_gap_points": float(floor.max()), "noise_floor_at_radius": float(RADII[i0]),
            "single_seed_max_gap_points": float(gap1.max()), "single_seed_noise_floor_points": float(floor1.max()),
            "seconds": secs, "clip": [str(s.sound.lo), str(s.sound.hi)], "tv_bound": tv,
            "max_radius_change_with_tv": dr}
        print(f"sigma={sigma}: mean of {R} seeds: largest gap sound vs float {gap.max():.2f} points at radius "
              f"{RADII[i]:.2f}; float vs float (other seeds) {floor.max():.2f} points at {RADII[i0]:.2f}; "
              f"single seed: {gap1.max():.2f} / {floor1.max():.2f}; tv bound {tv:.2e}, largest radius change "
              f"{dr:.2e}; seconds {secs}")
        for r in TABLE_RADII:
            j = int(np.flatnonzero(RADII == r)[0])
            lines.append(f"| {sigma} | {r:.2f} | {curves['float'][j] * 100:.1f} | {curves['sound'][j] * 100:.1f} | "
                         f"{curves['float_b'][j] * 100:.1f} |")
        lines.append(f"| {sigma} | largest gap to float, r = 0..2 step 0.01 | | {gap.max():.2f} points "
                     f"(r = {RADII[i]:.2f}) | {floor.max():.2f} points (r = {RADII[i0]:.2f}) |")
    print("\n| sigma | radius | float noise (%) | sound noise (%) | float noise, other seeds (%) |\n"
          "|---|---|---|---|---|")
    print("\n".join(lines))
    result["table_markdown"] = lines
    result["machine"]["load_average_at_end"] = os.getloadavg()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
