"""Tiny random-weight text encoders and locally trained tokenizers that several families' test models
share (tests and demos): T5 (DeepFloyd IF; FLUX.1 and SD3's T5-XXL) and CLIP (the bundled real BPE
vocabulary). Nothing is downloaded. Runs on the calling thread (imports torch, transformers).
"""

from __future__ import annotations

import json
from pathlib import Path

# A few lines of text the tiny tokenizers are trained on.
CORPUS = (
    "a red fox in the snow at dawn",
    "an oil painting of a lighthouse on a rocky coast",
    "a bowl of fruit on a wooden table, soft light",
    "portrait of an old sailor with a grey beard",
    "a watercolor of a castle on a hill under a blue sky",
    "a cat sleeping on a windowsill in the sun",
    "a city street at night with neon signs and rain",
    "a sailing boat on a calm green lake",
)


def t5_tokenizer(dest: Path | None = None, model_max_length: int = 77):
    """A tiny T5 tokenizer: a Unigram vocabulary trained here on ``CORPUS`` (ids 0-2 = <pad>, </s>,
    <unk>, as T5 has them), wrapped as transformers' T5Tokenizer; saved to ``dest`` when given."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import T5Tokenizer

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(vocab_size=120, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>",
                                      shrinking_factor=0.75)
    tok.train_from_iterator(list(CORPUS) * 4, trainer)
    vocab = [(piece, float(score)) for piece, score in json.loads(tok.to_str())["model"]["vocab"]]
    assert [p for p, _ in vocab[:3]] == ["<pad>", "</s>", "<unk>"]
    t5 = T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=model_max_length)
    if dest is not None:
        t5.save_pretrained(str(dest))
    return t5


def t5_encoder(seed: int, vocab_size: int, width: int = 32):
    """A tiny ``T5EncoderModel`` (T5 v1.1's gated-GELU layout, as T5-XXL has it), seeded."""
    import torch
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    return T5EncoderModel(T5Config(vocab_size=vocab_size, d_model=width, d_kv=8, d_ff=37, num_layers=2,
                                   num_heads=4, relative_attention_num_buckets=8, dropout_rate=0.0,
                                   feed_forward_proj="gated-gelu", is_encoder_decoder=False)).eval()


def clip_tokenizer():
    """The real CLIP BPE tokenizer bundled with Easel (49,408 tokens)."""
    from engine.testmodels import tokenizer_for

    return tokenizer_for("clip")


def clip_encoder(seed: int, width: int = 32, projection_dim: int | None = None, layers: int = 5,
                 hidden_act: str = "quick_gelu"):
    """A tiny CLIP text encoder over the real vocabulary: ``CLIPTextModel``, or
    ``CLIPTextModelWithProjection`` when ``projection_dim`` is given (SDXL's / SD3's second and
    pooled encoders). ``hidden_act``: "gelu" for the OpenCLIP bigG encoder (CLIP-G). Seeded."""
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    config = CLIPTextConfig(hidden_size=width, intermediate_size=width + 5, num_hidden_layers=layers,
                            num_attention_heads=4, max_position_embeddings=77, vocab_size=49408,
                            projection_dim=projection_dim or width, hidden_act=hidden_act)
    cls = CLIPTextModelWithProjection if projection_dim else CLIPTextModel
    return cls(config).eval()


# Qwen3's chat template as the Z-Image and FLUX.2 [klein] pipelines apply it (one user turn, then the
# assistant's turn opened; ``enable_thinking=False`` adds the empty think block, as Qwen3's own does).
QWEN_CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}"
    "{%- endif %}"
)
QWEN_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>")


def qwen_tokenizer(dest: Path | None = None, model_max_length: int = 512, extra_special: tuple[str, ...] = ()):
    """A tiny Qwen2/Qwen3 tokenizer: a byte-level BPE trained here on ``CORPUS`` with Qwen's own
    pre-tokenizer (its split regex, then bytes), the special tokens the chat template uses
    (``<|endoftext|>`` = id 0 pads, ``<|im_start|>``, ``<|im_end|>``, ``<think>``), wrapped as
    transformers' ``Qwen2Tokenizer`` with Qwen3's chat template; saved to ``dest`` when given.
    ``extra_special``: more special tokens after those (Qwen2.5-VL's vision markers)."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    specials = list(QWEN_SPECIAL_TOKENS) + list(extra_special)
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(list(CORPUS) * 4, trainer)
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    qwen = Qwen2Tokenizer(vocab=model["vocab"], merges=merges, unk_token=None, eos_token="<|im_end|>",
                          pad_token="<|endoftext|>", model_max_length=model_max_length,
                          extra_special_tokens=specials[1:])
    qwen.chat_template = QWEN_CHAT_TEMPLATE
    if dest is not None:
        qwen.save_pretrained(str(dest))
    return qwen


def qwen3_encoder(seed: int, vocab_size: int, width: int = 32, layers: int = 2, causal_lm: bool = False,
                  rope_theta: float | None = None):
    """A tiny Qwen3 text encoder: ``Qwen3Model`` (Z-Image takes its second-to-last hidden state), or
    ``Qwen3ForCausalLM`` with ``causal_lm`` (FLUX.2 [klein] loads it that way). ``rope_theta``: the
    released models' (1,000,000) instead of transformers' default. Seeded."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM, Qwen3Model

    torch.manual_seed(seed)
    config = Qwen3Config(hidden_size=width, intermediate_size=width + 5, num_hidden_layers=layers,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=width // 2, vocab_size=vocab_size,
                         max_position_embeddings=1024, pad_token_id=0, tie_word_embeddings=causal_lm,
                         **({"rope_theta": rope_theta} if rope_theta is not None else {}))
    return (Qwen3ForCausalLM if causal_lm else Qwen3Model)(config).eval()


