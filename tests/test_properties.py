"""Property-based tests (hypothesis): input validation and parity metrics over random shapes and dtypes.

Input validation is checked against real onnxruntime sessions of Identity models built for each
random spec: ``Model.check_feeds`` must accept exactly the feeds an oracle calls valid (names,
dtypes or safe casts, ranks, fixed dims, shared symbolic dims), the engine must then run them and
hand the data back unchanged, and everything else must be an ``InputMismatchError`` - never another
exception.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import edgeai
from edgeai.errors import InputMismatchError
from edgeai.parity import Tolerance, output_metrics
from edgeai.runtimes.base import _SAFE_CASTS, value_problems
from edgeai.specs import TensorSpec, check_sample_size, make_inputs, parse_input_spec, resolve_shape

DTYPES = ["float32", "float16", "float64", "int64", "int32", "int8", "uint8", "bool"]
FEED_DTYPES = DTYPES + [">f4", ">i8", "complex64"]  # byte-swapped twins and a type no input takes
SYMBOLS = ["batch", "seq", "n"]
NAMES = ["a", "b", "c"]
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def input_specs(draw) -> list[TensorSpec]:
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3, unique=True))
    specs = []
    for name in names:
        rank = draw(st.integers(0, 3))
        dims = draw(st.lists(st.one_of(st.integers(1, 3), st.sampled_from(SYMBOLS), st.none()),
                             min_size=rank, max_size=rank))
        specs.append(TensorSpec(name, tuple(dims), draw(st.sampled_from(DTYPES))))
    return specs


@st.composite
def feeds_for(draw, specs: list[TensorSpec]) -> dict[str, np.ndarray]:
    """Mostly valid feeds with a few mutations: a renamed, dropped or extra input, another dtype,
    another rank, a wrong fixed dim, symbolic dims that disagree."""
    sizes = {s: draw(st.integers(0, 3)) for s in SYMBOLS}
    feeds = {}
    for spec in specs:
        if draw(st.integers(0, 15)) == 0:
            continue  # missing input
        name = spec.name if draw(st.integers(0, 15)) else draw(st.sampled_from(NAMES + ["zz"]))
        dtype = spec.dtype if draw(st.integers(0, 3)) else draw(st.sampled_from(FEED_DTYPES))
        shape = []
        for d in spec.shape:
            if draw(st.integers(0, 7)) == 0:
                shape.append(draw(st.integers(0, 4)))  # any size: may break a fixed or shared dim
            elif isinstance(d, int):
                shape.append(d)
            elif d is None:
                shape.append(draw(st.integers(0, 3)))
            else:
                shape.append(sizes[d])
        if draw(st.integers(0, 15)) == 0:
            shape = shape[:-1] if shape and draw(st.booleans()) else shape + [1]  # wrong rank
        feeds[name] = np.zeros(shape, dtype=np.dtype(dtype))
    if draw(st.integers(0, 15)) == 0:
        feeds["extra"] = np.zeros(1, np.float32)
    return feeds


def oracle_accepts(specs: list[TensorSpec], feeds: dict[str, np.ndarray], allow_cast: bool) -> bool:
    """What check_feeds must accept, written independently of it."""
    if set(feeds) != {s.name for s in specs}:
        return False
    sizes: dict[str, int] = {}
    for spec in specs:
        arr = feeds[spec.name]
        if arr.dtype.name != spec.dtype and not (allow_cast and (arr.dtype.name, spec.dtype) in _SAFE_CASTS):
            return False
        if arr.ndim != spec.rank:
            return False
        for size, d in zip(arr.shape, spec.shape, strict=True):
            if isinstance(d, int) and size != d:
                return False
            if isinstance(d, str) and sizes.setdefault(d, size) != size:
                return False
    return True


_ONNX_TYPES = {"float32": 1, "uint8": 2, "int8": 3, "int32": 6, "int64": 7, "bool": 9, "float16": 10,
               "float64": 11}
_sessions: dict[tuple, edgeai.Model] = {}


def identity_model(specs: list[TensorSpec], allow_cast: bool, tmp_dir) -> edgeai.Model:
    """A real onnxruntime Model whose outputs are its inputs (cached per spec list)."""
    key = (tuple(specs), allow_cast)
    if key not in _sessions:
        import onnx
        from onnx import helper

        graph = helper.make_graph(
            [helper.make_node("Identity", [s.name], [f"out_{s.name}"]) for s in specs], "identity",
            [helper.make_tensor_value_info(s.name, _ONNX_TYPES[s.dtype], list(s.shape)) for s in specs],
            [helper.make_tensor_value_info(f"out_{s.name}", _ONNX_TYPES[s.dtype], list(s.shape)) for s in specs])
        path = tmp_dir / f"identity_{len(_sessions)}.onnx"
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
        _sessions[key] = edgeai.load(path, "cpu", allow_cast=allow_cast)
    return _sessions[key]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("identity_models")


@SETTINGS
@given(data=st.data(), specs=input_specs(), allow_cast=st.booleans())
def test_check_feeds_accepts_exactly_the_valid_feeds(model_dir, data, specs, allow_cast):
    model = identity_model(specs, allow_cast, model_dir)
    assert model.inputs == specs  # the file round-trips the random spec
    feeds = data.draw(feeds_for(specs))
    valid = oracle_accepts(specs, feeds, allow_cast)
    event("valid feeds" if valid else "invalid feeds")
    try:
        checked = model.check_feeds(feeds)
    except InputMismatchError as e:
        assert not valid, f"refused valid feeds: {e}"
        assert str(e)  # every refusal says something
        return
    assert valid, f"accepted invalid feeds {({k: (v.dtype.str, v.shape) for k, v in feeds.items()})}"
    for spec in specs:
        assert checked[spec.name].dtype == np.dtype(spec.dtype) and checked[spec.name].dtype.isnative
    out = model.run(feeds)  # the engine agrees that these feeds are fine
    for spec in specs:
        np.testing.assert_array_equal(out[f"out_{spec.name}"], feeds[spec.name].astype(spec.dtype))


@SETTINGS
@given(arr=hnp.arrays(st.sampled_from([np.float16, np.float32, np.float64, np.int64, np.int8, np.bool_]),
                      hnp.array_shapes(min_dims=0, max_dims=3, max_side=5)))
def test_value_problems_flag_exactly_the_nonfinite_floats(arr):
    problems = value_problems({"x": arr})
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        nan, inf = int(np.isnan(arr).sum()), int(np.isinf(arr).sum())
        assert problems == {"x": f"{nan} NaN and {inf} Inf of {arr.size} values"}
    else:
        assert problems == {}


@SETTINGS
@given(ids=hnp.arrays(np.int64, hnp.array_shapes(min_dims=1, max_dims=2, max_side=6),
                      elements=st.integers(-5, 40)), high=st.integers(1, 40))
def test_value_problems_flag_token_ids_outside_the_range(ids, high):
    spec = TensorSpec("ids", ("batch", "seq")[: ids.ndim], "int64", (0, high))
    problems = value_problems({"ids": ids}, [spec])
    bad = int(((ids < 0) | (ids >= high)).sum())
    assert bool(problems) == (bad > 0)
    if bad:
        assert problems["ids"].startswith(f"{bad} of {ids.size} values outside its range")


@SETTINGS
@given(specs=input_specs(), batch=st.integers(0, 4), seed=st.integers(0, 2**16))
def test_make_inputs_matches_the_specs(specs, batch, seed):
    specs = [TensorSpec(s.name, s.shape, s.dtype, (0, 7) if s.dtype in ("int64", "int32") else None)
             for s in specs]
    feeds = make_inputs(specs, {"batch": batch}, seed=seed)
    assert list(feeds) == [s.name for s in specs]
    for spec in specs:
        arr = feeds[spec.name]
        assert arr.shape == resolve_shape(spec, {"batch": batch}) and arr.dtype == np.dtype(spec.dtype)
        if spec.value_range and arr.size and "mask" not in spec.name:
            assert 0 <= arr.min() and arr.max() < 7
    assert check_sample_size(specs, {"batch": batch}) >= sum(a.nbytes for a in feeds.values())


@SETTINGS
@given(name=st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True),
       dims=st.lists(st.one_of(st.integers(0, 4096), st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True)),
                     min_size=1, max_size=5),
       dtype=st.sampled_from(DTYPES))
def test_parse_input_spec_round_trips(name, dims, dtype):
    assume(not any(isinstance(d, str) and "x" in d for d in dims))  # 'x' separates dims
    spec = parse_input_spec(f"{name}:{'x'.join(map(str, dims))}:{dtype}")
    assert spec == TensorSpec(name, tuple(dims), dtype)


@SETTINGS
@given(text=st.text(max_size=30))
def test_parse_input_spec_never_crashes(text):
    try:
        parse_input_spec(text)
    except InputMismatchError:
        pass


# ---------------------------------------------------------------------------------------------
# Parity metrics
# ---------------------------------------------------------------------------------------------

F32 = Tolerance.for_precision("f32")


@st.composite
def array_pairs(draw, same_shape: bool = True):
    dtype = draw(st.sampled_from([np.float16, np.float32, np.float64]))
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=4, max_side=6))
    width = {np.float16: 16, np.float32: 32, np.float64: 64}[dtype]
    elements = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False, width=width)
    a = draw(hnp.arrays(dtype, shape, elements=elements))
    b = draw(hnp.arrays(dtype, shape, elements=elements))
    return a, b


@SETTINGS
@given(pair=array_pairs())
def test_metrics_are_bounded_and_symmetric(pair):
    a, b = pair
    ab = output_metrics("out", [a], [b], F32)
    ba = output_metrics("out", [b], [a], F32)
    assert -1.0 <= ab.cosine <= 1.0 and not math.isnan(ab.cosine)
    assert ab.max_abs == ba.max_abs and ab.mean_abs == pytest.approx(ba.mean_abs)
    assert ab.cosine == pytest.approx(ba.cosine, abs=1e-12)
    assert 0.0 <= ab.mean_abs <= ab.max_abs * (1 + 1e-12)  # a sum of n equal values may round up
    assert ab.max_abs == pytest.approx(float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max()))
    assert ab.nonfinite == 0
    for top in (ab.top1, ab.top5):
        assert top is None or 0.0 <= top <= 1.0
    if ab.top1 is not None:
        assert ab.top5 >= ab.top1


@SETTINGS
@given(pair=array_pairs(), samples=st.integers(1, 3))
def test_identical_outputs_pass_every_tolerance(pair, samples):
    a, _ = pair
    for precision in ("f32", "f16", "int8"):
        m = output_metrics("logits", [a] * samples, [a.copy()] * samples, Tolerance.for_precision(precision))
        assert m.passed, m.failures
        assert m.max_abs == 0.0 and m.cosine == pytest.approx(1.0)
        assert m.allclose is not False  # None where the tolerance has no atol/rtol (f16, int8)
        if m.top1 is not None:
            assert m.top1 == 1.0


@SETTINGS
@given(pair=array_pairs(), scale=st.floats(0.5, 4.0))
def test_cosine_ignores_positive_scale_and_flips_with_sign(pair, scale):
    a, _ = pair
    a = a.astype(np.float64)
    rows = a.reshape(a.shape[0], -1) if a.ndim > 1 else a.reshape(1, -1)
    assume((np.linalg.norm(rows, axis=1) > 1e-3).all())
    assert output_metrics("y", [a], [a * scale], F32).cosine == pytest.approx(1.0, abs=1e-9)
    assert output_metrics("y", [a], [-a], F32).cosine == pytest.approx(-1.0, abs=1e-9)


@SETTINGS
@given(pair=array_pairs(), where=st.integers(0, 10**6), bad=st.sampled_from([np.nan, np.inf, -np.inf]))
def test_nonfinite_candidates_always_fail(pair, where, bad):
    a, b = pair
    b = b.astype(np.float32)
    b.flat[where % b.size] = bad
    m = output_metrics("y", [a], [b], Tolerance(atol=None, rtol=None, min_cosine=None))
    assert not m.passed and m.nonfinite == 1 and "NaN/Inf" in m.failures[0]


@SETTINGS
@given(a=hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=5)),
       b=hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=5)))
def test_metrics_never_raise_on_any_pair(a, b):
    """Any two float arrays (NaN, Inf, subnormals, different shapes): a result, never an exception."""
    with np.errstate(all="ignore"):
        m = output_metrics("y", [a], [b], F32)
    if a.shape != b.shape:
        assert not m.passed and "shape" in m.failures[0]
    assert -1.0 <= m.cosine <= 1.0


@SETTINGS
@given(ref=hnp.arrays(np.int64, hnp.array_shapes(min_dims=1, max_dims=2, max_side=6), elements=st.integers(0, 9)))
def test_integer_outputs_compare_exactly(ref):
    """Integer outputs (argmax indices, token ids) compare as numbers: equal passes, any change fails."""
    assert output_metrics("ids", [ref], [ref.copy()], F32).passed
    changed = ref.copy()
    changed.flat[0] += 1
    m = output_metrics("ids", [ref], [changed], F32)
    assert not m.passed and m.max_abs == 1.0


@SETTINGS
@given(data=st.data(), shape=hnp.array_shapes(min_dims=1, max_dims=3, max_side=5))
def test_cosine_stays_a_cosine_at_any_magnitude(data, shape):
    """float64 values up to 1.8e308, Inf and NaN: the cosine never overflows into NaN (which once
    compared as a perfect 1.0)."""
    a, b = (data.draw(hnp.arrays(np.float64, shape, elements=st.floats(allow_nan=True, allow_infinity=True)))
            for _ in range(2))
    with np.errstate(all="ignore"):
        m = output_metrics("y", [a], [b], Tolerance.for_precision("int8"))
    assert -1.0 <= m.cosine <= 1.0


def test_cosine_regressions():
    int8 = Tolerance.for_precision("int8").with_overrides(min_cosine=0.995)  # graph cosine asked for explicitly
    far = output_metrics("y", [np.array([[1e200, 1e200, 3.0]])], [np.array([[1e200, -1e200, 3.0]])], int8)
    assert not far.passed and far.cosine == pytest.approx(0.0, abs=1e-9)
    with np.errstate(all="ignore"):
        flipped = output_metrics("y", [np.array([np.inf, 1.0, 2.0])], [np.array([-np.inf, 1.0, 2.0])], int8)
    assert not flipped.passed and flipped.cosine == pytest.approx(-1.0)
