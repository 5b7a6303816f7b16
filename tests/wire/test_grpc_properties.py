"""Property tests for the gRPC codecs: random tensors of every dtype and shape survive
bit-exactly, NaN and infinities included, whichever value encoding carried them."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from modelcaliper.wire.openinference_grpc import V2GrpcCodec
from modelcaliper.wire.protos import openinference_pb2 as v2pb
from modelcaliper.wire.protos import tfserving_pb2 as tfpb
from modelcaliper.wire.tensors import DType, InferRequest, InferResponse
from modelcaliper.wire.tfserving_grpc import TFServingGrpcCodec, tensor_from_proto
from tests.wire.grpc_samples import assert_same_tensor

CODECS = [TFServingGrpcCodec(), V2GrpcCodec()]
SHAPES = array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)
NUMERIC = [d for d in DType if d is not DType.BYTES]


def _dtype(array: np.ndarray) -> DType:
    if array.dtype == object:
        return DType.BYTES
    return next(d for d in DType if d.numpy == array.dtype)


def _object_array(items: list[bytes], shape: tuple[int, ...]) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out.reshape(shape)


@st.composite
def tensors(draw, dtypes=tuple(DType)):
    """Any tensor: numbers with every bit pattern numpy allows (NaN, inf, -0), or byte strings."""
    dtype = draw(st.sampled_from(dtypes))
    shape = draw(SHAPES)
    if dtype is DType.BYTES:
        n = math.prod(shape)
        return _object_array(draw(st.lists(st.binary(max_size=12), min_size=n, max_size=n)), shape)
    return draw(arrays(dtype.numpy, shape))


names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=8)
tensor_maps = st.dictionaries(names, tensors(), min_size=1, max_size=4)


_SPECIALS = {
    "f16": np.array([np.nan, np.inf, -np.inf, -0.0], np.float16),
    "f32": np.frombuffer(b"\x01\x00\x80\x7f\x00\x00\xc0\xff", "<f4"),  # signalling, quiet NaN
    "f64": np.array([[np.nan], [-np.inf]]),
}


@settings(max_examples=80, deadline=None)
@given(tensor_maps, st.sampled_from(CODECS))
@example(_SPECIALS, CODECS[0])
@example(_SPECIALS, CODECS[1])
def test_requests_and_responses_round_trip_bit_exactly(arrays_by_name, codec):
    request = InferRequest(arrays_by_name, model_name="m")
    back = codec.decode_request(codec.encode_request(request).body)
    assert set(back.inputs) == set(arrays_by_name)
    for name, array in arrays_by_name.items():
        assert_same_tensor(back.inputs[name], array)
    response = codec.decode_response(codec.encode_response(InferResponse(arrays_by_name)).body)
    for name, array in arrays_by_name.items():
        assert_same_tensor(response.outputs[name], array)


# A float32 signalling NaN cannot survive a trip through a python float (the conversion to
# double quiets it), so the typed-field properties draw NaN as the ordinary quiet NaN.
_FLOATS = {
    DType.FP32: st.floats(width=32, allow_nan=False) | st.just(math.nan),
    DType.FP64: st.floats(allow_nan=False) | st.just(math.nan),
}


@st.composite
def typed_tensors(draw, dtypes):
    """A tensor whose values survive python's own scalar types (see _FLOATS)."""
    dtype = draw(st.sampled_from(dtypes))
    shape = draw(SHAPES)
    if dtype is DType.BYTES:
        n = math.prod(shape)
        return _object_array(draw(st.lists(st.binary(max_size=8), min_size=n, max_size=n)), shape)
    elements = _FLOATS.get(dtype)
    return draw(arrays(dtype.numpy, shape, elements=elements))


_TF_FIELDS = {
    DType.FP32: "float_val", DType.FP64: "double_val", DType.INT8: "int_val",
    DType.INT16: "int_val", DType.INT32: "int_val", DType.UINT8: "int_val",
    DType.UINT16: "int_val", DType.INT64: "int64_val", DType.BOOL: "bool_val",
    DType.UINT32: "uint32_val", DType.UINT64: "uint64_val", DType.BYTES: "string_val",
}


@settings(max_examples=80, deadline=None)
@given(typed_tensors(dtypes=tuple(DType)))
def test_tf_value_fields_decode_to_the_same_tensor(array):
    dtype = _dtype(array)
    proto = tfpb.TensorProto(dtype=dtype.tf_enum)
    proto.tensor_shape.SetInParent()
    for size in array.shape:
        proto.tensor_shape.dim.add().size = size
    if dtype is DType.FP16:
        # half_val carries the 16-bit pattern in an int32, so every pattern survives.
        proto.half_val.extend(array.view(np.uint16).ravel().tolist())
    else:
        getattr(proto, _TF_FIELDS[dtype]).extend(array.ravel().tolist())
    assert_same_tensor(tensor_from_proto(proto, "x"), array)


@settings(max_examples=50, deadline=None)
@given(typed_tensors(dtypes=tuple(d for d in DType if d is not DType.BYTES)), SHAPES)
def test_tf_single_value_fills_any_shape(array, shape):
    value = array.ravel()[:1]
    if value.size == 0 or math.prod(shape) < 2:
        return
    dtype = _dtype(array)
    proto = tfpb.TensorProto(dtype=dtype.tf_enum)
    for size in shape:
        proto.tensor_shape.dim.add().size = size
    if dtype is DType.FP16:
        proto.half_val.extend(value.view(np.uint16).tolist())
    else:
        getattr(proto, _TF_FIELDS[dtype]).extend(value.tolist())
    got = tensor_from_proto(proto, "x")
    assert got.shape == shape and got.dtype == array.dtype
    assert got.tobytes() == np.repeat(value, math.prod(shape)).tobytes()


_V2_FIELDS = {
    DType.BOOL: "bool_contents", DType.INT8: "int_contents", DType.INT16: "int_contents",
    DType.INT32: "int_contents", DType.INT64: "int64_contents", DType.UINT8: "uint_contents",
    DType.UINT16: "uint_contents", DType.UINT32: "uint_contents", DType.UINT64: "uint64_contents",
    DType.FP32: "fp32_contents", DType.FP64: "fp64_contents", DType.BYTES: "bytes_contents",
}


@settings(max_examples=80, deadline=None)
@given(typed_tensors(dtypes=tuple(_V2_FIELDS)))
def test_v2_typed_contents_decode_to_the_same_tensor(array):
    dtype = _dtype(array)
    message = v2pb.ModelInferRequest()
    tensor = message.inputs.add(name="x", datatype=dtype.v2, shape=array.shape)
    getattr(tensor.contents, _V2_FIELDS[dtype]).extend(array.ravel().tolist())
    back = V2GrpcCodec().decode_request(message.SerializeToString())
    assert_same_tensor(back.inputs["x"], array)
