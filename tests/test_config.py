"Tests of the run config (nbs/10_config.ipynb): presets against the official configs, types, overrides, errors."
import dataclasses
import json
import pytest
from ijepa_edu.config import TrainConfig, PRESETS, get_config, parse_overrides

# The official configs, as in the facts sheet (shared/reference/ijepa-facts.md), written out by hand:
# name: (model, patch, crop, per-GPU batch, GPUs, epochs, warmup epochs, predictor depth)
OFFICIAL = {
    'in1k_vith14':     ('vit_huge', 14, 224, 128, 16, 300, 40, 12),
    'in1k_vith16_448': ('vit_huge', 16, 448, 16, 128, 300, 40, 12),
    'in22k_vith14':    ('vit_huge', 14, 224, 32, 64, 66, 3, 12),
    'in22k_vitg16':    ('vit_giant', 16, 224, 16, 128, 44, 3, 16),
}
PAPER_PRESETS = [*OFFICIAL, 'in1k_vitb16', 'in1k_vitl16']


@pytest.mark.parametrize('name', list(OFFICIAL))
def test_official_presets_match_the_facts(name):
    model, patch, crop, per_gpu, gpus, epochs, warmup, pdepth = OFFICIAL[name]
    c = get_config(name)
    assert (c.model, c.patch_size, c.img_size, c.epochs, c.warmup, c.pred_depth, c.pred_emb_dim) == \
           (model, patch, crop, epochs, warmup, pdepth, 384)
    assert c.batch_size == per_gpu * gpus == 2048
    assert c.batch_size // (gpus * c.accum_steps) == per_gpu          # the official per-GPU batch on its cluster


@pytest.mark.parametrize('name', PAPER_PRESETS)
def test_paper_optimisation_and_mask_settings(name):
    c = get_config(name)
    assert c.batch_size == 2048
    assert (c.lr, c.start_lr, c.final_lr) == (1e-3, 2e-4, 1e-6)
    assert (c.weight_decay, c.final_weight_decay) == (0.04, 0.4)
    assert c.ema == (0.996, 1.0) and c.ipe_scale == 1.0
    assert (c.crop_scale, c.horizontal_flip, c.color_jitter, c.precision) == ((0.3, 1.0), False, 0.0, 'auto')
    assert (c.enc_mask_scale, c.pred_mask_scale, c.aspect_ratio) == ((0.85, 1.0), (0.15, 0.2), (0.75, 1.5))
    assert (c.num_enc_masks, c.num_pred_masks, c.min_keep, c.allow_overlap) == (1, 4, 10, False)
    assert (c.loss, c.vc_weight, c.pos_embed_scale, c.patch_init_std, c.official_masks) == ('smooth_l1', 0.0, 1.0, 0.02, '')


def test_vit_b_and_l_presets_follow_the_paper_tables():
    b, l = get_config('in1k_vitb16'), get_config('in1k_vitl16')
    assert (b.model, b.patch_size, b.img_size, b.epochs) == ('vit_base', 16, 224, 600)
    assert (l.model, l.patch_size, l.img_size, l.epochs) == ('vit_large', 16, 224, 600)


def test_preset_names_and_every_field_has_its_type():
    assert set(PRESETS) == {'cifar10_tiny', 'cifar10_cpu', 'cifar10_small', 'in1k_vith14', 'in1k_vith16_448', 'in22k_vith14',
                            'in22k_vitg16', 'in1k_vitb16', 'in1k_vitl16'}
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    for name, preset in PRESETS.items():
        assert set(preset) <= fields, (name, set(preset) - fields)
        c = get_config(name)
        assert c.preset == name
        for f in dataclasses.fields(TrainConfig):
            v = getattr(c, f.name)
            if f.type is float: assert isinstance(v, (int, float)) and not isinstance(v, bool), (name, f.name)
            else: assert isinstance(v, f.type) and not (f.type is int and isinstance(v, bool)), (name, f.name)
        assert c.batch_size % c.accum_steps == 0 and 0 <= c.warmup < c.epochs
        if c.model == 'custom': assert c.embed_dim > 0 and c.depth > 0 and c.embed_dim % c.num_heads == 0


def test_cifar_presets_are_small_and_on_an_8x8_grid():
    for name in ('cifar10_tiny', 'cifar10_small'):
        c = get_config(name)
        assert c.img_size // c.patch_size == 8 and c.min_keep < 10 and c.model == 'custom'


