"""Property tests: random tensors of every dtype and shape survive the REST codecs bit for bit,
and no body, however broken, makes a decoder fail with anything but a WireError."""

from __future__ import annotations

import numpy as np
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelcaliper.errors import WireError
from modelcaliper.signature import Signature, TensorSpec
from modelcaliper.wire.openinference_rest import HEADER_LENGTH, V2RestCodec
from modelcaliper.wire.tensors import DType, InferRequest, InferResponse, as_tensor
from modelcaliper.wire.tfserving_rest import TFServingRestCodec

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _canonical_nan(array: np.ndarray) -> np.ndarray:
    """JSON's NaN token has no sign or payload: make every NaN the default quiet NaN."""
    out = array.copy()
    out[np.isnan(out)] = np.nan
    return out


@st.composite
def tensors(draw, dtype: DType, shape: tuple[int, ...], *, nonfinite: str, text_only: bool):
    """A tensor of ``dtype``/``shape``; ``nonfinite`` is "raw" (any bit pattern), "canonical"
    (NaN as the default NaN) or "none" (finite floats only)."""
    n = int(np.prod(shape))
    if dtype is DType.BYTES:
        style = draw(st.sampled_from(["ascii", "text"] if text_only else ["ascii", "any"]))
        items = {
            "ascii": st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=6),
            "text": st.text(max_size=6),
            "any": st.binary(max_size=6),
        }[style]
        items = items.map(lambda v: v.encode("utf-8") if isinstance(v, str) else v)
        values = draw(st.lists(items, min_size=n, max_size=n))
        array = np.empty(n, dtype=object)
        array[:] = values
        return as_tensor(array.reshape(shape))
    raw = draw(st.binary(min_size=n * dtype.itemsize, max_size=n * dtype.itemsize))
    if dtype is DType.BOOL:  # any non-zero byte is True; keep the canonical 0/1 bytes
        return np.frombuffer(raw, dtype=np.uint8).astype(bool).reshape(shape)
    array = np.frombuffer(raw, dtype=dtype.numpy).reshape(shape).copy()
    if dtype.is_float and nonfinite == "canonical":
        return _canonical_nan(array)
    if dtype.is_float and nonfinite == "none":
        array[~np.isfinite(array)] = 0
    return array


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    if a.dtype == object:
        return b.dtype == object and a.shape == b.shape and a.tolist() == b.tolist()
    return (a.dtype == b.dtype and a.shape == b.shape
            and np.ascontiguousarray(a).view(np.uint8).tobytes()
            == np.ascontiguousarray(b).view(np.uint8).tobytes())


DTYPES = st.sampled_from(list(DType))
ANY_SHAPE = st.lists(st.integers(0, 4), max_size=3).map(tuple)
# JSON nesting loses the dimensions after an empty one ([[], []] is (2, 0) whatever came
# next), so TF Serving's JSON can only carry shapes whose zero, if any, comes last.
JSON_NESTED_SHAPE = ANY_SHAPE.filter(lambda s: 0 not in s[:-1])


@SETTINGS
@given(st.data(), st.lists(st.tuples(DTYPES, ANY_SHAPE), min_size=1, max_size=4))
def test_v2_binary_carries_any_bits(data, specs):
    arrays = {f"t{i}": data.draw(tensors(d, s, nonfinite="raw", text_only=False))
              for i, (d, s) in enumerate(specs)}
    codec = V2RestCodec(binary=True)
    encoded = codec.encode_request(InferRequest(arrays))
    request = codec.decode_request(encoded.body, dict(encoded.headers))
    assert all(_same(arrays[n], request.inputs[n]) for n in arrays)
    answer = codec.encode_response(InferResponse(arrays), request)
    back = codec.decode_response(answer.body, dict(answer.headers))
    assert all(_same(arrays[n], back.outputs[n]) for n in arrays)


