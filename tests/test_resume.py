"""Crash safety with the real thing: the `confbounds certify` CLI on the shipped ONNX digits model,
killed with SIGKILL mid-run (twice), rerun with the same command, compared with an uninterrupted run.
Both a fixed-n run and a sequential run (rows flushed as decided, in index order) are tested."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from radius import results as res

REPO = Path(__file__).resolve().parents[1]
LIMIT = 40


def _cmd(out, log, sequential=False):
    method = (["--sequential", "--radii", "0.25", "0.5", "--max-n", "20000"] if sequential else ["--n", "1000"])
    return [sys.executable, "-m", "radius", "certify", "--sigma", "0.25", "--limit", str(LIMIT), *method,
            "--n0", "100", "--seed", "3", "--out", str(out), "--counts-log", str(log), "--no-progress"]


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def _rows(path) -> int:
    try:
        with open(path, "rb") as f:
            return max(f.read().count(b"\n") - 2, 0)
    except FileNotFoundError:
        return 0


def _run_and_kill(cmd, out, after_rows, cwd, timeout=180.0):
    """Start ``cmd``; SIGKILL it as soon as ``out`` has ``after_rows`` complete rows."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t0 = time.monotonic()
    while _rows(out) < after_rows:
        if proc.poll() is not None:
            pytest.fail(f"certify ended (rc {proc.returncode}) before it could be killed: {proc.stderr.read()!r}")
        if time.monotonic() - t0 > timeout:
            proc.kill()
            pytest.fail("certify made no progress")
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    return _rows(out)


def _columns_but_time(path):
    lines = Path(path).read_text().split("\n")
    assert lines[-1] == ""  # ends with a complete line
    out = lines[:2]
    for ln in lines[2:-1]:
        f = ln.split("\t")
        out.append("\t".join(f[:5] + f[6:]))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("sequential", [False, True], ids=["fixed-n", "sequential"])
def test_sigkill_mid_run_then_rerun_equals_uninterrupted(tmp_path, sequential):
    out, log = tmp_path / "run.tsv", tmp_path / "run.counts.jsonl"
    cmd = _cmd(out, log, sequential)
    k1 = _run_and_kill(cmd, out, 5, tmp_path)
    assert 5 <= k1 < LIMIT, "killed mid-run"
    k2 = _run_and_kill(cmd, out, k1 + 8, tmp_path)
    assert k1 + 8 <= k2 < LIMIT
    done = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr

    ref_out, ref_log = tmp_path / "ref.tsv", tmp_path / "ref.counts.jsonl"
    ref = subprocess.run(_cmd(ref_out, ref_log, sequential), cwd=tmp_path, env=_env(), capture_output=True, text=True,
                         timeout=300)
    assert ref.returncode == 0, ref.stderr

    a, b = _columns_but_time(out), _columns_but_time(ref_out)
    assert len(a) == len(b) == 2 + LIMIT
    assert a == b
    _, cols = res.read_tsv(str(out))
    assert cols["idx"].tolist() == list(range(LIMIT))  # no duplicate and no lost row
    assert log.read_bytes() == ref_log.read_bytes()

    # the same command once more: nothing to do, the file is unchanged
    before = out.read_bytes()
    again = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert out.read_bytes() == before

    # a different configuration on the same file is refused, the file untouched
    bad = cmd[:]
    bad[bad.index("--seed") + 1] = "4"
    refused = subprocess.run(bad, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2
    assert "another run" in refused.stderr and "seed" in refused.stderr
    assert out.read_bytes() == before
