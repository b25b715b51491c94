#!/usr/bin/env python3
"""SmolVLM2's video prompt as transformers builds it, for tests/prompt_layout.rs.

Prints, as JSON, the token ids of a one-message chat holding a video of
frames at the given times followed by a question, built the way
`SmolVLMProcessor` builds it for `apply_chat_template` + `__call__`:

1. the chat rendered with the processor's video chat template
   (`processing_smolvlm.DEFAULT_CHAT_TEMPLATE`, which transformers uses
   for any chat holding a video), the video written as `<video>`;
2. `<video>` replaced by `SmolVLMProcessor.replace_video_token`: the
   intro naming the frame count in words and the duration, then per frame
   "Frame from MM:SS:" and its `image_seq_len` image tokens between the
   image markers;
3. the text tokenized by the folder's tokenizer (AutoTokenizer).

The processor itself cannot be constructed without torch and torchvision
(its video processor needs them: ~3 GB), which CI does not install for a
text expansion. So step 2 calls the processor class's own method on an
object holding exactly the attributes `SmolVLMProcessor.__init__` sets for
it (the token strings, read from the tokenizer as `__init__` reads them,
and `image_seq_len` from processor_config.json); the frames' pixels are
never looked at, only their count and times.

Usage: smolvlm_video_prompt.py FOLDER --times-ms 0,1500,3000 --question Q [--system S]
"""

import argparse
import json
import sys
import types

import numpy as np
import transformers
from transformers import AutoTokenizer
from transformers.models.smolvlm import processing_smolvlm
from transformers.models.smolvlm.processing_smolvlm import SmolVLMProcessor
from transformers.video_utils import VideoMetadata


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("folder")
    parser.add_argument("--times-ms", required=True, help="frame times in ms, comma separated")
    parser.add_argument("--question", required=True)
    parser.add_argument("--system", help="a system message before the user's (a camera's trigger.context)")
    args = parser.parse_args()

    times = [int(t) for t in args.times_ms.split(",")]
    tokenizer = AutoTokenizer.from_pretrained(args.folder)
    with open(f"{args.folder}/processor_config.json") as f:
        image_seq_len = json.load(f)["image_seq_len"]

    # What SmolVLMProcessor.__init__ sets and replace_video_token reads.
    processor = types.SimpleNamespace(
        fake_image_token=getattr(tokenizer, "fake_image_token", "<fake_token_around_image>"),
        image_token=getattr(tokenizer, "image_token", "<image>"),
        global_image_token=getattr(tokenizer, "global_image_token", "<global-img>"),
        video_token=getattr(tokenizer, "video_token", "<video>"),
        image_seq_len=image_seq_len,
    )

    chat = [
        {
            "role": "user",
            "content": [{"type": "video"}, {"type": "text", "text": args.question}],
        }
    ]
    if args.system:
        chat.insert(0, {"role": "system", "content": [{"type": "text", "text": args.system}]})
    text = tokenizer.apply_chat_template(
        chat,
        chat_template=processing_smolvlm.DEFAULT_CHAT_TEMPLATE,
        add_generation_prompt=True,
        tokenize=False,
    )
    # A video whose frames were sampled at `times` (ms from its start).
    metadata = VideoMetadata(
        total_num_frames=times[-1] + 1,
        fps=1000.0,
        duration=(times[-1] - times[0]) / 1000.0,
        frames_indices=times,
    )
    video_inputs = {
        "pixel_values": np.zeros((1, len(times), 3, 1, 1), dtype=np.float32),
        "video_metadata": [metadata],
    }
    expanded = SmolVLMProcessor.replace_video_token(processor, video_inputs, 0)
    if text.count(processor.video_token) != 1:
        sys.exit(f"the chat template wrote {text.count(processor.video_token)} video tokens")
    text = text.replace(processor.video_token, expanded, 1)
    ids = tokenizer(text, add_special_tokens=True)["input_ids"]
    image_token_id = tokenizer.convert_tokens_to_ids(processor.image_token)
    json.dump(
        {
            "transformers": transformers.__version__,
            "text": text,
            "ids": ids,
            "image_positions": [i for i, t in enumerate(ids) if t == image_token_id],
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
