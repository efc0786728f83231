"""collect() on TransformerLens models: exact against run_with_cache, selection, errors."""

from __future__ import annotations

import pytest
import torch
from act_helpers import PROMPTS
from torch import nn

from deceptprobe.activations import collect
from deceptprobe.activations.collect import resolve_hooks

HOOKS = ["resid_pre", "resid_post", "attn_out", "mlp_out", "blocks.1.attn.hook_pattern"]


def _no_hooks_left(model: nn.Module) -> bool:
    return all(not hp.fwd_hooks and not hp._forward_hooks for hp in model.hook_dict.values())


def test_all_positions_equal_run_with_cache(organism):
    enc = organism.to_tokens(PROMPTS)
    out = collect(organism, PROMPTS, hooks=HOOKS, positions="all", batch_size=2)
    _, cache = organism.model.run_with_cache(enc.input_ids)
    assert len(out) == 4 * 3 + 1
    for name, value in out.items():
        torch.testing.assert_close(value, cache[name], rtol=0, atol=1e-6)
    layers = [int(n.split(".")[1]) for n in out]
    assert layers == sorted(layers), "keys must be in layer order"
    assert _no_hooks_left(organism.model)


def test_last_position_is_padding_aware(organism):
    enc = organism.to_tokens(PROMPTS)
    last = enc.attention_mask.sum(1) - 1
    _, cache = organism.model.run_with_cache(enc.input_ids)
    rows = torch.arange(len(PROMPTS))
    for inputs in (PROMPTS, enc, enc.input_ids, {"input_ids": enc.input_ids}):
        out = collect(organism, inputs, hooks="blocks.*.hook_resid_post", batch_size=3)
        assert list(out) == [f"blocks.{i}.hook_resid_post" for i in range(3)]
        for name, value in out.items():
            assert value.shape == (len(PROMPTS), 32)
            torch.testing.assert_close(value, cache[name][rows, last], rtol=0, atol=1e-6)
            # a copy of the selected rows only, not a view of the full activation
            assert value.untyped_storage().nbytes() == value.numel() * value.element_size()


def test_index_and_mask_positions(organism):
    enc = organism.to_tokens(PROMPTS)
    _, cache = organism.model.run_with_cache(enc.input_ids)
    name = "blocks.2.hook_resid_post"
    out = collect(organism, PROMPTS, hooks=name, positions=1)
    torch.testing.assert_close(out[name], cache[name][:, 1], rtol=0, atol=1e-6)
    mask = enc.attention_mask.bool()
    out = collect(organism, PROMPTS, hooks=name, positions=mask, batch_size=2)
    torch.testing.assert_close(out[name], cache[name][mask], rtol=0, atol=1e-6)


def test_layers_dtype_and_bare_bridge(organism):
    enc = organism.to_tokens(PROMPTS)
    out = collect(
        organism.model,
        enc.input_ids,
        hooks="resid_post",
        layers=[0, -1],
        attention_mask=enc.attention_mask,
        dtype=torch.float16,
        device="cpu",
    )
    assert list(out) == ["blocks.0.hook_resid_post", "blocks.2.hook_resid_post"]
    assert all(v.dtype == torch.float16 for v in out.values())
    ref = collect(organism, PROMPTS, hooks="resid_post")
    torch.testing.assert_close(
        out["blocks.2.hook_resid_post"], ref["blocks.2.hook_resid_post"].half()
    )


def test_early_exit_skips_later_blocks(organism):
    started: list[str] = []
    handles = [
        organism.model.blocks[2].register_forward_pre_hook(lambda *a: started.append("block2")),
        organism.model.ln_final.register_forward_pre_hook(lambda *a: started.append("ln_final")),
    ]
    try:
        collect(organism, PROMPTS, hooks="blocks.0.hook_resid_post")
        assert started == []
        collect(organism, PROMPTS, hooks="blocks.2.hook_resid_post")
        assert started == ["block2"]
    finally:
        for h in handles:
            h.remove()
    assert _no_hooks_left(organism.model)


