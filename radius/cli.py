"""The ``confbounds`` command: ``certify``, ``recertify``, ``report``, ``demo``.

Examples (from the repository root, after ``bash scripts/setup.sh``)::

    confbounds demo                                   # the digits demo, about a minute
    confbounds certify --sigma 0.25 --limit 50 --n 10000 --out results/d.tsv
    confbounds recertify results/d.counts.jsonl --reduction cohen --radius Rmono --out results/d_cohen.tsv
    confbounds report results/d.tsv results/d_cohen.tsv --plot results/d.png

This is the only module that knows argparse: it turns flags into a
:class:`radius.run.spec.RunSpec` and calls an engine; nothing imports it.  A
flag that does not apply to the command line it is given with is an error
(:data:`INAPPLICABLE` lists every rule); errors in the arguments, the data or
the file system are reported as ``confbounds <cmd>: error: ...`` with exit
status 2; an interrupted ``certify`` resumes when rerun with the same command.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable, List, Optional, Sequence, Tuple

__all__ = ["main", "build_parser", "INAPPLICABLE"]

_REDUCTIONS = ("cohen", "bonferroni", "cpm", "exact")
_RADII = ("Rmono", "R2", "R1")
_RAY_FLAGS = ("address", "workers", "gpus_per_worker", "cpus_per_worker", "chunk_size")


def _add_method_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--alpha", type=float, default=None, help="failure probability of each certificate (0.001)")
    p.add_argument("--radius", default=None, help=f"radius: one of {', '.join(_RADII)}, ... (default R2)")
    p.add_argument("--reduction", default=None,
                   help=f"reduction from m classes to a margin bound: {', '.join(_REDUCTIONS)} (default exact)")
    p.add_argument("--bound", default=None, help="(--mode scores) mean bound for score matrices (default betting)")
    p.add_argument("--lipschitz", type=float, default=None, help="(--radius R1) Lipschitz constant of the model")
    p.add_argument("--output-range", type=float, default=None, help="(--radius R1) range of the model's output")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (every optional flag defaults to None, so that an inapplicable one is detected)."""
    ap = argparse.ArgumentParser(prog="confbounds",
                                 description="Certified robustness radii from randomized smoothing, with valid bounds.")
    sub = ap.add_subparsers(dest="command", metavar="{certify,recertify,report,demo}")
    sub.required = True

    c = sub.add_parser("certify", help="certify a model on a data set (resumable)")
    g = c.add_argument_group("model")
    g.add_argument("--model", default=None,
                   help="an .onnx file, a pickled torch module or TorchScript file (.pt/.pth), or a state dict "
                        "with --factory; default: the shipped digits CNN for --sigma")
    g.add_argument("--factory", default=None, help="module:callable building the module a state dict fits")
    g.add_argument("--backend", default=None, choices=("onnx", "torch", "auto"),
                   help="model runtime (default: by file type; auto: torch exported to ONNX)")
    g.add_argument("--input-shape", type=int, nargs="+", default=None, help="shape of one input (default: the data's)")
    g.add_argument("--num-classes", type=int, default=None, help="number of classes (default: one forward pass)")
    g.add_argument("--normalize", nargs=2, default=None, metavar=("MEAN", "STD"),
                   help="normalisation applied inside the model, after the noise: mean and std, numbers or "
                        "comma-separated per channel")
    g.add_argument("--batch-size", type=int, default=None, help="noisy copies per model call (default 1000)")
    d = c.add_argument_group("data")
    d.add_argument("--data", default="digits",
                   help="'digits' (bundled), an .npz file (--x-key, --y-key) or an .npy file of inputs (--labels)")
    d.add_argument("--split", default=None, help="(--data digits) train or test (default test)")
    d.add_argument("--x-key", default=None, help="(.npz --data) array of inputs (default x)")
    d.add_argument("--y-key", default=None, help="(.npz --data) array of labels (default y)")
    d.add_argument("--labels", default=None, help="(.npy --data) the .npy file of labels")
    d.add_argument("--limit", type=int, default=None, help="certify only the first K inputs")
    s = c.add_argument_group("sampling and method")
    s.add_argument("--sigma", type=float, default=0.25, help="noise level (default 0.25)")
    s.add_argument("--noise", default=None, choices=("float", "sound"),
                   help="float (floating-point Gaussian, default) or sound (the rounded Gaussian on --grid; "
                        "see docs/soundness.md)")
    s.add_argument("--grid", default=None,
                   help="(--noise sound) grid step the inputs lie on, e.g. 1/255 or 1/16 (required with sound)")
    s.add_argument("--clip", nargs=2, default=None, metavar=("LO", "HI"),
                   help="(--noise sound) clip range, grid points (default -k 1+k, k = max(1, ceil(6 sigma)))")
    s.add_argument("--n0", type=int, default=None, help="selection samples per input (default 100)")
    s.add_argument("--n", type=int, default=None, help="estimation samples per input (default 10000)")
    s.add_argument("--seed", type=int, default=None, help="run seed (default 0)")
    s.add_argument("--mode", default=None, choices=("counts", "scores"),
                   help="counts (hard smoothing, default) or scores (soft smoothing)")
    s.add_argument("--simplex", default=None, help="(--mode scores) hard, softmax or sparsemax (default hard)")
    s.add_argument("--temperature", type=float, default=None, help="(--simplex softmax) temperature (default 1)")
    _add_method_args(s)
    o = c.add_argument_group("output")
    o.add_argument("--out", default=None,
                   help="results TSV (default: results/<data>_<model file>_sigma<s>_n<n>_<reduction>_<radius>.tsv)")
    o.add_argument("--counts-log", default=None,
                   help="raw-counts log (default: next to the results as <data>_<model>_sigma<s>_..._seed<seed>"
                        ".counts.jsonl; 'none' to disable); counts mode only")
    o.add_argument("--no-progress", action="store_true", help="no progress bar")
    e = c.add_argument_group("engine")
    e.add_argument("--engine", default="local", choices=("local", "ray"),
                   help="local (this process) or ray (actors on a Ray cluster); default local")
    e.add_argument("--address", default=None,
                   help="(--engine ray) cluster to join: auto, HOST:PORT or ray://HOST:10001 (default: start one)")
    e.add_argument("--workers", type=int, default=None, help="(--engine ray) actors, one model each (default 2)")
    e.add_argument("--gpus-per-worker", type=float, default=None, help="(--engine ray) GPUs per actor (default 0)")
    e.add_argument("--cpus-per-worker", type=float, default=None, help="(--engine ray) CPUs per actor (default 1)")
    e.add_argument("--chunk-size", type=int, default=None, help="(--engine ray) inputs per Ray task (default 1)")
    q = c.add_argument_group("sequential")
    q.add_argument("--sequential", action="store_true",
                   help="anytime-valid sequential sampling: stop each input once --radii are decided "
                        "(and/or its radius is pinned to --tolerance); see docs/sequential.md")
    q.add_argument("--radii", type=float, nargs="+", default=None, help="(--sequential) radii to decide")
    q.add_argument("--tolerance", type=float, default=None, help="(--sequential) pin the radius to this width")
    q.add_argument("--max-n", type=int, default=None,
                   help="(--sequential) cap on estimation samples per input (default 100000)")
    q.add_argument("--seq-bound", default=None, choices=("mixture", "cp-looks", "betting", "table"),
                   help="(--sequential) confidence sequence (default mixture; table with --radius R2): table "
                        "reads the mixture CS after every sample")

    r = sub.add_parser("recertify", help="recompute certificates from a raw-counts log under another method")
    r.add_argument("counts_log", help="log written by certify")
    _add_method_args(r)
    r.add_argument("--limit", type=int, default=None, help="only the first K logged inputs")
    r.add_argument("--out", required=True, help="results TSV to write")
    r.add_argument("--no-progress", action="store_true")

    p = sub.add_parser("report", help="certified accuracy table and plot of results TSVs")
    p.add_argument("tsv", nargs="+", help="results TSVs (this tool's or Cohen et al.'s)")
    p.add_argument("--radii", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0],
                   help="radii of the certified accuracy columns (finite, >= 0)")
    p.add_argument("--plot", default=None, help="write a PNG of certified accuracy against radius")
    p.add_argument("--format", default="text", choices=("text", "markdown", "tsv"), help="table format")

    dm = sub.add_parser("demo", help="certify the digits test split with the shipped models, compare all methods")
    dm.add_argument("--out-dir", default=os.path.join("results", "demo"), help="output directory (results/demo)")
    dm.add_argument("--sigmas", type=float, nargs="+", default=[0.25, 0.5], help="noise levels (0.25 0.5)")
    dm.add_argument("--n", type=int, nargs="+", default=None, help="estimation sample sizes (default 1000)")
    dm.add_argument("--n0", type=int, default=100)
    dm.add_argument("--alpha", type=float, default=0.001)
    dm.add_argument("--seed", type=int, default=0)
    dm.add_argument("--limit", type=int, default=None, help="only the first K test inputs")
    dm.add_argument("--batch-size", type=int, default=1000)
    dm.add_argument("--workers", type=int, default=None,
                    help="background processes recertifying while sampling (default min(2, CPUs); 0: none)")
    dm.add_argument("--no-progress", action="store_true")
    return ap


