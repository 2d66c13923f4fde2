"""Experiment (2026-11-26): remove each position's batch mean from the targets, so that the predictor cannot score by
predicting where a patch is (lesson 12 found the trained tiny predictor mostly predicts position).

    python bench/experiments/center_targets.py center data=PATH out=runs/center device=cpu
    python bench/experiments/center_targets.py center_ln data=PATH out=runs/center_ln device=cpu   # re-layer-normed
    python bench/quality.py --data PATH --ckpt runs/center/latest.pt --no_pixels

`center` subtracts the mean over the batch at each position from the layer-normed targets; `center_ln` layer-norms
them again; `plain` is the unpatched preset. Result in bench/README.md (quality section).
"""
import sys, torch, torch.nn.functional as F
import ijepa_edu.train as T
from ijepa_edu.smallscale import RegularizedIJEPA, variance_covariance
from ijepa_edu.step import jepa_loss
from ijepa_edu.encoder import apply_masks
from ijepa_edu.predictor import repeat_interleave_batch
from ijepa_edu.config import get_config, parse_overrides
torch.set_num_threads(1)
class Centered(RegularizedIJEPA):
    mode='center'
    def forward(self, imgs, masks_enc, masks_pred):
        with torch.no_grad():
            h = self.target_encoder(imgs); h = F.layer_norm(h, (h.size(-1),))
            h = h - h.mean(0, keepdim=True)                       # per-position mean over the batch removed
            if self.mode == 'center_ln': h = F.layer_norm(h, (h.size(-1),))
            h = repeat_interleave_batch(apply_masks(h, masks_pred), len(imgs), repeat=len(masks_enc))
        z = self.encoder(imgs, masks_enc)
        loss = jepa_loss(self.predictor(z, masks_enc, masks_pred), h, self.loss)
        if self.vc_weight:
            var, cov = variance_covariance(z.mean(dim=1)); loss = loss + self.vc_weight * (var + self.cov_weight * cov)
        return loss
mode = sys.argv[1]
orig = T.build_model
def build(cfg):
    m = orig(cfg)
    if mode == 'plain': return m
    c = Centered(m.encoder, m.predictor, loss=cfg.loss, vc_weight=cfg.vc_weight, cov_weight=cfg.cov_weight); c.mode = mode
    c.target_encoder.load_state_dict(m.target_encoder.state_dict()); return c
T.build_model = build
cfg = get_config('cifar10_tiny', **parse_overrides(sys.argv[2:]))
print(T.train(cfg, quiet=True))
