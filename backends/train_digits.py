"""Train the shipped digits CNNs (``python -m backends.train_digits``).

Recipe (Cohen, Rosenfeld & Kolter, ICML 2019, section 4: train the base classifier with Gaussian noise
augmentation at the noise level used for smoothing):

* data: ``sklearn.datasets.load_digits`` (1797 8x8 images, grey levels 0..16), pixels / 16 -> [0, 1], shape
  ``(N, 1, 8, 8)``; ``train_test_split(test_size=0.2, stratify=y, random_state=0)`` -> 1437 train, 360 test;
* model: :class:`backends.models.DigitsCNN`;
* training: Adam (lr 1e-3), 60 epochs, mini-batches of 64, every mini-batch perturbed by fresh
  ``N(0, sigma^2 I)`` noise, cross-entropy loss, ``torch.manual_seed(0)``, one CPU thread (bit-reproducible on
  one machine, a few seconds per model);
* outputs: ``backends/models/digits_cnn_sigma{0.25,0.50}.{pt,onnx}`` (state dict; ONNX opset 17 from the
  legacy TorchScript exporter, input ``"input"`` ``(batch, 1, 8, 8)`` float32, output ``"logits"`` ``(batch,
  10)``, dynamic batch axis) and ``backends/data/digits.npz`` (``x_train, y_train, x_test, y_test``).

It prints the clean test accuracy and the noisy test accuracy (each test image under 100 noise draws at the
training sigma, seed 0) and writes them to ``backends/models/digits_cnn_metrics.json``.

scikit-learn and onnx are needed only here, never at run time.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from .models import DATA_DIR, INPUT_SHAPE, MODEL_DIR, SIGMAS, default_model_path, digits_data_path

EPOCHS = 60
BATCH = 64
LR = 1e-3
SEED = 0


def make_split():
    """The fixed 80/20 stratified split of scikit-learn's digits, pixels scaled to [0, 1]."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None, :, :]
    y = d.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, stratify=y, random_state=SEED)
    return x_tr, y_tr, x_te, y_te


def train_one(sigma: float, x_tr: np.ndarray, y_tr: np.ndarray, epochs: int = EPOCHS):
    import torch
    from torch import nn

    from .models import DigitsCNN

    torch.manual_seed(SEED)
    model = DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    xt = torch.from_numpy(x_tr)
    yt = torch.from_numpy(y_tr)
    g = torch.Generator().manual_seed(SEED)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=g)
        for i in range(0, len(xt), BATCH):
            idx = perm[i:i + BATCH]
            xb = xt[idx] + sigma * torch.randn(xt[idx].shape, generator=g)
            loss = loss_fn(model(xb), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    return model


def evaluate(model, sigma: float, x: np.ndarray, y: np.ndarray, draws: int = 100):
    import torch

    xt = torch.from_numpy(x)
    with torch.inference_mode():
        clean = float((model(xt).argmax(1).numpy() == y).mean())
        g = torch.Generator().manual_seed(SEED)
        hits = 0
        for _ in range(draws):
            pred = model(xt + sigma * torch.randn(xt.shape, generator=g)).argmax(1).numpy()
            hits += int((pred == y).sum())
    return clean, hits / (draws * len(y))


def export_onnx(model, path: Path) -> None:
    import torch

    dummy = torch.zeros((2, *INPUT_SHAPE), dtype=torch.float32)
    torch.onnx.export(model, (dummy,), str(path), dynamo=False, opset_version=17, input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})


def main(argv=None) -> dict:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    MODEL_DIR.mkdir(parents=True, exist_ok=True)
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    x_tr, y_tr, x_te, y_te = make_split()
    np.savez_compressed(digits_data_path(), x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)
    metrics = {"epochs": args.epochs, "n_train": int(len(y_tr)), "n_test": int(len(y_te)), "models": {}}
    for sigma in SIGMAS:
        t0 = time.perf_counter()
        model = train_one(sigma, x_tr, y_tr, args.epochs)
        seconds = time.perf_counter() - t0
        clean, noisy = evaluate(model, sigma, x_te, y_te)
        torch.save(model.state_dict(), default_model_path(sigma, "pt"))
        export_onnx(model, default_model_path(sigma, "onnx"))
        metrics["models"][f"{sigma:.2f}"] = {"clean_test_accuracy": clean, "noisy_test_accuracy": noisy,
                                              "train_seconds": round(seconds, 2)}
        print(f"sigma={sigma:.2f}: clean test accuracy {clean:.4f}, noisy test accuracy {noisy:.4f} "
              f"(100 draws per image), trained in {seconds:.1f} s")
    (MODEL_DIR / "digits_cnn_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


if __name__ == "__main__":
    main()
