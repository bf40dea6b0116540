"""Exported files are what TRL takes: `datasets` loads them, TRL's data utilities and its trainers' dataset
preparation accept them (a tiny tokenizer and model built here: nothing is downloaded)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from josh.envs.toolwoz.fetch import download_wheel
from josh.export import export_examples, read_reference_trees, read_trees

# trl, transformers and datasets import lazily: collecting this module costs nothing (importing
# trl.data_utils loads torch, ~4 s, so the tests do that themselves).
trl = pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

pytestmark = pytest.mark.data

# ChatML, with tools and tool calls: enough to render every message an export holds.
CHATML = (
    "{% if tools %}<|im_start|>system\nTools: {{ tools | tojson }}<|im_end|>\n{% endif %}"
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] %}{{ message['content'] }}{% endif %}"
    "{% if message['tool_calls'] %}{% for call in message['tool_calls'] %}"
    "<tool_call>{{ call['function']['name'] }} {{ call['function']['arguments'] }}</tool_call>"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    """A byte-level BPE trained here in milliseconds, with a ChatML template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|im_start|>", "<|im_end|>", "<|pad|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(["PLAN APICALL SPEAK search_hotel book_restaurant the customer"], trainer)
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|pad|>"
    )
    fast.chat_template = CHATML
    return fast


