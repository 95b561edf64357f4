"""Make the snnTorch-written NIR files that tests/test_nir.py imports (run once; CI needs no PyTorch).

Two steps, because tess-keras (TensorFlow) and snnTorch (PyTorch) live in different environments:

    python tests/data/nir/make_snntorch_nir.py data /tmp/digits.npz
        (the tess-keras environment) writes the built-in digits split exactly as tess-keras feeds it:
        train/test images [N, 8, 8, 1] (each repeated over T = 4 steps) and labels.

    python -m venv /tmp/snn && /tmp/snn/bin/pip install torch==2.13.0 snntorch==1.0.0 nirtorch==2.6 nir==1.0.8
    /tmp/snn/bin/python tests/data/nir/make_snntorch_nir.py snntorch /tmp/digits.npz tests/data/nir
        trains two small snnTorch networks on it (seeded, a few epochs on the CPU), exports each with
        snntorch.export_nir.export_to_nir + nir.write, and writes the networks' predictions on the test
        split (NAME.npz: predictions, the summed outputs, labels, the test images and T).

Networks (8x8x1 digits, T = 4, inputs fed directly at every step):
    digits_subtract: Conv2d(1,16,3,pad 1) -> Leaky(beta 0.5, thr 0.6, subtract) -> Conv2d(16,32,3,stride 2,
        pad 1) -> Leaky -> Flatten -> Linear(512,10) readout; prediction argmax of the summed readout.
    digits_zero: Conv2d(1,16,3,pad 1) -> Leaky(zero reset) -> AvgPool2d(2) -> Conv2d(16,32,3,pad 1) ->
        Leaky(zero) -> Flatten -> Linear(512,10, no bias) -> Leaky(zero); prediction = most output spikes.
Convolutions have no bias (tess-keras spiking layers have none).
"""

import sys
from pathlib import Path

import numpy as np

TIME_STEPS = 4


def write_data(path):
    """Digits split as tess-keras sees it (tess-keras environment)."""
    from tess_keras import data

    splits = data.load_dataset("digits", None, TIME_STEPS, 0)
    arrays = {}
    for subset in ("train", "test"):
        xs, ys = [], []
        for inputs, labels in data.make_tf_dataset(splits, subset, 256):
            xs.append(inputs.numpy()[:, 0])
            ys.append(labels.numpy())
        arrays[f"x_{subset}"], arrays[f"y_{subset}"] = np.concatenate(xs), np.concatenate(ys)
    np.savez(path, time_steps=TIME_STEPS, **arrays)


def _networks(torch, snn):
    # beta and threshold as tensors of the layer's shape: snnTorch writes them as the LIF's parameter arrays,
    # and NIR's type check needs them shaped like the neurons (scalars fail it for conv layers).
    def leaky(shape, **kwargs):
        return snn.Leaky(beta=torch.full(shape, 0.5), threshold=torch.full(shape, 0.6), init_hidden=True, **kwargs)

    subtract = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1, bias=False), leaky((16, 8, 8)),
        torch.nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), leaky((32, 4, 4)),
        torch.nn.Flatten(), torch.nn.Linear(32 * 4 * 4, 10),
    )
    zero = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1, bias=False), leaky((16, 8, 8), reset_mechanism="zero"),
        torch.nn.AvgPool2d(2),
        torch.nn.Conv2d(16, 32, 3, padding=1, bias=False), leaky((32, 4, 4), reset_mechanism="zero"),
        torch.nn.Flatten(), torch.nn.Linear(32 * 4 * 4, 10, bias=False), leaky((10,), reset_mechanism="zero"),
    )
    return {"digits_subtract": subtract, "digits_zero": zero}


def _run(torch, snn, net, x, steps):
    """Sum over T of the network's outputs for static images x [N, 1, 8, 8]."""
    from snntorch import utils

    utils.reset(net)
    total = 0
    for _ in range(steps):
        total = total + net(x)
    return total


def make_snntorch(data_path, out_dir):
    """Train, export and predict with snnTorch (PyTorch environment)."""
    import nir
    import snntorch as snn
    import snntorch.utils  # noqa: F401  (snn.utils.reset)
    import torch
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(0)
    arrays = np.load(data_path)
    steps = int(arrays["time_steps"])
    to_torch = lambda a: torch.tensor(np.ascontiguousarray(a.transpose(0, 3, 1, 2)), dtype=torch.float32)  # noqa
    x_train, y_train = to_torch(arrays["x_train"]), torch.tensor(arrays["y_train"], dtype=torch.long)
    x_test, y_test = to_torch(arrays["x_test"]), arrays["y_test"]
    out_dir = Path(out_dir)
    for name, net in _networks(torch, snn).items():
        cache = Path(f"{data_path}.{name}.pt")  # trained weights, so that a re-run only re-exports
        if cache.exists():
            net.load_state_dict(torch.load(cache))
        optimizer = torch.optim.Adam(net.parameters(), lr=2e-3)
        for epoch in range(0 if cache.exists() else 8):
            order = torch.randperm(len(x_train))
            for start in range(0, len(order), 32):
                batch = order[start : start + 32]
                loss = torch.nn.functional.cross_entropy(_run(torch, snn, net, x_train[batch], steps), y_train[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        torch.save(net.state_dict(), cache)
        with torch.no_grad():
            summed = _run(torch, snn, net, x_test, steps).numpy()
        predictions = summed.argmax(axis=-1)
        print(f"{name}: snnTorch test accuracy {np.mean(predictions == y_test):.4f}")
        snn.utils.reset(net)
        graph = export_to_nir(net, x_test[:1], ignore_dims=[0])  # NIR types without the batch
        nir.write(str(out_dir / f"{name}.nir"), graph)
        np.savez_compressed(out_dir / f"{name}.npz", predictions=predictions, summed=summed, labels=y_test,
                            x_test=arrays["x_test"], time_steps=steps)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "data":
        write_data(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "snntorch":
        make_snntorch(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