# ----------------------------------------------------------------------------------- inapplicable flags

def _given(a, k: str) -> bool:
    return getattr(a, k, None) is not None


def _data_kind(a) -> str:
    if a.data == "digits":
        return "digits"
    low = a.data.lower()
    return "npz" if low.endswith(".npz") else "npy" if low.endswith(".npy") else "other"


def _mode(a) -> str:
    if a.sequential:
        return "scores" if a.seq_bound == "betting" else "counts"
    return a.mode or "counts"


#: Every rule ``(flag, when it does not apply, why)`` of ``certify``: the catalogue tested in tests/test_flags.py.
INAPPLICABLE: List[Tuple[str, Callable[[Any], bool], str]] = [
    *[(f, (lambda a: bool(a.sequential)), "a sequential run samples until decided and certifies with R_mono "
          "from its confidence sequence") for f in ("n", "reduction", "bound", "lipschitz",
                                                    "output_range", "mode")],
    ("radius", lambda a: bool(a.sequential) and a.radius not in ("Rmono", "R2"),
     "a sequential run certifies Rmono or R2 (R2 with --seq-bound table, its default for R2)"),
    *[(f, (lambda a: not a.sequential), "it applies only with --sequential")
      for f in ("radii", "tolerance", "max_n", "seq_bound")],
    *[(f, (lambda a: a.engine != "ray"), "it applies only with --engine ray") for f in _RAY_FLAGS],
    ("simplex", lambda a: _mode(a) == "counts", "counts mode uses the argmax (give --mode scores)"),
    ("temperature", lambda a: (a.simplex or "hard") != "softmax", "it applies only with --simplex softmax"),
    ("bound", lambda a: not a.sequential and _mode(a) == "counts",
     "counts mode bounds class counts (Clopper-Pearson or the trinomial tail); --bound is for --mode scores"),
    ("lipschitz", lambda a: not a.sequential and a.radius != "R1", "it applies only with --radius R1"),
    ("output_range", lambda a: not a.sequential and a.radius != "R1", "it applies only with --radius R1"),
    ("counts_log", lambda a: _mode(a) == "scores", "score matrices are not logged (counts mode only)"),
    ("split", lambda a: _data_kind(a) != "digits", "it applies only to --data digits"),
    ("x_key", lambda a: _data_kind(a) != "npz", "it applies only to an .npz --data file"),
    ("y_key", lambda a: _data_kind(a) != "npz", "it applies only to an .npz --data file"),
    ("labels", lambda a: _data_kind(a) != "npy", "it applies only to an .npy --data file"),
    ("noise", lambda a: bool(a.sequential) and a.noise == "sound",
     "--noise sound applies only to fixed-n runs (the sequential scheduler draws float noise)"),
    ("grid", lambda a: a.noise != "sound", "it applies only with --noise sound"),
    ("clip", lambda a: a.noise != "sound", "it applies only with --noise sound"),
    ("factory", lambda a: a.model is None, "it applies only with --model (a state dict)"),
    ("input_shape", lambda a: a.model is None, "the shipped model's input shape is known"),
    ("num_classes", lambda a: a.model is None, "the shipped model's class count is known"),
    ("normalize", lambda a: a.model is None, "the shipped model has no normalisation"),
]


