import numpy as np
import pytest

from routemix.metrics import ari, cluster_accuracy, clustering_scores, nmi


def test_accuracy_is_invariant_to_relabelling():
    y = [0, 0, 1, 1, 2, 2]
    assert cluster_accuracy(y, [2, 2, 0, 0, 1, 1]) == 1.0


def test_accuracy_hand_computed():
    # clusters {0: a,a,b} {1: b,c,c}: best match 0->a (2), 1->c (2) -> 4/6
    y = ["a", "a", "b", "b", "c", "c"]
    assert cluster_accuracy(y, [0, 0, 0, 1, 1, 1]) == pytest.approx(4 / 6)


def test_accuracy_more_clusters_than_classes():
    # 3 clusters, 2 classes: the best two clusters are matched, the third counts as errors
    y = [0, 0, 0, 1, 1, 1]
    assert cluster_accuracy(y, [0, 0, 2, 1, 1, 1]) == pytest.approx(5 / 6)


def test_accuracy_fewer_clusters_than_classes():
    y = [0, 1, 2, 3]
    assert cluster_accuracy(y, [0, 0, 1, 1]) == pytest.approx(2 / 4)


def test_nmi_and_ari_closed_forms():
    y = [0, 0, 1, 1]
    assert nmi(y, [1, 1, 0, 0]) == pytest.approx(1.0)
    assert ari(y, [1, 1, 0, 0]) == pytest.approx(1.0)
    # independent split: zero mutual information
    assert nmi(y, [0, 1, 0, 1]) == pytest.approx(0.0, abs=1e-12)
    # ARI of [0,0,1,1] vs [0,1,0,1]: index 0, expected 1/3, max 2 -> (0 - 2/3)/(2 - 2/3) = -0.5
    assert ari(y, [0, 1, 0, 1]) == pytest.approx(-0.5)


def test_scores_reject_bad_input():
    with pytest.raises(ValueError, match="entries"):
        cluster_accuracy([0, 1], [0])
    with pytest.raises(ValueError, match="empty"):
        clustering_scores([], [])


def test_scores_dict():
    scores = clustering_scores(np.array([0, 1, 1]), np.array([1, 0, 0]))
    assert scores == {"acc": 1.0, "nmi": pytest.approx(1.0), "ari": pytest.approx(1.0)}
