"""Model zoo: every registered network builds from its config, takes any input size, trains and reloads."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from cmrseg.config import ModelInfo, load_config
from cmrseg.errors import CmrsegError
from cmrseg.models import (
    available_encoders,
    available_models,
    build_model,
    check_model_info,
    encoder_entry,
    model_entry,
    register_encoder,
    register_model,
)
from cmrseg.models.catalog import catalog_variants, format_model_table, model_table, variant_label
from cmrseg.models.fcn import bilinear_upsampler
from cmrseg.models.registry import FAMILY_KEYS
from cmrseg.models.resnet import RESNET101_BLOCKS

NUM_CLASSES = 4
TINY: dict[str, dict] = {
    "UNet": {"features": 8, "depths": 3},
    "AttentionUNet": {"features": 8, "depths": 3},
    "DynUNet": {"features": 8, "depths": 3},
    "EffUNet": {"features": 8, "backbone": "efficientnet-b0"},
    "SwinUNETR": {"features": 16},
    "DeepLab_v3": {"options": {"width_multiplier": 0.25}},
    "FCN": {"options": {"width_multiplier": 0.125}},
    "SegNet": {"options": {"width_multiplier": 0.25}},
}
"""Small settings per model so the file runs in seconds; models added later fall back to features 8."""

KEY_IN_QUOTES = re.compile(r"'net\.[\w.]+'")


def tiny(name: str, **overrides: object) -> ModelInfo:
    settings = {**TINY.get(name, {"features": 8}), **overrides}
    return ModelInfo(name=name, **settings)


def outputs(result: torch.Tensor | list[torch.Tensor]) -> list[torch.Tensor]:
    return result if isinstance(result, list) else [result]


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """The test machine's two cores are shared; one thread avoids OpenMP waiting on a busy core."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def seeded() -> None:
    torch.manual_seed(0)


def test_expected_models_are_registered() -> None:
    expected = {"UNet", "DeepLab_v3", "FCN", "SegNet", "EffUNet", "DynUNet", "AttentionUNet", "SwinUNETR"}
    assert expected <= set(available_models())


def test_unknown_model_name_lists_valid_names() -> None:
    with pytest.raises(CmrsegError) as err:
        build_model(ModelInfo(name="NoSuchNet"))
    assert "NoSuchNet" in str(err.value)
    for name in available_models():
        assert name in str(err.value)


@pytest.mark.parametrize("name", available_models())
def test_forward_any_size(name: str) -> None:
    model = build_model(tiny(name)).eval()
    with torch.no_grad():
        for shape in [(1, 1, 96, 96), (2, 1, 128, 160), (1, 1, 97, 75)]:
            out = model(torch.randn(shape))
            assert isinstance(out, torch.Tensor)
            assert out.shape == (shape[0], NUM_CLASSES, *shape[2:]), shape
            assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", available_models())
def test_three_input_channels(name: str) -> None:
    model = build_model(tiny(name, input_channels=3)).eval()
    with torch.no_grad():
        color = model(torch.randn(1, 3, 96, 96))
        gray = torch.randn(1, 1, 96, 96)
        assert color.shape == (1, NUM_CLASSES, 96, 96)
        torch.testing.assert_close(model(gray), model(gray.expand(-1, 3, -1, -1)))


@pytest.mark.parametrize("name", available_models())
def test_backward(name: str) -> None:
    model = build_model(tiny(name)).train()
    result = model(torch.randn(2, 1, 96, 96))
    loss = sum(out.float().pow(2).mean() for out in outputs(result))
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads, "no parameter received a gradient"
    assert any(g.abs().sum() > 0 for g in grads)
    assert all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", available_models())
def test_state_dict_round_trip_and_local_pretrained(name: str, tmp_path) -> None:
    source = build_model(tiny(name)).eval()
    x = torch.randn(1, 1, 96, 96)
    with torch.no_grad():
        expected = source(x)

    torch.manual_seed(1)
    copy = build_model(tiny(name))
    copy.load_state_dict(source.state_dict())
    path = tmp_path / "weights.pt"
    torch.save(source.state_dict(), path)
    torch.manual_seed(2)
    loaded = build_model(tiny(name, pretrained=str(path)))
    with torch.no_grad():
        assert torch.equal(copy.eval()(x), expected)
        assert torch.equal(loaded.eval()(x), expected)


