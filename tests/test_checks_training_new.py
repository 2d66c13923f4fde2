"""The cases of lessons 11-13's checkers (issue 22, item 4): the library's function for each and plausible wrong
answers with the words their report must print. tests/test_checks.py runs them with every other checker (the library
passes, each wrong answer fails by name, a checker never raises and leaves the random stream alone); this file adds
the own-image reference's agreement with `prediction_scores`."""
import pytest
import torch
import torch.nn.functional as F

from ijepa_edu.checks_training import check_variance_covariance, check_own_image_rate, check_fit_linear_decoder
from ijepa_edu.smallscale import variance_covariance
from ijepa_edu.decoder import fit_linear_decoder


pytestmark = pytest.mark.usefixtures('one_thread')   # conftest's: tiny cases on shared cores run as fast on one thread


def own_image_rate(pred, target):
    "The reference written out: cosine with the targets at the same position in every image, own image the best."
    sim = torch.einsum('bkd,ckd->bkc', F.normalize(pred, dim=-1), F.normalize(target, dim=-1))   # (B, K, B)
    return (sim.argmax(-1) == torch.arange(len(pred))[:, None]).float().mean().item()


CHECKERS = {'check_variance_covariance': check_variance_covariance, 'check_own_image_rate': check_own_image_rate,
            'check_fit_linear_decoder': check_fit_linear_decoder}
LIBRARY = {'check_variance_covariance': variance_covariance, 'check_own_image_rate': own_image_rate,
           'check_fit_linear_decoder': fit_linear_decoder}


def test_own_image_rate_is_prediction_scores():
    "The checker's reference is `prediction_scores`' image rank 0: the written-out rate agrees with it."
    from ijepa_edu.visualise import Predictions, prediction_scores
    g = torch.Generator().manual_seed(1)
    target = torch.randn(7, 9, 12, generator=g); pred = target + torch.randn(7, 9, 12, generator=g)
    p = Predictions(pred[None], target, torch.zeros(7, 0, dtype=torch.long), torch.arange(9).expand(1, 7, 9))
    assert own_image_rate(pred, target) == pytest.approx((prediction_scores(p)['image_rank'] == 0).float().mean().item())


# ------------------------------------------------------------------ plausible wrong answers
def _vc(hinge_on_var=False, diag=False, mean_cov=False, centre=True, biased=False):
    def vc(z, eps=1e-4):
        c = z - z.mean(0) if centre else z
        v = z.var(0, correction=0 if biased else 1) + eps
        cov = c.T @ c / (len(z) - (0 if biased else 1))
        off = cov if diag else cov - torch.diag(cov.diagonal())
        return F.relu(1 - (v if hinge_on_var else v.sqrt())).mean(), off.pow(2).mean() if mean_cov else off.pow(2).sum() / z.shape[1]
    return vc

def _vc_item(z, eps=1e-4):
    var, cov = variance_covariance(z.detach())
    return var.item(), cov.item()

def _own(score, same_position=True, by_position=False):
    def rate(pred, target):
        B, K, _ = pred.shape
        if by_position:
            return (score(pred, target, 'bkd,bnd->bkn').argmax(-1) == torch.arange(K)).float().mean().item()
        if same_position:
            return (score(pred, target, 'bkd,ckd->bkc').argmax(-1) == torch.arange(B)[:, None]).float().mean().item()
        s = score(pred.reshape(1, B * K, -1), target.reshape(1, B * K, -1), 'xbd,xcd->xbc')[0]
        return (s.argmax(-1) // K == torch.arange(B).repeat_interleave(K)).float().mean().item()
    return rate

_cos = lambda p, t, eq: torch.einsum(eq, F.normalize(p, dim=-1), F.normalize(t, dim=-1))
_dot = lambda p, t, eq: torch.einsum(eq, p, t)

def _own_distance(pred, target):
    d = torch.cdist(pred.transpose(0, 1), target.transpose(0, 1))          # (K, B, B)
    return (d.argmin(-1) == torch.arange(len(pred))).float().mean().item()

def _fit(lam=lambda n, s: n * s ** 2, bias='free'):
    def fit(feats, pixels, noise_std=0.1):
        X, Y = feats.flatten(0, 1).double(), pixels.flatten(0, 1).double()
        n, D = X.shape
        if bias == 'penalised':
            Xa = torch.cat([X, torch.ones(n, 1, dtype=X.dtype)], 1)
            Wa = torch.linalg.solve(Xa.T @ Xa + lam(n, noise_std) * torch.eye(D + 1, dtype=X.dtype), Xa.T @ Y)
            return Wa[:-1].float(), Wa[-1].float()
        mx, my = (X.mean(0), Y.mean(0)) if bias == 'free' else (torch.zeros(D, dtype=X.dtype), torch.zeros(Y.shape[1], dtype=X.dtype))
        W = torch.linalg.solve((X - mx).T @ (X - mx) + lam(n, noise_std) * torch.eye(D, dtype=X.dtype), (X - mx).T @ (Y - my))
        return W.float(), (my - mx @ W).float()
    return fit

WRONG = [
    ('check_variance_covariance', _vc(hinge_on_var=True), 'the hinge is on the variance'),
    ('check_variance_covariance', _vc(diag=True), 'the diagonal (the variances) is in the covariance term'),
    ('check_variance_covariance', _vc(mean_cov=True), 'averaged over D * D entries'),
    ('check_variance_covariance', _vc(centre=False), 'the features are not centred'),
    ('check_variance_covariance', _vc(biased=True), 'the variance divides by B'),
    ('check_variance_covariance', _vc_item, 'the penalty carries no gradient'),
    ('check_own_image_rate', _own_distance, 'Euclidean distance'),
    ('check_own_image_rate', _own(_dot), 'raw dot products'),
    ('check_own_image_rate', _own(_cos, same_position=False), 'you searched every patch of every image'),
    ('check_own_image_rate', _own(_cos, by_position=True), 'the best *position*'),
    ('check_fit_linear_decoder', _fit(lam=lambda n, s: 0.0), 'no ridge'),
    ('check_fit_linear_decoder', _fit(lam=lambda n, s: s ** 2), 'the penalty is noise_std**2'),
    ('check_fit_linear_decoder', _fit(bias='penalised'), 'the bias is penalised too'),
    ('check_fit_linear_decoder', _fit(bias='none'), 'no bias'),
]
