"""The public base models' config.json for the parameter-count tests (tiny ones come from tests/tiny.py).

The `folder` fixture (conftest.py) writes any of them as a folder holding config.json and nothing else.
"""

from tiny import TEXT_FAMILIES, TINY  # noqa: F401  (re-exported for the params tests)

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
