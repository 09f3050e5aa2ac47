"""Sampling throughput and memory of TorchSampler / OnnxSampler on the shipped digits CNN.

Run: ``.venv/bin/python benchmarks/sampling.py`` (``--quick`` for a smoke run, ``--threads 0`` for the libraries'
default thread counts). Writes ``benchmarks/results/sampling.json`` (``--sound-only`` updates only its
``sound_vs_float`` entry).

Throughput: samples per second of ``sampler.counts(x, n, seed)`` against a hand-written loop doing the same work
(draw noise, add it to the input, forward pass, argmax, bincount) with the same model, session, batch size,
noise generator and thread count; repetitions in ABBA order (sampler, loop, loop, sampler, ...), medians
compared, plus the median of the per-pair ratios. Target ratio sampler / loop >= 0.95 for both backends.
The default is one intra-op thread: on a shared, oversubscribed machine multi-threaded timings of either side
vary by a factor of two from run to run.

Sound vs float noise (issue 14): seconds of ``counts(x, n, seed)`` with ``noise="sound"`` (rounded Gaussian on
a grid, exact integer thresholds) against ``noise="float"``, same model, session, batch size and thread count,
ABBA order in the same run; ``sound_over_float`` is the ratio of the median times (target <= 1.25),
``median_pairwise_ratio`` the median of the per-pair ratios. Grids (``--grids``): 1/16 (the digits data's own
grid, 80 levels at sigma 0.25) and 1/256 (1280 levels), stored under ``sound_vs_float[grid][backend]``.
``--sound-only`` runs just this.

Memory, for n = 10^6, each measurement in a fresh process:

* ``rss_ratio``: peak growth of the resident set (current RSS polled every millisecond from /proc/self/statm,
  above the RSS after imports, model load and a 10-sample warm-up) during ``counts(x, n)``, divided by the
  same peak growth during ONE hand-written batch. The hand loop at the same n is measured the same way as the
  reference (allocator and onnxruntime arena growth over many batches show up in both). A sampler keeping
  per-batch results would grow by ~40 MB of logits at n = 10^6.
* ``tracemalloc_peak_bytes``: peak of Python/NumPy allocations during the run (torch/onnxruntime internal
  buffers are not traced), compared with the bytes of one noisy batch.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIGMA = 0.25
BATCH = 1000
THREADS = 1  # set by --threads; the same for the sampler and the hand loop (0 = library default)


def _setup(backend: str, batch: int = BATCH, noise: str = "float", grid: str = "1/16"):
    import onnxruntime
    import torch

    from backends import OnnxSampler, TorchSampler, default_model_path, load_digits_split
    from backends.models import load_torch_model

    if THREADS > 0:
        torch.set_num_threads(THREADS)
    x = load_digits_split("test")[0][0]
    kw = {"noise": "sound", "grid": grid} if noise == "sound" else {}
    if backend == "onnx":
        opts = onnxruntime.SessionOptions()
        if THREADS > 0:
            opts.intra_op_num_threads = THREADS
        s = OnnxSampler(default_model_path(SIGMA), sigma=SIGMA, batch_size=batch, providers=["CPUExecutionProvider"],
                        session_options=opts, **kw)
    else:
        s = TorchSampler(load_torch_model(SIGMA), sigma=SIGMA, batch_size=batch, device="cpu", **kw)
    return s, x


def hand_loop(backend: str, sampler, x: np.ndarray, n: int, seed: int, batch: int = BATCH) -> np.ndarray:
    """The same work as ``counts`` without the sampler's checks: noise, forward, argmax, bincount."""
    if backend == "onnx":
        sess, name, out = sampler.session, sampler.input_name, sampler.output_name
        rng = np.random.default_rng(seed)
        x32 = x.astype(np.float32)
        acc = np.zeros(10, dtype=np.int64)
        done = 0
        while done < n:
            b = min(batch, n - done)
            inp = x32 + np.float32(SIGMA) * rng.standard_normal((b, *x.shape), dtype=np.float32)
            logits = sess.run([out], {name: inp})[0]
            acc += np.bincount(logits.argmax(1), minlength=10)
            done += b
        return acc
    import torch

    model = sampler.model
    xt = torch.from_numpy(x)
    g = torch.Generator().manual_seed(seed)
    acc = torch.zeros(10, dtype=torch.int64)
    done = 0
    with torch.inference_mode():
        while done < n:
            b = min(batch, n - done)
            inp = xt + SIGMA * torch.randn((b, *x.shape), generator=g)
            acc += torch.bincount(model(inp).argmax(1), minlength=10)
            done += b
    return acc.numpy()