@pytest.mark.parametrize("name", available_models())
def test_weights_of_another_model_are_rejected(name: str, tmp_path) -> None:
    other = "SegNet" if name == "UNet" else "UNet"
    path = tmp_path / f"{other}.pt"
    torch.save(build_model(tiny(other)).state_dict(), path)
    with pytest.raises(CmrsegError, match=KEY_IN_QUOTES):
        build_model(tiny(name, pretrained=str(path)))


def test_weights_of_another_width_are_rejected_by_shape(tmp_path) -> None:
    path = tmp_path / "wide.pt"
    torch.save(build_model(tiny("DeepLab_v3", options={"width_multiplier": 0.5})).state_dict(), path)
    with pytest.raises(CmrsegError, match=r"'net\.[\w.]+' has shape"):
        build_model(tiny("DeepLab_v3", pretrained=str(path)))


def test_dynunet_deep_supervision_list_in_training_tensor_in_eval() -> None:
    model = build_model(tiny("DynUNet", deep_supervision=True, options={"deep_supr_num": 2}))
    result = model.train()(torch.randn(2, 1, 97, 75))
    assert isinstance(result, list) and len(result) == 3
    assert all(out.shape == (2, NUM_CLASSES, 97, 75) for out in result)
    sum(out.mean() for out in result).backward()
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 1, 96, 96)).shape == (1, NUM_CLASSES, 96, 96)


@pytest.mark.parametrize("name", ["UNet", "DynUNet"])
def test_input_scale_keeps_the_input_size_and_sees_more_pixels(name: str) -> None:
    model = build_model(tiny(name, input_scale=2)).eval()
    seen: list[tuple[int, ...]] = []
    model.net.register_forward_hook(lambda _module, args, _out: seen.append(tuple(args[0].shape)))
    with torch.no_grad():
        out = model(torch.randn(2, 1, 97, 75))
    assert out.shape == (2, NUM_CLASSES, 97, 75)
    assert seen[0][-2:] == (200, 152)  # 194 x 150 padded to a multiple of 8


def test_dynunet_deep_supervision_needs_depth() -> None:
    with pytest.raises(CmrsegError, match="deep_supr_num"):
        build_model(tiny("DynUNet", depths=1, deep_supervision=True))


def test_drn_d_54_structure() -> None:
    model = build_model(tiny("DeepLab_v3"))
    deeplab = model.net
    drn = deeplab.backbone
    blocks = [len(getattr(drn, f"layer{i}")) for i in range(1, 9)]
    assert blocks == [1, 1, 3, 4, 6, 3, 1, 1]
    assert drn.layers == (1, 1, 3, 4, 6, 3, 1, 1)
    assert [type(block).__name__ for block in drn.layer3] == ["Bottleneck"] * 3
    assert [type(block).__name__ for block in drn.layer7] == ["ConvBNReLU"]
    assert deeplab.aspp.rates == (1, 12, 24, 36)
    assert len(deeplab.aspp.branches) == 4
    assert model.size_divisor == 8
    with torch.no_grad():
        high, low = drn.eval()(torch.randn(1, 1, 96, 96))
    assert high.shape[-2:] == (12, 12)
    assert low.shape[-2:] == (24, 24)


def test_drn_d_54_default_widths() -> None:
    drn = build_model(ModelInfo(name="DeepLab_v3")).net.backbone
    assert [drn.layer0[0].out_channels, drn.layer1[-1][0].out_channels, drn.layer2[-1][0].out_channels] == [16, 16, 32]
    assert drn.low_level_channels == 256 and drn.out_channels == 512
    assert [getattr(drn, f"layer{i}")[-1].body[-1][0].out_channels for i in range(3, 7)] == [256, 512, 1024, 2048]


