"""Tiny random causal LMs with a locally trained byte-level BPE tokenizer and a ChatML chat template.

For fast tests of everything that needs a real model and a real tokenizer but not a trained one: the CPU server,
token-exact clients, retokenisation drift, weight reloads, trainer steps. Nothing is downloaded: the tokenizer is
trained with ``tokenizers`` on text this module generates (arithmetic, the ARPO tool tags, chat turns, a little
non-ASCII so that byte-level pieces occur); the weights are a seeded random Llama (2 layers, hidden 64 by default).
Llama rather than Qwen2: transformers 5's ``AutoTokenizer`` forces Qwen2's own pre-tokenizer onto any ``qwen2``
folder, which would not match the tokenizer trained here.
``build_tiny_model()`` writes the folder once into the cache (``save_pretrained``, safetensors) and returns it;
later calls return the cached folder at once. The same ``seed`` and arguments give the same bytes.
"""

from __future__ import annotations

import random
from pathlib import Path

from arpo_backends.models.resolve import build_once, cache_dir

__all__ = ["CHATML_TEMPLATE", "SPECIAL_TOKENS", "build_tiny_model", "tiny_corpus"]

# Bump when the corpus, tokenizer or model recipe changes, so stale cached folders are not reused.
_RECIPE_VERSION = 1

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

# ChatML, like SmolLM2's and Qwen2's: a system block listing the tools when given, one block per message, tool
# calls rendered as <tool_call> JSON, tool results as a "tool" turn, and the assistant header as the generation prompt.
CHATML_TEMPLATE = (
    "{% if tools %}"
    "<|im_start|>system\n"
    "{% if messages[0].role == 'system' %}{{ messages[0].content }}\n\n{% endif %}"
    "# Tools\n<tools>\n{% for tool in tools %}{{ tool | tojson }}\n{% endfor %}</tools><|im_end|>\n"
    "{% elif messages[0].role == 'system' %}"
    "<|im_start|>system\n{{ messages[0].content }}<|im_end|>\n"
    "{% endif %}"
    "{% for message in messages %}"
    "{% if not (message.role == 'system' and loop.first) %}"
    "<|im_start|>{{ message.role }}\n{{ message.content or '' }}"
    "{% for call in message.tool_calls or [] %}"
    "<tool_call>{{ call.function | tojson }}</tool_call>"
    "{% endfor %}"
    "<|im_end|>\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_WORDS = (  # noqa: SIM905 (a word list reads better as prose)
    "the of and to in is was for on that with as by at from it an be this which or are were has have not "
    "but their its also one two three first after new more other some time year city river capital "
    "country born people world number answer question search python result think tool call value sum "
    "product prime square root between during until about into over under known called named state small "
    "large north south east west"
).split()
_TOPICS = ("Paris", "France", "Berlin", "Tokyo", "Nile", "Everest", "Turing", "Curie", "Ada Lovelace", "Lisbon")
_ODD = ("café", "naïve", "Zürich", "日本語", "東京", "π ≈ 3.14159", "😀", "—", "½", "Ωmega", "élève", "über")


def tiny_corpus(seed: int = 0, n_lines: int = 3000) -> list[str]:
    """Deterministic training text for the tiny tokenizer: prose, arithmetic, tool tags, chat turns, non-ASCII."""
    rng = random.Random(seed)
    lines: list[str] = []
    for _ in range(n_lines):
        kind = rng.randrange(6)
        words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(4, 14)))
        a, b = rng.randint(2, 999), rng.randint(2, 99)
        if kind == 0:
            lines.append(f"{words.capitalize()}.")
        elif kind == 1:
            lines.append(f"<think>{words}</think><python>print({a} * {b})</python><result>{a * b}</result>")
        elif kind == 2:
            topic = rng.choice(_TOPICS)
            lines.append(f"<search>{topic} {words}</search><result>{topic} is {words}.</result>")
        elif kind == 3:
            lines.append(f"<|im_start|>user\nWhat is {a} + {b}?<|im_end|>\n<|im_start|>assistant\n")
            lines.append(f"<answer>\\boxed{{{a + b}}}</answer><|im_end|>")
        elif kind == 4:
            lines.append(f"{rng.choice(_ODD)} {words} {rng.choice(_ODD)}{rng.randint(0, 9999)}")
        else:
            lines.append(f"def f(x):\n    return x ** {b} % {a}  # {words}")
    return lines


def _train_tokenizer(lines: list[str], vocab_size: int) -> object:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(lines, trainer=trainer)
    return tok


def _build(folder: Path, *, seed: int, vocab_size: int, hidden_size: int, num_layers: int, max_model_len: int) -> None:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    raw = _train_tokenizer(tiny_corpus(seed), vocab_size)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        model_max_length=max_model_len,
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    tokenizer.save_pretrained(folder)

    eos = int(tokenizer.convert_tokens_to_ids("<|im_end|>"))
    pad = int(tokenizer.convert_tokens_to_ids("<|endoftext|>"))
    heads = max(2, hidden_size // 16)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=heads,
        num_key_value_heads=heads // 2,
        max_position_embeddings=max_model_len,
        tie_word_embeddings=True,
        initializer_range=0.1,  # a less flat next-token distribution than 0.02, so top-k/top-p matter
        bos_token_id=None,
        eos_token_id=eos,
        pad_token_id=pad,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=eos, pad_token_id=pad)
    model.save_pretrained(folder)


def build_tiny_model(
    *,
    seed: int = 0,
    vocab_size: int = 512,
    hidden_size: int = 64,
    num_layers: int = 2,
    max_model_len: int = 2048,
    root: Path | None = None,
) -> Path:
    """The folder of a tiny random Llama with a trained byte-level BPE tokenizer (built once, then cached)."""
    name = f"tiny-llama-r{_RECIPE_VERSION}-s{seed}-v{vocab_size}-h{hidden_size}-l{num_layers}-c{max_model_len}"
    dest = (root or cache_dir()) / name
    return build_once(
        dest,
        lambda tmp: _build(
            tmp,
            seed=seed,
            vocab_size=vocab_size,
            hidden_size=hidden_size,
            num_layers=num_layers,
            max_model_len=max_model_len,
        ),
    )
