"""The reference head's shapes on the meta device (ResNet-50 2048 + MiniLM 384 -> 2432 -> 512 -> K), fusions, counts."""

import pytest
import torch
from transformers import BertConfig, BertModel, ResNetConfig, ResNetModel

from peftlab.params import measure
from peftlab.tasks.vqa import FUSIONS
from peftlab.tasks.vqa.heads import FusionHead, Pairs, head_params, predict, train_head

MINILM = dict(
    vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536
)


def test_resnet50_and_minilm_make_the_reference_2432_wide_input():
    with torch.device("meta"):
        resnet = ResNetModel(ResNetConfig())  # ResNetConfig's defaults are ResNet-50
        minilm = BertModel(BertConfig(**MINILM))
        pooled = resnet(pixel_values=torch.empty(2, 3, 224, 224)).pooler_output  # (2, 2048, 1, 1)
        hidden = minilm(input_ids=torch.zeros(2, 9, dtype=torch.long)).last_hidden_state  # (2, 9, 384)
        img, txt = pooled.flatten(1), hidden.mean(1)  # (2, 2048), (2, 384)
        head = FusionHead(img.shape[1], txt.shape[1], num_answers=582)
        fused = head.fuse(img, txt)
        logits = head(img, txt)
    assert tuple(img.shape) == (2, 2048) and tuple(txt.shape) == (2, 384)
    assert tuple(fused.shape) == (2, 2432)  # (B, 2048) ++ (B, 384) -> (B, 2432)
    assert (head.hidden.in_features, head.hidden.out_features) == (2432, 512)
    assert tuple(logits.shape) == (2, 582)
    assert sum(p["params"] for p in head_params(2048, 384, 582, "concat", 512)) == measure(head)["trainable"]
    assert measure(head)["trainable"] == (2432 * 512 + 512) + (512 * 582 + 582)


@pytest.mark.parametrize("fusion", FUSIONS)
@pytest.mark.parametrize("dims", [(40, 24), (24, 24)])
@pytest.mark.parametrize("inputs", ["both", "image", "question"])
def test_predicted_parameters_equal_measured(fusion, dims, inputs):
    head = FusionHead(*dims, num_answers=7, fusion=fusion, hidden=16, inputs=inputs)
    predicted = sum(p["params"] for p in head_params(*dims, 7, fusion, 16, inputs))
    assert predicted == measure(head)["trainable"]
    out = head(torch.randn(3, dims[0]), torch.randn(3, dims[1]))
    assert tuple(out.shape) == (3, 7)


def test_product_of_unequal_widths_projects_both_to_hidden():
    head = FusionHead(40, 24, 5, fusion="concat-product", hidden=16)
    assert head.proj_img.out_features == head.proj_txt.out_features == 16
    assert head.hidden.in_features == 40 + 24 + 16  # [i; q; Pi i * Pq q]


def test_head_learns_a_separable_toy_task_and_is_seeded():
    g = torch.Generator().manual_seed(0)
    img, txt = torch.randn(8, 6, generator=g), torch.randn(4, 5, generator=g)
    pairs = Pairs(
        torch.arange(32) % 8, torch.arange(32) // 8, (torch.arange(32) % 8 + torch.arange(32) // 8) % 3
    )
    knobs = dict(epochs=150, lr=1e-2, batch_size=8, weight_decay=0.0, warmup_ratio=0.0, max_grad_norm=1.0, seed=0,
                 progress=False)  # fmt: skip
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        head = FusionHead(6, 5, 3, hidden=32)
        stats = train_head(head, img, txt, pairs, **knobs)
        runs.append((stats.final_loss, predict(head, img, txt, pairs)))
    assert runs[0][0] == runs[1][0] and torch.equal(runs[0][1], runs[1][1])
    assert (runs[0][1] == pairs.labels).float().mean() == 1.0  # memorises 32 examples
