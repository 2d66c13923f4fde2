"""ijepa_edu.interop: our encoder to and from transformers' IJepaModel and timm's VisionTransformer, and `ijepa_convert`.

Everything is built offline from configs (random weights, nothing downloaded): outputs agree within 1e-5 after each
conversion, the full-size ViT-H/14 and ViT-g/16 are checked on the meta device (names and shapes), and every misfit is
refused with a message naming it. Needs the [hf] extra, which [dev] includes."""
import os, subprocess, sys
from pathlib import Path
import pytest
import torch

transformers = pytest.importorskip('transformers', reason='the [hf] extra (transformers, timm) is not installed')
timm = pytest.importorskip('timm', reason='the [hf] extra (transformers, timm) is not installed')
from transformers import AutoImageProcessor, IJepaConfig, IJepaForImageClassification, IJepaModel
from safetensors.torch import load_file

from ijepa_edu.encoder import VisionTransformer, vit_huge, vit_giant
from ijepa_edu.interop import (ConversionError, check_conversion, encoder_spec, from_hf, from_timm, hf_config, hf_key,
                               main, to_hf, to_timm)
from conftest import cfg_for

transformers.utils.logging.disable_progress_bar()
TINY = dict(img_size=32, patch_size=4, embed_dim=64, depth=2, num_heads=4)

def tiny(**kw):
    torch.manual_seed(0)
    return VisionTransformer(**{**TINY, **kw}).eval()

def close(a, b, tol=1e-5):
    assert a.shape == b.shape, (a.shape, b.shape)
    d = (a - b).abs().max().item()
    assert d <= tol, f'largest difference {d:.2e} > {tol}'

def shapes(m): return {k: tuple(t.shape) for k, t in m.state_dict().items()}

def hf_out(m, x): return m(pixel_values=x).last_hidden_state

NEW = any(k.startswith('layers.') for k in IJepaModel(hf_config(VisionTransformer(**TINY))).state_dict())  # transformers 5
def hf(k): return hf_key(k, new=NEW)     # IJepaModel's name for one of our keys, in this transformers' modules

@pytest.fixture(autouse=True)
def _threads(one_thread): yield

# ------------------------------------------------------------------ small models: outputs both ways
@pytest.mark.parametrize('size', [32, (32, 48)], ids=['square', 'rectangular'])
def test_hf_round_trip(size):
    enc = tiny(img_size=size)
    x = torch.randn(2, 3, *((size, size) if isinstance(size, int) else size))
    hf = to_hf(enc)
    assert type(hf) is IJepaModel and not hf.training
    with torch.no_grad():
        close(hf_out(hf, x), enc(x))
        back = from_hf(hf)
        close(back(x), enc(x))
    assert shapes(back) == shapes(enc) and all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), enc.state_dict().values()))
    assert not back.coords.is_meta and not any(t.is_meta for t in back.state_dict().values())

def test_hf_model_built_by_transformers_converts():
    "A random IJepaModel from transformers' own config (its default eps 1e-12, a pooler): ours computes the same."
    torch.manual_seed(1)
    hf = IJepaModel(IJepaConfig(image_size=32, patch_size=4, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                intermediate_size=128), add_pooling_layer=True).eval()
    x = torch.randn(2, 3, 32, 32)
    enc = from_hf(hf)
    assert enc.norm.eps == 1e-12 and enc.blocks[0].mlp.fc1.out_features == 128
    with torch.no_grad(): close(enc(x), hf_out(hf, x))
    clf = IJepaForImageClassification(hf.config).eval()                       # a fine-tuned classifier: its encoder
    with torch.no_grad(): close(from_hf(clf)(x), hf_out(clf.ijepa, x))

def test_timm_round_trip():
    enc, x = tiny(), torch.randn(2, 3, 32, 32)
    tm = to_timm(enc)
    with torch.no_grad():
        close(tm.forward_features(x), enc(x))
        close(tm(x), enc(x).mean(1))                                          # global_pool='avg', as timm's I-JEPA models
        close(from_timm(tm)(x), enc(x))

def test_timm_model_built_by_timm_converts():
    torch.manual_seed(2)
    tm = timm.create_model('vit_huge_patch14_gap_224', pretrained=False, num_classes=0, img_size=(32, 48), **{
        k: v for k, v in TINY.items() if k != 'img_size'}).eval()
    x = torch.randn(2, 3, 32, 48)
    with torch.no_grad(): close(from_timm(tm)(x), tm.forward_features(x))

