"""Tests of the pixel decoder of lesson 13 (nbs/13_decoder.ipynb): a non-square grid, the closed-form fit, the
shuffled context, the scores' invariants, and `ijepa_decode` end to end on the toy image folder of conftest.py."""
import json, os, subprocess, sys
import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt
from matplotlib.figure import Figure
import pytest
import torch
import torch.nn.functional as F
from einops import rearrange
import fastcore.test as fct
from ijepa_edu.encoder import VisionTransformer, apply_masks
from ijepa_edu.predictor import vit_predictor
from ijepa_edu.masks import MaskCollator
from ijepa_edu.patches import patchify
from ijepa_edu.step import IJEPA
from ijepa_edu.visualise import predict_blocks, unnormalize
from ijepa_edu.decoder import (PixelDecoder, encode_targets, fit_linear_decoder, fit_decoder, decode_blocks, paint_blocks,
                               show_predictions, decoder_scores, format_scores, fit_and_score, decode_checkpoint, main)
from conftest import cfg_for

torch.set_num_threads(1)
GRID, SIZE, PATCH = (3, 5), (24, 40), 8                                 # a non-square grid of 15 patches
P = PATCH * PATCH * 3


@pytest.fixture(scope='module')
def model():
    torch.manual_seed(0)
    enc = VisionTransformer(img_size=SIZE, patch_size=PATCH, embed_dim=24, depth=1, num_heads=2)
    return IJEPA(enc, vit_predictor(num_patches=15, embed_dim=24, predictor_embed_dim=12, depth=1, num_heads=2, grid=GRID)).eval()


@pytest.fixture(scope='module')
def collator(): return MaskCollator(input_size=SIZE, patch_size=PATCH, npred=2, min_keep=2)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close('all')


def images(B, seed=0): return torch.randn(B, 3, *SIZE, generator=torch.Generator().manual_seed(seed))


