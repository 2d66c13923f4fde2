"Tests of the pictures of lesson 12 (nbs/16_visualise.ipynb): odd sizes (non-square grids, batch of one), invariants."
import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt
from matplotlib.figure import Figure
import pytest
import torch
import torch.nn.functional as F
import fastcore.test as fct
from ijepa_edu.encoder import VisionTransformer, apply_masks
from ijepa_edu.predictor import vit_predictor
from ijepa_edu.masks import MaskCollator
from ijepa_edu.step import IJEPA, target_features, jepa_loss
from ijepa_edu.visualise import (all_targets, unnormalize, pca_project, pca_rgb, show_pca, Predictions, predict_blocks, cosine_maps,
                                 show_similarity_maps, prediction_scores, show_prediction_scores, patch_targets,
                                 nearest_patches, show_nearest_patches)

torch.set_num_threads(1)
GRID, SIZE, PATCH = (3, 5), (24, 40), 8                                 # a non-square grid of 15 patches


@pytest.fixture(scope='module')
def model():
    torch.manual_seed(0)
    enc = VisionTransformer(img_size=SIZE, patch_size=PATCH, embed_dim=24, depth=1, num_heads=2)
    return IJEPA(enc, vit_predictor(num_patches=15, embed_dim=24, predictor_embed_dim=12, depth=1, num_heads=2, grid=GRID))


def batch(B, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, 3, *SIZE, generator=g)
    masks_enc, masks_pred = MaskCollator(input_size=SIZE, patch_size=PATCH, npred=2, min_keep=2).sample(B, gen=g)
    return x, masks_enc, masks_pred


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close('all')


@pytest.mark.parametrize('B', [1, 3])
def test_every_picture_on_a_non_square_grid(model, B):
    x, masks_enc, masks_pred = batch(B)
    imgs = unnormalize(x)
    assert imgs.min() >= 0 and imgs.max() <= 1 and imgs.shape == x.shape
    feats = model.target_encoder(x).detach()
    assert feats.shape == (B, 15, 24)
    assert isinstance(show_pca(imgs, feats, GRID), Figure)
    if B > 1: assert isinstance(show_pca(imgs, feats, GRID, per_position=True, alpha=0.5, n=2), Figure)
    else: fct.test_fail(lambda: show_pca(imgs, feats, GRID, per_position=True), contains='at least 2 images')
    p = predict_blocks(model, x, masks_enc, masks_pred)
    K = masks_pred[0].shape[1]
    assert p.pred.shape == (2, B, K, 24) and p.target.shape == (B, 15, 24) and p.masks_pred.shape == (2, B, K)
    assert isinstance(show_similarity_maps(imgs, p, GRID, i=B - 1, block=1, n_patches=5), Figure)
    s = prediction_scores(p)
    assert s['matched'].shape == (2 * B * K,) and s['n_positions'] == 15 and s['n_images'] == B
    assert s['other_image'].isnan().all() == (B == 1)
    assert isinstance(show_prediction_scores({'a': s, 'b': s}, title='t'), Figure)
    ref = patch_targets(model, x, batch_size=2)
    torch.testing.assert_close(ref, p.target)
    assert isinstance(show_nearest_patches(imgs, p, imgs, ref, GRID, k=4, margin=2), Figure)
    if B == 1: assert isinstance(show_nearest_patches(imgs, p, imgs, ref, GRID, queries=[(1, 0, 0)], k=20), Figure)  # k > patches


def test_predict_blocks_gives_the_training_loss_and_keeps_modes(model):
    x, masks_enc, masks_pred = batch(3, seed=1)
    model.train()
    p = predict_blocks(model, x, masks_enc, masks_pred)
    assert model.encoder.training and model.predictor.training           # modes restored
    with torch.no_grad():
        ref = jepa_loss(model.predictor(model.encoder(x, masks_enc), masks_enc, masks_pred),
                        target_features(model.target_encoder, x, masks_pred))
    mine = jepa_loss(p.pred.flatten(0, 1), apply_masks(p.target, list(p.masks_pred)))
    torch.testing.assert_close(mine, ref)


