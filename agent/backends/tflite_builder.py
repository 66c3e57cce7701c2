"""Builds small, real TFLite models without TensorFlow, for tests and ``hilnas-agent selftest``.

Uses the flatbuffer schema module that ``ai-edge-litert`` ships (``schema_py_generated``) and the
``flatbuffers`` package it depends on; both are imported only when a model is built.
"""
from __future__ import annotations

import numpy as np

from hilnas.agent.validate import TFLITE_IDENTIFIER, TFLITE_SCHEMA_VERSION

_ALIGN = 16  # constant buffers aligned like the TFLite converter does, for SIMD kernels


def _schema():
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError as exc:
        raise ImportError("building TFLite models needs ai-edge-litert (pip install 'hilnas[tflite]')") from exc
    return schema


def _aligned_buffer(schema, data: bytes | None):
    """A BufferT whose bytes start on a 16-byte boundary (the generated Pack aligns to 1)."""

    class AlignedBufferT(schema.BufferT):
        def Pack(self, builder):
            vec = None
            if data:
                builder.StartVector(1, len(data), _ALIGN)
                builder.head -= len(data)
                builder.Bytes[builder.head:builder.head + len(data)] = data
                vec = builder.EndVector()  # StartVector recorded the length
            schema.BufferStart(builder)
            if vec is not None:
                schema.BufferAddData(builder, vec)
            return schema.BufferEnd(builder)

    return AlignedBufferT()


def _tensor(schema, name: str, shape: list[int], buffer: int):
    t = schema.TensorT()
    t.name, t.shape, t.type, t.buffer = name, shape, schema.TensorType.FLOAT32, buffer
    return t


def _finish(schema, subgraph, opcodes: list, constants: list[bytes | None]) -> bytes:
    import flatbuffers

    model = schema.ModelT()
    model.version = TFLITE_SCHEMA_VERSION
    model.description = "hilnas test model"
    model.operatorCodes = opcodes
    model.subgraphs = [subgraph]
    # Buffer 0 is the empty sentinel every tensor without constant data points to.
    model.buffers = [_aligned_buffer(schema, None)] + [_aligned_buffer(schema, c) for c in constants]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=TFLITE_IDENTIFIER)
    return bytes(builder.Output())


def _opcode(schema, builtin: int, custom: str | None = None):
    code = schema.OperatorCodeT()
    code.builtinCode, code.version = builtin, 1
    code.deprecatedBuiltinCode = min(builtin, 127)  # int8 field; 127 = "see builtinCode"
    code.customCode = custom
    return code


def build_fc_model(in_features: int = 64, out_features: int = 32, seed: int = 0, *, batch: int = 1) -> bytes:
    """y = relu(x @ W.T + b): one FULLY_CONNECTED operator, float32, x of shape (batch, in)."""
    schema = _schema()
    rng = np.random.default_rng(seed)
    weights = rng.standard_normal((out_features, in_features)).astype("<f4")  # (out, in)
    bias = rng.standard_normal(out_features).astype("<f4")

    sg = schema.SubGraphT()
    sg.name = "main"
    sg.tensors = [_tensor(schema, "x", [batch, in_features], 0),
                  _tensor(schema, "weights", [out_features, in_features], 1),
                  _tensor(schema, "bias", [out_features], 2),
                  _tensor(schema, "y", [batch, out_features], 0)]
    sg.inputs, sg.outputs = [0], [3]
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0, 1, 2], [3]
    op.builtinOptionsType = schema.BuiltinOptions.FullyConnectedOptions
    op.builtinOptions = schema.FullyConnectedOptionsT()
    op.builtinOptions.fusedActivationFunction = schema.ActivationFunctionType.RELU
    sg.operators = [op]
    opcodes = [_opcode(schema, schema.BuiltinOperator.FULLY_CONNECTED)]
    return _finish(schema, sg, opcodes, [weights.tobytes(), bias.tobytes()])


def build_add_model(shape: tuple[int, ...] = (1, 16), seed: int = 0) -> bytes:
    """y = x + c: one ADD operator with a constant of the same shape, float32."""
    schema = _schema()
    const = np.random.default_rng(seed).standard_normal(shape).astype("<f4")
    sg = schema.SubGraphT()
    sg.name = "main"
    sg.tensors = [_tensor(schema, "x", list(shape), 0), _tensor(schema, "c", list(shape), 1),
                  _tensor(schema, "y", list(shape), 0)]
    sg.inputs, sg.outputs = [0], [2]
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0, 1], [2]
    op.builtinOptionsType = schema.BuiltinOptions.AddOptions
    op.builtinOptions = schema.AddOptionsT()
    sg.operators = [op]
    return _finish(schema, sg, [_opcode(schema, schema.BuiltinOperator.ADD)], [const.tobytes()])


def build_custom_op_model(custom_code: str = "HilnasNoSuchOp", shape: tuple[int, ...] = (1, 4)) -> bytes:
    """A structurally valid model whose one operator is a custom op no runtime has, to check
    that the agent reports UNSUPPORTED_OP."""
    schema = _schema()
    sg = schema.SubGraphT()
    sg.name = "main"
    sg.tensors = [_tensor(schema, "x", list(shape), 0), _tensor(schema, "y", list(shape), 0)]
    sg.inputs, sg.outputs = [0], [1]
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0], [1]
    sg.operators = [op]
    opcodes = [_opcode(schema, schema.BuiltinOperator.CUSTOM, custom=custom_code)]
    return _finish(schema, sg, opcodes, [])
