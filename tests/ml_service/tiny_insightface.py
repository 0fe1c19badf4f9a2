"""A tiny insightface model pack, written as ONNX graphs (no insightface weights are installable here).

``save_tiny_insightface(folder)`` writes what ``ML_INSIGHTFACE_MODEL_PATH`` expects, a directory like
``buffalo_l`` with a detector and a recogniser:

- ``det_tiny.onnx``: the SCRFD interface (one input ``[1, 3, H, W]``; 9 outputs: scores, box distances
  and 5 landmarks for strides 8, 16 and 32, two anchors per cell), so insightface routes it to SCRFD
  and decodes it with its own anchor, box, landmark and NMS code. Its one learned thing is fixed by
  hand so that tests know the answer: a white 32x32 block on a stride-32 cell is a "face" (score
  about 0.998), with a 96 px box and landmarks where the ArcFace template puts them, centred on the block.
  The stride-8 and -16 heads never fire.
- ``rec_tiny.onnx``: the ArcFace interface (``[N, 3, 112, 112]`` → ``[N, 512]``), a random projection
  of the aligned crop pooled to 7x7: different crops give different vectors, equal crops equal ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

VECTOR_SIZE = 512
CELL = 32  # the stride whose head fires: a "face" is a white CELL x CELL block on this grid
BOX = 96  # side of the box reported around that block
_STRIDES = (8, 16, 32)
_ANCHORS = 2
# ArcFace's 5-point template in its 112 px crop: eyes, nose tip, mouth corners.
_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)


def face_box(cell_x: int, cell_y: int) -> tuple[float, float, float, float]:
    """x, y, w, h (in the detector's pixels) of the face found at the block on grid cell (cell_x, cell_y)."""
    cx, cy = (cell_x + 0.5) * CELL, (cell_y + 0.5) * CELL
    return cx - BOX / 2, cy - BOX / 2, float(BOX), float(BOX)


def save_tiny_insightface(folder: Path, seed: int = 0) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    outputs: dict[str, list[onnx.ValueInfoProto]] = {"score": [], "bbox": [], "kps": []}

    def const(name: str, value: np.ndarray[Any, Any]) -> str:
        """An initializer (floats as float32, integers as they are); returns its name."""
        typed = value.astype(np.float32) if value.dtype.kind == "f" else value
        inits.append(numpy_helper.from_array(typed, name))
        return name

    # Box distances (left, top, right, bottom) and landmark offsets, in strides from the anchor, which
    # insightface puts at the cell's top-left corner; the block's centre is half a cell further.
    left = (BOX / 2 - CELL / 2) / CELL
    right = (BOX / 2 + CELL / 2) / CELL
    distances = np.array([left, left, right, right], dtype=np.float32)
    box_origin = CELL / 2 - BOX / 2  # box corner relative to the anchor, in pixels
    landmarks = ((_TEMPLATE * (BOX / 112.0) + box_origin) / CELL).reshape(-1)
    shape = const("flat_shape_1", np.array([-1, 1], dtype=np.int64))
    shape4 = const("flat_shape_4", np.array([-1, 4], dtype=np.int64))
    shape10 = const("flat_shape_10", np.array([-1, 10], dtype=np.int64))
    for stride in _STRIDES:
        pooled = f"pool{stride}"
        nodes.append(
            helper.make_node(
                "AveragePool", ["input.1"], [pooled], kernel_shape=[stride, stride], strides=[stride, stride]
            )
        )
        fires = stride == CELL
        # Score logit: 4 * (sum of the normalised channels) - 6; white (~+3) → 0.998, grey → 0.002.
        weight = np.full((_ANCHORS, 3, 1, 1), 4.0 if fires else 0.0, dtype=np.float32)
        bias = np.full((_ANCHORS,), -6.0 if fires else -30.0, dtype=np.float32)
        heads = {
            "score": (weight, bias, shape, True),
            "bbox": (np.zeros((4 * _ANCHORS, 3, 1, 1)), np.tile(distances, _ANCHORS), shape4, False),
            "kps": (np.zeros((10 * _ANCHORS, 3, 1, 1)), np.tile(landmarks, _ANCHORS), shape10, False),
        }
        for head, (w, b, flat, sigmoid) in heads.items():
            conv = f"{head}{stride}_conv"
            weights = [const(f"{conv}_w", np.asarray(w)), const(f"{conv}_b", np.asarray(b))]
            nodes.append(helper.make_node("Conv", [pooled, *weights], [conv]))
            last = conv
            if sigmoid:
                nodes.append(helper.make_node("Sigmoid", [last], [f"{head}{stride}_sig"]))
                last = f"{head}{stride}_sig"
            nodes.append(helper.make_node("Transpose", [last], [f"{head}{stride}_t"], perm=[0, 2, 3, 1]))
            out = f"{head}_{stride}"
            nodes.append(helper.make_node("Reshape", [f"{head}{stride}_t", flat], [out]))
            width = {"score": 1, "bbox": 4, "kps": 10}[head]
            outputs[head].append(helper.make_tensor_value_info(out, TensorProto.FLOAT, [None, width]))
    image = helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, "height", "width"])
    graph = helper.make_graph(
        nodes, "tiny_scrfd", [image], [*outputs["score"], *outputs["bbox"], *outputs["kps"]], inits
    )
    _save(graph, folder / "det_tiny.onnx")

    inits = []
    projection = rng.standard_normal((3 * 7 * 7, VECTOR_SIZE)).astype(np.float32)
    rec_nodes = [
        helper.make_node("AveragePool", ["input.1"], ["pooled"], kernel_shape=[16, 16], strides=[16, 16]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", const("projection", projection)], ["embedding"]),
    ]
    crop = helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["batch", 3, 112, 112])
    vector = helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", VECTOR_SIZE])
    _save(helper.make_graph(rec_nodes, "tiny_arcface", [crop], [vector], inits), folder / "rec_tiny.onnx")
    return folder


def _save(graph: object, path: Path) -> None:
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])  # type: ignore[arg-type]
    model.ir_version = 8  # what every onnxruntime since 1.10 reads
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
