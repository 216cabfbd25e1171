"""The quantize-speed benchmark's decode loop (`python -m bench quantize_speed`), which is
llmcore.quantize.decode_speeds with each prompt sent as chat sends it, checked on the tiny model.
No timing is asserted here: speed targets are the benchmark's business."""

from __future__ import annotations

from bench import quantize_speed


def test_each_variant_reports_rounded_speeds_and_how_it_decoded(tiny_model_dir) -> None:
    import torch

    from llmcore.loading import load_folder

    loaded = load_folder(tiny_model_dir, device=torch.device("cpu"))
    variants = {"parent_float": (loaded, "off"), "parent_packed": (loaded, "auto")}
    speeds = quantize_speed._decode_speeds(variants, ("Hello there.",), new_tokens=4)

    assert list(speeds) == ["parent_float", "parent_packed"]
    for numbers in speeds.values():
        assert set(numbers) == {"tokens_per_s", "ttft_s", "decode"}
        assert numbers["tokens_per_s"] > 0
        assert numbers["tokens_per_s"] == round(numbers["tokens_per_s"], 2)
        assert numbers["ttft_s"] == round(numbers["ttft_s"], 3)
        assert numbers["decode"] == "float weights"  # random weights: nothing on a 4-bit grid to pack
