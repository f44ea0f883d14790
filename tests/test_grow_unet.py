"""Function-preserving depth growth of a trained UNet (customizer/training/grow_unet.py), on the tiny geometry."""
import pytest
import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import load_file, save_file

from customizer.engine import ip_adapter
from customizer.engine.architectures import build_components, geometry, ip_adapter_state_dict
from customizer.training import grow_unet, warm_start

GEO = geometry("tiny")


def trained_like_unet(global_text: bool = False, seed: int = 0) -> UNet2DConditionModel:
    """A tiny UNet whose every weight is non-zero and random (fresh diffusers init zeroes some convs)."""
    geo = GEO if not global_text else {**GEO, "unet": {**GEO["unet"], "addition_embed_type": "text",
                                                        "addition_embed_type_num_heads": 4}}
    unet = build_components(geo, seed)["unet"]
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return unet.eval()


def inputs(seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(2, 4, 16, 16, generator=gen), torch.tensor([10, 700]),
            torch.randn(2, 7, GEO["unet"]["cross_attention_dim"], generator=gen))


@pytest.mark.parametrize("layers", [[2, 1], [1, 2], [2, 3]])
@pytest.mark.parametrize("global_text", [False, True])
def test_grown_unet_computes_what_the_trained_one_computes(layers, global_text):
    old = trained_like_unet(global_text)
    new = grow_unet.grow(old, layers).eval()
    assert grow_unet.as_levels(new.config.layers_per_block, 2) == layers
    assert sum(p.numel() for p in new.parameters()) > sum(p.numel() for p in old.parameters())
    x, t, text = inputs()
    with torch.no_grad():
        want, got = old(x, t, text).sample, new(x, t, text).sample
    assert want.abs().mean() > 0.01
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_growing_twice_matches_growing_once_and_refuses_fewer_layers():
    old = trained_like_unet()
    x, t, text = inputs()
    with torch.no_grad():
        twice = grow_unet.grow(grow_unet.grow(old, [2, 1]), [2, 2]).eval()(x, t, text).sample
        want = old(x, t, text).sample
    torch.testing.assert_close(twice, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="none fewer"):
        grow_unet.grow(grow_unet.grow(old, [2, 2]), [1, 2])
    with pytest.raises(ValueError, match="2 levels"):
        grow_unet.grow(old, [1, 1, 1])


def test_the_new_layers_learn():
    """Zero-initialised outputs still get a gradient, so training moves them (a dead branch would stay the
    identity for ever)."""
    new = grow_unet.grow(trained_like_unet(), [2, 2]).train()
    x, t, text = inputs()
    new(x, t, text).sample.square().mean().backward()
    for name in ("down_blocks.1.resnets.1.conv2.weight", "up_blocks.0.resnets.1.conv2.weight",
                 "down_blocks.1.attentions.1.proj_out.weight", "up_blocks.0.attentions.1.proj_out.weight"):
        grad = new.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name


def with_adapter(unet: UNet2DConditionModel, flat: dict) -> UNet2DConditionModel:
    unet._load_ip_adapter_weights([ip_adapter.split_state_dict(flat)], low_cpu_mem_usage=False)
    return unet


