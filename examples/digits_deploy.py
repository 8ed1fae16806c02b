"""Train the digits CNN, then deploy it as a bundle an app can trust.

Trains a small CNN on scikit-learn's bundled digits (no download), then one call exports it to
ONNX, quantizes it to INT8 with real calibration images, checks every variant against the trained
PyTorch model on held-out digits on each device, benchmarks them, and writes the bundle folder.
Finally it loads the bundle back per device (sha256-verified) and measures accuracy.

    python examples/digits_deploy.py --out digits-bundle --device cpu --device openvino:CPU
    edgeai info digits-bundle
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import edgeai
from edgeai.demo import load_digits_28, train_cnn  # the demo's data loader and training loop
from edgeai.zoo import get


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="digits-bundle", help="bundle folder to write")
    parser.add_argument("--device", action="append", help="target device (repeat); default: every device here")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--mode", default="static", help="static, dynamic, fp16, openvino-int8, auto or none")
    parser.add_argument("--iterations", type=int, default=200, help="timed runs per variant and device")
    args = parser.parse_args()
    devices = args.device or [d for d in edgeai.devices() if d in ("cpu", "openvino:CPU")]

    # 1. Train: 1437 training digits, 8x8 upsampled to 1x28x28 floats in [0, 1].
    x_train, x_test, y_train, y_test = load_digits_28()
    model = train_cnn(x_train, y_train, epochs=args.epochs)
    with torch.inference_mode():
        torch_acc = float((model(torch.from_numpy(x_test)).argmax(1).numpy() == y_test).mean())
    print(f"trained: PyTorch FP32 test accuracy {torch_acc:.1%}")

    # 2. Deploy. Calibration uses real training images (one per feed); parity is measured on the
    #    held-out digits in batches of 32, against the trained PyTorch model.
    calibration = [{"pixel_values": x_train[i:i + 1]} for i in range(0, len(x_train), 4)]
    held_out = [{"pixel_values": x_test[i:i + 32]} for i in range(0, len(x_test), 32)]
    result = edgeai.deploy(
        model, args.out, devices=devices, mode=args.mode, name="digits-cnn (examples/digits_deploy.py)",
        example_inputs=(torch.from_numpy(x_train[:2]),), inputs=get("cnn").inputs, output_names=["logits"],
        calibration=calibration, eval_inputs=held_out, samples=len(held_out), iterations=args.iterations,
        labels=[str(d) for d in range(10)],
        # What an app must do to a raw image before feeding it (the HTTP example reports it).
        preprocessing={"pixel_values": {"layout": "NCHW", "channels": "grayscale", "size": [28, 28],
                                        "range": [0.0, 1.0], "from": "sklearn digits / 16, bilinear 8x8 -> 28x28"}},
    )
    print(f"wrote {result.path} in {result.time_s:.0f}s; defaults: {result.manifest['defaults']}")

    # 3. Load the bundle as an app would: the variant made for each device, verified before loading.
    for device in devices:
        deployed = edgeai.load(result.path, device=device)
        logits = deployed.run({"pixel_values": x_test})["logits"]
        acc = float((logits.argmax(1) == y_test).mean())
        latency = next(v["latency"][device] for v in result.manifest["variants"]
                       if v["name"] == result.manifest["defaults"][device])
        print(f"{device}: {deployed.describe().summary()}: test accuracy {acc:.1%} "
              f"(PyTorch {torch_acc:.1%}), p50 {latency['p50_ms']:.3f} ms at batch 1")
        assert np.isfinite(logits).all()


if __name__ == "__main__":
    main()