def test_pixel_decoder_is_a_set_function_that_starts_as_its_linear_path():
    torch.manual_seed(0)
    dec = PixelDecoder(embed_dim=24, grid=GRID, patch_size=PATCH, width=16, depth=2, num_heads=2)
    f, idx = torch.randn(4, 6, 24), torch.randint(0, 15, (4, 6))
    out = dec(f, idx)
    assert out.shape == (4, 6, P)
    torch.testing.assert_close(out, dec.linear(f))                      # the zero-initialised head adds nothing yet
    torch.nn.init.normal_(dec.head.weight, std=0.1)
    out = dec(f, idx)
    perm = torch.randperm(6)
    torch.testing.assert_close(dec(f[:, perm], idx[:, perm]), out[:, perm], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(dec(f[2:3], idx[2:3]), out[2:3], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(dec(f, (idx + 1) % 15), out)             # positions matter
    assert PixelDecoder(embed_dim=24, grid=GRID, patch_size=PATCH, depth=0)(f, idx).shape == (4, 6, P)
    with pytest.raises(ValueError, match=r'expected \(S, K, 24\)'): dec(f[..., :5], idx)
    with pytest.raises(ValueError, match='does not match'): dec(f, idx[:, :3])
    with pytest.raises(ValueError, match=r'\[0, 15\)'): dec(f, idx + 15)


def test_fit_linear_decoder_is_ridge_regression_and_recovers_a_linear_map():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(10, 15, 6, generator=g)
    A, c = torch.randn(6, 4, generator=g), torch.randn(4, generator=g)
    W, b = fit_linear_decoder(feats, feats @ A + c, noise_std=0.0, chunk=3)
    torch.testing.assert_close(W, A, atol=1e-4, rtol=1e-4); torch.testing.assert_close(b, c, atol=1e-4, rtol=1e-4)
    # with noise s: ridge n s^2 on the weights, none on the bias = OLS on centred data plus sqrt(n) s I rows
    y = torch.randn(10, 15, 4, generator=g)
    s, X, Y = 0.3, feats.reshape(-1, 6).double(), y.reshape(-1, 4).double()
    n = len(X)
    Xa = torch.cat([X - X.mean(0), (n ** 0.5) * s * torch.eye(6, dtype=torch.float64)])
    Ya = torch.cat([Y - Y.mean(0), torch.zeros(6, 4, dtype=torch.float64)])
    W_ref = torch.linalg.lstsq(Xa, Ya).solution
    W, b = fit_linear_decoder(feats, y, noise_std=s, chunk=4)
    torch.testing.assert_close(W.double(), W_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(b.double(), Y.mean(0) - X.mean(0) @ W_ref, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match='must match'): fit_linear_decoder(feats[:3], y)
    with pytest.raises(ValueError, match='>= 0'): fit_linear_decoder(feats, y, noise_std=-0.1)


def test_fit_decoder_trains_from_the_linear_solution(model, collator):
    feats, pixels = encode_targets(model, images(16), batch_size=5)
    assert feats.shape == (16, 15, 24) and pixels.shape == (16, 15, P)
    torch.testing.assert_close(rearrange(pixels, 'b (h w) (p q c) -> b c (h p) (w q)', h=3, p=PATCH, q=PATCH),
                               unnormalize(images(16)))
    torch.manual_seed(0)
    dec = PixelDecoder(embed_dim=24, grid=GRID, patch_size=PATCH, width=16, depth=1, num_heads=2)
    assert fit_decoder(dec, feats, pixels, collator, steps=0) == []
    W, b = fit_linear_decoder(feats, pixels)
    torch.testing.assert_close(dec(feats[:2], torch.arange(15).expand(2, -1)), feats[:2] @ W + b, atol=1e-5, rtol=1e-5)
    losses = fit_decoder(dec, feats, pixels, collator, steps=40, batch_size=8, lr=3e-3)
    assert len(losses) == 40 and sum(losses[-5:]) < sum(losses[:5])
    assert not dec.training
    with pytest.raises(ValueError, match='steps must be'): fit_decoder(dec, feats, pixels, collator, steps=-1)


def test_decode_blocks_shuffles_only_the_context(model, collator):
    x = images(3, seed=1)
    masks_enc, masks_pred = collator.sample(3, gen=torch.Generator().manual_seed(0))
    feats, pixels = encode_targets(model, images(12))
    dec = PixelDecoder(embed_dim=24, grid=GRID, patch_size=PATCH, width=16, depth=1, num_heads=2)
    fit_decoder(dec, feats, pixels, collator, steps=2, batch_size=4)
    d = decode_blocks(model, dec, x, masks_enc, masks_pred)
    M, K = len(masks_pred), masks_pred[0].shape[1]
    for t in (d.truth, d.target, d.pred, d.shuffled): assert t.shape == (M, 3, K, P)
    torch.testing.assert_close(d.truth[1, 2], patchify(unnormalize(x), PATCH)[2, masks_pred[1][2]])
    rolled = predict_blocks(model, x.roll(1, 0), masks_enc, masks_pred)     # image b gets image b-1's context
    torch.testing.assert_close(d.features_shuffled.pred, rolled.pred)
    torch.testing.assert_close(d.features_shuffled.target, d.features.target)   # scored against its own targets
    assert not torch.allclose(d.pred, d.shuffled)                       # the context's content changes the prediction
    painted = paint_blocks(d.images, d.truth, d.masks_pred, PATCH)
    torch.testing.assert_close(painted, d.images)
    assert isinstance(show_predictions(d, PATCH, n=2, title='t'), Figure)
    _assert_course_style(d)
    with pytest.raises(ValueError, match='at least 2'):
        decode_blocks(model, dec, x[:1], [m[:1] for m in masks_enc], [m[:1] for m in masks_pred])


def _assert_course_style(d):
    "The figure's style (ijepa_edu.style): text of at least 10 pt, target blocks in their colours, unused patches grey, one error scale."
    from matplotlib.colors import to_rgb
    from ijepa_edu.style import MIN_FONT_PT, UNUSED, target_color
    fig = show_predictions(d, PATCH, n=3, title='t')
    texts = [t for t in fig.findobj(matplotlib.text.Text) if t.get_text().strip()]
    assert texts and min(t.get_fontsize() for t in texts) >= MIN_FONT_PT, sorted({t.get_fontsize() for t in texts})
    ctx = fig.axes[len(d.images[:3]) * 1].images[0].get_array()           # row 1, image 0: the context row, (H, W, 3)
    blocks = rearrange(d.masks_pred[:, 0], 'm k -> (m k)')
    unused = sorted(set(range(15)) - set(d.masks_enc[0].tolist()) - set(blocks.tolist()))
    cells = rearrange(torch.as_tensor(ctx), '(h p) (w q) c -> (h w) (p q) c', p=PATCH, q=PATCH)   # (N, p*p, 3)
    for i in unused: torch.testing.assert_close(cells[i], torch.tensor(to_rgb(UNUSED)).expand(PATCH * PATCH, 3), atol=1e-6, rtol=0)
    only_m = [(m, i) for m in range(len(d.masks_pred)) for i in d.masks_pred[m, 0].tolist()
              if sum(i in d.masks_pred[j, 0].tolist() for j in range(len(d.masks_pred))) == 1]
    for m, i in only_m: torch.testing.assert_close(cells[i], torch.tensor(to_rgb(target_color(m))).expand(PATCH * PATCH, 3), atol=1e-6, rtol=0)
    err_rows = [ax.images[0] for ax in fig.axes[-4:-1]]                      # the last row's three panels (the colour bar is last)
    assert len({im.get_clim() for im in err_rows}) == 1                      # one colour scale


def test_scores_and_table(model, collator):
    feats, pixels = encode_targets(model, images(12))
    torch.manual_seed(0)
    dec = PixelDecoder(embed_dim=24, grid=GRID, patch_size=PATCH, width=16, depth=1, num_heads=2)
    fit_decoder(dec, feats, pixels, collator, steps=2, batch_size=4)
    s = decoder_scores(model, dec, images(7, seed=2), collator, pixels.mean(0), feats.mean(0), batch_size=3)
    assert s['images'] == 7 and s['blocks'] == 2
    assert s == decoder_scores(model, dec, images(7, seed=2), collator, pixels.mean(0), feats.mean(0), batch_size=3)
    assert all(v >= 0 for v in s.values())
    fct.test_close(s['own_image_chance'], 100 * 2 / 7, eps=0.01)       # batches of 4 and 3 images: (4/4 + 3/3) / 7
    table = format_scores({'a': s})
    assert "each position's mean colour" in table and 'own image' in table
    with pytest.raises(ValueError, match='at least 2'): decoder_scores(model, dec, images(1), collator, pixels.mean(0), feats.mean(0))
    _, res = fit_and_score(model, images(12), images(4, seed=3), collator, random_init_predictor=model.predictor,
                           width=16, depth=1, num_heads=2, steps=2, batch_size=4)
    a, b = res['scores']['trained predictor'], res['scores']['random-init predictor']
    assert a == b                                                       # the same predictor twice: the same numbers
    assert set(res['settings']) >= {'width', 'depth', 'steps', 'noise_std'}


# ------------------------------------------------------------------ the command, on the toy image folder
def make_run(toy, out):
    "A checkpoint as ijepa_train writes it, one I-JEPA step in, and a training summary beside it."
    from ijepa_edu.build import build_model, make_mask_collator
    from ijepa_edu.checkpoint import checkpoint_state, atomic_save
    cfg = cfg_for(toy, out)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    imgs = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    loss = model(imgs, *make_mask_collator(cfg).sample(8)); loss.backward(); opt.step(); model.ema_step(0.99)
    out.mkdir(parents=True, exist_ok=True)
    atomic_save(checkpoint_state(model, opt, cfg, step=1, epoch=0, pos=1, loss=loss.item()), out / 'latest.pt')
    (out / 'metrics.json').write_text(json.dumps({'preset': 'cifar10_tiny', 'steps': 1}))
    return out / 'latest.pt'


def test_ijepa_decode_end_to_end(toy, tmp_path, capsys, one_thread):
    ck = make_run(toy, tmp_path / 'run')
    main(ckpt=str(ck), data=str(toy), steps=3, device='cpu')
    out = capsys.readouterr().out
    assert 'trained predictor' in out and 'random-init predictor' in out and 'decoder_latest.png' in out, out
    run = tmp_path / 'run'
    m = json.loads((run / 'metrics.json').read_text())
    assert (m['preset'], m['steps']) == ('cifar10_tiny', 1)                    # the training summary is kept
    e = m['decoder_latest']
    assert (e['step'], e['train_images'], e['test_images'], e['settings']['steps']) == (1, 48, 24, 3)
    s = e['scores']['trained predictor']
    assert s['images'] == 24 and s['pixels_target'] < s['pixels_position_mean']   # even after one step the decoder beats it
    assert (run / 'decoder_latest.png').stat().st_size > 10_000
    saved = torch.load(run / 'decoder_latest.pt', weights_only=True)
    dec = PixelDecoder(embed_dim=saved['embed_dim'], grid=saved['grid'], patch_size=saved['patch_size'], **{
        k: saved['settings'][k] for k in ('width', 'depth', 'num_heads')})
    dec.load_state_dict(saved['decoder'])                                     # the weights reload into the same architecture
    assert saved['position_pixels'].shape == (64, 48) and saved['step'] == 1


def test_ijepa_decode_as_a_command(toy, tmp_path):
    "The console script's code path in a fresh process: argument parsing and --out (bad input: the next test, in-process)."
    ck = make_run(toy, tmp_path / 'run')
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    cmd = [sys.executable, '-m', 'ijepa_edu.decoder', '--ckpt', str(ck), '--data', str(toy), '--steps', '2', '--width', '32',
           '--test_images', '8', '--out', str(tmp_path / 'elsewhere'), '--device', 'cpu']
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / 'elsewhere' / 'decoder_latest.png').exists()
    assert json.loads((tmp_path / 'elsewhere' / 'metrics.json').read_text())['decoder_latest']['test_images'] == 8


def test_ijepa_decode_names_the_fix(toy, tmp_path, one_thread):
    ck = make_run(toy, tmp_path / 'run')
    def fails(match, **kw):
        with pytest.raises(SystemExit) as e: main(**{'ckpt': str(ck), 'device': 'cpu', 'steps': 0, **kw})
        assert str(e.value.code).startswith('ijepa_decode: ') and match in str(e.value.code), e.value.code
    fails('No checkpoint given', ckpt=None)
    fails('does not exist', ckpt=str(tmp_path / 'missing.pt'))
    fails('does not exist: check --data', data=str(tmp_path / 'nowhere'))
    fails('at least 2', data=str(toy), test_images=1)
    torch.save({'target_encoder': {}}, tmp_path / 'official.pt')
    fails('not written by ijepa_train', ckpt=str(tmp_path / 'official.pt'))
    c = torch.load(ck, weights_only=True); del c['predictor']; torch.save(c, tmp_path / 'nopred.pt')
    fails("no 'predictor' entry", ckpt=str(tmp_path / 'nopred.pt'), data=str(toy))


def test_small_checkpoints_decode_too(toy, tmp_path, one_thread):
    "The course's shipped models are small checkpoints (save_small): the target encoder also serves as context encoder."
    from ijepa_edu.checkpoint import save_small
    from ijepa_edu.evaluate import load_run_model
    ck = make_run(toy, tmp_path / 'run')
    small = save_small(ck, tmp_path / 'run' / 'small.pt')
    assert {k: torch.load(small, weights_only=True)['config'][k] for k in ('data', 'out')} == {'data': '', 'out': ''}   # no machine paths
    model, cfg, info = load_run_model(small)
    assert info['step'] == 1 and cfg.preset == 'cifar10_tiny'
    for a, b in zip(model.encoder.parameters(), model.target_encoder.parameters()): assert torch.equal(a, b)
    e = decode_checkpoint(small, str(toy), steps=2, device='cpu', quiet=True)
    assert e['step'] == 1 and (tmp_path / 'run' / 'decoder_small.png').exists()
    assert 'decoder_small' in json.loads((tmp_path / 'run' / 'metrics.json').read_text())