def test_targets_follow_the_models_target_layers():
    "Issue 23, item 1: a model trained on the average of its last 4 blocks is scored against those targets, not the last block's."
    torch.manual_seed(0)
    enc = VisionTransformer(img_size=SIZE, patch_size=PATCH, embed_dim=24, depth=4, num_heads=2)
    model = IJEPA(enc, vit_predictor(num_patches=15, embed_dim=24, predictor_embed_dim=12, depth=1, num_heads=2, grid=GRID),
                  target_layers=4).eval()
    for p in model.target_encoder.parameters(): p.data.add_(0.1 * torch.randn_like(p))   # blocks that differ from the context's
    x, masks_enc, masks_pred = batch(3, seed=2)
    p = predict_blocks(model, x, masks_enc, masks_pred)
    with torch.no_grad():
        train_targets = model.targets(x, masks_enc, masks_pred)                            # what the training loss regresses
        last_layer = target_features(model.target_encoder, x, masks_pred)                 # the old, wrong definition
        loss = model(x, masks_enc, masks_pred)                                            # the training loss itself
    torch.testing.assert_close(apply_masks(p.target, list(p.masks_pred)), train_targets)
    assert (train_targets - last_layer).abs().max() > 0.1                                 # the test can tell them apart
    torch.testing.assert_close(jepa_loss(p.pred.flatten(0, 1), apply_masks(p.target, list(p.masks_pred))), loss)
    torch.testing.assert_close(patch_targets(model, x, batch_size=2), p.target)           # the reference set too
    torch.testing.assert_close(all_targets(model, x), p.target)
    with pytest.raises(TypeError, match='not its target encoder'): patch_targets(model.target_encoder, x)


def test_pca_invariants():
    g = torch.Generator().manual_seed(0)
    f = torch.randn(4, 15, 10, generator=g) @ torch.diag(torch.linspace(3, 0.1, 10))   # decreasing variances
    proj, comps, ratio = pca_project(f)
    assert proj.shape == (4, 15, 3) and comps.shape == (3, 10)
    torch.testing.assert_close(comps @ comps.T, torch.eye(3), atol=1e-5, rtol=0)
    assert (ratio[:-1] >= ratio[1:]).all() and 0 < ratio.sum() <= 1
    torch.testing.assert_close(pca_project(f + 3.0)[0], proj, atol=1e-3, rtol=0)         # a shift changes nothing
    torch.testing.assert_close(pca_project(-f)[0], -proj, atol=1e-4, rtol=0)           # sign fixed by the components, not the data
    rgb, _ = pca_rgb(f)
    assert rgb.shape == (4, 15, 3) and rgb.min() >= 0 and rgb.max() <= 1
    rgb2, r2 = pca_rgb(torch.randn(2, 15, 2, generator=g))                             # width 2: the third colour is constant
    assert rgb2.shape == (2, 15, 3) and (rgb2[..., 2] == 0.5).all() and len(r2) == 2
    pos = torch.randn(1, 15, 10, generator=g).expand(4, -1, -1)                          # the same at each position...
    content = torch.randn(4, 1, 10, generator=g)                                         # ...plus one vector per image
    p_all = pca_project(pos + content)[0]
    p_res = pca_project(pos + content, per_position=True)[0]                             # position removed: content only
    assert p_res[..., 0].std(dim=1).max() < 1e-4 and p_all[..., 0].std(dim=1).max() > 0.1   # constant within each image


def test_scores_of_made_up_predictors():
    g = torch.Generator().manual_seed(0)
    target = F.layer_norm(torch.randn(5, 15, 16, generator=g), (16,))
    masks = torch.stack([torch.stack([torch.randperm(15, generator=g)[:4] for _ in range(5)]) for _ in range(2)])   # (M=2, B=5, K=4)
    perfect = torch.stack([apply_masks(target, [m]) for m in masks])
    s = prediction_scores(Predictions(perfect, target, masks[0], masks))
    torch.testing.assert_close(s['matched'], torch.ones(40), atol=1e-5, rtol=0)
    assert (s['position_rank'] == 0).all() and (s['image_rank'] == 0).all()
    same = target.mean(0, keepdim=True).expand_as(target)                               # knows the position only
    s = prediction_scores(Predictions(torch.stack([apply_masks(same, [m]) for m in masks]), target, masks[0], masks))
    torch.testing.assert_close(s['matched'].mean(), s['other_image'].mean(), atol=0.15, rtol=0)
    wrong = torch.stack([apply_masks(target.roll(1, dims=1), [m]) for m in masks])     # each prediction is a neighbour's target
    assert (prediction_scores(Predictions(wrong, target, masks[0], masks))['position_rank'] > 0).all()


def test_nearest_patches_and_cosine_maps():
    g = torch.Generator().manual_seed(0)
    ref = torch.randn(3, 15, 8, generator=g)
    sims, img, pos = nearest_patches(ref[2, [0, 14]], ref, k=4)
    assert img[:, 0].tolist() == [2, 2] and pos[:, 0].tolist() == [0, 14]
    torch.testing.assert_close(sims[:, 0], torch.ones(2))
    assert (sims[:, :-1] >= sims[:, 1:]).all() and sims.shape == (2, 4)
    assert nearest_patches(ref[0, :1], ref, k=1000)[0].shape == (1, 45)                # k clipped to the reference size
    q, t = torch.randn(4, 8, generator=g), torch.randn(6, 8, generator=g)
    torch.testing.assert_close(cosine_maps(q, t), F.cosine_similarity(q[:, None], t[None], dim=-1))
