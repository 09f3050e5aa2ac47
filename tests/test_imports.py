"""`import confbounds` (and backends, radius) must not pull in heavy frameworks."""
import subprocess
import sys

HEAVY = ("torch", "onnxruntime", "cvxpy", "ray", "matplotlib")


def _loaded_after(stmt):
    code = f"import sys; {stmt}; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_confbounds_is_light():
    assert _loaded_after("import confbounds, confbounds.coverage") == ""


def test_backends_and_radius_are_lazy():
    assert _loaded_after("import backends, radius") == ""