@SETTINGS
@given(st.data(), st.lists(st.tuples(DTYPES, ANY_SHAPE), min_size=1, max_size=4))
def test_v2_json_carries_finite_numbers_and_text(data, specs):
    arrays = {f"t{i}": data.draw(tensors(d, s, nonfinite="none", text_only=True))
              for i, (d, s) in enumerate(specs)}
    codec = V2RestCodec(binary=False)
    encoded = codec.encode_request(InferRequest(arrays))
    request = codec.decode_request(encoded.body, dict(encoded.headers))
    assert all(_same(arrays[n], request.inputs[n]) for n in arrays)
    answer = codec.encode_response(InferResponse(arrays), request)
    back = codec.decode_response(answer.body, dict(answer.headers))
    assert all(_same(arrays[n], back.outputs[n]) for n in arrays)


def _signature(arrays):
    return Signature(inputs=tuple(TensorSpec(n, DType.BYTES if a.dtype == object else a.dtype.name,
                                             (-1,) * a.ndim) for n, a in arrays.items()))


@SETTINGS
@given(st.data(), st.lists(st.tuples(DTYPES, JSON_NESTED_SHAPE), min_size=1, max_size=4),
       st.booleans())
def test_tf_columnar_carries_numbers_tokens_and_any_bytes(data, specs, bytes_suffix):
    arrays = {f"t{i}" + ("_bytes" if bytes_suffix else ""):
              data.draw(tensors(d, s, nonfinite="canonical", text_only=False))
              for i, (d, s) in enumerate(specs)}
    codec = TFServingRestCodec("columnar", signature=_signature(arrays))
    encoded = codec.encode_request(InferRequest(arrays))
    request = codec.decode_request(encoded.body)
    assert all(_same(arrays[n], request.inputs[n]) for n in arrays)


@SETTINGS
@given(st.data(), st.integers(1, 4),
       st.lists(st.tuples(DTYPES, JSON_NESTED_SHAPE.filter(lambda s: len(s) < 3)),
                min_size=1, max_size=5))
def test_tf_rows_carry_numbers_tokens_and_any_bytes(data, batch, specs):
    arrays = {f"t{i}": data.draw(tensors(d, (batch, *s), nonfinite="canonical", text_only=False))
              for i, (d, s) in enumerate(specs)}
    codec = TFServingRestCodec("rows", signature=_signature(arrays))
    encoded = codec.encode_request(InferRequest(arrays))
    request = codec.decode_request(encoded.body)
    assert list(request.inputs) == list(arrays)
    assert all(_same(arrays[n], request.inputs[n]) for n in arrays)
    answer = codec.encode_response(InferResponse(arrays), request)
    assert answer.body.startswith(b'{"predictions":')
    outputs = Signature(inputs=(), outputs=_signature(arrays).inputs)
    back = TFServingRestCodec("rows", signature=outputs).decode_response(answer.body)
    assert all(_same(arrays[n], back.outputs[n]) for n in arrays)


# ------------------------------------------------------------------------ garbage in


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False)
    | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["name", "shape", "datatype", "data", "parameters", "inputs", "outputs",
                         "instances", "b64", "binary_data_size", "id", "x"]), inner, max_size=5),
    max_leaves=20,
)


@SETTINGS
@given(JSON_VALUES, st.binary(max_size=40), st.integers(-5, 200) | st.none())
def test_decoders_fail_only_with_wire_errors(document, tail, declared):
    body = orjson.dumps(document) + tail
    headers = {} if declared is None else {HEADER_LENGTH: str(declared)}
    decoders = [V2RestCodec().decode_request, V2RestCodec().decode_response,
                TFServingRestCodec().decode_request, TFServingRestCodec().decode_response]
    for decode in decoders:
        try:
            decode(body, headers)
        except WireError:
            pass


@SETTINGS
@given(st.binary(max_size=200))
def test_random_bytes_fail_only_with_wire_errors(body):
    for decode in (V2RestCodec().decode_request, TFServingRestCodec().decode_request):
        try:
            decode(body, {HEADER_LENGTH: str(len(body) // 2)})
        except WireError:
            pass