@pytest.fixture(scope="module")
def exported(dry_run_trees: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each kind from the dry-run trees (ReAct and function calling) and from the paper's trees (a sample:
    the full KTO file is 340 MB), written by the exporter."""
    from josh.export import ExportResult, write_export

    folder = tmp_path_factory.mktemp("exports")
    ours = read_trees([dry_run_trees["react"], dry_run_trees["fc"]]).trees
    paper = read_reference_trees(download_wheel(), system_prompt="SYS").trees[:40]
    files = {}
    for kind in ("sft", "kto", "dpo"):
        for name, trees in (("ours", ours), ("paper", paper)):
            result: ExportResult = export_examples(kind, trees)  # type: ignore[arg-type]
            files[f"{name}-{kind}"] = write_export(folder / f"{name}-{kind}", result, {}, force=False)
    return files


def load(path: Path) -> Any:
    return datasets.load_dataset("json", data_files=str(path), split="train")


@pytest.mark.parametrize("name", ["ours", "paper"])
def test_datasets_loads_each_kind_and_trl_renders_it(
    exported: dict[str, Path], tokenizer: Any, name: str
) -> None:
    from trl.data_utils import is_conversational, maybe_apply_chat_template

    for kind, rendered in (("sft", {"text"}), ("kto", {"prompt", "completion", "label"}),
                           ("dpo", {"prompt", "chosen", "rejected"})):  # fmt: skip
        dataset = load(exported[f"{name}-{kind}"])
        rows = [json.loads(line) for line in exported[f"{name}-{kind}"].read_text().splitlines()]
        assert len(dataset) == len(rows) > 0
        for example in dataset:
            assert is_conversational(example)
            tools = example["tools"] or None
            out = maybe_apply_chat_template(example, tokenizer, tools=tools)
            assert set(out) == rendered
            assert all(isinstance(out[k], str) and out[k] for k in rendered - {"label"})
        # what datasets gives back is what was written (tools, tool calls and all), less the keys a
        # message did not have, which come back as None
        first = dataset[0]
        for key, value in rows[0].items():
            assert strip_none(first[key]) == value


def strip_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: strip_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [strip_none(v) for v in value]
    return value


def test_a_dpo_file_unpairs_into_kto_examples(exported: dict[str, Path]) -> None:
    from trl.data_utils import unpair_preference_dataset

    pairs = load(exported["ours-dpo"])
    unpaired = unpair_preference_dataset(pairs)
    assert len(unpaired) == 2 * len(pairs)
    assert set(unpaired.column_names) == {"prompt", "completion", "label", "tools"}


@pytest.mark.filterwarnings(
    "ignore:`gradient_checkpointing` is deprecated:FutureWarning"
)  # TRL's own default
def test_the_trainers_prepare_the_datasets(exported: dict[str, Path], tokenizer: Any, tmp_path: Path) -> None:
    """SFT, KTO and DPO trainers built on a tiny Llama (hidden 64, 2 layers) tokenize every example."""
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=1 << 16,
    )  # fmt: skip

    def model() -> Any:
        return transformers.LlamaForCausalLM(config)

    common = {
        "output_dir": str(tmp_path),
        "report_to": "none",
        "use_cpu": True,
        "per_device_train_batch_size": 2,
        "max_length": None,
    }  # fmt: skip  (the ReAct prompt alone is longer than the 1,024 default)
    sft = load(exported["ours-sft"])
    trainer = trl.SFTTrainer(
        model=model(), args=trl.SFTConfig(**common), train_dataset=sft, processing_class=tokenizer
    )
    assert len(trainer.train_dataset) == len(sft) and "input_ids" in trainer.train_dataset.column_names
    kto = load(exported["ours-kto"]).select(range(24))
    trainer = trl.KTOTrainer(
        model=model(),
        ref_model=model(),
        args=trl.KTOConfig(**common),
        train_dataset=kto,
        processing_class=tokenizer,
    )
    assert len(trainer.train_dataset) == 24 and "completion_ids" in trainer.train_dataset.column_names
    dpo = load(exported["ours-dpo"])
    trainer = trl.DPOTrainer(
        model=model(),
        ref_model=model(),
        args=trl.DPOConfig(**common),
        train_dataset=dpo,
        processing_class=tokenizer,
    )
    assert len(trainer.train_dataset) == len(dpo) and "rejected_ids" in trainer.train_dataset.column_names


@pytest.mark.parametrize("name", ["ours", "paper"])
@pytest.mark.filterwarnings("ignore:`gradient_checkpointing` is deprecated:FutureWarning")
def test_trl_keeps_every_example_josh_fitted_to_max_length_whole(
    exported: dict[str, Path], tokenizer: Any, tmp_path: Path, name: str
) -> None:
    """`josh train` fits each example to --max-length (--truncation keep-end) before TRL; TRL's own preparation
    (TRL 1.16: cut at the end, drop a KTO/DPO example whose prompt fills max_length) then drops none and cuts
    none: the lengths josh measured are TRL's (this chat template renders tools and tool calls its own way)."""
    from josh.train.config import TrainConfig
    from josh.train.data import fit_dataset, read_examples, to_dataset

    limit = 1024  # TRL's default: the ReAct prompt alone is longer
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=limit,
    )  # fmt: skip
    common = {"output_dir": str(tmp_path), "report_to": "none", "use_cpu": True, "max_length": limit,
              "per_device_train_batch_size": 2}  # fmt: skip
    built = {"sft": (trl.SFTTrainer, trl.SFTConfig), "kto": (trl.KTOTrainer, trl.KTOConfig),
             "dpo": (trl.DPOTrainer, trl.DPOConfig)}  # fmt: skip
    truncated = 0
    for kind, (trainer_class, args_class) in built.items():
        train_config = TrainConfig(kind=kind, data=exported[f"{name}-{kind}"], model="m", out=tmp_path,
                                   max_length=limit, seed=0)  # fmt: skip
        rows = read_examples(train_config)
        if kind == "kto":  # both labels: a harvest's first rows may all be desirable
            rows = [r for r in rows if r["label"]][:12] + [r for r in rows if not r["label"]][:12]
        rows = rows[:24]
        fitted, report = fit_dataset(to_dataset(rows, train_config), train_config, tokenizer)
        truncated += report.truncated
        extra = {} if kind == "sft" else {"ref_model": transformers.LlamaForCausalLM(config)}
        trainer = trainer_class(model=transformers.LlamaForCausalLM(config), args=args_class(**common),
                                train_dataset=fitted, processing_class=tokenizer, **extra)  # fmt: skip
        prepared = trainer.train_dataset
        assert len(prepared) == len(fitted) == report.kept, kind  # TRL dropped nothing
        for example in prepared:
            if kind == "kto":
                assert len(example["prompt_ids"]) + len(example["completion_ids"]) <= limit
            elif kind == "dpo":
                longest = max(len(example["chosen_ids"]), len(example["rejected_ids"]))
                assert len(example["prompt_ids"]) + longest <= limit
            else:  # TRL cut nothing: the conversation still ends with its last reply's end
                assert len(example["input_ids"]) <= limit
                assert tokenizer.decode(example["input_ids"]).endswith("<|im_end|>\n")
    assert truncated > 0  # the limit bit: this tested something
