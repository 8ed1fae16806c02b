"""``transformers`` model families: the task table (which inputs a task takes and which output it
returns), tiny configs for the zoo, and the export wrapper. A boundary module: it imports torch.

Knowledge about a family is data (the TASKS table): which inputs a task takes and which output it
returns. A wrapper turns the model's ``ModelOutput`` into plain tensors so any exporter can trace it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch  # this module is imported only when a transformers model is in play

from edgeai.errors import ModelLoadError
from edgeai.specs import TensorSpec

VOCAB = 1000


@dataclass(frozen=True)
class TaskSpec:
    """What a task feeds and returns. Inputs are in the order the export wrapper takes them."""

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    auto_class: str


TASKS: dict[str, TaskSpec] = {
    "feature-extraction": TaskSpec(("input_ids", "attention_mask", "token_type_ids"), ("last_hidden_state",), "AutoModel"),
    "fill-mask": TaskSpec(("input_ids", "attention_mask", "token_type_ids"), ("logits",), "AutoModelForMaskedLM"),
    "text-classification": TaskSpec(("input_ids", "attention_mask", "token_type_ids"), ("logits",),
                                    "AutoModelForSequenceClassification"),
    "token-classification": TaskSpec(("input_ids", "attention_mask", "token_type_ids"), ("logits",),
                                     "AutoModelForTokenClassification"),
    "image-classification": TaskSpec(("pixel_values",), ("logits",), "AutoModelForImageClassification"),
    "text-generation": TaskSpec(("input_ids", "attention_mask"), ("logits",), "AutoModelForCausalLM"),
    "text2text-generation": TaskSpec(("input_ids", "attention_mask", "decoder_input_ids"), ("logits",),
                                     "AutoModelForSeq2SeqLM"),
    # Speech seq2seq (Whisper): log-mel features and decoder tokens -> logits, no cache.
    "automatic-speech-recognition": TaskSpec(("input_features", "decoder_input_ids"), ("logits",),
                                             "AutoModelForSpeechSeq2Seq"),
}

_DIMS = {"input_ids": ("batch", "seq"), "attention_mask": ("batch", "seq"), "token_type_ids": ("batch", "seq"),
         "decoder_input_ids": ("batch", "decoder_seq")}


def tiny_config(name: str) -> Any:
    """A small random-weight config of a family (no download); see ``TINY_FAMILIES``."""
    import transformers as tf

    common = dict(vocab_size=VOCAB)
    layers = dict(num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)
    if name == "bert":
        return tf.BertConfig(hidden_size=64, max_position_embeddings=256, **layers, **common)
    if name == "distilbert":
        return tf.DistilBertConfig(dim=64, n_layers=2, n_heads=4, hidden_dim=128, max_position_embeddings=256,
                                   **common)
    if name == "roberta":
        return tf.RobertaConfig(hidden_size=64, max_position_embeddings=258, pad_token_id=1, **layers, **common)
    if name == "vit":
        return tf.ViTConfig(hidden_size=64, image_size=32, patch_size=8, num_labels=5, **layers)
    if name == "gpt2":
        return tf.GPT2Config(n_embd=64, n_layer=2, n_head=4, n_positions=256, bos_token_id=0, eos_token_id=1, **common)
    if name == "llama":
        return tf.LlamaConfig(hidden_size=64, num_key_value_heads=2, max_position_embeddings=256, bos_token_id=0,
                              eos_token_id=1, **layers, **common)
    if name == "t5":
        return tf.T5Config(d_model=64, d_kv=16, d_ff=128, num_layers=2, num_decoder_layers=2, num_heads=4,
                           decoder_start_token_id=0, pad_token_id=0, eos_token_id=1, **common)
    if name == "bart":
        return tf.BartConfig(d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                             decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128,
                             max_position_embeddings=256, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                             decoder_start_token_id=2, **common)
    raise ModelLoadError(f"no tiny config for {name!r}; known: {', '.join(TINY_FAMILIES)}")


TINY_FAMILIES = ("bert", "distilbert", "roberta", "vit", "gpt2", "llama", "t5", "bart")


_ZOO_TASK = {"bert": "feature-extraction", "gpt2": "text-generation", "t5": "text2text-generation",
             "llama": "text-generation"}


def build_hf_model(config: Any, task: str) -> Any:
    import torch
    import transformers as tf

    torch.manual_seed(0)
    cls = getattr(tf, TASKS[task].auto_class)
    model = cls.from_config(config, attn_implementation="eager")
    return model.eval()


def tiny_model(name: str) -> Any:
    """The zoo's tiny ``transformers`` model, wrapped for its task."""
    task = _ZOO_TASK[name]
    return TaskWrapper(build_hf_model(tiny_config(name), task), task)


def task_input_specs(task: str, model: Any) -> list[TensorSpec]:
    """Input specs of a wrapped task model; drops inputs its forward does not take."""
    import inspect

    spec = TASKS[task]
    accepted = set(inspect.signature(model.forward).parameters)
    vocab = getattr(model.config, "vocab_size", VOCAB)
    out = []
    for name in spec.inputs:
        if name not in accepted:
            continue
        if name == "input_features":  # Whisper's encoder takes exactly 2 x max_source_positions frames
            frames = 2 * int(getattr(model.config, "max_source_positions", 1500))
            out.append(TensorSpec(name, ("batch", int(model.config.num_mel_bins), frames)))
        elif name == "pixel_values":
            size = getattr(model.config, "image_size", 224)
            out.append(TensorSpec(name, ("batch", getattr(model.config, "num_channels", 3), size, size)))
        elif name in ("input_ids", "decoder_input_ids"):
            out.append(TensorSpec(name, _DIMS[name], "int64", (0, vocab)))
        else:
            out.append(TensorSpec(name, _DIMS[name], "int64", (0, 2)))
    return out


class TaskWrapper(torch.nn.Module):
    """Positional tensors in, the task's outputs as a tuple of tensors out."""

    def __init__(self, model: Any, task: str):
        super().__init__()
        if task not in TASKS:
            raise ModelLoadError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
        self.model, self.task = model, task
        self.input_names = tuple(s.name for s in task_input_specs(task, model))
        self.output_names = TASKS[task].outputs

    @property
    def config(self) -> Any:
        return self.model.config

    def forward(self, *args: Any) -> Any:
        kwargs = dict(zip(self.input_names, args, strict=True))
        no_cache = "generation" in self.task or self.task == "automatic-speech-recognition"
        out = self.model(**kwargs, use_cache=False, return_dict=True) if no_cache else \
            self.model(**kwargs, return_dict=True)
        return tuple(out[name] for name in self.output_names)
