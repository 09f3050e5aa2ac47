"""A new user with their own model and data (issue 12): a fresh torch MLP, not the bundled model.

Input shape (30,), 2 classes.  The model is exported as a pickled ``.pt``, as TorchScript and as ONNX; each
export certifies the same 50 inputs through the CLI with documented flags only (``--model``, ``--data`` with
``--x-key``/``--y-key``, ``--sigma``, ``--n0``, ``--n``, ``--out``); the three result files agree on
``predict`` and ``radius`` (the loader gives every format the same noise and the same counts).
"""
from __future__ import annotations

import numpy as np
import pytest

from radius.cli import main
from radius.run.files import read_tsv

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def user_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("user")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(30, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2)).eval()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 30)).astype(np.float32)
    with torch.no_grad():
        y = model(torch.from_numpy(x)).argmax(1).numpy()
    y[::7] = 1 - y[::7]  # a few wrong labels
    np.savez(d / "mydata.npz", features=x, target=y)
    torch.save(model, d / "mlp.pt")
    torch.jit.save(torch.jit.trace(model, torch.zeros(1, 30)), d / "mlp_script.pt")
    try:
        torch.onnx.export(model, (torch.zeros(1, 30),), str(d / "mlp.onnx"), input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                          dynamo=False)
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"torch.onnx.export is not available here: {e}")
    return d


def test_three_exports_certify_the_same(user_files, capsys):
    d = user_files
    results = {}
    for name in ("mlp.pt", "mlp_script.pt", "mlp.onnx"):
        out = d / f"{name}.tsv"
        rc = main(["certify", "--model", str(d / name), "--data", str(d / "mydata.npz"), "--x-key", "features",
                   "--y-key", "target", "--sigma", "0.5", "--n0", "50", "--n", "500", "--out", str(out),
                   "--no-progress"])
        err = capsys.readouterr().err
        assert rc == 0, err
        meta, cols = read_tsv(str(out))
        assert len(cols["idx"]) == 50 and meta["num_classes"] == 2
        results[name] = cols
    ref = results["mlp.pt"]
    for name, cols in results.items():
        assert cols["predict"].tolist() == ref["predict"].tolist(), name
        assert np.allclose(cols["radius"], ref["radius"], rtol=0, atol=1e-6), name
    assert (ref["predict"] >= 0).sum() >= 25  # a real run: most inputs are certified
