"""Sentence-transformers style classifier: a linear head on the attention-masked mean of an encoder's last hidden states.

Built by `load_model` for sentence-transformers models; torch + transformers only, so saved folders load without peftlab.
"""

# save_pretrained copies this file next to the weights (register_for_auto_class, done in peftlab.models), so
# AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True) works where peftlab is absent.
# An adapter's `base/` folder holds this file and a config alone: from_pretrained then reads the pretrained encoder
# from `encoder_name_or_path` (a hub id or a folder) and adds a fresh head, the base that PEFT's adapter goes onto.

import inspect
import os

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.models.auto.modeling_auto import MODEL_MAPPING

MODEL_TYPE = "peftlab-meanpool"


class MeanPoolConfig(PretrainedConfig):
    """An encoder's config (`encoder_config`, any AutoModel family) plus the head: dropout and `num_labels`;
    `encoder_name_or_path` says where the pretrained encoder comes from (hub id or folder; None: unknown)."""

    model_type = MODEL_TYPE
    sub_configs = {"encoder_config": AutoConfig}

    def __init__(self, encoder_config=None, classifier_dropout=None, encoder_name_or_path=None, **kwargs):
        if isinstance(encoder_config, dict):  # from config.json: {"model_type": "bert", ...}
            encoder_config = AutoConfig.for_model(**encoder_config)
        self.encoder_config = encoder_config
        self.encoder_name_or_path = encoder_name_or_path
        if classifier_dropout is None and encoder_config is not None:
            classifier_dropout = getattr(encoder_config, "hidden_dropout_prob", None)
        self.classifier_dropout = 0.1 if classifier_dropout is None else classifier_dropout
        super().__init__(**kwargs)

    # PEFT's prompt learning finds the word embeddings by the vocabulary size, read from `config.get_text_config()`
    # (this config itself): answer with the encoder's. Without one (PEFT's save reads the base's plain encoder
    # config.json through this class to compare vocabularies), the value is kept here.
    @property
    def vocab_size(self) -> int | None:
        encoder = self.__dict__.get("encoder_config")
        return encoder.vocab_size if encoder is not None else self.__dict__.get("_vocab_size")

    @vocab_size.setter
    def vocab_size(self, value: int) -> None:  # resize_token_embeddings writes it
        encoder = self.__dict__.get("encoder_config")
        if encoder is not None:
            encoder.vocab_size = value
        else:
            self.__dict__["_vocab_size"] = value


def _encoder_kwargs(encoder_config) -> dict:
    """`add_pooling_layer=False` for families that have a pooler (BERT, RoBERTa): mean pooling never uses it."""
    try:
        encoder_cls = MODEL_MAPPING[type(encoder_config)]
    except KeyError:
        return {}
    return (
        {"add_pooling_layer": False}
        if "add_pooling_layer" in inspect.signature(encoder_cls).parameters
        else {}
    )


# the files from_pretrained reads weights from; a folder with none of them is a config-only base (see from_pretrained)
WEIGHTS_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
# from_pretrained arguments that say where and how to read the encoder (the rest are the Auto classes' own)
ENCODER_LOAD_KWARGS = (
    "cache_dir",
    "force_download",
    "local_files_only",
    "proxies",
    "token",
    "dtype",
    "torch_dtype",
)


def masked_mean(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, T, H), (B, T) -> (B, H): mean over the tokens whose mask is 1 (padding excluded)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    summed = (hidden * mask).sum(dim=1)  # (B, H)
    count = mask.sum(dim=1).clamp(min=1e-9)  # (B, 1); an all-padding row gives 0, not NaN
    return summed / count