def test_conversions_copy_the_weights():
    enc = tiny()
    hf, tm = to_hf(enc), to_timm(enc)
    with torch.no_grad(): enc.blocks[0].attn.qkv.weight.add_(1.0); enc.pos_embed.add_(1.0)
    assert not torch.equal(hf.state_dict()['embeddings.position_embeddings'], enc.pos_embed)
    assert not torch.equal(tm.blocks[0].attn.qkv.weight, enc.blocks[0].attn.qkv.weight)

def test_loading_into_a_given_model():
    enc, x = tiny(), torch.randn(1, 3, 32, 32)
    hf = IJepaModel(hf_config(enc)).eval()
    assert to_hf(enc, model=hf) is hf
    target = tiny(); torch.nn.init.zeros_(target.norm.weight)
    assert from_hf(hf, encoder=target) is target
    with torch.no_grad(): close(target(x), enc(x)); close(hf_out(hf, x), enc(x))

# ------------------------------------------------------------------ names on disk and in memory
def test_saved_folder_loads_and_uses_the_file_names(tmp_path):
    enc, x = tiny(), torch.randn(1, 3, 32, 32)
    to_hf(enc).save_pretrained(tmp_path / 'm')
    on_disk = set(load_file(tmp_path / 'm' / 'model.safetensors'))
    expected = set()
    for k in enc.state_dict():
        n = hf_key(k, new=False)
        expected.update(n if isinstance(n, tuple) else [n])
    assert on_disk == expected                               # the names every transformers version reads
    with torch.no_grad():
        close(hf_out(IJepaModel.from_pretrained(tmp_path / 'm'), x), enc(x))
        close(from_hf(tmp_path / 'm')(x), enc(x))
        close(from_hf(str(tmp_path / 'm'))(x), enc(x))

def test_hf_key_table():
    assert hf_key('blocks.11.attn.qkv.bias', new=False) == tuple(
        f'encoder.layer.11.attention.attention.{p}.bias' for p in ('query', 'key', 'value'))
    assert hf_key('blocks.11.attn.qkv.bias') == tuple(f'layers.11.attention.{p}_proj.bias' for p in 'qkv')
    assert hf_key('blocks.0.mlp.fc2.weight', new=False) == 'encoder.layer.0.output.dense.weight'
    assert hf_key('pos_embed') == 'embeddings.position_embeddings'
    with pytest.raises(ConversionError, match="'mask_token' has no counterpart"): hf_key('mask_token')

# ------------------------------------------------------------------ full size, on the meta device
@pytest.mark.parametrize('name,ours,timm_name,hf_kw', [
    ('ViT-H/14', lambda: vit_huge(patch_size=14), 'vit_huge_patch14_gap_224',
     dict(hidden_size=1280, num_hidden_layers=32, num_attention_heads=16, intermediate_size=5120, patch_size=14)),
    ('ViT-g/16', lambda: vit_giant(patch_size=16), 'vit_giant_patch16_gap_224',
     dict(hidden_size=1408, num_hidden_layers=40, num_attention_heads=16, intermediate_size=6144, patch_size=16)),
], ids=['vith14', 'vitg16'])
def test_full_size_on_meta(name, ours, timm_name, hf_kw):
    "The released architectures: names and shapes as timm's registered model and transformers' config build them."
    with torch.device('meta'):
        enc, tm = ours(), timm.create_model(timm_name, pretrained=False)
        hf = IJepaModel(IJepaConfig(image_size=224, layer_norm_eps=1e-6, **hf_kw))
    assert shapes(to_timm(enc)) == shapes(tm)
    assert shapes(to_hf(enc)) == shapes(hf)
    assert shapes(from_timm(tm)) == shapes(enc) == shapes(from_hf(hf))
    assert to_hf(enc).config.intermediate_size == hf_kw['intermediate_size']
    assert sum(t.numel() for t in enc.state_dict().values()) > 6e8