def _flag(k: str) -> str:
    return "--" + k.replace("_", "-")


def check_applicable(a) -> None:
    """``ValueError`` naming the first flag of ``certify`` that does not apply (:data:`INAPPLICABLE`)."""
    for k, bad, why in INAPPLICABLE:
        if _given(a, k) and bad(a):
            if k == "counts_log" and str(a.counts_log).lower() == "none":
                continue
            raise ValueError(f"{_flag(k)} does not apply here: {why}")
    if a.sequential and a.radii is None and a.tolerance is None:
        raise ValueError("--sequential needs --radii and/or --tolerance")


def _check_recertify_flags(a) -> None:
    for k in ("lipschitz", "output_range"):
        if _given(a, k) and a.radius != "R1":
            raise ValueError(f"{_flag(k)} does not apply here: it applies only with --radius R1")


# ------------------------------------------------------------------------------------------- commands

def _parse_normalize(v) -> Optional[Tuple[Any, Any]]:
    if v is None:
        return None
    out = []
    for s, name in zip(v, ("MEAN", "STD")):
        try:
            vals = [float(t) for t in s.split(",")]
        except ValueError:
            raise ValueError(f"--normalize {name} must be a number or comma-separated numbers, got {s!r}") from None
        out.append(vals[0] if len(vals) == 1 else vals)
    return out[0], out[1]


