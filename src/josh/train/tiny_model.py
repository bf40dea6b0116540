"""A tiny randomly initialised causal LM and its tokenizer, built locally in about a second (no download).

Tests, benchmarks and `josh loop` dry runs use it where a real model would be far too slow on a CPU: a
byte-level BPE trained with `tokenizers` on a few ToolWOZ-like sentences, wrapped in
`PreTrainedTokenizerFast` with a ChatML chat template that renders tools and tool calls and carries
`{% generation %}` markers (TRL's assistant-only loss needs them), and a two-layer Llama whose context
(`CONTEXT`, 8,192 tokens) holds the paper's `--max-length` 5256, so that `josh train` runs with its defaults.

Tool calls follow the Hermes convention (`<tool_call>{"name": ..., "arguments": {...}}</tool_call>` in the
assistant's text), which is also what the `hf:` backend parses back out of generated text.
"""

from __future__ import annotations

from pathlib import Path

# ChatML with tools (Hermes/Qwen style). The assistant's part is wrapped in generation markers so that
# `return_assistant_tokens_mask` (TRL's `assistant_only_loss`) can find it.
CHAT_TEMPLATE = """{%- if tools %}<|im_start|>system
{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] }}

{% endif %}You may call these tools. Write each call as <tool_call>{"name": ..., "arguments": {...}}</tool_call>.
<tools>
{% for tool in tools %}{{ tool | tojson }}
{% endfor %}</tools><|im_end|>
{% elif messages[0]['role'] == 'system' %}<|im_start|>system
{{ messages[0]['content'] }}<|im_end|>
{% endif %}
{%- for message in messages %}
{%- if message['role'] == 'system' %}
{%- elif message['role'] == 'assistant' %}<|im_start|>assistant
{% generation %}{{ message['content'] or '' }}
{%- for call in message.get('tool_calls') or [] %}
{%- set fn = call['function'] if call['function'] is defined else call %}
<tool_call>{"name": "{{ fn['name'] }}", "arguments": {{ fn['arguments'] if fn['arguments'] is string else fn['arguments'] | tojson }}}</tool_call>
{%- endfor %}<|im_end|>{% endgeneration %}{{ '\n' }}
{%- elif message['role'] == 'tool' %}<|im_start|>user
<tool_response>
{{ message['content'] }}
</tool_response><|im_end|>
{% else %}<|im_start|>{{ message['role'] }}
{{ message['content'] }}<|im_end|>
{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""

CONTEXT = 8192
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>"]

_CORPUS = [
    "I need a hotel in the centre with free parking for 3 people on tuesday.",
    "Sure, let me search for that. <tool_call>{\"name\": \"search_hotel\", \"arguments\": {\"area\": \"centre\"}}",
    "The train leaves cambridge at 09:15 and arrives in london kings cross at 10:05.",
    "APIRETURN PLAN SPEAK restaurant book_restaurant search_restaurant attraction taxi police hospital",
    "Thank you, goodbye. END_CONVERSATION Is there anything else I can help you with today?",
    "{\"name\": \"book_train\", \"arguments\": {\"trainid\": \"TR1234\", \"people\": 2}} [] null true false",
    "0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ .,:;!?'\"()[]{}<>_-+=/\\|@#$%^&*~`",
]


def build_tiny_model(
    out: Path, *, seed: int = 0, vocab_size: int = 512, hidden_size: int = 64, context: int = CONTEXT
) -> Path:
    """Write a tiny random Llama and its tokenizer to `out` (loadable with `from_pretrained`); return `out`.

    `context` is its `max_position_embeddings` and its tokenizer's `model_max_length`. Deterministic for a
    given `seed`. Takes about a second on a CPU."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_CORPUS * 4, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        chat_template=CHAT_TEMPLATE,
        model_max_length=context,
    )
    tokenizer.save_pretrained(out)

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=context,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    return out