# ------------------------------------------------------------------ what does not fit
def test_check_conversion_names_the_first_misfit():
    enc = tiny(); sd = enc.state_dict()
    with pytest.raises(ConversionError, match=r"lack 'blocks.0.norm1.weight', which the model needs \(1 of its"):
        check_conversion(enc, {k: v for k, v in sd.items() if k != 'blocks.0.norm1.weight'})
    with pytest.raises(ConversionError, match=r"'pos_embed' is \(1, 64, 32\) in the weights but \(1, 64, 64\) in the model"):
        check_conversion(enc, tiny(embed_dim=32).state_dict())
    with pytest.raises(ConversionError, match="hold 'cls_token'"):
        check_conversion(enc, {**sd, 'cls_token': torch.zeros(1, 1, 64)})

def test_size_mismatch_names_both_keys():
    enc = tiny()
    other = IJepaModel(hf_config(tiny(mlp_ratio=2.0)))
    with pytest.raises(ConversionError, match=rf"'{hf('blocks.0.mlp.fc1.weight')}' \(made from 'blocks.0.mlp.fc1.weight'\) is \(256, 64\)"):
        to_hf(enc, model=other)
    with pytest.raises(ConversionError, match=f"lack '{hf('blocks.2.norm1.weight')}', from which our 'blocks.2.norm1.weight'"):
        from_hf(to_hf(enc), encoder=tiny(depth=3))
    tm64 = timm.create_model('vit_huge_patch14_gap_224', pretrained=False, num_classes=0, img_size=64,
                             **{k: v for k, v in TINY.items() if k != 'img_size'})
    with pytest.raises(ConversionError, match=r"'pos_embed' is \(1, 64, 64\) in the encoder but \(1, 256, 64\)"):
        to_timm(enc, model=tm64)

def test_rope_encoders_are_refused():
    enc = tiny(rope=True)
    for convert in (to_hf, to_timm, encoder_spec):
        with pytest.raises(ConversionError, match=r'rotary positions \(rope=True\).*only encoders trained with rope=False'):
            convert(enc)

@pytest.mark.parametrize('kw,match', [
    (dict(class_token=True), "holds 'cls_token': a class token"),
    (dict(reg_tokens=4), "holds 'reg_token': register tokens"),
    (dict(init_values=1e-5), 'layer scale'),
    (dict(num_classes=10), 'a classifier head'),
    (dict(qk_norm=True), 'a query-key norm'),
    (dict(act_layer='gelu_tanh'), 'uses the activation'),
], ids=['cls', 'registers', 'layerscale', 'head', 'qknorm', 'gelu_tanh'])
def test_timm_models_with_extra_parts_are_refused(kw, match):
    tm = timm.create_model('vit_base_patch16_224', pretrained=False, **{'num_classes': 0, 'class_token': False,
                                                                       'global_pool': 'avg', 'fc_norm': False, **TINY, **kw})
    with pytest.raises(ConversionError, match=match): from_timm(tm)

def test_hf_models_that_differ_are_refused():
    cfg = hf_config(tiny()); cfg.hidden_act = 'gelu_new'
    with pytest.raises(ConversionError, match="hidden_act='gelu_new'"): from_hf(IJepaModel(cfg))
    cfg = hf_config(tiny()); cfg.qkv_bias = False
    with pytest.raises(ConversionError, match=f"lack '{hf('blocks.0.attn.qkv.bias')[0]}'"):
        from_hf(IJepaModel(cfg))
    with pytest.raises(ConversionError, match="ijepa_edu's VisionTransformer"): to_hf(torch.nn.Linear(2, 2))

def test_missing_extra_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, 'transformers', None)
    monkeypatch.setitem(sys.modules, 'timm', None)
    with pytest.raises(ImportError, match=r"pip install 'ijepa_edu\[hf\]'"): to_hf(tiny())
    with pytest.raises(ImportError, match=r"pip install 'ijepa_edu\[hf\]'"): to_timm(tiny())

def test_module_imports_without_the_extra():
    code = "import sys; sys.modules['transformers'] = sys.modules['timm'] = None; import ijepa_edu.interop; print('ok')"
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == 'ok', r.stderr[-2000:]

# ------------------------------------------------------------------ ijepa_convert, end to end on a tiny run
def convert_cmd(*args):
    "The installed console script in a fresh process (the way a user runs it)."
    exe = Path(sys.executable).parent / 'ijepa_convert'
    cmd = [str(exe)] if exe.exists() else [sys.executable, '-m', 'ijepa_edu.interop']
    return subprocess.run(cmd + list(map(str, args)), capture_output=True, text=True, timeout=300,
                          env={**os.environ, 'OMP_NUM_THREADS': '1'})