class MeanPoolForSequenceClassification(PreTrainedModel):
    """encoder -> masked mean (B, H) -> dropout -> `classifier` Linear(H, num_labels) -> logits (B, num_labels)."""

    config_class = MeanPoolConfig
    base_model_prefix = "encoder"
    supports_gradient_checkpointing = True
    _supports_sdpa = True

    def __init__(self, config: MeanPoolConfig, encoder: PreTrainedModel | None = None):
        super().__init__(config)
        # `encoder` lets a caller hand in an already loaded (pretrained) encoder instead of a fresh one from the config.
        if encoder is None:
            encoder = AutoModel.from_config(config.encoder_config, **_encoder_kwargs(config.encoder_config))
        self.encoder = encoder
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(config.encoder_config.hidden_size, config.num_labels)
        self._encoder_params = set(inspect.signature(self.encoder.forward).parameters)
        self.post_init()

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """A folder with weights loads as any model. A folder with this config and no weights (an adapter's `base/`)
        gives the pretrained encoder read from `config.encoder_name_or_path` plus a freshly initialised head: the
        model a PEFT adapter saved by peftlab goes onto (the adapter restores the trained head)."""
        folder = str(pretrained_model_name_or_path)
        weightless = os.path.isdir(folder) and not any(
            os.path.isfile(os.path.join(folder, f)) for f in WEIGHTS_FILES
        )
        if not weightless:
            return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        config = kwargs.get("config")
        if not isinstance(config, MeanPoolConfig):
            config = cls.config_class.from_pretrained(folder)
        if not config.encoder_name_or_path:
            raise OSError(
                f"{folder} holds no weights and its config names no encoder_name_or_path to read them from"
            )
        load = {k: kwargs[k] for k in ENCODER_LOAD_KWARGS if k in kwargs}
        encoder = AutoModel.from_pretrained(config.encoder_name_or_path, config=config.encoder_config,
                                            **_encoder_kwargs(config.encoder_config), **load)  # fmt: skip
        model = cls(config, encoder=encoder)
        return model.to(encoder.dtype).eval()

    def _init_weights(self, module):
        if module is getattr(self, "classifier", None):
            std = getattr(self.config.encoder_config, "initializer_range", None) or 0.02
            nn.init.normal_(module.weight, mean=0.0, std=std)
            nn.init.zeros_(module.bias)

    def get_input_embeddings(self):
        return self.encoder.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.encoder.set_input_embeddings(value)

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        inputs_embeds=None,
        labels=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        past_key_values=None,
        **kwargs,
    ):
        # PEFT's PeftModelForSequenceClassification passes all of these; the encoder gets the ones it understands.
        if attention_mask is None:
            shape = input_ids.shape if input_ids is not None else inputs_embeds.shape[:2]  # (B, T)
            device = input_ids.device if input_ids is not None else inputs_embeds.device
            attention_mask = torch.ones(shape, dtype=torch.long, device=device)
        # Tensors go only where the encoder names them (DistilBERT has no token_type_ids); flags also via **kwargs.
        tensors = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "token_type_ids": token_type_ids,
            "position_ids": position_ids,
            "inputs_embeds": inputs_embeds,
        }
        enc_kwargs = {k: v for k, v in tensors.items() if v is not None and k in self._encoder_params}
        takes_any = "kwargs" in self._encoder_params
        for flag, value in (
            ("output_attentions", output_attentions),
            ("output_hidden_states", output_hidden_states),
        ):
            if value is not None and (flag in self._encoder_params or takes_any):
                enc_kwargs[flag] = value
        # PEFT's prefix tuning: each block's key/value prefixes, a transformers Cache (transformers 5 calls it `cache`)
        if past_key_values is not None:
            cache_arg = next((k for k in ("cache", "past_key_values") if k in self._encoder_params), None)
            if cache_arg is None:
                encoder = type(self.encoder).__name__
                raise ValueError(f"{encoder} takes no key/value cache: prefix tuning cannot apply")
            enc_kwargs[cache_arg] = past_key_values
        out = self.encoder(**enc_kwargs, return_dict=True)
        hidden = out.last_hidden_state  # (B, T, H)
        # Prefix tuning prepends one mask column per prefix key (B, P + T): pool the T real positions only.
        pooled = masked_mean(hidden, attention_mask[:, -hidden.shape[1] :])  # (B, T, H) -> (B, H)
        logits = self.classifier(self.dropout(pooled))  # (B, H) -> (B, num_labels)
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits.view(-1, self.config.num_labels), labels.view(-1))
        if return_dict is False:
            return (loss, logits) if loss is not None else (logits,)
        return SequenceClassifierOutput(
            loss=loss,
            logits=logits,
            hidden_states=getattr(out, "hidden_states", None),
            attentions=getattr(out, "attentions", None),
        )
