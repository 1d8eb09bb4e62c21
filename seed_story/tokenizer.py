"""Tokenizer helpers: the SEED-Story image tokens, the released tokenizer, and a byte-level test tokenizer.

The released tokenizer is Llama-2's SentencePiece vocabulary plus 66 added tokens: ``<img>``, ``</img>``
and ``<img_00000>`` .. ``<img_00063>``. ``[INST]`` is plain text, not a special token.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

IMAGE_START = "<img>"
IMAGE_END = "</img>"
INST = "[INST]"


def image_token(index: int) -> str:
    return f"<img_{index:05d}>"


def image_string(num_image_tokens: int) -> str:
    """``<img><img_00000>..<img_{n-1}></img>``: the text placeholder of one picture."""
    return IMAGE_START + "".join(image_token(i) for i in range(num_image_tokens)) + IMAGE_END


@dataclass(frozen=True)
class ImageTokenIds:
    """Ids of the image tokens in one tokenizer, checked to exist and be distinct."""

    boi: int
    eoi: int
    image: tuple[int, ...]

    @classmethod
    def from_tokenizer(cls, tokenizer: PreTrainedTokenizerBase, num_image_tokens: int) -> ImageTokenIds:
        names = [IMAGE_START, IMAGE_END] + [image_token(i) for i in range(num_image_tokens)]
        ids = tokenizer.convert_tokens_to_ids(names)
        unk = tokenizer.unk_token_id
        missing = [n for n, i in zip(names, ids, strict=True) if i is None or (unk is not None and i == unk)]
        if missing:
            raise ValueError(
                f"tokenizer lacks {len(missing)} SEED-Story image token(s), e.g. {missing[:3]}; "
                "use the released cvlm_llama2_tokenizer or add_image_tokens()"
            )
        if len(set(ids)) != len(ids):
            raise ValueError("tokenizer maps two different image tokens to the same id")
        return cls(boi=ids[0], eoi=ids[1], image=tuple(ids[2:]))

    @property
    def sequence(self) -> tuple[int, ...]:
        """The ids of one whole picture placeholder: ``<img>``, the image tokens, ``</img>``."""
        return (self.boi, *self.image, self.eoi)


def add_image_tokens(tokenizer: PreTrainedTokenizerBase, num_image_tokens: int) -> int:
    """Add ``<img>``, ``</img>`` and the image tokens (as the release did); returns how many were new."""
    names = [IMAGE_START, IMAGE_END] + [image_token(i) for i in range(num_image_tokens)]
    return tokenizer.add_tokens(names, special_tokens=True)


def build_byte_tokenizer(num_image_tokens: int) -> PreTrainedTokenizerFast:
    """A byte-level tokenizer (3 specials + 256 bytes + image tokens) that needs no download.

    Ids: ``<unk>``/pad 0, ``<s>`` 1, ``</s>`` 2 as in Llama-2, bytes 3..258, then the image tokens.
    Any Unicode text round-trips. Used by the ``tiny`` preset and tests.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    vocab.update({ch: 3 + i for i, ch in enumerate(sorted(alphabet))})
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<unk>"
    )
    add_image_tokens(tok, num_image_tokens)
    return tok


def load_tokenizer(path: str | Path, num_image_tokens: int = 64) -> PreTrainedTokenizerBase:
    """Load a tokenizer folder (e.g. ``pretrained/cvlm_llama2_tokenizer``) and check its image tokens."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"tokenizer folder not found: {path}")
    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    if tok.pad_token_id is None:
        # Padding is only ever on the right behind a causal mask, so <unk> is a safe pad.
        tok.pad_token = tok.unk_token
    ImageTokenIds.from_tokenizer(tok, num_image_tokens)
    return tok


def train_bpe_tokenizer(
    texts: Iterable[str], vocab_size: int, num_image_tokens: int, *, min_frequency: int = 2
) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on ``texts`` with exactly ``vocab_size`` base tokens, then the image tokens.

    Ids as in Llama-2 and :func:`build_byte_tokenizer`: ``<unk>``/pad 0, ``<s>`` 1, ``</s>`` 2. A small corpus can
    run out of merges before ``vocab_size``: the rest is filled with ``<unused_k>`` tokens, so the model preset's
    vocabulary size never depends on the corpus. ``[INST]`` is learnt as plain text, as in the release.

    Example::

        tok = train_bpe_tokenizer(captions, vocab_size=1024, num_image_tokens=16)
        tok.save_pretrained("mini/tokenizer")
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    core = Tokenizer(models.BPE(unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=["<unk>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer=trainer)
    size = core.get_vocab_size()
    if size > vocab_size:
        raise ValueError(f"BPE produced {size} tokens for a vocabulary of {vocab_size}")
    core.add_tokens([f"<unused_{i}>" for i in range(vocab_size - size)])
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<unk>"
    )
    add_image_tokens(tok, num_image_tokens)
    return tok