@pytest.mark.parametrize("layers", [[1, 2], [2, 3]])
def test_the_ip_adapter_moves_with_its_attentions(layers):
    old = trained_like_unet()
    dim, tokens = GEO["image_encoder"]["projection_dim"], GEO["ip_adapter_tokens"]
    flat = ip_adapter_state_dict(old, dim, tokens, seed=5)
    new = grow_unet.grow(old, layers).eval()
    grown_flat = grow_unet.grow_adapter(flat, old, new)
    old, new = with_adapter(old, flat), with_adapter(new, grown_flat)
    x, t, text = inputs()
    emb = torch.randn(2, 1, dim, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = old(x, t, text, added_cond_kwargs={"image_embeds": [emb]}).sample
        got = new(x, t, text, added_cond_kwargs={"image_embeds": [emb]}).sample
        without = old(x, t, text, added_cond_kwargs={"image_embeds": [torch.zeros_like(emb)]}).sample
    assert (want - without).abs().mean() > 1e-3     # the adapter does something, so the check can fail
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_a_uniformly_grown_unet_takes_the_apps_adapter_scale():
    """The app sets the IP-Adapter scale through diffusers' set_ip_adapter_scale, which (0.42) reads
    layers_per_block as one number: a uniform depth is saved as one."""
    from diffusers import StableDiffusionPipeline

    new = grow_unet.grow(trained_like_unet(), [2, 2])
    assert new.config.layers_per_block == 2
    flat = ip_adapter_state_dict(new, GEO["image_encoder"]["projection_dim"], GEO["ip_adapter_tokens"], seed=5)
    comps = build_components(GEO)
    pipe = StableDiffusionPipeline(vae=comps["vae"], text_encoder=comps["text_encoder"], tokenizer=None,
                                   unet=with_adapter(new, flat), scheduler=comps["scheduler"], safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.set_ip_adapter_scale(0.4)
    scales = {tuple(p.scale) for p in new.attn_processors.values() if hasattr(p, "to_k_ip")}
    assert scales == {(0.4,)}


def test_cli_writes_what_a_warm_start_of_the_grown_geometry_loads(tmp_path):
    old = trained_like_unet(global_text=True)
    src = tmp_path / "model"
    old.save_pretrained(src / "unet")
    flat = ip_adapter_state_dict(old, GEO["image_encoder"]["projection_dim"], GEO["ip_adapter_tokens"], seed=5)
    (src / "ip_adapter").mkdir()
    save_file(flat, src / "ip_adapter" / "ip_adapter.safetensors")
    (src / "loras").mkdir()
    lora = random_lora(old)
    save_file(lora, src / "loras" / "fantasy.safetensors", {"format": "pt"})

    grow_unet.main(["--from", str(src), "--layers", "2,2", "--out", str(tmp_path / "grown")])

    grown_geo = {**GEO, "unet": {**GEO["unet"], "layers_per_block": 2, "addition_embed_type": "text",
                                 "addition_embed_type_num_heads": 4}}
    fresh = build_components(grown_geo, seed=9)["unet"]
    ip_adapter.attach(fresh, grown_geo, seed=9)
    loaded = warm_start.load_into(fresh, tmp_path / "grown", use_ip=True)
    assert loaded["adapter_tensors"] == len(load_file(tmp_path / "grown" / "ip_adapter" / "ip_adapter.safetensors"))
    x, t, text = inputs()
    emb = torch.randn(2, 1, GEO["image_encoder"]["projection_dim"], generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = with_adapter(old, flat).eval()(x, t, text, added_cond_kwargs={"image_embeds": [emb]}).sample
        got = fresh.eval()(x, t, text, added_cond_kwargs={"image_embeds": [emb]}).sample
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # train_base --geometry <deeper> --init-from <the shallow model> grows it on loading, to the same function
    direct = build_components(grown_geo, seed=11)["unet"]
    ip_adapter.attach(direct, grown_geo, seed=11)
    assert warm_start.load_into(direct, src, use_ip=True)["grown_from_layers"] == [1, 1]
    with torch.no_grad():
        got = direct.eval()(x, t, text, added_cond_kwargs={"image_embeds": [emb]}).sample
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    wider = {**grown_geo, "unet": {**grown_geo["unet"], "block_out_channels": [32, 96]}}
    with pytest.raises(SystemExit, match="another shape"):      # only depth grows; any other change is refused
        warm_start.load_into(build_components(wider, seed=1)["unet"], src, use_ip=False)
    assert load_file(tmp_path / "grown" / "loras" / "fantasy.safetensors").keys() == \
        grow_unet.grow_lora(lora, [1, 1], [2, 2]).keys()
    with pytest.raises(SystemExit, match="--layers"):
        grow_unet.main(["--from", str(src), "--layers", "1", "--out", str(tmp_path / "bad")])


def random_lora(unet: UNet2DConditionModel) -> dict:
    """A theme LoRA in the save_lora_weights layout ('unet.' keys) on the trainer's targets, B non-zero."""
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    from customizer.training.train_lora import LORA_TARGETS

    torch.manual_seed(4)
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=LORA_TARGETS, init_lora_weights=False),
                     adapter_name="probe")
    state = {f"unet.{k}": v.clone() for k, v in get_peft_model_state_dict(unet, adapter_name="probe").items()}
    unet.delete_adapters("probe")
    return state


def test_theme_loras_keep_their_modules_in_the_grown_unet():
    old = trained_like_unet()
    new = grow_unet.grow(old, [2, 3]).eval()
    flat = random_lora(old)
    assert any(".up_blocks.0.resnets.1." in k for k in flat)     # a LoRA on a module that moves
    grown = grow_unet.grow_lora(flat, [1, 1], [2, 3])
    assert set(grown) != set(flat) and len(grown) == len(flat)
    old.load_lora_adapter(flat, prefix="unet", adapter_name="theme")
    new.load_lora_adapter(grown, prefix="unet", adapter_name="theme")
    x, t, text = inputs()
    with torch.no_grad():
        want, got = old(x, t, text).sample, new(x, t, text).sample
        old.set_adapters(["theme"], [0.0])
        plain = old(x, t, text).sample
    assert (want - plain).abs().mean() > 1e-3     # the LoRA changes the output, so the check can fail
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="not a UNet key"):
        grow_unet.grow_lora({"text_encoder.x.lora_A.weight": torch.zeros(1)}, [1, 1], [2, 3])
