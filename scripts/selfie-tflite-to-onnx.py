#!/usr/bin/env python3
"""Converts MediaPipe's selfie segmenter (selfie_segmentation.tflite, 256x256,
Apache-2.0, shipped in the npm package @mediapipe/selfie_segmentation) to ONNX
so that rten can run it.

Why a converter of our own: tf2onnx needs TensorFlow (a ~600 MB install) and
does not know MediaPipe's custom op Convolution2DTransposeBias; the model uses
only eleven op kinds, each of which maps onto one ONNX op. The graph is built
in NCHW order (the ONNX convention rten is fastest with): weights are
transposed, and every tensor keeps TFLite's NHWC shape permuted to NCHW, so
per-channel broadcasts ([1,1,1,C] -> [1,C,1,1]) still line up.

Input  "input":  float32 [1, 3, 256, 256], RGB scaled to [0, 1].
Output "mask":   float32 [1, 1, 256, 256], person probability.

Usage: selfie-tflite-to-onnx.py IN.tflite OUT.onnx
Needs the pinned packages tflite, onnx and numpy (scripts/fetch-models.sh
installs them in a throw-away venv).
"""
import struct
import sys

import numpy as np
import onnx
import tflite
from onnx import TensorProto, helper, numpy_helper

OPS = {v: k for k, v in tflite.BuiltinOperator.__dict__.items() if not k.startswith("_")}
NP_TYPE = {tflite.TensorType.FLOAT32: np.float32, tflite.TensorType.FLOAT16: np.float16,
           tflite.TensorType.INT32: np.int32}


