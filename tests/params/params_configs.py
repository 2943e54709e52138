"""Configs for the parameter-count tests: tiny families with uneven sizes, and the public base models' config.json.

Tiny sizes (hidden 48, feed-forward 100, 3 heads, vocabulary 97) are uneven so no two errors can cancel; the
`folder` fixture (conftest.py) writes any of them as a folder holding config.json and nothing else.
"""

TEXT = {
    "vocab_size": 97,
    "hidden_size": 48,
    "num_hidden_layers": 2,
    "num_attention_heads": 3,
    "intermediate_size": 100,
}
VISION = {"hidden_size": 48, "num_hidden_layers": 3, "num_attention_heads": 3, "intermediate_size": 100}

TINY = {
    "bert": {"model_type": "bert", **TEXT, "max_position_embeddings": 40, "type_vocab_size": 2},
    "roberta": {"model_type": "roberta", **TEXT, "num_hidden_layers": 3, "max_position_embeddings": 42,
                "type_vocab_size": 1, "pad_token_id": 1},
    "distilbert": {"model_type": "distilbert", "vocab_size": 97, "dim": 48, "n_layers": 2, "n_heads": 3,
                   "hidden_dim": 100, "max_position_embeddings": 40},
    "vit": {"model_type": "vit", **VISION, "image_size": 40, "patch_size": 8, "num_channels": 3, "qkv_bias": True},
    "clip": {"model_type": "clip", "projection_dim": 24,
             "vision_config": {**VISION, "num_hidden_layers": 2, "image_size": 32, "patch_size": 8},
             "text_config": {"vocab_size": 97, "hidden_size": 40, "num_hidden_layers": 2, "num_attention_heads": 2,
                             "intermediate_size": 64, "max_position_embeddings": 40}},
    "clip_vision_model": {"model_type": "clip_vision_model", **VISION, "image_size": 24, "patch_size": 6,
                          "num_channels": 3},
    "mobilenet_v2": {"model_type": "mobilenet_v2", "image_size": 32, "depth_multiplier": 0.35, "tf_padding": False,
                     "layer_norm_eps": 1e-5},
    "resnet": {"model_type": "resnet", "embedding_size": 16, "hidden_sizes": [16, 24, 40], "depths": [1, 2, 2],
               "layer_type": "bottleneck"},
    "mobilenet_v2-variant": {"model_type": "mobilenet_v2", "image_size": 32, "depth_multiplier": 0.75,
                             "first_layer_is_expansion": False, "finegrained_output": False, "expand_ratio": 4.0},
    "vit-no-qkv-bias": {"model_type": "vit", **VISION, "num_hidden_layers": 2, "image_size": 24, "patch_size": 4,
                        "num_channels": 1, "qkv_bias": False},
    "resnet-basic": {"model_type": "resnet", "embedding_size": 12, "hidden_sizes": [12, 20], "depths": [2, 1],
                     "layer_type": "basic", "downsample_in_first_stage": True},
}  # fmt: skip
TEXT_FAMILIES = ("bert", "roberta", "distilbert")

# The public models' config.json (hub ids in the keys); only the fields that shape parameters matter.
BASE = {
    "bert-base-uncased": {"model_type": "bert", "vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12,
                          "num_attention_heads": 12, "intermediate_size": 3072, "max_position_embeddings": 512,
                          "type_vocab_size": 2, "pad_token_id": 0},
    "roberta-base": {"architectures": ["RobertaForMaskedLM"], "attention_probs_dropout_prob": 0.1,
                     "bos_token_id": 0, "eos_token_id": 2, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
                     "hidden_size": 768, "initializer_range": 0.02, "intermediate_size": 3072,
                     "layer_norm_eps": 1e-05, "max_position_embeddings": 514, "model_type": "roberta",
                     "num_attention_heads": 12, "num_hidden_layers": 12, "pad_token_id": 1, "type_vocab_size": 1,
                     "vocab_size": 50265},
    "distilbert-base-uncased": {"model_type": "distilbert", "vocab_size": 30522, "dim": 768, "n_layers": 6,
                                "n_heads": 12, "hidden_dim": 3072, "max_position_embeddings": 512},
    "google/vit-base-patch16-224-in21k": {"architectures": ["ViTModel"], "attention_probs_dropout_prob": 0.0,
                                          "hidden_act": "gelu", "hidden_dropout_prob": 0.0, "hidden_size": 768,
                                          "image_size": 224, "initializer_range": 0.02, "intermediate_size": 3072,
                                          "layer_norm_eps": 1e-12, "model_type": "vit", "num_attention_heads": 12,
                                          "num_channels": 3, "num_hidden_layers": 12, "patch_size": 16,
                                          "qkv_bias": True},
    "huawei-noah/TinyBERT_General_4L_312D": {"model_type": "bert", "vocab_size": 30522, "hidden_size": 312,
                                             "num_hidden_layers": 4, "num_attention_heads": 12,
                                             "intermediate_size": 1200, "max_position_embeddings": 512,
                                             "type_vocab_size": 2},
    "microsoft/resnet-50": {"model_type": "resnet", "embedding_size": 64, "hidden_sizes": [256, 512, 1024, 2048],
                            "depths": [3, 4, 6, 3], "layer_type": "bottleneck", "downsample_in_first_stage": False},
    "openai/clip-vit-base-patch32": {"model_type": "clip", "projection_dim": 512,
                                     "vision_config": {"hidden_size": 768, "intermediate_size": 3072,
                                                       "num_hidden_layers": 12, "num_attention_heads": 12,
                                                       "image_size": 224, "patch_size": 32},
                                     "text_config": {"hidden_size": 512, "intermediate_size": 2048,
                                                     "num_hidden_layers": 12, "num_attention_heads": 8}},
}  # fmt: skip