@pytest.mark.parametrize(
    ("backbone", "output_stride", "options"),
    [
        ("resnet", 8, {"blocks": [1, 1, 2, 1]}),
        ("resnet", 16, {"blocks": [1, 1, 1, 3]}),
        ("mobilenet", 8, {}),
        ("mobilenet", 16, {}),
        ("xception", 8, {"middle_repeats": 1}),
        ("xception", 16, {"middle_repeats": 2}),
    ],
)
def test_deeplab_backbones(backbone: str, output_stride: int, options: dict) -> None:
    info = tiny("DeepLab_v3", backbone=backbone, output_stride=output_stride,
                options={"width_multiplier": 0.25, **options})
    model = build_model(info)
    rates = (1, 12, 24, 36) if output_stride == 8 else (1, 6, 12, 18)
    assert model.net.aspp.rates == rates
    assert model.size_divisor == output_stride
    with torch.no_grad():
        high, low = model.net.backbone.eval()(torch.randn(1, 1, 96, 96))
        assert high.shape[-2:] == (96 // output_stride,) * 2
        assert low.shape[-2:] == (24, 24)
        assert model.eval()(torch.randn(1, 1, 97, 75)).shape == (1, NUM_CLASSES, 97, 75)
    result = model.train()(torch.randn(1, 1, 64, 64))
    result.mean().backward()


@pytest.mark.parametrize(
    ("info", "message"),
    [
        (ModelInfo(name="DeepLab_v3", output_stride=16), "fixed output stride of 8"),
        (ModelInfo(name="DeepLab_v3", backbone="vgg"), r"'vgg'.*'drn', 'mobilenet', 'resnet', 'xception'"),
        (ModelInfo(name="DeepLab_v3", options={"blocks": [3, 4, 6, 3]}), "unknown option 'blocks'"),
        (ModelInfo(name="DeepLab_v3", options={"width_multiplier": 0}), "width_multiplier"),
        (ModelInfo(name="FCN", options={"variant": "4s"}), r"'4s'.*'8s', '16s', '32s'"),
        (ModelInfo(name="EffUNet", backbone="resnet18"), "efficientnet-b3"),
        (ModelInfo(name="SwinUNETR", features=24), "multiple of 16"),
        (ModelInfo(name="SwinUNETR", options={"feature_size": 30}), "multiple of 12"),
        (ModelInfo(name="AttentionUNet", options={"foo": 1}), "unknown option 'foo'"),
    ],
)
def test_bad_settings_give_one_line_errors(info: ModelInfo, message: str) -> None:
    with pytest.raises(CmrsegError, match=message):
        build_model(info)


@pytest.mark.parametrize("variant", ["16s", "32s"])
def test_fcn_variants(variant: str) -> None:
    model = build_model(tiny("FCN", options={"width_multiplier": 0.125, "variant": variant})).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 97, 75)).shape == (1, NUM_CLASSES, 97, 75)


def test_fcn_upsampler_starts_bilinear() -> None:
    x = torch.randn(1, 2, 6, 6)
    up = bilinear_upsampler(2, 4)
    expected = nn.functional.interpolate(x, scale_factor=4, mode="bilinear", align_corners=False)
    with torch.no_grad():
        torch.testing.assert_close(up(x)[..., 4:-4, 4:-4], expected[..., 4:-4, 4:-4])


def test_swin_unetr_feature_size_follows_features() -> None:
    assert build_model(tiny("SwinUNETR")).net.swinViT.embed_dim == 12
    assert build_model(ModelInfo(name="SwinUNETR", options={"feature_size": 12})).net.swinViT.embed_dim == 12


def test_model_table_rows() -> None:
    rows = model_table(["UNet"], size=64, repeats=1)
    assert [row["name"] for row in rows] == ["UNet"]
    assert set(rows[0]) == {"name", "description", "parameters", "forward_ms"}
    assert rows[0]["parameters"] > 0 and rows[0]["forward_ms"] > 0
    assert rows[0]["description"]
    with pytest.raises(CmrsegError, match="NoSuchNet"):
        model_table(["NoSuchNet"])


