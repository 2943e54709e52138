"""The mean-pooling classifier on tiny encoders: pooling arithmetic, loss, save/reload (with and without peftlab), PEFT.

Run: pytest tests/models/test_models_meanpool.py
"""

import os
import subprocess
import sys

import pytest
import torch
import transformers as T

import peftlab.models  # noqa: F401  (registers the meanpool classes with the Auto classes)
from peftlab.models import MeanPoolConfig, MeanPoolForSequenceClassification
from peftlab.models.meanpool import masked_mean

TEXT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=100)


def tiny(encoder_config=None) -> MeanPoolForSequenceClassification:
    torch.manual_seed(0)
    config = MeanPoolConfig(encoder_config=encoder_config or T.BertConfig(**TEXT), num_labels=3)
    return MeanPoolForSequenceClassification(config).eval()


def batch():
    ids = torch.randint(3, 100, (2, 6))
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]])
    return {"input_ids": ids, "attention_mask": mask}


def test_masked_mean_ignores_padding():
    hidden = torch.arange(12.0).view(1, 4, 3)  # tokens [0,1,2] [3,4,5] [6,7,8] [9,10,11]
    mask = torch.tensor([[1, 1, 0, 0]])
    assert torch.equal(masked_mean(hidden, mask), torch.tensor([[1.5, 2.5, 3.5]]))


def test_forward_pools_the_unpadded_tokens_and_has_no_pooler():
    model = tiny()
    assert not hasattr(model.encoder, "pooler") or model.encoder.pooler is None
    b = batch()
    with torch.no_grad():
        out = model(**b)
        # Padding must not move the second row: cut it to its 3 real tokens and compare.
        short = model(input_ids=b["input_ids"][1:, :3], attention_mask=b["attention_mask"][1:, :3])
    assert out.logits.shape == (2, 3)
    torch.testing.assert_close(out.logits[1:], short.logits, atol=1e-5, rtol=1e-5)
    hidden = model.encoder(**b).last_hidden_state
    expected = model.classifier(masked_mean(hidden, b["attention_mask"]))
    torch.testing.assert_close(out.logits, expected.detach())


def test_loss_and_peft_style_kwargs():
    model = tiny()
    b = batch()
    out = model(
        **b, labels=torch.tensor([0, 2]), inputs_embeds=None, output_attentions=None, return_dict=True
    )
    assert out.loss is not None and out.loss.ndim == 0
    out.loss.backward()
    assert model.classifier.weight.grad is not None
    loss, logits = model(**b, labels=torch.tensor([0, 2]), return_dict=False)
    assert logits.shape == (2, 3)
    hidden = model(**b, output_hidden_states=True).hidden_states
    assert hidden is not None and len(hidden) == 3  # embeddings + 2 layers


def test_distilbert_encoder_without_token_type_ids():
    cfg = T.DistilBertConfig(vocab_size=100, dim=32, n_layers=2, n_heads=2, hidden_dim=64)
    model = tiny(cfg)
    b = batch()
    b["token_type_ids"] = torch.zeros_like(b["input_ids"])  # a BERT tokenizer adds these; DistilBERT has none
    with torch.no_grad():
        assert model(**b).logits.shape == (2, 3)


def test_save_reload_identical_logits_in_process(tmp_path):
    model = tiny()
    model.config.id2label = {0: "neg", 1: "neu", 2: "pos"}
    model.config.label2id = {"neg": 0, "neu": 1, "pos": 2}
    model.save_pretrained(tmp_path)
    assert (tmp_path / "meanpool.py").is_file()  # register_for_auto_class copied the module
    reloaded = T.AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert isinstance(reloaded, MeanPoolForSequenceClassification)
    assert reloaded.config.id2label == {0: "neg", 1: "neu", 2: "pos"}
    b = batch()
    with torch.no_grad():
        assert torch.equal(model(**b).logits, reloaded(**b).logits)


def test_save_reload_without_peftlab(tmp_path):
    model = tiny()
    model.save_pretrained(tmp_path / "m")
    b = batch()
    with torch.no_grad():
        torch.save({"batch": b, "logits": model(**b).logits}, tmp_path / "ref.pt")
    code = (
        "import sys, torch\n"
        "from transformers import AutoModelForSequenceClassification as A\n"
        f"m = A.from_pretrained({str(tmp_path / 'm')!r}, trust_remote_code=True).eval()\n"
        f"ref = torch.load({str(tmp_path / 'ref.pt')!r})\n"
        "with torch.no_grad(): out = m(**ref['batch']).logits\n"
        "assert 'peftlab' not in sys.modules, 'peftlab was imported'\n"
        "assert torch.equal(out, ref['logits']), (out, ref['logits'])\n"
        "print('OK', type(m).__module__)\n"
    )
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1", PYTHONPATH="")
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "OK transformers_modules" in result.stdout


def test_config_roundtrip_keeps_encoder(tmp_path):
    cfg = MeanPoolConfig(encoder_config=T.RobertaConfig(**TEXT), num_labels=4)
    cfg.save_pretrained(tmp_path)
    again = T.AutoConfig.from_pretrained(tmp_path)
    assert isinstance(again, MeanPoolConfig) and again.num_labels == 4
    assert again.encoder_config.model_type == "roberta" and again.encoder_config.hidden_size == 32


def test_meta_build():
    with torch.device("meta"):
        model = MeanPoolForSequenceClassification(
            MeanPoolConfig(encoder_config=T.BertConfig(**TEXT), num_labels=5)
        )
    assert next(model.parameters()).device.type == "meta"
    assert model.classifier.weight.shape == (5, 32)


def test_peft_sequence_classification_wrap(tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model

    model = tiny()
    peft_model = get_peft_model(
        model,
        LoraConfig(
            task_type="SEQ_CLS",
            r=2,
            lora_alpha=4,
            target_modules=["query", "value"],
            modules_to_save=["classifier"],
        ),
    )
    b = batch()
    out = peft_model(**b, labels=torch.tensor([1, 2]))
    out.loss.backward()
    trainable = {n for n, p in peft_model.named_parameters() if p.requires_grad}
    assert any("lora_A" in n for n in trainable) and any("classifier" in n for n in trainable)
    peft_model.eval()
    with torch.no_grad():
        ref = peft_model(**b).logits
    peft_model.save_pretrained(tmp_path)
    again = PeftModel.from_pretrained(tiny(), tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(again(**b).logits, ref)


@pytest.mark.parametrize("missing", ["attention_mask"])
def test_missing_attention_mask_means_all_tokens(missing):
    model = tiny()
    b = batch()
    full = {"input_ids": b["input_ids"], "attention_mask": torch.ones_like(b["input_ids"])}
    with torch.no_grad():
        assert torch.equal(model(input_ids=b["input_ids"]).logits, model(**full).logits)
