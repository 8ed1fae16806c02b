"""A BERT-like text classifier from a tiny config (random weights, nothing downloaded), saved as a
transformers folder and deployed from it: export, dynamic INT8, parity, latency, one bundle.

This is the path a fine-tuned checkpoint takes: ``save_pretrained`` gives a folder with
config.json and safetensors weights; ``edgeai deploy FOLDER --task text-classification`` does the rest.

    python examples/bert_encoder.py --out bert-bundle
    edgeai info bert-bundle
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np
import transformers

import edgeai


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bert-bundle")
    parser.add_argument("--device", action="append", help="target device (repeat); default: cpu")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=100)
    args = parser.parse_args()
    devices = args.device or ["cpu"]

    # 1. A tiny BERT with a 3-class head; the same code works for a real checkpoint folder.
    transformers.set_seed(0)
    config = transformers.BertConfig(vocab_size=1000, hidden_size=64, num_hidden_layers=args.layers,
                                     num_attention_heads=4, intermediate_size=128, max_position_embeddings=128,
                                     num_labels=3, id2label={0: "negative", 1: "neutral", 2: "positive"})
    model = transformers.BertForSequenceClassification(config).eval()

    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder, safe_serialization=True)  # config.json + model.safetensors

        # 2. Deploy the folder. Inputs (input_ids, attention_mask, token_type_ids) come from the task,
        #    with dynamic batch and sequence; dynamic INT8 needs no calibration data.
        result = edgeai.deploy(folder, args.out, task="text-classification", devices=devices, mode="dynamic",
                               labels=[config.id2label[i] for i in range(3)], iterations=args.iterations,
                               # random weights spread logits little: let FP32 stand in if INT8 drifts
                               fallback_fp32=True,
                               preprocessing={"tokenizer": "WordPiece, vocabulary of 1000 (tiny demo config)",
                                              "max_length": 128})
    print(f"wrote {result.path}: defaults {result.manifest['defaults']}")
    for v in result.manifest["variants"]:
        for device, p in v["parity"].items():
            print(f"  {v['name']:14} {device:13} {p['verdict']}")
    for note in result.notes:
        print(f"  note: {note}")

    # 3. Serve it: load the bundle (sha256-verified) and classify two "sentences" of different length.
    for device in devices:
        classifier = edgeai.load(result.path, device=device)
        ids = np.array([[101, 7, 42, 99, 102, 0, 0], [101, 5, 6, 7, 8, 9, 102]], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": (ids != 0).astype(np.int64),
                 "token_type_ids": np.zeros_like(ids)}
        logits = classifier.run(feeds)["logits"]
        labels = [config.id2label[int(i)] for i in logits.argmax(1)]
        print(f"{device}: {classifier.describe().summary()}: logits shape {list(logits.shape)} -> {labels}")


if __name__ == "__main__":
    main()
