"""Shared pytest configuration: the ``gpu`` marker.

Tests marked ``gpu`` need a CUDA GPU (``torch.cuda``, or onnxruntime's CUDA / TensorRT execution providers) and
skip cleanly without one; ``scripts/gpu_check.sh`` runs them (``pytest -m gpu``) on a machine that has one.
"""


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU (torch.cuda or onnxruntime CUDA/TensorRT); skipped "
                                       "without one; run by scripts/gpu_check.sh")
