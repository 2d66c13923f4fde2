"""Experiment (2026-11-26): remove each position's batch mean from the targets, so that the predictor cannot score by
predicting where a patch is (lesson 12 found the trained tiny predictor mostly predicts position).

    python bench/experiments/center_targets.py center data=PATH out=runs/center device=cpu
    python bench/experiments/center_targets.py center_ln data=PATH out=runs/center_ln device=cpu   # re-layer-normed
    python bench/quality.py --data PATH --ckpt runs/center/latest.pt --no_pixels

`center` subtracts the mean over the batch at each position from the layer-normed targets; `center_ln` layer-norms
them again; `plain` is the preset as it is. The variant is one method, `targets`, of a subclass of the model the preset
builds, passed to `train(cfg, model=...)`: the loop, `target_layers`, padded masks and the regularizers stay the
library's. Result in bench/README.md (quality section).
"""
import sys, torch, torch.nn.functional as F
from ijepa_edu.train import train
from ijepa_edu.build import build_model
from ijepa_edu.smallscale import RegularizedIJEPA
from ijepa_edu.step import target_features
from ijepa_edu.encoder import apply_masks
from ijepa_edu.predictor import repeat_interleave_batch
from ijepa_edu.config import get_config, parse_overrides


class Centered(RegularizedIJEPA):
    "I-JEPA (with the preset's regularizers, if any) whose targets lose each position's mean over the batch."
    relayer = False                                       # True: layer-norm the centred targets again ('center_ln')
    def targets(self, imgs, masks_enc, masks_pred):
        "The library's targets (target_layers included) at every position, centred per position, then each block's."
        B, N = len(imgs), self.target_encoder.patch_embed.num_patches
        with torch.no_grad():
            every = [torch.arange(N, device=imgs.device).expand(B, N)]            # one 'mask' of all positions
            h = target_features(self.target_encoder, imgs, every, layers=self.target_layers)   # (B, N, D), layer-normed
            h = h - h.mean(0, keepdim=True)                                      # per-position mean over the batch
            if self.relayer: h = F.layer_norm(h, (h.size(-1),))
            return repeat_interleave_batch(apply_masks(h, masks_pred), B, repeat=len(masks_enc))   # padding as usual


def centered(cfg, relayer=False):
    "The networks `build_model(cfg)` makes, with centred targets."
    if cfg.targets != 'features': raise ValueError('centred targets are features: set targets=features')
    m = build_model(cfg)
    c = Centered(m.encoder, m.predictor, loss=cfg.loss, vc_weight=cfg.vc_weight, cov_weight=cfg.cov_weight,
                 sigreg_weight=cfg.sigreg_weight, target_layers=cfg.target_layers)     # its target encoder: a copy, as m's
    c.relayer = relayer
    return c


if __name__ == '__main__':
    torch.set_num_threads(1)
    mode = sys.argv[1]
    if mode not in ('plain', 'center', 'center_ln'): sys.exit(f"mode {mode!r}: choose plain, center or center_ln")
    cfg = get_config('cifar10_tiny', **parse_overrides(sys.argv[2:]))
    torch.manual_seed(cfg.seed)                           # the weights a plain run of this config starts from
    print(train(cfg, model=None if mode == 'plain' else centered(cfg, relayer=mode == 'center_ln'), quiet=True))