def test_steps_per_epoch_do_not_depend_on_the_hardware():
    one_gpu = get_config('in1k_vith14', accum_steps='16')
    assert one_gpu.batch_size // (1 * one_gpu.accum_steps) == 128       # one GPU, 128 per forward pass
    assert 1_281_167 // one_gpu.batch_size == 625 == 1_281_167 // get_config('in1k_vith14').batch_size


def test_config_round_trips_through_a_dict_and_json():
    c = get_config('in22k_vitg16', lr='5e-4')
    assert TrainConfig(**c.to_dict()) == c
    d = json.loads(json.dumps(c.to_dict()))
    assert get_config('in22k_vitg16', **{k: v for k, v in d.items() if k != 'preset'}) == c   # lists back to tuples


@pytest.mark.parametrize('text,field,want', [
    ('lr=5e-4', 'lr', 5e-4), ('epochs=2', 'epochs', 2.0), ('batch_size=1e3', 'batch_size', 1000),
    ('horizontal_flip=false', 'horizontal_flip', False), ('horizontal_flip=Yes', 'horizontal_flip', True), ('compile=1', 'compile', True),
    ('crop_scale=0.5,1.0', 'crop_scale', (0.5, 1.0)), ('ema=(0.99, 1)', 'ema', (0.99, 1)),
    ('data=/tmp/a=b', 'data', '/tmp/a=b'), ('--warmup=0.5', 'warmup', 0.5), ('device=cuda:1', 'device', 'cuda:1'),
])
def test_command_line_overrides_get_the_field_type(text, field, want):
    c = get_config('cifar10_tiny', **parse_overrides([text]))
    v = getattr(c, field)
    assert v == want and type(v) is type(want)


def test_overrides_leave_other_fields_and_the_preset_alone():
    base, c = get_config('cifar10_small'), get_config('cifar10_small', lr='5e-4')
    assert dataclasses.replace(c, lr=base.lr) == base
    assert PRESETS['cifar10_small'].get('lr') is None                  # the preset dict itself is not modified


@pytest.mark.parametrize('kw,msg', [
    (dict(batch_size='2.5'), 'batch_size expects an integer'),
    (dict(batch_size='True'), 'batch_size expects an integer'),
    (dict(batch_size=2.5), 'batch_size expects an integer'),
    (dict(lr='fast'), 'lr expects a number'),
    (dict(compile='maybe'), 'compile expects true or false'),
    (dict(crop_scale='0.5'), 'crop_scale expects numbers separated by commas'),
    (dict(crop_scale='a,b'), 'crop_scale expects numbers separated by commas'),
    (dict(crop_scale='0.1,0.5,1.0'), 'crop_scale expects 2 numbers'),
    (dict(ema='0.99'), 'ema expects numbers separated by commas'),
    (dict(lrr='1e-4'), "'lrr' -> 'lr'"),
    (dict(zzzz='1'), 'Unknown config fields'),
])
def test_bad_overrides_are_refused_with_the_reason(kw, msg):
    with pytest.raises(ValueError) as e: get_config('cifar10_tiny', **kw)
    assert msg in str(e.value)


def test_unknown_presets_and_malformed_overrides():
    with pytest.raises(ValueError, match="did you mean 'in1k_vith14'"): get_config('in1k_vith4')
    with pytest.raises(ValueError, match='Unknown preset'): get_config('imagenet')
    with pytest.raises(ValueError, match='is not key=value'): parse_overrides(['lr'])
    with pytest.raises(ValueError, match='has no field name'): parse_overrides(['=1'])
    assert parse_overrides(None) == {} and parse_overrides([]) == {}


def test_paper_presets_bound_their_evaluation_and_cpu_presets_keep_theirs():
    "Issue 23 item 5: a fixed evenly spaced subset, bf16 encoding, workers and no baseline rows at ImageNet size."
    for name in ('in1k_vith14', 'in1k_vith16_448', 'in22k_vith14', 'in22k_vitg16', 'in1k_vitb16', 'in1k_vitl16'):
        c = get_config(name)
        assert (c.eval_train_images, c.eval_test_images, c.eval_precision, c.eval_workers, c.eval_baselines) == \
               (12811, 50000, 'bf16', 10, ''), name
    for name in ('cifar10_tiny', 'cifar10_cpu', 'cifar10_small'):     # every image; the encoding chosen by the hardware
        c = get_config(name)
        assert (c.eval_test_images, c.eval_precision, c.eval_workers, c.eval_baselines) == (0, 'auto', 0, 'random_init pixels'), name
    assert get_config('cifar10_cpu').eval_train_images == 0 and get_config('cifar10_tiny').eval_train_images == 10000
    assert get_config('cifar10_tiny', eval_precision='bf16', eval_baselines='random_init').eval_baselines == 'random_init'
