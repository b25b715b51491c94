#!/usr/bin/env python3
"""Writes tests/fixtures/smolvlm-bpe/tokenizer.json: a small byte-level BPE
tokenizer of the kind SmolLM2 (and so SmolVLM2) uses, for
tests/prompt_layout.rs.

models/test-hub's own tokenizer is a word-level one over the shapes
vocabulary: every word of SmolVLM2's video prompt ("You are provided the
following series of ...", "Frame from 00:01:") would be the same unknown
token and newlines would vanish, so a prompt that differed in its words or
line breaks would still match transformers' token for token. This one is
SmolLM2's pipeline (digits split one by one, then GPT-2's byte-level
pre-tokenizer and decoder) with a vocabulary trained here on a few prompts,
small enough to commit; every byte is in it, so any text tokenizes and any
difference in text shows in the ids. SmolVLM2's special tokens keep the
ids test-hub's tokenizer_config.json gives them (0-5).

Needs `tokenizers` (models/testing/requirements.txt). Deterministic.
"""

import os

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

SPECIAL = ["<unk>", "<|im_start|>", "<end_of_utterance>", "<image>", "<fake_token_around_image>", "<global-img>"]

CORPUS = [
    "User: You are provided the following series of three frames from a 0:01:02 [H:MM:SS] video.\n",
    "\nFrame from 00:00:\nFrame from 00:01:\nFrame from 01:02:\n\nwhat changed ?\nAssistant:",
    "User: at 12.5 s : now : what changed ? is there a red shape ? answer yes or no .",
    "Describe this video in detail. A person walks to the door and leaves a parcel.",
]


def main():
    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS, trainer)
    for i, token in enumerate(SPECIAL):
        assert tokenizer.token_to_id(token) == i, token
    out = os.path.join(os.path.dirname(__file__), "../../tests/fixtures/smolvlm-bpe/tokenizer.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    tokenizer.save(out)
    print(f"{out}: {tokenizer.get_vocab_size()} tokens")


if __name__ == "__main__":
    main()
