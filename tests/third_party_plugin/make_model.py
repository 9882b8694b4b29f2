"""Writes exposure.onnx: mean intensity of a 1x1x64x64 image (ReduceMean).

Run with any Python that has `onnx`: python make_model.py
"""

from pathlib import Path

import onnx
from onnx import TensorProto, helper

image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1, 64, 64])
mean = helper.make_tensor_value_info("mean", TensorProto.FLOAT, [1, 1])
node = helper.make_node("ReduceMean", ["image"], ["mean_4d"], axes=[2, 3], keepdims=1)
reshape_to = helper.make_tensor("shape", TensorProto.INT64, [2], [1, 1])
flatten = helper.make_node("Reshape", ["mean_4d", "shape"], ["mean"])
graph = helper.make_graph([node, flatten], "exposure", [image], [mean], initializer=[reshape_to])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
model.ir_version = 7
onnx.checker.check_model(model)
out = Path(__file__).parent / "src" / "edgeret_example_plugin" / "exposure.onnx"
onnx.save(model, out)
print(f"wrote {out}")