def main_fails(**kw):
    "`main` run in-process must end in SystemExit with one line naming the command."
    with pytest.raises(SystemExit) as e: main(**kw)
    msg = str(e.value.code)
    assert msg.startswith('ijepa_convert: ') and '\n' not in msg, msg
    return msg

@pytest.fixture(scope='module')
def run_ckpt(toy, tmp_path_factory):
    from ijepa_edu.train import train
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp('interop') / 'run'
    s = train(cfg_for(toy, out, max_steps='2', diag_every='0'), quiet=True)
    return Path(s['checkpoint'])

def test_convert_command_end_to_end(run_ckpt, capsys):
    from ijepa_edu.evaluate import load_run_encoder
    r = convert_cmd('--ckpt', run_ckpt)                     # the console script, as a user runs it
    assert r.returncode == 0, r.stderr[-3000:]
    folder = run_ckpt.parent / 'hf-target'
    assert str(folder) in r.stdout
    assert {p.name for p in folder.iterdir()} == {'config.json', 'model.safetensors', 'preprocessor_config.json', 'README.md'}
    x = torch.randn(2, 3, 32, 32)
    target, cfg, _ = load_run_encoder(run_ckpt, 'target')
    context, _, _ = load_run_encoder(run_ckpt, 'context')
    with torch.no_grad(): close(hf_out(IJepaModel.from_pretrained(folder), x), target(x))
    px = AutoImageProcessor.from_pretrained(folder)(torch.zeros(40, 50, 3).numpy(), return_tensors='pt')['pixel_values']
    assert tuple(px.shape) == (1, 3, cfg.img_size, cfg.img_size)
    card = (folder / 'README.md').read_text()
    assert 'target encoder' in card and 'preset `cifar10_tiny`' in card and 'step 2' in card

    main(ckpt=str(run_ckpt), encoder='context', out=str(run_ckpt.parent / 'ctx'))     # the same function, in-process
    assert 'wrote ' in capsys.readouterr().out
    with torch.no_grad():
        close(hf_out(IJepaModel.from_pretrained(run_ckpt.parent / 'ctx'), x), context(x))
        assert not torch.allclose(context(x), target(x))       # two steps of EMA: the two encoders differ
    assert 'already exists' in main_fails(ckpt=str(run_ckpt))                  # the folder is there now
    main(ckpt=str(run_ckpt), force=True)

def test_convert_command_errors_are_one_line(run_ckpt, tmp_path):
    out = str(tmp_path / 'out')
    r = convert_cmd('--ckpt', tmp_path / 'missing.pt', '--out', out)             # a fresh process: no traceback
    assert r.returncode == 1 and r.stdout == '', (r.stdout, r.stderr[-2000:])
    assert r.stderr.count('\n') == 1 and r.stderr.startswith('ijepa_convert: ') and 'does not exist' in r.stderr, r.stderr
    assert 'No checkpoint given' in main_fails(out=out)
    assert "choose 'target'" in main_fails(ckpt=str(run_ckpt), encoder='student', out=out)
    ck = torch.load(run_ckpt, weights_only=True); ck['config']['rope'] = True
    torch.save(ck, tmp_path / 'rope.pt')                     # a run trained with rotary positions: the same keys
    assert 'rope=True' in main_fails(ckpt=str(tmp_path / 'rope.pt'), out=out)
    (tmp_path / 'cut.pt').write_bytes(run_ckpt.read_bytes()[:4000])
    assert 'truncated' in main_fails(ckpt=str(tmp_path / 'cut.pt'), out=out)
    assert not (tmp_path / 'out').exists()                   # nothing written


def test_timm_rotary_vits_differ_as_the_refusal_says():
    "The refusal of rope=True names what timm's rotary ViTs do otherwise; this holds it to the installed timm."
    timm = pytest.importorskip('timm')
    m = timm.create_model('vit_small_patch16_rope_224', pretrained=False)
    assert m.num_prefix_tokens == 1 and m.cls_token is not None                  # a class token every patch attends to
    assert m.rope.rotate_half is False and m.rope.grid_indexing == 'xy'           # pairs (2i, 2i+1), bands over (x, y)
    with pytest.raises(ConversionError, match='class token'):
        to_timm(tiny(rope=True))