def test_effunet_batch_norm_tracks_the_data_quickly() -> None:
    from cmrseg.models.effunet import BATCH_NORM_MOMENTUM

    model = build_model(ModelInfo(name="EffUNet", backbone="efficientnet-b0", features=8))
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(m.momentum == BATCH_NORM_MOMENTUM for m in norms)


@pytest.mark.parametrize(
    ("info", "message"),
    [
        (ModelInfo(name="UNet", backbone="resnet101"), r"^model_info\.backbone: 'resnet101' is not used by UNet$"),
        (ModelInfo(name="FCN", depths=4), r"^model_info\.depths: 4 is not used by FCN$"),
        (ModelInfo(name="UNet", deep_supervision=True), r"^model_info\.deep_supervision: True is not used by UNet$"),
        (ModelInfo(name="SwinUNETR", output_stride=16), r"^model_info\.output_stride: 16 is not used by SwinUNETR$"),
        (ModelInfo(name="SegNet", dropout=0.2), r"^model_info\.dropout: 0\.2 is not used by SegNet$"),
        (ModelInfo(name="DeepLab_v3", features=32), r"^model_info\.features: 32 is not used by DeepLab_v3$"),
        (ModelInfo(name="UNet", options={"num_res_unit": 1}), r"^model_info\.options: unknown option 'num_res_unit' for UNet"),
        (ModelInfo(name="Ensemble", options={"member": []}), r"^model_info\.options: unknown option 'member' for Ensemble"),
        (ModelInfo(name="DeepLab_v3", backbone="mobilenet", options={"blocks": [1, 1, 1, 1]}), "unknown option 'blocks'"),
    ],
)
def test_settings_a_model_does_not_use_are_config_errors(info: ModelInfo, message: str) -> None:
    with pytest.raises(CmrsegError, match=message):
        check_model_info(info)
    with pytest.raises(CmrsegError, match=message):
        build_model(info)


def test_every_family_declares_only_known_keys() -> None:
    with pytest.raises(ValueError, match="unknown model_info keys"):
        register_model("Nope", accepts={"depth"})
    for name in available_models(composite=True):
        assert model_entry(name).accepts <= set(FAMILY_KEYS)
        check_model_info(ModelInfo(name=name))


def test_encoder_registry_feeds_deeplab_and_the_listing() -> None:
    assert available_encoders() == ["drn", "mobilenet", "resnet", "xception"]
    assert encoder_entry("resnet").options == {"blocks": RESNET101_BLOCKS}
    with pytest.raises(ValueError, match="already registered"):
        register_encoder("drn", description="again")(lambda *args: nn.Identity())
    names = [variant_label(info) for info in catalog_variants()]
    assert [n for n in names if n.startswith("DeepLab_v3/")] == [f"DeepLab_v3/{e}" for e in available_encoders()]
    assert set(available_models(composite=True)) == {n.split("/")[0] for n in names}
    assert names[-1] == "Ensemble"


def test_model_listing_shows_ensemble_untimed_and_encoders() -> None:
    rows = model_table(["UNet", "Ensemble"], size=32, repeats=1)
    assert rows[1]["parameters"] is None and rows[1]["forward_ms"] is None
    assert "cmrseg ensemble" in rows[1]["description"]
    text = format_model_table(rows)
    assert re.search(r"^Ensemble\s+-\s+-\s+built by `cmrseg ensemble`", text, re.M)
    assert re.search(r"^  UNet\s+depths, dropout, features; options: norm='batch', num_res_units=2$", text, re.M)
    for name in available_encoders():
        assert re.search(rf"^  {name}\s+{re.escape(encoder_entry(name).description)}; output_stride", text, re.M)


def test_shipped_configs_fit_their_models() -> None:
    repo = Path(__file__).resolve().parent.parent
    paths = [*repo.glob("configs/*.json"), *repo.glob("experiments/*.json"), *repo.glob("benchmarks/**/configs/*.json")]
    assert len(paths) > 10
    for path in paths:
        config = load_config(path)
        check_model_info(config.model_info)
    models_sweep = load_config(repo / "experiments" / "models.json")
    for name in available_models():
        check_model_info(models_sweep.model_info.model_copy(update={"name": name}))
