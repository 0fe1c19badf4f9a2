"""A tiny, randomly initialised CLIP saved like a real one (no CLIP weights are installable here).

``save_tiny_clip(folder)`` writes what ``ML_CLIP_MODEL_PATH`` expects: ``CLIPModel.save_pretrained``
(config.json, model.safetensors), a byte-level BPE tokenizer trained here on a few sentences and
wrapped as ``CLIPTokenizerFast``, and a ``CLIPImageProcessor`` config. Same architecture and loading
code as a real CLIP; only the sizes are small and the weights random.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

VECTOR_SIZE = 16
IMAGE_SIZE = 32
CONTEXT_LENGTH = 32
_SENTENCES = [
    "a photo of a cat",
    "a dog running on the beach",
    "a red car parked in the street",
    "breaking news flood in valencia",
    "an astronaut in a white space suit",
    "a cup of coffee on a wooden table",
]


def save_tiny_clip(folder: Path, seed: int = 0) -> Path:
    import torch
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    # transformers 5: CLIPTokenizer is the tokenizers-backed class (CLIPTokenizerFast an alias of it,
    # missing from the type stubs); transformers 4: CLIPTokenizerFast.
    tokenizer_class: Any = getattr(transformers, "CLIPTokenizerFast", None) or transformers.CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE(unk_token="<|endoftext|>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|startoftext|>", "<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(_SENTENCES, trainer)
    raw = folder / "bpe.json"
    bpe.save(str(raw))
    tokenizer = tokenizer_class(
        tokenizer_file=str(raw),
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        model_max_length=CONTEXT_LENGTH,
    )
    raw.unlink()
    vocab = bpe.get_vocab_size()
    bos, eos = bpe.token_to_id("<|startoftext|>"), bpe.token_to_id("<|endoftext|>")
    text = {
        "vocab_size": vocab,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "max_position_embeddings": CONTEXT_LENGTH,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "pad_token_id": eos,
    }
    vision = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": IMAGE_SIZE,
        "patch_size": 8,
    }
    torch.manual_seed(seed)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=VECTOR_SIZE))
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    processor = CLIPImageProcessor(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    )
    processor.save_pretrained(str(folder))
    return folder