def _spec(a):
    """The :class:`radius.run.spec.RunSpec` of ``certify``'s flags (identities filled in later)."""
    from .run.spec import RunSpec, SequentialSpec

    seq = None
    if a.sequential:
        seq = SequentialSpec(radii=tuple(a.radii or ()), tolerance=a.tolerance,
                             max_n=100_000 if a.max_n is None else a.max_n,
                             bound=a.seq_bound or ("table" if a.radius == "R2" else "mixture"),
                             radius_kind=a.radius or "Rmono")
    kw = dict(sigma=a.sigma, n0=100 if a.n0 is None else a.n0, seed=0 if a.seed is None else a.seed,
              simplex=a.simplex, temperature=a.temperature, noise=a.noise or "float", backend=a.backend,
              sequential=seq)
    if a.noise == "sound":
        kw.update(grid=a.grid, clip=None if a.clip is None else tuple(a.clip))
    if a.alpha is not None:
        kw["alpha"] = a.alpha
    if not a.sequential:
        kw.update(n=a.n, mode=a.mode, radius=a.radius, reduction=a.reduction, bound=a.bound,
                  lipschitz=a.lipschitz, output_range=a.output_range)
    return RunSpec(**kw)


def _stem(path: Optional[str]) -> str:
    """``dir/mlp.onnx -> "mlp-onnx"``: the model's file name in default paths (two formats never collide)."""
    root, ext = os.path.splitext(os.path.basename(path))
    return root + ("-" + ext[1:] if ext else "")


def default_paths(a, spec, dname: str, model_path: str) -> Tuple[str, Optional[str]]:
    """Results TSV and counts-log paths of ``certify`` (named after the data, the model and the spec)."""
    stem = f"{dname}_{_stem(model_path)}_sigma{spec.sigma:g}"
    if spec.noise == "sound":  # "sound-grid1-16-clip-2-3": never the float run's file
        stem += f"_sound-grid{spec.grid.replace('/', '-')}-clip{'-'.join(c.replace('/', '-') for c in spec.clip)}"
    if spec.sequential is not None:
        q = spec.sequential
        tag = f"sequential_{q.bound}_maxn{q.max_n}" + ("" if q.radius_kind == "Rmono" else f"_{q.radius_kind}")
        out = a.out or os.path.join("results", f"{stem}_{tag}.tsv")
        logname = f"{stem}_n0{spec.n0}_{tag}_seed{spec.seed}.counts.jsonl"
    else:
        out = a.out or os.path.join("results", f"{stem}_n{spec.n}_{spec.reduction}_{spec.radius}.tsv")
        logname = f"{stem}_n0{spec.n0}_n{spec.n}_seed{spec.seed}.counts.jsonl"
    log = a.counts_log
    if log is None and spec.mode == "counts":
        log = os.path.join(os.path.dirname(out) or ".", logname) if a.out else os.path.join("results", logname)
    if log is not None and log.lower() == "none":
        log = None
    return out, log


