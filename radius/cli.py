"""The ``confbounds`` command: ``certify``, ``recertify``, ``report``, ``demo``.

Examples (from the repository root, after ``bash scripts/setup.sh``)::

    confbounds demo                                   # the digits demo, about a minute
    confbounds certify --sigma 0.25 --limit 50 --n 10000 --out results/d.tsv
    confbounds recertify results/d.counts.jsonl --reduction cohen --radius Rmono --out results/d_cohen.tsv
    confbounds report results/d.tsv results/d_cohen.tsv --plot results/d.png

Errors in the arguments or the data are reported as ``confbounds: error: ...``
with exit status 2; an interrupted ``certify`` resumes when rerun with the
same command.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

__all__ = ["main", "build_parser", "load_sampler", "load_data", "onnx_sampler"]

_REDUCTIONS = ("cohen", "bonferroni", "cpm", "exact")
_RADII = ("Rmono", "R2", "R1")


def _add_method_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--alpha", type=float, default=0.001, help="failure probability of each certificate (0.001)")
    p.add_argument("--radius", default="R2", help=f"radius: one of {', '.join(_RADII)}, ... (default R2)")
    p.add_argument("--reduction", default="exact",
                   help=f"reduction from m classes to a margin bound: {', '.join(_REDUCTIONS)} (default exact)")
    p.add_argument("--bound", default="betting", help="mean bound for score matrices (default betting)")
    p.add_argument("--lipschitz", type=float, default=None, help="Lipschitz constant of the base model (R1)")
    p.add_argument("--output-range", type=float, default=None, help="range of the base model's output (R1)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="confbounds",
                                 description="Certified robustness radii from randomized smoothing, with valid bounds.")
    sub = ap.add_subparsers(dest="command", metavar="{certify,recertify,report,demo}")
    sub.required = True

    c = sub.add_parser("certify", help="certify a model on a data set (resumable)")
    c.add_argument("--model", default=None,
                   help="an .onnx file or a torch .pt/.pth file (TorchScript or pickled module); "
                        "default: the shipped digits CNN for --sigma")
    c.add_argument("--sigma", type=float, default=0.25, help="noise level (default 0.25)")
    c.add_argument("--data", default="digits", help="'digits' (bundled) or an .npz file with arrays x and y")
    c.add_argument("--split", default="test", help="split of the bundled digits data (train/test, default test)")
    c.add_argument("--limit", type=int, default=None, help="certify only the first K inputs")
    c.add_argument("--n0", type=int, default=100, help="selection samples per input (default 100)")
    c.add_argument("--n", type=int, default=10_000, help="estimation samples per input (default 10000)")
    _add_method_args(c)
    c.add_argument("--seed", type=int, default=0, help="run seed (default 0)")
    c.add_argument("--batch-size", type=int, default=1000, help="noisy copies per model call (default 1000)")
    c.add_argument("--mode", default="counts", help="counts (hard smoothing, default) or scores (soft smoothing)")
    c.add_argument("--simplex", default="hard", help="scores mode: hard, softmax or sparsemax (default hard)")
    c.add_argument("--temperature", type=float, default=1.0, help="scores mode: softmax temperature (default 1)")
    c.add_argument("--out", default=None,
                   help="results TSV (default: results/<data>_<model>_sigma<s>_n<n>_<reduction>_<radius>.tsv)")
    c.add_argument("--counts-log", default=None,
                   help="raw-counts log (default: results/<data>_<model>_sigma<s>_n0<n0>_n<n>_seed<seed>.counts.jsonl; "
                        "'none' to disable)")
    c.add_argument("--no-progress", action="store_true", help="no progress bar")
    from .engines.ray_engine import add_ray_arguments

    add_ray_arguments(c)
    c.add_argument("--sequential", action="store_true",
                   help="anytime-valid sequential sampling: stop each input once --radii are decided "
                        "(and/or its radius is pinned to --tolerance); see docs/sequential.md")
    c.add_argument("--radii", type=float, nargs="+", default=None, help="(--sequential) radii to decide")
    c.add_argument("--tolerance", type=float, default=None, help="(--sequential) pin the radius to this width")
    c.add_argument("--max-n", type=int, default=100_000,
                   help="(--sequential) cap on estimation samples per input (default 100000)")
    c.add_argument("--seq-bound", default="mixture", choices=("mixture", "cp-looks", "betting"),
                   help="(--sequential) confidence sequence (default mixture)")

    r = sub.add_parser("recertify", help="recompute certificates from a raw-counts log under another method")
    r.add_argument("counts_log", help="log written by certify")
    _add_method_args(r)
    r.add_argument("--limit", type=int, default=None, help="only the first K logged inputs")
    r.add_argument("--out", required=True, help="results TSV to write")
    r.add_argument("--no-progress", action="store_true")

    p = sub.add_parser("report", help="certified accuracy table and plot of results TSVs")
    p.add_argument("tsv", nargs="+", help="results TSVs (this tool's or Cohen et al.'s)")
    p.add_argument("--radii", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0],
                   help="radii of the certified accuracy columns")
    p.add_argument("--plot", default=None, help="write a PNG of certified accuracy against radius")
    p.add_argument("--format", default="text", choices=("text", "markdown", "tsv"), help="table format")

    d = sub.add_parser("demo", help="certify the digits test split with the shipped models, compare all methods")
    d.add_argument("--out-dir", default=os.path.join("results", "demo"), help="output directory (results/demo)")
    d.add_argument("--sigmas", type=float, nargs="+", default=[0.25, 0.5], help="noise levels (0.25 0.5)")
    d.add_argument("--n", type=int, nargs="+", default=None, help="estimation sample sizes (default 1000)")
    d.add_argument("--n0", type=int, default=100)
    d.add_argument("--alpha", type=float, default=0.001)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--limit", type=int, default=None, help="only the first K test inputs")
    d.add_argument("--batch-size", type=int, default=1000)
    d.add_argument("--workers", type=int, default=None,
                   help="background processes recertifying while sampling (default min(2, CPUs); 0: none)")
    d.add_argument("--no-progress", action="store_true")
    return ap


def load_data(data: str, split: str = "test"):
    """``(x, y, name)`` for ``--data``: the bundled digits split or an ``.npz`` with ``x`` and ``y``."""
    import numpy as np

    if data == "digits":
        from backends.models import load_digits_split

        x, y = load_digits_split(split)
        return x, y, f"digits-{split}"
    if not data.endswith(".npz"):
        raise ValueError(f"--data must be 'digits' or an .npz file, got {data!r}")
    if not os.path.exists(data):
        raise ValueError(f"--data file {data!r} does not exist")
    with np.load(data, allow_pickle=False) as z:
        missing = [k for k in ("x", "y") if k not in z.files]
        if missing:
            raise ValueError(f"--data {data!r} must hold arrays 'x' and 'y'; it has {z.files}")
        x, y = z["x"], z["y"]
    return x, y, os.path.splitext(os.path.basename(data))[0]


def _load_torch(path: str):
    import warnings

    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.jit.load(path, map_location="cpu")
    except Exception:
        pass
    obj = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(obj, torch.nn.Module):
        return obj.eval()
    if isinstance(obj, dict):
        from backends.models import DigitsCNN

        model = DigitsCNN()
        try:
            model.load_state_dict(obj)
        except Exception:
            raise ValueError(f"--model {path!r} is a state dict that does not fit the digits CNN; save the whole "
                             "module (torch.save(model)) or a TorchScript module (torch.jit.save)") from None
        return model.eval()
    raise ValueError(f"--model {path!r} holds a {type(obj).__name__}, not a torch module")


def onnx_sampler(model, sigma: float, batch_size: int = 1000, **kwargs):
    """An :class:`backends.onnx_sampler.OnnxSampler` with onnxruntime's thread spinning turned off.

    By default onnxruntime's intra-op threads keep spinning for a while after
    each ``run``; the pipeline computes bounds between runs, and on a shared
    machine the spinning threads take CPU from it (measured: the exact bound's
    share of a run at n = 10^4 falls several-fold; benchmarks/pipeline.py).
    """
    import onnxruntime as ort

    from backends.onnx_sampler import OnnxSampler

    so = ort.SessionOptions()
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return OnnxSampler(str(model), sigma=sigma, batch_size=batch_size, session_options=so, **kwargs)


def load_sampler(model: Optional[str], sigma: float, batch_size: int = 1000, simplex: str = "hard",
                 temperature: float = 1.0):
    """``(sampler, model_path)`` for ``--model`` (default: the shipped digits ONNX model for ``sigma``).

    ``simplex`` and ``temperature`` set the map applied to the logits for score
    matrices (``--mode scores``); counts always use the argmax.
    """
    if model is None:
        from backends.models import default_model_path

        model = str(default_model_path(sigma))
    if not os.path.exists(model):
        raise ValueError(f"--model file {model!r} does not exist")
    low = model.lower()
    if low.endswith(".onnx"):
        return onnx_sampler(model, sigma, batch_size, simplex=simplex, temperature=temperature), model
    if low.endswith((".pt", ".pth")):
        from backends.torch_sampler import TorchSampler

        return TorchSampler(_load_torch(model), sigma=sigma, batch_size=batch_size, simplex=simplex,
                            temperature=temperature), model
    raise ValueError(f"--model must be an .onnx or a torch .pt/.pth file, got {model!r}")


def _summary(certs, labels, path: Optional[str]) -> str:
    import numpy as np

    from .report import average_certified_radius, certified_accuracy

    valid = [c for c in certs if c is not None]
    if not valid:
        return "no inputs certified\n"
    rad = np.array([c.radius for c in valid])
    cor = np.array([c.prediction == int(lbl) for c, lbl in zip(valid, labels)])
    abst = np.mean([c.prediction < 0 for c in valid])
    acc = certified_accuracy(rad, cor, [0.0, 0.5, 1.0])
    s = (f"{len(valid)} inputs: certified accuracy {acc[0]:.3f} (r>=0), {acc[1]:.3f} (r>=0.5), {acc[2]:.3f} (r>=1); "
         f"ACR {average_certified_radius(rad, cor):.4f}; abstained {abst:.3f}\n")
    if path:
        s += f"results: {path}\n"
    return s


def default_paths(a, dname: str, model_path: str, sigma: float):
    """Result TSV and raw-counts log paths for ``certify`` (shared by the local and Ray engines)."""
    stem = f"{dname}_{os.path.splitext(os.path.basename(model_path))[0]}"
    out = a.out or os.path.join("results", f"{stem}_sigma{sigma:g}_n{a.n}_{a.reduction}_{a.radius}.tsv")
    log = a.counts_log
    if log is None and a.mode == "counts":
        log = os.path.join("results", f"{stem}_sigma{sigma:g}_n0{a.n0}_n{a.n}_seed{a.seed}.counts.jsonl")
    if log is not None and log.lower() == "none":
        log = None
    return out, log


def _cmd_certify(a) -> int:
    from .pipeline import _check_sigma, certify_dataset
    from .results import file_hash

    if a.engine == "ray":
        if a.sequential:
            raise ValueError("--sequential runs on the local engine only; drop --engine ray or --sequential")
        from .engines.ray_engine import cmd_certify_ray

        return cmd_certify_ray(a)
    sigma = _check_sigma(a.sigma)
    x, y, dname = load_data(a.data, a.split)
    sampler, model_path = load_sampler(a.model, sigma, a.batch_size, a.simplex, a.temperature)
    if a.sequential:
        return _cmd_certify_sequential(a, sampler, x, y, dname, sigma)
    out, log = default_paths(a, dname, model_path, sigma)
    certs = certify_dataset(sampler, x, y, sigma=sigma, alpha=a.alpha, n0=a.n0, n=a.n, radius=a.radius,
                            reduction=a.reduction, bound=a.bound, lipschitz=a.lipschitz,
                            output_range=a.output_range, seed=a.seed, out=out, counts_log=log, limit=a.limit,
                            progress=not a.no_progress, mode=a.mode, model_id=file_hash(model_path))
    sys.stdout.write(_summary(certs, y, out))
    if log:
        sys.stdout.write(f"counts log: {log}\n")
    return 0


def _cmd_certify_sequential(a, sampler, x, y, dname, sigma) -> int:
    from .sequential import certify_dataset_sequential

    if a.limit is not None:
        x, y = x[:a.limit], y[:a.limit]
    out = a.out or os.path.join("results", f"{dname}_sigma{sigma:g}_sequential_{a.seq_bound}.tsv")
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    run = certify_dataset_sequential(sampler, x, y, sigma=sigma, alpha=a.alpha, radii=a.radii,
                                     tolerance=a.tolerance, max_n=a.max_n, n0=a.n0, seed=a.seed,
                                     bound=a.seq_bound, model_batch_size=a.batch_size, out=out,
                                     progress=not a.no_progress)
    sys.stdout.write(_summary(run.certificates, y, out))
    sys.stdout.write(f"forward passes {run.forward_passes} (fixed n = {a.max_n} would use "
                     f"{len(x) * (a.n0 + a.max_n)}); batch fill rate {run.fill_rate:.4f}\n")
    for r in a.radii or []:
        sys.stdout.write(f"certified accuracy at {r:g}: {run.certified_accuracy(r):.3f}\n")
    return 0


def _cmd_recertify(a) -> int:
    from .pipeline import recertify
    from .results import read_counts_log

    if not os.path.exists(a.counts_log):
        raise ValueError(f"counts log {a.counts_log!r} does not exist")
    certs = recertify(a.counts_log, radius=a.radius, reduction=a.reduction, alpha=a.alpha, bound=a.bound,
                      lipschitz=a.lipschitz, output_range=a.output_range, out=a.out, limit=a.limit,
                      progress=not a.no_progress)
    _, recs = read_counts_log(a.counts_log)
    sys.stdout.write(_summary(certs, [r["label"] for r in recs], a.out))
    return 0


def _cmd_report(a) -> int:
    from . import report

    results = report.load_results(a.tsv)
    header, rows = report.summary_rows(results, a.radii)
    sys.stdout.write(report.format_table(header, rows, a.format))
    if a.plot:
        report.plot_certified_accuracy(results, a.plot)
        sys.stdout.write(f"plot: {a.plot}\n")
    return 0


def _cmd_demo(a) -> int:
    from .demo import DEFAULT_N, run_demo

    run_demo(a.out_dir, sigmas=a.sigmas, ns=a.n or [DEFAULT_N], n0=a.n0, alpha=a.alpha, seed=a.seed,
             limit=a.limit, batch_size=a.batch_size, progress=not a.no_progress, workers=a.workers)
    return 0


_COMMANDS = {"certify": _cmd_certify, "recertify": _cmd_recertify, "report": _cmd_report, "demo": _cmd_demo}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``confbounds`` console script; returns the exit status."""
    ap = build_parser()
    a = ap.parse_args(argv)
    try:
        return _COMMANDS[a.command](a)
    except ValueError as e:
        sys.stderr.write(f"\nconfbounds {a.command}: error: {e}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write(f"\nconfbounds {a.command}: interrupted; rerun the same command to resume\n")
        return 130
