"""Build hook: compile the confbounds kernels ahead of time into the wheel (``confbounds.aot``).

Everything else is declared in ``pyproject.toml``.  After the pure-Python files are copied to the build
directory, ``python -m confbounds.aot build`` compiles the kernels from those files into
``confbounds/_kernels_<key><ext>`` there, so an installed package (a read-only one included) runs its first
bound without compiling.  If that fails (no C compiler, no Numba in the build environment) the install goes
on without the module and the kernels are compiled just in time, as before; ``CONFBOUNDS_BUILD_AOT=0`` skips
it.  Editable installs build nothing here (``scripts/setup.sh`` runs the same command in the source tree).
"""
import os
import subprocess
import sys

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution


class BuildPyWithKernels(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False) or os.environ.get("CONFBOUNDS_BUILD_AOT", "1") == "0":
            return
        pkg = os.path.join(os.path.abspath(self.build_lib), "confbounds")
        path = [os.path.abspath(self.build_lib)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(path))
        out = subprocess.run([sys.executable, "-m", "confbounds.aot", "build", "--into", pkg],
                             env=env, capture_output=True, text=True)
        if out.returncode != 0:
            tail = (out.stderr or out.stdout).strip().splitlines()[-1:] or ["?"]
            print(f"confbounds: kernels not compiled ahead of time ({tail[0]}); they will be compiled on first use",
                  file=sys.stderr)


class BinaryDistribution(Distribution):
    """The wheel holds a compiled module, so it is platform-specific."""

    def has_ext_modules(self):
        return os.environ.get("CONFBOUNDS_BUILD_AOT", "1") != "0"


setup(cmdclass={"build_py": BuildPyWithKernels}, distclass=BinaryDistribution)
