#!/usr/bin/env python3
"""Exports a trained checkpoint to the onnx-community folder the daemon
loads (docs/architecture.md §6): onnx/{vision_encoder,embed_tokens,decoder_model_merged}.onnx,
tokenizer.json, and the configs.

    python3 export.py work/ckpt.pt model/
    python3 export.py work/ckpt.pt model/ --describe-window 0   # a model trained before the window

`--describe-window S` (default qa.WINDOW_S, 2 s) writes
`glimpse.describe_window_s`: the model was trained (cache.py --window) to
answer "what changed ?" from the scene before the window and now, and the
daemon then asks it so (context.Memory.window_readout). 0 leaves it out: the
daemon asks it of the whole memory, as models trained before it.
"""

import argparse
import json
import os

import torch

import model as M
import qa


def export_graphs(net, out):
    """The three graphs of `net` into `out`/onnx/ (opset 17, batch 1)."""
    os.makedirs(os.path.join(out, "onnx"), exist_ok=True)
    net.eval()
    H = M.HIDDEN
    with torch.no_grad():
        torch.onnx.export(
            M.VisionExport(net.vision),
            (torch.zeros(1, 1, 3, M.IMAGE, M.IMAGE), torch.ones(1, 1, M.IMAGE, M.IMAGE, dtype=torch.bool)),
            os.path.join(out, "onnx", "vision_encoder.onnx"),
            input_names=["pixel_values", "pixel_attention_mask"],
            output_names=["image_features"],
            opset_version=17,
            dynamo=False,
        )
        torch.onnx.export(
            net.embed,
            (torch.zeros(1, 5, dtype=torch.long),),
            os.path.join(out, "onnx", "embed_tokens.onnx"),
            input_names=["input_ids"],
            output_names=["inputs_embeds"],
            dynamic_axes={"input_ids": {1: "sequence_length"}, "inputs_embeds": {1: "sequence_length"}},
            opset_version=17,
            dynamo=False,
        )
        past, names_in, names_out = [], ["inputs_embeds", "attention_mask", "position_ids"], ["logits"]
        axes = {
            "inputs_embeds": {1: "sequence_length"},
            "attention_mask": {1: "total_sequence_length"},
            "position_ids": {1: "sequence_length"},
            "logits": {1: "sequence_length"},
        }
        for i in range(net.decoder.layers):
            for kind in ("key", "value"):
                past.append(torch.zeros(1, M.KV_HEADS, 3, M.HEAD_DIM))
                names_in.append(f"past_key_values.{i}.{kind}")
                names_out.append(f"present.{i}.{kind}")
                axes[f"past_key_values.{i}.{kind}"] = {2: "past_sequence_length"}
                axes[f"present.{i}.{kind}"] = {2: "total_sequence_length"}
        torch.onnx.export(
            net.decoder,
            (torch.zeros(1, 4, H), torch.ones(1, 7, dtype=torch.long), torch.arange(3, 7).unsqueeze(0), *past),
            os.path.join(out, "onnx", "decoder_model_merged.onnx"),
            input_names=names_in,
            output_names=names_out,
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("ckpt")
    ap.add_argument("out")
    ap.add_argument("--describe-window", type=float, default=qa.WINDOW_S)
    args = ap.parse_args()
    ckpt, out = args.ckpt, args.out
    os.makedirs(os.path.join(out, "onnx"), exist_ok=True)
    tok, vocab = qa.make_tokenizer()
    tok.save(os.path.join(out, "tokenizer.json"))
    # A checkpoint written on a GPU loads here on the CPU.
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    place = M.has_place(state["model"])
    net = M.ShapesModel(len(vocab), M.decoder_layers(state["model"]), place)
    net.load_state_dict(state["model"])
    export_graphs(net, out)
    H = M.HIDDEN
    config = {
        "architectures": ["SmolVLMForConditionalGeneration"],
        "model_type": "smolvlm",
        "image_token_id": vocab["<image>"],
        "scale_factor": 1,
        "vision_config": {"image_size": M.IMAGE, "patch_size": M.IMAGE // M.GRID, "hidden_size": M.VISION_DIM},
        "text_config": {
            "hidden_size": H,
            "num_hidden_layers": net.decoder.layers,
            "num_attention_heads": M.HEADS,
            "num_key_value_heads": M.KV_HEADS,
            "head_dim": M.HEAD_DIM,
            "vocab_size": len(vocab),
            "rope_theta": M.ROPE_THETA,
            "max_position_embeddings": 4096,
        },
        # Trained without SmolVLM's <fake_token_around_image> markers.
        # What the daemon asks on a scene change and which answer is no
        # news (the camera's trigger.describe / no_news default to these).
        "glimpse": {
            "wrap_images": False,
            "trained_steps": int(state["step"]),
            "recipe": "models/shapes/README.md",
            "describe": "what changed ?",
            "no_news": ["nothing changed"],
        },
    }
    if place:
        # The vision graph adds the place code (model.Vision.place);
        # import_onnx.py reads it back. The daemon needs nothing: the code
        # is inside the graph.
        config["glimpse"]["place_code"] = "sincos_2d"
    if args.describe_window:
        config["glimpse"]["describe_window_s"] = args.describe_window
    generation = {"bos_token_id": vocab["<|im_start|>"], "eos_token_id": [vocab["<end_of_utterance>"]], "max_new_tokens": 24}
    preprocessor = {
        "image_processor_type": "Idefics3ImageProcessor",
        "do_resize": True,
        "size": {"longest_edge": M.IMAGE},
        "resample": 2,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": M.MEAN,
        "image_std": M.STD,
        "do_image_splitting": False,
        "max_image_size": {"longest_edge": M.IMAGE},
        "do_pad": True,
    }
    tokenizer_config = {
        "bos_token": "<|im_start|>",
        "eos_token": "<end_of_utterance>",
        "unk_token": "<unk>",
        "pad_token": "<unk>",
        # SmolVLM2's chat template, as the daemon and context.py render it.
        "chat_template": (
            "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
            "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
            "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
            "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n"
            "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
        ),
        "added_tokens_decoder": {
            str(vocab[t]): {"content": t, "special": True, "lstrip": False, "rstrip": False, "normalized": False, "single_word": False}
            for t in qa.SPECIAL
        },
    }
    for name, value in [
        ("config.json", config),
        ("generation_config.json", generation),
        ("preprocessor_config.json", preprocessor),
        ("tokenizer_config.json", tokenizer_config),
    ]:
        with open(os.path.join(out, name), "w") as f:
            json.dump(value, f, indent=2)
            f.write("\n")
    print(f"wrote {os.path.abspath(out)} (step {state['step']})")


if __name__ == "__main__":
    main()