def main(src, dst):
    buf = open(src, "rb").read()
    model = tflite.Model.GetRootAsModel(buf, 0)
    g = model.Subgraphs(0)

    def name(i):
        return g.Tensors(i).Name().decode()

    def shape(i):
        t = g.Tensors(i)
        return [int(d) for d in t.ShapeAsNumpy()] if t.ShapeLength() else []

    def data(i):
        t = g.Tensors(i)
        raw = model.Buffers(t.Buffer()).DataAsNumpy()
        return np.frombuffer(raw.tobytes(), dtype=NP_TYPE[t.Type()]).reshape(shape(i))

    consts = {}  # tensor index -> float32 array (NHWC / TFLite layout)
    nodes, inits = [], []

    def nchw(s):
        return [s[0], s[3], s[1], s[2]] if len(s) == 4 else s

    def same_pads(in_hw, k, s, out_hw):
        pads = []
        for i in range(2):
            total = max((out_hw[i] - 1) * s[i] + k[i] - in_hw[i], 0)
            pads.append((total // 2, total - total // 2))
        # ONNX order: [top, left, bottom, right]
        return [pads[0][0], pads[1][0], pads[0][1], pads[1][1]]

    def init(nm, arr):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr.astype(np.float32)), nm))
        return nm

    def check_no_fused(opts_cls, op):
        o = opts_cls()
        o.Init(op.BuiltinOptions().Bytes, op.BuiltinOptions().Pos)
        if hasattr(o, "FusedActivationFunction") and o.FusedActivationFunction() != 0:
            raise SystemExit(f"fused activation not handled in {name(op.Outputs(0))}")
        return o

    for k in range(g.OperatorsLength()):
        op = g.Operators(k)
        oc = model.OperatorCodes(op.OpcodeIndex())
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        kind = OPS.get(code) if code != tflite.BuiltinOperator.CUSTOM else oc.CustomCode().decode()
        ins = [op.Inputs(j) for j in range(op.InputsLength())]
        out = op.Outputs(0)
        o_name = name(out)
        if kind == "DEQUANTIZE":
            consts[out] = data(ins[0]).astype(np.float32)
        elif kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            cls = tflite.Conv2DOptions if kind == "CONV_2D" else tflite.DepthwiseConv2DOptions
            o = check_no_fused(cls, op)
            w = consts[ins[1]]
            b = consts[ins[2]]
            if kind == "CONV_2D":
                wt = w.transpose(0, 3, 1, 2)  # OHWI -> OIHW
                group = 1
            else:
                wt = w.transpose(3, 0, 1, 2)  # 1HWC -> C1HW
                group = w.shape[3]
            strides = [o.StrideH(), o.StrideW()]
            in_s, out_s = shape(ins[0]), shape(out)
            kh, kw = w.shape[1], w.shape[2]
            if o.Padding() == tflite.Padding.SAME:
                pads = same_pads(in_s[1:3], [kh, kw], strides, out_s[1:3])
            else:
                pads = [0, 0, 0, 0]
            nodes.append(helper.make_node(
                "Conv", [name(ins[0]), init(o_name + "/w", wt), init(o_name + "/b", b)], [o_name],
                kernel_shape=[kh, kw], strides=strides, pads=pads, group=group,
                dilations=[o.DilationHFactor(), o.DilationWFactor()]))
        elif kind == "Convolution2DTransposeBias":
            # Custom options are a raw TfLiteTransposeConvParams {padding, stride_w, stride_h}.
            raw = op.CustomOptionsAsNumpy().tobytes()
            padding, stride_w, stride_h = struct.unpack("<iii", raw[:12])
            w = consts[ins[1]]  # OHWI
            in_s, out_s = shape(ins[0]), shape(out)
            kh, kw = w.shape[1], w.shape[2]
            total_h = max((in_s[1] - 1) * stride_h + kh - out_s[1], 0)
            total_w = max((in_s[2] - 1) * stride_w + kw - out_s[2], 0)
            pads = [total_h // 2, total_w // 2, total_h - total_h // 2, total_w - total_w // 2]
            nodes.append(helper.make_node(
                "ConvTranspose",
                [name(ins[0]), init(o_name + "/w", w.transpose(3, 0, 1, 2)),  # OHWI -> IOHW
                 init(o_name + "/b", consts[ins[2]])],
                [o_name], kernel_shape=[kh, kw], strides=[stride_h, stride_w], pads=pads))
        elif kind in ("ADD", "MUL"):
            check_no_fused(tflite.AddOptions if kind == "ADD" else tflite.MulOptions, op)
            nodes.append(helper.make_node(kind.capitalize(), [name(i) for i in ins], [o_name]))
        elif kind in ("RELU", "HARD_SWISH", "LOGISTIC"):
            onnx_op = {"RELU": "Relu", "HARD_SWISH": "HardSwish", "LOGISTIC": "Sigmoid"}[kind]
            nodes.append(helper.make_node(onnx_op, [name(ins[0])], [o_name]))
        elif kind == "AVERAGE_POOL_2D":
            if shape(out)[1:3] != [1, 1]:
                raise SystemExit(f"only global average pooling is handled ({o_name})")
            nodes.append(helper.make_node("GlobalAveragePool", [name(ins[0])], [o_name]))
        elif kind == "RESIZE_BILINEAR":
            o = tflite.ResizeBilinearOptions()
            o.Init(op.BuiltinOptions().Bytes, op.BuiltinOptions().Pos)
            mode = ("align_corners" if o.AlignCorners() else
                    "half_pixel" if o.HalfPixelCenters() else "asymmetric")
            sizes = np.array(nchw(shape(out)), dtype=np.int64)
            inits.append(numpy_helper.from_array(sizes, o_name + "/sizes"))
            nodes.append(helper.make_node(
                "Resize", [name(ins[0]), "", "", o_name + "/sizes"], [o_name],
                mode="linear", coordinate_transformation_mode=mode))
        else:
            raise SystemExit(f"op {kind} not handled")

    in_i, out_i = g.Inputs(0), g.Outputs(0)
    # Rename the graph's ends to stable names the Rust side uses.
    for n in nodes:
        n.input[:] = ["input" if x == name(in_i) else x for x in n.input]
        n.output[:] = ["mask" if x == name(out_i) else x for x in n.output]
    graph = helper.make_graph(
        nodes, "selfie_segmentation",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, nchw(shape(in_i)))],
        [helper.make_tensor_value_info("mask", TensorProto.FLOAT, nchw(shape(out_i)))],
        inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)],
                          producer_name="rythmiq selfie-tflite-to-onnx")
    m.ir_version = 7
    onnx.checker.check_model(m)
    # Fixed metadata so the output bytes (and their sha256) are reproducible.
    onnx.save(m, dst)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