def throughput(backend: str, n: int, reps: int) -> dict:
    s, x = _setup(backend)
    s.counts(x, BATCH, 0)  # warm-up
    hand_loop(backend, s, x, BATCH, 0)
    t_s, t_h = [], []
    for r in range(reps):
        for who in (("sampler", "loop") if r % 2 == 0 else ("loop", "sampler")):  # ABBA
            t0 = time.perf_counter()
            if who == "sampler":
                a = s.counts(x, n, seed=r)
            else:
                b = hand_loop(backend, s, x, n, seed=r)
            (t_s if who == "sampler" else t_h).append(time.perf_counter() - t0)
        # same generators and the same arithmetic: identical counts (the loop does the same work)
        assert np.array_equal(a, b), (a, b)
    rs, rh = n / statistics.median(t_s), n / statistics.median(t_h)
    pair = statistics.median(h / s_ for s_, h in zip(t_s, t_h))
    print(f"{backend:5s} counts: {rs:10.0f} samples/s   hand loop: {rh:10.0f} samples/s   ratio of medians "
          f"{rs / rh:.3f}   median pairwise ratio {pair:.3f}")
    return {"n": n, "reps": reps, "batch_size": BATCH, "sampler_samples_per_s": rs, "loop_samples_per_s": rh,
            "ratio": rs / rh, "median_pairwise_ratio": pair, "sampler_seconds": t_s, "loop_seconds": t_h}


def sound_vs_float(backend: str, n: int, reps: int, grid: str = "1/16") -> dict:
    """Median seconds of counts() with sound and with float noise, ABBA order, same run."""
    fl, x = _setup(backend)
    sd, _ = _setup(backend, noise="sound", grid=grid)
    fl.counts(x, BATCH, 0)
    sd.counts(x, BATCH, 0)  # warm-up (and the threshold table, cached per process)
    t = {"float": [], "sound": []}
    for r in range(reps):
        for who in (("sound", "float") if r % 2 == 0 else ("float", "sound")):  # ABBA
            s = sd if who == "sound" else fl
            t0 = time.perf_counter()
            c = s.counts(x, n, seed=r)
            t[who].append(time.perf_counter() - t0)
            assert int(c.sum()) == n
    ratio = statistics.median(t["sound"]) / statistics.median(t["float"])
    pair = statistics.median(a / b for a, b in zip(t["sound"], t["float"]))
    print(f"{backend:5s} grid {grid:5s} sound noise: {n / statistics.median(t['sound']):10.0f} samples/s   float noise: "
          f"{n / statistics.median(t['float']):10.0f} samples/s   sound / float time {ratio:.3f}   median pairwise "
          f"{pair:.3f}   (target <= 1.25)")
    return {"n": n, "reps": reps, "batch_size": BATCH, "grid": grid, "clip": [str(sd.sound.lo), str(sd.sound.hi)],
            "sound_over_float": ratio, "median_pairwise_ratio": pair, "sound_seconds": t["sound"],
            "float_seconds": t["float"]}


