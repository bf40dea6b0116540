"""The `hf:` backend: a local Hugging Face model (plus an optional PEFT adapter) as a chat model, in-process
(`--model hf:PATH[+ADAPTER]`). A trained model is just another endpoint. Importing it never imports torch.

- `spec`: which model a spec names (a folder, a GGUF file, a Hub id; an adapter folder) and what loading it
  needs (the `[train]` extra, 4-bit loading);
- `chat_format`: messages as chat-template dicts, and Hermes tool calls read back from the text;
- `batching`: the worker thread that gathers concurrent calls into batches;
- `decode`: josh's own CPU decode loop (cascade attention over the prompt prefix a batch shares);
- `model`: `HFChatModel`, which loads the model and generates each batch (`generate` on a GPU, the decode
  loop on a CPU).
"""

from josh.llm.hf.model import HFChatModel
from josh.llm.hf.spec import TRAIN_INSTALL, is_hf_spec, parse_hf_spec

__all__ = ["TRAIN_INSTALL", "HFChatModel", "is_hf_spec", "parse_hf_spec"]