QWEN_VL_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")


def qwen25_vl_encoder(seed: int, tokenizer, width: int = 32, layers: int = 2, mrope: tuple[int, int, int] = (2, 2, 4)):
    """A tiny ``Qwen2_5_VLForConditionalGeneration`` (Qwen-Image's text encoder: Qwen2.5-VL-7B's
    layout, multimodal RoPE, a 2-block vision tower) over ``tokenizer``'s vocabulary, which must hold
    ``QWEN_VL_TOKENS`` (``qwen_tokenizer(extra_special=QWEN_VL_TOKENS)``); ``mrope``: the multimodal RoPE
    sections (of half the 16-wide heads). Seeded."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    ids = tokenizer.convert_tokens_to_ids(list(QWEN_VL_TOKENS))
    torch.manual_seed(seed)
    config = Qwen2_5_VLConfig(
        text_config={"hidden_size": width, "intermediate_size": width + 5, "num_hidden_layers": layers,
                     "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": len(tokenizer),
                     "max_position_embeddings": 2048, "rope_theta": 1000000.0,
                     "rope_scaling": {"mrope_section": list(mrope), "rope_type": "default", "type": "default"}},
        vision_config={"depth": 2, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2, "out_hidden_size": width},
        vocab_size=len(tokenizer), vision_start_token_id=ids[0], vision_end_token_id=ids[1], image_token_id=ids[2],
        video_token_id=ids[3])
    return Qwen2_5_VLForConditionalGeneration(config).eval()


# Mistral Small 3.1's chat template as the FLUX.2 [dev] pipeline applies it (a system turn, then user turns whose
# content is a list of text / image parts; no generation prompt), in the released tokenizer's control tokens.
MISTRAL_CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{%- set parts = message['content'] if message['content'] is not string else [{'type': 'text', 'text': message['content']}] %}"
    "{%- if message['role'] == 'system' %}{{- '[SYSTEM_PROMPT]' }}{%- else %}{{- '[INST]' }}{%- endif %}"
    "{%- for part in parts %}"
    "{%- if part['type'] == 'text' %}{{- part['text'] }}{%- else %}{{- '[IMG]' }}{%- endif %}"
    "{%- endfor %}"
    "{%- if message['role'] == 'system' %}{{- '[/SYSTEM_PROMPT]' }}{%- else %}{{- '[/INST]' }}{%- endif %}"
    "{%- endfor %}"
)
# Tekken's first ids, as Mistral Small 3.1 has them (<unk> 0, <s> 1, </s> 2, [INST] 3, [/INST] 4, ... [IMG] 10).
MISTRAL_SPECIAL_TOKENS = ("<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]",
                          "[TOOL_RESULTS]", "[/TOOL_RESULTS]", "[TOOL_CALLS]", "[IMG]", "<pad>", "[IMG_BREAK]",
                          "[IMG_END]", "[PREFIX]", "[MIDDLE]", "[SUFFIX]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]")


def mistral_tokenizer(dest: Path | None = None, model_max_length: int = 512):
    """A tiny Mistral 3 tokenizer, as FLUX.2 [dev] reads its ``tokenizer`` folder: a byte-level BPE
    trained here on ``CORPUS`` (Tekken is byte-level BPE too) with Mistral's control tokens at their
    released ids (``[IMG]`` = 10, ``<pad>`` = 11), wrapped as transformers' fast tokenizer with
    Mistral's chat template; saved to ``dest`` when given (tokenizer.json, tokenizer_config.json)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=list(MISTRAL_SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(list(CORPUS) * 4, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                        pad_token="<pad>", model_max_length=model_max_length,
                                        extra_special_tokens=list(MISTRAL_SPECIAL_TOKENS[3:]))
    tokenizer.chat_template = MISTRAL_CHAT_TEMPLATE
    if dest is not None:
        tokenizer.save_pretrained(str(dest))
    return tokenizer


def mistral3_encoder(seed: int, vocab_size: int, width: int = 32, layers: int = 30):
    """A tiny ``Mistral3ForConditionalGeneration`` (FLUX.2 [dev]'s text encoder: Mistral Small 3.1's
    layout: heads 128 wide whatever the width, as Mistral Small's; a 1-layer Pixtral vision tower),
    ``layers`` deep (FLUX.2 [dev] stacks the hidden states after layers 10, 20 and 30). Seeded."""
    import torch
    from transformers import Mistral3Config, Mistral3ForConditionalGeneration

    torch.manual_seed(seed)
    config = Mistral3Config(
        text_config={"model_type": "mistral", "hidden_size": width, "intermediate_size": width + 5,
                     "num_hidden_layers": layers, "num_attention_heads": 2, "num_key_value_heads": 1,
                     "head_dim": 128, "vocab_size": vocab_size, "max_position_embeddings": 1024,
                     "rope_theta": 1000000000.0, "rms_norm_eps": 1e-05, "sliding_window": None, "pad_token_id": 11},
        vision_config={"model_type": "pixtral", "hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 1,
                       "num_attention_heads": 2, "head_dim": 8, "image_size": 56, "patch_size": 14},
        image_token_index=10, tie_word_embeddings=False)
    return Mistral3ForConditionalGeneration(config).eval()
