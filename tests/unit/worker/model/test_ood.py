"""The OOD scorer: whitened distance to the nearest training class mean."""

from __future__ import annotations

import torch

from worker.model.network import MahalanobisScorer


def _clusters(n: int = 400, hidden: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, hidden, generator=g) * 6
    labels = torch.arange(n) % 3
    # Anisotropic noise: one direction varies 10x more, which the whitening must undo.
    scale = torch.ones(hidden)
    scale[0] = 10.0
    x = centres[labels] + torch.randn(n, hidden, generator=g) * scale
    return x, labels


def test_training_points_score_about_one_and_far_points_much_more() -> None:
    x, labels = _clusters()
    scorer = MahalanobisScorer.fit(x, labels)
    inside = scorer(x)
    assert 0.8 < float(inside.median()) < 1.2  # squared distance / hidden is ~1 in-distribution
    far = x[:50] + 40.0  # off every cluster in every direction
    assert float(scorer(far).min()) > 10 * float(inside.quantile(0.99))


def test_the_whitening_discounts_the_noisy_direction() -> None:
    x, labels = _clusters()
    scorer = MahalanobisScorer.fit(x, labels)
    centre = x[labels == 0].mean(0, keepdim=True)
    along_noise, across = centre.clone(), centre.clone()
    along_noise[0, 0] += 20.0  # two standard deviations of the noisy direction
    across[0, 1] += 20.0  # twenty standard deviations of a quiet one
    # (20/10)^2 / 16 = 0.25 against 20^2 / 16 = 25, to sampling error
    assert float(scorer(across)) > 30 * float(scorer(along_noise))


def test_scores_survive_a_state_dict_round_trip() -> None:
    x, labels = _clusters()
    scorer = MahalanobisScorer.fit(x, labels)
    copy = MahalanobisScorer(x.shape[1], 3)
    copy.load_state_dict(scorer.state_dict())
    assert torch.equal(copy(x), scorer(x))
