"""`import edgeai` must stay light: an app that only runs ONNX files never pays for torch."""

import subprocess
import sys

from conftest import ROOT


def test_import_does_not_load_heavy_libraries():
    code = ("import sys, edgeai; heavy = [m for m in ('torch', 'transformers', 'openvino', 'nncf', 'onnxruntime') "
            "if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == ""


def test_importtime_under_budget():
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", "import edgeai"], capture_output=True,
                         text=True, cwd=ROOT, check=True)
    total_us = [int(line.split("|")[1]) for line in out.stderr.splitlines() if line.rstrip().endswith("edgeai")]
    assert total_us and total_us[-1] < 300_000, out.stderr[-2000:]


def test_loading_an_onnx_file_on_onnxruntime_does_not_import_torch(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "relu.onnx")
    code = (f"import sys, numpy as np, edgeai; m = edgeai.load(r'{tmp_path / 'relu.onnx'}'); "
            "print(m(x=np.ones((2, 4), np.float32))['y'].sum(), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.split() == ["8.0", "False"]