def noise_only(backend: str, n: int, reps: int, grid: str) -> dict:
    """Seconds to draw n noisy copies (no model): sound vs float, ABBA; isolates the noise cost."""
    import torch

    from backends.base import numpy_noisy_batches

    sd, x = _setup(backend, noise="sound", grid=grid)
    t = {"float": [], "sound": []}

    def draw(who, seed):
        if backend == "onnx":
            for _ in numpy_noisy_batches(x, SIGMA, n, seed, BATCH, np.float32, sd.sound if who == "sound" else None):
                pass
            return
        with torch.inference_mode():
            g = torch.Generator().manual_seed(seed)
            if who == "sound":
                thr, vals = sd.sound.torch_tables("cpu", torch.float32)
                k = torch.as_tensor(sd.sound.indices(x))
                for _ in range(n // BATCH):
                    sd.sound.sample_torch(k, BATCH, g, thr, vals)
            else:
                xt = torch.from_numpy(x)
                for _ in range(n // BATCH):
                    torch.randn((BATCH, *x.shape), generator=g).mul_(SIGMA).add_(xt)

    draw("sound", 0)
    draw("float", 0)
    for r in range(reps):
        for who in (("sound", "float") if r % 2 == 0 else ("float", "sound")):
            t0 = time.perf_counter()
            draw(who, r)
            t[who].append(time.perf_counter() - t0)
    us = {w: statistics.median(v) / n * 1e6 for w, v in t.items()}
    print(f"{backend:5s} grid {grid:5s} noise only: sound {us['sound']:.3f} us/sample, float {us['float']:.3f} "
          f"us/sample")
    return {"n": n, "reps": reps, "sound_us_per_sample": us["sound"], "float_us_per_sample": us["float"],
            "seconds": t}


def _maxrss_bytes() -> int:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024


def _current_rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _RssPeak:
    """Poll the current RSS every millisecond in a thread; keep the maximum."""

    def __enter__(self):
        self.peak = _current_rss_bytes()
        self._stop = threading.Event()

        def poll():
            while not self._stop.is_set():
                self.peak = max(self.peak, _current_rss_bytes())
                time.sleep(0.001)

        self._t = threading.Thread(target=poll, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, _current_rss_bytes())


def _memory_child(backend: str, who: str, n: int) -> dict:
    s, x = _setup(backend)
    hand_loop(backend, s, x, 10, 0)  # load kernels with a tiny batch
    base = _current_rss_bytes()
    with _RssPeak() as one:
        hand_loop(backend, s, x, BATCH, 0)  # exactly one full batch by hand
    tracemalloc.start()
    t0 = time.perf_counter()
    with _RssPeak() as full:
        c = s.counts(x, n, seed=1) if who == "sampler" else hand_loop(backend, s, x, n, seed=1)
    secs = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert int(c.sum()) == n
    batch_bytes = BATCH * int(np.prod(x.shape)) * 4
    d1, d2 = one.peak - base, full.peak - base
    return {"n": n, "seconds": secs, "rss_baseline_bytes": base, "rss_peak_growth_one_batch_bytes": d1,
            "rss_peak_growth_bytes": d2, "rss_ratio": d2 / max(d1, 1), "tracemalloc_peak_bytes": peak,
            "one_noisy_batch_bytes": batch_bytes, "tracemalloc_peak_over_batch": peak / batch_bytes,
            "ru_maxrss_bytes": _maxrss_bytes()}


def memory(backend: str, n: int) -> dict:
    """Sampler and hand loop at the same n, each in a fresh process."""
    res = {}
    for who in ("sampler", "loop"):
        out = subprocess.run([sys.executable, __file__, "--memory-child", backend, who, "--n-memory", str(n),
                              "--threads", str(THREADS)], capture_output=True, text=True, check=True, cwd=ROOT)
        r = res[who] = json.loads(out.stdout.strip().splitlines()[-1])
        mb = 1 / 2**20
        print(f"{backend:5s} {who:7s} n={n:.0e}: {r['seconds']:6.1f} s; peak RSS growth "
              f"{r['rss_peak_growth_bytes'] * mb:5.1f} MB vs {r['rss_peak_growth_one_batch_bytes'] * mb:5.1f} MB for "
              f"one hand-written batch (ratio {r['rss_ratio']:.2f}); tracemalloc peak "
              f"{r['tracemalloc_peak_bytes'] * mb:.2f} MB = {r['tracemalloc_peak_over_batch']:.2f} x one noisy batch")
    return res


def main(argv=None):
    global THREADS
    p = argparse.ArgumentParser(description="sampler throughput and memory")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--threads", type=int, default=1,
                   help="torch / onnxruntime intra-op threads for both sides (0 = library default)")
    p.add_argument("--memory-child", nargs=2, metavar=("BACKEND", "WHO"))
    p.add_argument("--n-memory", type=int, default=10**6)
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--sound-only", action="store_true", help="only the sound vs float comparison")
    p.add_argument("--grids", default="1/16,1/256", help="comma-separated grids of the sound noise")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "sampling.json"))
    args = p.parse_args(argv)
    THREADS = args.threads
    if args.memory_child:
        print(json.dumps(_memory_child(*args.memory_child, args.n_memory)))
        return
    import onnxruntime
    import torch

    quick = args.quick
    result = {
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count(),
                    "processor": platform.processor(), "torch": torch.__version__,
                    "onnxruntime": onnxruntime.__version__, "threads": THREADS,
                    "load_average_at_start": os.getloadavg()},
        "model": f"digits CNN sigma={SIGMA} (backends/models), batch {BATCH}", "throughput": {}, "memory": {},
        "sound_vs_float": {},
    }
    for grid in args.grids.split(","):
        result["sound_vs_float"][grid] = {}
        for backend, n in (("onnx", 20000 if quick else 50000), ("torch", 5000 if quick else 20000)):
            result["sound_vs_float"][grid][backend] = sound_vs_float(backend, n, 4 if quick else 10, grid)
            result["sound_vs_float"][grid][backend]["noise_only"] = noise_only(backend, 50000, 4 if quick else 10,
                                                                                grid)
    out = Path(args.out)
    if args.sound_only:  # keep the other results of the file; record this run's machine next to its numbers
        result["machine"]["load_average_at_end"] = os.getloadavg()
        old = json.loads(out.read_text()) if out.exists() else {}
        old["sound_vs_float"] = result["sound_vs_float"]
        old["sound_vs_float_machine"] = result["machine"]
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(old, indent=2) + "\n")
        print(f"updated {out}")
        return
    for backend, n in (("onnx", 20000 if quick else 100000), ("torch", 5000 if quick else 20000)):
        result["throughput"][backend] = throughput(backend, n, 4 if quick else 10)
    t = result["throughput"]
    result["onnx_over_torch_speed"] = t["onnx"]["sampler_samples_per_s"] / t["torch"]["sampler_samples_per_s"]
    print(f"onnxruntime / torch samples per second: {result['onnx_over_torch_speed']:.2f}")
    if not args.skip_memory:
        n_mem = 10**5 if quick else args.n_memory
        for backend in ("onnx", "torch"):
            result["memory"][backend] = memory(backend, n_mem)
    result["machine"]["load_average_at_end"] = os.getloadavg()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
