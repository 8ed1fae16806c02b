"""Resolving what the user points at into a PyTorch module plus its input specs.

Accepted sources (one string for the CLI):
  ``zoo:NAME``                     a reference model from ``edgeai.zoo``
  ``pkg.module:factory``           a callable returning an ``nn.Module`` or ``(module, example_inputs)``
  ``path/to/file.py:factory``      the same, from a file
  ``model.pt2``                    a ``torch.export`` archive (``torch.export.load``)
  ``path/to/hf-model-dir``         a local ``transformers`` folder (config.json), with ``task=``
An ``nn.Module`` object is accepted as is. Factories (``pkg.mod:factory``, ``file.py:factory``) are
code and run as such. Data is never unpickled without restriction: a ``.pt2`` archive is checked
first (``edgeai.pt2``: no pickled payloads, custom objects or native binaries) and transformers
weights load from safetensors only. See SECURITY.md.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeai.errors import ModelLoadError
from edgeai.specs import TensorSpec, spec_from_array


@dataclass
class ModelSource:
    """A resolved source: the module in eval mode, its inputs in forward order, its output names."""

    module: Any
    inputs: list[TensorSpec]
    output_names: list[str] | None = None
    example_inputs: dict[str, np.ndarray] | None = None
    description: str = "module"
    task: str | None = None
    family: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def forward_input_names(module: Any, count: int) -> list[str]:
    """Names of the first ``count`` positional parameters of ``module.forward``."""
    names = getattr(module, "input_names", None)
    if names:
        return list(names)[:count]
    try:
        params = [p.name for p in inspect.signature(module.forward).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    if len(params) < count:
        params += [f"input_{i}" for i in range(len(params), count)]
    return params[:count]


def specs_from_examples(module: Any, examples: Any, batch_dynamic: bool = True) -> tuple[list[TensorSpec], dict[str, np.ndarray]]:
    """Input specs and numpy examples from example inputs (a tensor, a tuple, or a dict by name)."""
    if isinstance(examples, Mapping):
        arrays = {k: _to_numpy(v) for k, v in examples.items()}
    else:
        if not isinstance(examples, (tuple, list)):
            examples = (examples,)
        names = forward_input_names(module, len(examples))
        arrays = {n: _to_numpy(v) for n, v in zip(names, examples, strict=True)}
    specs = []
    for name, arr in arrays.items():
        spec = spec_from_array(name, arr)
        if batch_dynamic and spec.rank >= 1:
            spec = spec.with_shape(("batch",) + spec.shape[1:])
        specs.append(spec)
    return specs, arrays


def _import_factory(target: str) -> Any:
    path_part, _, attr = target.rpartition(":")
    if not path_part or not attr:
        raise ModelLoadError(f"bad source {target!r}; expected pkg.module:factory or path/to/file.py:factory")
    if path_part.endswith(".py"):
        file = Path(path_part)
        if not file.exists():
            raise ModelLoadError(f"source file not found: {file}")
        mod_name = f"_edgeai_src_{abs(hash(str(file.resolve())))}"
        spec = importlib.util.spec_from_file_location(mod_name, file)
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.modules[mod_name] = module
        try:
            spec.loader.exec_module(module)  # type: ignore[union-attr]
        except Exception as e:
            raise ModelLoadError(f"importing {file} failed: {type(e).__name__}: {e}") from e
    else:
        try:
            module = importlib.import_module(path_part)
        except Exception as e:
            raise ModelLoadError(f"cannot import module {path_part!r} ({type(e).__name__}: {e}); is it on "
                                 "PYTHONPATH? For a file, use path/to/file.py:factory") from e
    if not hasattr(module, attr):
        public = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))]
        raise ModelLoadError(f"{path_part} has no attribute {attr!r}; callables there: {public[:20]}")
    return getattr(module, attr)


def resolve(source: Any, *, task: str | None = None, inputs: Sequence[TensorSpec] | None = None,
            example_inputs: Any = None) -> ModelSource:
    """Turn a source string (or module) into a :class:`ModelSource`.

    Args:
        source: one of the forms in the module docstring, or an ``nn.Module``.
        task: the transformers task for a model folder.
        inputs: input specs when the source cannot say (plain factories without examples).
        example_inputs: example tensors for an ``nn.Module`` given directly.

    Raises:
        ModelLoadError: the source does not exist, does not import, or gives no usable module.
    """
    import torch

    if isinstance(source, ModelSource):
        return source
    if isinstance(source, torch.nn.Module):
        return _from_module(source, example_inputs, inputs, "module")
    if not isinstance(source, (str, Path)):
        raise ModelLoadError(f"cannot use a {type(source).__name__} as a model source; pass an nn.Module, "
                             "'zoo:NAME', 'pkg.mod:factory', 'file.py:factory', a .pt2 file or a transformers folder")
    text = str(source)
    if text.startswith("zoo:"):
        from edgeai import zoo

        entry = zoo.get(text[4:])
        module = entry.factory()
        return ModelSource(module, list(inputs or entry.inputs), list(entry.outputs), None, text, entry.task,
                           entry.family)
    path = Path(text)
    if text.endswith(".pt2"):
        return _from_pt2(path, inputs)
    if path.is_dir():
        return _from_transformers_dir(path, task, inputs)
    if ":" in text and not path.exists():
        obj = _import_factory(text)
        try:
            made = obj() if callable(obj) and not isinstance(obj, torch.nn.Module) else obj
        except Exception as e:
            raise ModelLoadError(f"factory {text} raised {type(e).__name__}: {e}") from e
        examples = example_inputs
        if isinstance(made, tuple) and len(made) == 2 and isinstance(made[0], torch.nn.Module):
            made, examples = made
        if not isinstance(made, torch.nn.Module):
            raise ModelLoadError(f"factory {text} returned {type(made).__name__}; expected an nn.Module or "
                                 "(module, example_inputs)")
        return _from_module(made, examples, inputs, text)
    if not path.exists():
        raise ModelLoadError(f"model source {text!r} not found: not a file, a folder, 'zoo:NAME' or 'module:factory'")
    raise ModelLoadError(f"cannot export {text!r}: expected a .pt2 archive, a transformers folder, 'zoo:NAME' or "
                         "'module:factory' (an .onnx file is already exported; use `edgeai info` or `edgeai run`)")


def _from_module(module: Any, examples: Any, inputs: Sequence[TensorSpec] | None, desc: str) -> ModelSource:
    module.eval()
    if examples is not None:
        specs, arrays = specs_from_examples(module, examples)
        if inputs:
            if len(inputs) != len(arrays):
                raise ModelLoadError(f"{desc}: {len(arrays)} example inputs but {len(inputs)} input specs")
            # The specs name the inputs; examples are matched to them by position.
            arrays = {s.name: a for s, a in zip(inputs, arrays.values(), strict=True)}
            specs = list(inputs)
        return ModelSource(module, specs, getattr(module, "output_names", None), arrays, desc)
    if not inputs:
        raise ModelLoadError(f"{desc}: no example inputs and no input specs; return (module, example_inputs) from "
                             "the factory, or give --input NAME:1x3x224x224:float32")
    return ModelSource(module, list(inputs), getattr(module, "output_names", None), None, desc)


def _from_pt2(path: Path, inputs: Sequence[TensorSpec] | None) -> ModelSource:
    import torch

    if not path.exists():
        raise ModelLoadError(f"torch.export archive not found: {path}")
    from edgeai.pt2 import check_pt2_archive

    check_pt2_archive(path)  # torch.export.load can unpickle and load native code: refuse such archives
    try:
        program = torch.export.load(str(path))
    except Exception as e:
        raise ModelLoadError(f"{path} is not a loadable torch.export archive ({type(e).__name__}: {e})") from e
    module = program.module()
    names = [s.arg.name for s in program.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
    metas = [n.meta.get("val") for n in program.graph.nodes if n.op == "placeholder" and n.name in names]
    specs = list(inputs) if inputs else []
    if not specs:
        for name, val in zip(names, metas, strict=False):
            shape = tuple(int(d) if str(d).isdigit() else str(d) for d in val.shape)
            specs.append(TensorSpec(name, shape, str(val.dtype)))
    module.input_names = [s.name for s in specs]  # the unlifted program takes inputs positionally
    return ModelSource(module, specs, None, None, str(path), extra={"exported_program": program})


def _from_transformers_dir(path: Path, task: str | None, inputs: Sequence[TensorSpec] | None) -> ModelSource:
    from edgeai.exporters.transformers import TASKS, TaskWrapper, task_input_specs

    if not (path / "config.json").exists():
        raise ModelLoadError(f"{path} is a folder without config.json; expected a transformers model folder")
    if task is None:
        raise ModelLoadError(f"{path} is a transformers folder: say which task to export with --task "
                             f"({', '.join(TASKS)})")
    if task not in TASKS:
        raise ModelLoadError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
    if not list(path.glob("*.safetensors")):
        raise ModelLoadError(f"{path} has no *.safetensors weights; edgeai does not unpickle .bin checkpoints "
                             "(convert with model.save_pretrained(dir, safe_serialization=True))")
    import transformers as tf

    try:
        model = getattr(tf, TASKS[task].auto_class).from_pretrained(
            str(path), local_files_only=True, use_safetensors=True, attn_implementation="eager")
    except Exception as e:
        raise ModelLoadError(f"transformers could not load {path} for {task}: {type(e).__name__}: {e}") from e
    wrapper = TaskWrapper(model.eval(), task)
    specs = list(inputs) if inputs else task_input_specs(task, model)
    return ModelSource(wrapper, specs, list(wrapper.output_names), None, str(path), task,
                       getattr(model.config, "model_type", None))
