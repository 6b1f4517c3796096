"""Text -> token ids the way MindFormers' ``LlamaTokenizer`` does it for pretraining data.

MindFormers' preprocessing calls its ``LlamaTokenizer`` (a sentencepiece model, legacy mode) with
``add_bos_token`` and ``add_eos_token`` on, once per paragraph. What that call does, and so what
this module does:

- The literal strings ``<s>``, ``</s>`` and ``<unk>`` in the text are special tokens: the text is
  cut around them and each becomes its id (WikiText is full of ``<unk>``, which must become the
  unknown id, not the five characters). Nothing is stripped around them.
- Every piece of text between them is encoded by sentencepiece on its own (so each piece gets
  sentencepiece's dummy ``▁`` prefix), as piece strings that are then looked up as ids.
- The ids are framed as ``[BOS] + ids + [EOS]``, even for a text with no pieces.

The BOS/EOS/UNK ids come from the model file: the ids of its ``<s>``, ``</s>`` and ``<unk>``
pieces. A model whose BOS or EOS piece has another name is refused, because MindFormers would
look up ``<s>``/``</s>`` and silently get the unknown id instead.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mfctl.errors import BadInput

BOS_PIECE, EOS_PIECE, UNK_PIECE = "<s>", "</s>", "<unk>"
# Longest first is not needed (no special string contains another), but keeps the intent plain.
_SPECIAL = re.compile("(" + "|".join(re.escape(s) for s in (EOS_PIECE, UNK_PIECE, BOS_PIECE)) + ")")


def split_special(text: str) -> list[str]:
    """``text`` cut around every ``<s>``, ``</s>``, ``<unk>``; the specials are kept, empty cuts dropped.

    ``"a <unk> b"`` -> ``["a ", "<unk>", " b"]``.
    """
    return [part for part in _SPECIAL.split(text) if part]


class LlamaEncoder:
    """Encodes texts into ``[BOS] + ids + [EOS]`` with a loaded sentencepiece processor."""

    def __init__(self, sp: Any, model_file: Path) -> None:
        self.sp = sp
        bos, eos = sp.bos_id(), sp.eos_id()
        for name, piece, pid in (("beginning", BOS_PIECE, bos), ("end", EOS_PIECE, eos)):
            if pid < 0:
                raise BadInput(
                    f"{model_file}: the tokenizer has no {name}-of-sequence piece; MindFormers frames "
                    f"every paragraph with {BOS_PIECE} ... {EOS_PIECE}: give a Llama-style tokenizer.model"
                )
            if sp.id_to_piece(pid) != piece:
                raise BadInput(
                    f"{model_file}: the {name}-of-sequence piece is {sp.id_to_piece(pid)!r}, not {piece!r}; "
                    f"MindFormers' LlamaTokenizer looks up {piece!r}: give a Llama-style tokenizer.model"
                )
        self.bos_id: int = bos
        self.eos_id: int = eos
        # piece_to_id of a name the model lacks is the unknown id, as upstream's lookup.
        self._special_ids = {BOS_PIECE: bos, EOS_PIECE: eos, UNK_PIECE: sp.piece_to_id(UNK_PIECE)}

    def encode(self, text: str) -> list[int]:
        """One paragraph or document: ``[BOS] + ids + [EOS]``."""
        return self.encode_all([text])[0]

    def encode_all(self, texts: Sequence[str]) -> list[list[int]]:
        """``encode`` of each text; the plain-text cuts of all of them go to sentencepiece in one call."""
        cuts = [split_special(text) for text in texts]
        plain = [part for parts in cuts for part in parts if part not in self._special_ids]
        # Pieces, then ids: the lookup upstream does (an unknown surface maps to unk).
        pieces = self.sp.encode(plain, out_type=str) if plain else []
        encoded = iter([self.sp.piece_to_id(p) if p else [] for p in pieces])
        out: list[list[int]] = []
        for parts in cuts:
            ids = [self.bos_id]
            for part in parts:
                special = self._special_ids.get(part)
                if special is not None:
                    ids.append(special)
                else:
                    ids.extend(next(encoded))
            ids.append(self.eos_id)
            out.append(ids)
        return out
