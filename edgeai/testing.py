"""Parity assertions and device parametrization for users' own pytest suites.

    import edgeai.testing

    @pytest.mark.parametrize("device", edgeai.testing.device_params())
    def test_deployed_model_matches(device):
        edgeai.testing.assert_parity("mypkg.models:build", "model.int8.onnx", "eval.npz", device=device)

A failure is an ``AssertionError`` (pytest shows it as a test failure, not an error) whose message
holds the verdict, the per-output table and, with ``layerwise=True``, where the graphs diverge.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from edgeai.errors import InputMismatchError, ParityAssertionError
from edgeai.onnxfile import load_proto, save_onnx
from edgeai.parity import Tolerance, compare
from edgeai.report import parity_text
from edgeai.runtimes import devices as available


def assert_parity(reference: Any, candidate: Any, inputs: Any = None, tolerance: Any = None, *,
                  device: str | None = None, samples: int | None = None, layerwise: bool = False,
                  **limits: float | None) -> Any:
    """Assert that ``candidate`` matches ``reference`` within tolerance; return the ParityReport.

    Args:
        reference, candidate, inputs, device, samples, layerwise: as for :func:`edgeai.compare`
            (a Model, an ``.onnx`` path, or a model source such as ``zoo:cnn`` or ``pkg.mod:factory``).
        tolerance: a :class:`~edgeai.parity.Tolerance`; default by the candidate's precision in effect.
        **limits: overrides of single limits (``atol``, ``rtol``, ``min_cosine``, ``min_top1``) on
            ``tolerance`` or on the default.

    Raises:
        ParityAssertionError: out of tolerance; the message shows the table.

    Example:
        >>> assert_parity("zoo:cnn", "cnn.onnx", 4, device="openvino:CPU", min_cosine=0.99999)
    """
    __tracebackhide__ = True  # pytest shows the caller's line, not this one

    if isinstance(tolerance, Tolerance) and limits:
        tolerance = tolerance.with_overrides(**limits)
    elif tolerance is None and limits:
        tolerance = limits
    report = compare(reference, candidate, inputs, tolerance=tolerance, samples=samples, device=device,
                     layerwise=layerwise)
    if not report.passed:
        raise ParityAssertionError(parity_text(report))
    return report


def device_params(devices: Sequence[str] | None = None) -> list[Any]:
    """``pytest.param`` per device for ``@pytest.mark.parametrize("device", ...)``.

    Devices missing here are kept and skipped with the reason (so a CI log shows what did not run);
    default: ``cpu``, ``openvino:CPU`` and ``cuda``.
    """
    import pytest

    here = available()
    params = []
    for d in devices or ("cpu", "openvino:CPU", "cuda"):
        marks = [] if d in here else [pytest.mark.skip(reason=f"{d} is not available here (devices: {here})")]
        params.append(pytest.param(d, marks=marks, id=d))
    return params


def perturbed_copy(src: Any, dst: Any, initializer: str, *, relative_noise: float = 0.5, seed: int = 0) -> Any:
    """Write a copy of ``src`` with Gaussian noise added to one weight (a deliberately broken model).

    For testing that parity checks fail and that layerwise localization names the layer:
    the noise has ``relative_noise`` times the weight's standard deviation. ``src`` is not modified.

    Raises:
        InputMismatchError: the model has no initializer of that name (the message lists them).
    """
    import numpy as np
    from onnx import numpy_helper

    model = load_proto(src, load_external_data=True)
    init = next((i for i in model.graph.initializer if i.name == initializer), None)
    if init is None:
        names = [i.name for i in model.graph.initializer]
        raise InputMismatchError(f"{src} has no initializer {initializer!r}; it has {names[:20]}")
    w = numpy_helper.to_array(init)
    noise = np.random.default_rng(seed).standard_normal(w.shape) * float(w.std() or 1.0) * relative_noise
    init.CopyFrom(numpy_helper.from_array((w + noise).astype(w.dtype), initializer))
    return save_onnx(model, dst)
