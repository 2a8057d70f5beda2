"""The network as an artifact rebuilds it."""

from __future__ import annotations

from worker.model.network import encoder_from_config


def test_an_mpnet_artifact_config_saved_with_sdpa_still_builds() -> None:
    # MPNet has no SDPA attention; an artifact's config records the implementation the
    # training run asked for, so rebuilding it must name eager, not fall back silently.
    config = {
        "model_type": "mpnet",
        "hidden_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "vocab_size": 100,
        "_attn_implementation": "sdpa",
    }
    encoder = encoder_from_config(config)
    assert type(encoder).__name__ == "MPNetModel"
    assert encoder.config._attn_implementation == "eager"