def test_hook_selection_forms(organism):
    a = resolve_hooks(organism, "resid_post")
    assert a == resolve_hooks(organism, "hook_resid_post")
    assert a == resolve_hooks(organism, "blocks.*.hook_resid_post")
    assert a == resolve_hooks(organism, [f"blocks.{i}.hook_resid_post" for i in (2, 0, 1)])
    assert resolve_hooks(organism, ["resid_pre", "resid_post"], layers=[1]) == [
        "blocks.1.hook_resid_pre",
        "blocks.1.hook_resid_post",
    ]


def test_unknown_hook_lists_valid_and_closest(organism):
    with pytest.raises(ValueError, match="Closest matches: .*hook_resid_post") as err:
        collect(organism, PROMPTS, hooks="resid_pst")
    assert "blocks.{i}.hook_resid_pre" in str(err.value)
    with pytest.raises(ValueError, match="out of range"):
        collect(organism, PROMPTS, hooks="resid_post", layers=[7])
    with pytest.raises(ValueError, match="hooks is empty"):
        collect(organism, PROMPTS, hooks=[])
    with pytest.raises(ValueError, match="'blocks.9.hook_resid_post'"):
        collect(organism, PROMPTS, hooks=["resid_pre", "blocks.9.hook_resid_post"])


def test_progress_bar_and_batching_agree(organism):
    a = collect(organism, PROMPTS, hooks="resid_post", batch_size=1, progress=True)
    b = collect(organism, PROMPTS, hooks="resid_post", batch_size=64)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-5)


def test_bad_inputs(organism):
    with pytest.raises(ValueError, match="empty"):
        collect(organism, [], hooks="resid_post")
    with pytest.raises(ValueError, match="context of 24"):
        collect(organism, ["the cat " * 20], hooks="resid_post")
    with pytest.raises(TypeError, match="cannot hook"):
        collect(nn.Linear(2, 2), torch.zeros(1, 2, dtype=torch.long), hooks="resid_post")
    with pytest.raises(ValueError, match="positions"):
        collect(organism, PROMPTS, hooks="resid_post", positions="first")
    with pytest.raises(ValueError, match="bool tensor"):
        collect(organism, PROMPTS, hooks="resid_post", positions=torch.ones(2, 2, dtype=torch.bool))


def test_hooks_removed_on_error(organism):
    ids = torch.full((2, 4), 10_000)  # out of vocabulary: the embedding raises mid-forward
    with pytest.raises((IndexError, RuntimeError)):
        collect(organism.model, ids, hooks="resid_post")
    assert _no_hooks_left(organism.model)


class _TinyHooked(nn.Module):
    """A hand-built HookedRootModule: embed -> 2 residual MLP blocks."""

    def __init__(self) -> None:
        from transformer_lens import HookedRootModule
        from transformer_lens.hook_points import HookPoint

        class Model(HookedRootModule):
            def __init__(self) -> None:
                super().__init__()
                self.embed = nn.Embedding(10, 8)
                self.mlps = nn.ModuleList([nn.Linear(8, 8) for _ in range(2)])
                self.hook_embed = HookPoint()
                self.blocks = nn.ModuleList(
                    [nn.ModuleDict({"hook_resid_post": HookPoint()}) for _ in range(2)]
                )
                self.setup()

            def forward(self, ids: torch.Tensor) -> torch.Tensor:
                x = self.hook_embed(self.embed(ids))
                for mlp, block in zip(self.mlps, self.blocks, strict=True):
                    x = block["hook_resid_post"](x + torch.relu(mlp(x)))
                return x

        super().__init__()
        torch.manual_seed(0)
        self.inner = Model()


def test_generic_hooked_root_module():
    model = _TinyHooked().inner
    ids = torch.randint(0, 10, (3, 5))
    _, cache = model.run_with_cache(ids)
    out = collect(model, ids, hooks=["hook_embed", "resid_post"], positions="all")
    assert list(out) == ["hook_embed", "blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
    for name, value in out.items():
        torch.testing.assert_close(value, cache[name])


def test_collected_model_is_not_kept_alive():
    import gc
    import weakref

    from act_helpers import make_organism

    org = make_organism(seed=1)
    collect(org, PROMPTS, hooks="resid_post")
    ref = weakref.ref(org.model)
    del org
    gc.collect()
    assert ref() is None, "collect() leaked a reference to the model"
