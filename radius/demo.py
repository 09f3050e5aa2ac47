"""The digits demo: certify the shipped models, compare every method side by side.

For each noise level (the shipped ONNX digits CNNs, sigma 0.25 and 0.5) and
each sample size ``n``, the demo samples every test input **once**
(``n0`` selection + ``n`` estimation noisy copies, written to a raw-counts
log), then recertifies the same counts under every reduction (``cohen``,
``bonferroni``, ``cpm``, ``exact``) and every radius (``Rmono``, ``R2``,
``R1``) it supports (``Rmono`` only with ``cohen``: 9 methods), prints the
certified accuracy table and the average certified radius per method, and
writes the plot.  Recertification runs in background processes while the next
model is sampled.  Rerunning the demo reuses the logs and results.

Outputs in ``out_dir``: ``counts_sigma{s}_n{n}.jsonl``,
``sigma{s}_n{n}_{reduction}_{radius}.tsv``, ``table.md``, ``table.tsv``,
``certified_accuracy.png``, ``summary.json`` (table, timings).
"""
from __future__ import annotations

import json
import os
import sys
import time
from typing import Dict, Optional, Sequence

from . import report
from .engines.local import run_local
from .pipeline import recertify
from .run.spec import RunSpec

__all__ = ["run_demo", "methods", "REDUCTIONS", "RADII", "DEFAULT_N"]

REDUCTIONS = ("cohen", "bonferroni", "cpm", "exact")
RADII = ("Rmono", "R2", "R1")
#: default estimation sample size: the whole demo (2 models x 360 inputs) fits in well under 3 minutes
DEFAULT_N = 1000


def methods(reductions: Sequence[str] = REDUCTIONS, radii: Sequence[str] = RADII):
    """The (reduction, radius) pairs :func:`radius.certificate.certify` supports, radius-major.

    ``Rmono`` needs only the lower bound on the top class, so it is defined
    with the ``cohen`` reduction alone (``radius.certificate.SUPPORTED``); the
    other reductions would spend alpha on bounds it does not use.
    """
    from .certificate import SUPPORTED

    return [(red, rad) for rad in radii for red in reductions if red in SUPPORTED.get(rad, ())]


def _recertify_job(log: str, kw: Dict[str, object]) -> int:
    return len(recertify(log, **kw))