def _summary(certs, labels, path: Optional[str]) -> str:
    from .report import summarize

    valid = [(c, y) for c, y in zip(certs, labels) if c is not None]
    if not valid:
        return "no inputs certified\n"
    s = summarize([c for c, _ in valid], [y for _, y in valid], radii=[0.0, 0.5, 1.0])
    acc = s["certified_accuracy"]
    out = (f"{s['inputs']} inputs: certified accuracy {acc[0.0]:.3f} (r>=0), {acc[0.5]:.3f} (r>=0.5), "
           f"{acc[1.0]:.3f} (r>=1); ACR {s['acr']:.4f}; abstained {s['abstain']:.3f}\n")
    if path:
        out += f"results: {path}\n"
    return out


def _cmd_certify(a) -> int:
    check_applicable(a)
    spec = _spec(a)
    from .run.data import load_data
    from .run.model import default_model

    x, y, dname = load_data(a.data, split=a.split or "test", x_key=a.x_key or "x", y_key=a.y_key or "y",
                            labels=a.labels)
    model_path = a.model if a.model is not None else default_model(spec.sigma)
    out, log = default_paths(a, spec, dname, model_path)
    loader = {k: v for k, v in (("input_shape", a.input_shape), ("num_classes", a.num_classes),
                                ("normalize", _parse_normalize(a.normalize)), ("factory", a.factory))
              if v is not None}
    if "input_shape" not in loader and a.model is not None:
        loader["input_shape"] = tuple(x.shape[1:])  # the input shape comes from the data
    batch = 1000 if a.batch_size is None else a.batch_size
    if a.engine == "ray":
        from .engines.ray_engine import run_ray

        ray_kw = {k: getattr(a, k) for k in _RAY_FLAGS if getattr(a, k) is not None}
        certs = run_ray(spec, model_path, x, y, out=out, counts_log=log, limit=a.limit, progress=not a.no_progress,
                        batch_size=batch, loader=loader, **ray_kw)
        return _report_run(certs, y, out, log)
    from .run.model import open_sampler

    sampler, identity = open_sampler(model_path, spec, batch_size=batch, **loader)
    spec = spec.with_model(model=identity)
    if spec.sequential is not None:
        from .engines.sequential import run_sequential

        run = run_sequential(spec, sampler, x, y, out=out, counts_log=log, limit=a.limit,
                             progress=not a.no_progress)
        _report_run(run.certificates, y, out, log)
        sys.stdout.write(f"forward passes {run.forward_passes}; batch fill rate {run.fill_rate:.4f}\n")
        for r in spec.sequential.radii:
            sys.stdout.write(f"certified accuracy at {r:g}: {run.certified_accuracy(r):.3f}\n")
        return 0
    from .engines.local import run_local

    certs = run_local(spec, sampler, x, y, out=out, counts_log=log, limit=a.limit, progress=not a.no_progress)
    return _report_run(certs, y, out, log)


def _report_run(certs, y, out, log) -> int:
    sys.stdout.write(_summary(certs, y, out))
    if log:
        sys.stdout.write(f"counts log: {log}\n")
    return 0


def _cmd_recertify(a) -> int:
    from .pipeline import recertify
    from .run.files import read_counts_log

    _check_recertify_flags(a)
    kw = dict(radius=a.radius, reduction=a.reduction, bound=a.bound, lipschitz=a.lipschitz,
              output_range=a.output_range)
    certs = recertify(a.counts_log, alpha=0.001 if a.alpha is None else a.alpha, out=a.out, limit=a.limit,
                      progress=not a.no_progress, **kw)
    _, recs = read_counts_log(a.counts_log)
    sys.stdout.write(_summary(certs, [r["label"] for r in recs], a.out))
    return 0


def _cmd_report(a) -> int:
    from . import report

    report.check_radii(a.radii, "--radii")
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
    except OSError as e:  # the file system: a clean line, never a traceback
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        sys.stderr.write(f"\nconfbounds {a.command}: error: {where}{e.strerror or e}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write(f"\nconfbounds {a.command}: interrupted; rerun the same command to resume\n")
        return 130