def run_demo(out_dir: str = os.path.join("results", "demo"), *, sigmas: Sequence[float] = (0.25, 0.5),
             ns: Sequence[int] = (DEFAULT_N,), n0: int = 100, alpha: float = 0.001, seed: int = 0,
             limit: Optional[int] = None, reductions: Sequence[str] = REDUCTIONS, radii: Sequence[str] = RADII,
             batch_size: int = 1000, progress: bool = True, table_radii: Sequence[float] = report.DEFAULT_RADII,
             workers: Optional[int] = None, stream=None) -> Dict[str, object]:
    """Run the digits demo; returns the paths written and the table.

    Parameters
    ----------
    out_dir : str
        Output directory (created).
    sigmas : sequence of {0.25, 0.5}
        Noise levels (one shipped model each).
    ns : sequence of int
        Estimation sample sizes (each sampled separately).
    n0, alpha, seed, limit, batch_size
        As in :func:`radius.pipeline.certify_dataset`.
    reductions, radii : sequences of str
        Methods compared on the same counts.
    table_radii : sequence of float
        Radii at which the table reports certified accuracy.
    workers : int, optional
        Processes recertifying the logged counts while the next model is
        sampled (default ``min(2, cpu_count)``; 0: recertify in this process,
        in order).  The results do not depend on it.
    """
    from backends.models import load_digits_split

    from .run.model import default_model, open_sampler

    if workers is None:
        workers = min(2, os.cpu_count() or 1)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(f"workers must be an integer >= 0, got {workers!r}")
    stream = stream if stream is not None else sys.stdout
    note = sys.stderr
    os.makedirs(out_dir, exist_ok=True)
    x, y = load_digits_split("test")
    paths = []
    t_start, c_start = time.perf_counter(), time.process_time()
    timings: Dict[str, Dict[str, float]] = {}
    pool = None
    if workers > 0:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn: workers start from a fresh interpreter (no onnxruntime threads inherited by fork)
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
    jobs = []
    try:
        for sigma in sigmas:
            model = default_model(float(sigma))
            sampler, identity = open_sampler(model, RunSpec(sigma=float(sigma)), batch_size=batch_size)
            for n in ns:
                tag = f"sigma{float(sigma):g}_n{n}"
                log = os.path.join(out_dir, f"counts_{tag}.jsonl")
                t0 = time.perf_counter()
                red0 = "exact" if "exact" in reductions else reductions[-1]
                rad0 = "R2" if "R2" in radii else radii[-1]
                note.write(f"[demo] sigma={float(sigma):g} n={n}: sampling {len(x) if limit is None else limit} "
                           f"test inputs once ({os.path.basename(model)}, n0={n0}) and certifying with {red0}/{rad0}\n")
                note.flush()
                first = os.path.join(out_dir, f"{tag}_{red0}_{rad0}.tsv")
                spec = RunSpec(sigma=float(sigma), alpha=alpha, n0=n0, n=n, seed=seed, radius=rad0,
                               reduction=red0, model=identity)
                run_local(spec, sampler, x, y, out=first, counts_log=log, limit=limit, progress=progress)
                t1 = time.perf_counter()
                pairs = methods(reductions, radii)
                others = [(red, rad) for red, rad in pairs if os.path.join(out_dir, f"{tag}_{red}_{rad}.tsv") != first]
                note.write(f"[demo] sigma={float(sigma):g} n={n}: recertifying the same counts under {len(others)} "
                           "other methods" + (" (in the background)\n" if pool else "\n"))
                note.flush()
                # the exact reduction is by far the slowest: start it first
                for red, rad in sorted(others, key=lambda mth: mth[0] != "exact"):
                    kw = dict(radius=rad, reduction=red, alpha=alpha, limit=limit,
                              out=os.path.join(out_dir, f"{tag}_{red}_{rad}.tsv"))
                    if pool is None:
                        recertify(log, **kw)
                    else:
                        jobs.append(pool.submit(_recertify_job, log, kw))
                paths.extend(os.path.join(out_dir, f"{tag}_{red}_{rad}.tsv") for red, rad in pairs)
                timings[tag] = {"sample_seconds": t1 - t0, "recertify_seconds_in_main": time.perf_counter() - t1}
        t_wait = time.perf_counter()
        for fut in jobs:
            fut.result()
        timings["background"] = {"wait_after_sampling_seconds": time.perf_counter() - t_wait}
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    results = report.load_results(paths)
    for r in results:  # the table names each file relative to out_dir
        r.path = os.path.relpath(r.path, out_dir)
    header, rows = report.summary_rows(results, table_radii)
    text = report.format_table(header, rows, "text")
    with open(os.path.join(out_dir, "table.md"), "w") as f:
        f.write(report.format_table(header, rows, "markdown"))
    with open(os.path.join(out_dir, "table.tsv"), "w") as f:
        f.write(report.format_table(header, rows, "tsv"))
    png = report.plot_certified_accuracy(results, os.path.join(out_dir, "certified_accuracy.png"),
                                         title=f"digits test split, alpha={alpha}")
    total = time.perf_counter() - t_start
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump({"alpha": alpha, "n0": n0, "ns": list(ns), "sigmas": list(sigmas), "seed": seed, "limit": limit,
                   "workers": workers, "header": header, "rows": rows, "seconds": total, "timings": timings,
                   "cpu_seconds_main_process": time.process_time() - c_start}, f, indent=1)
    stream.write(text)
    stream.write(f"\nEach row: one method applied to the same counts; every certificate holds with probability "
                 f">= 1 - {alpha}.\n")
    stream.write(f"results in {out_dir}/ (table.md, table.tsv, {os.path.basename(png)}); {total:.1f} s\n")
    stream.flush()
    return {"paths": paths, "table": (header, rows), "plot": png, "seconds": total, "timings": timings}
