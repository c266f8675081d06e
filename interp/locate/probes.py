"""Per-layer linear probes (harmful vs harmless) and their cross-modal transfer.

    >>> prof = probe_layers(acts, position="last")               # stratified 5-fold CV per layer
    >>> prof.scores, prof.baseline                               # held-out accuracy; shuffled labels
    >>> transfer = probe_transfer(text_acts, image_acts)         # train on text, test on image inputs

Logistic regression (scikit-learn, L2, standardized features) per layer. The shuffled-label
baseline uses the same folds with labels permuted, so the gap between the two curves is what the
layer encodes beyond chance and beyond what a linear model can memorize of N points in D dims.
"""

from __future__ import annotations

import numpy as np

from interp.activations import Activations
from interp.errors import InputError
from interp.locate.checks import labelled, layer_indices
from interp.locate.profile import LayerProfile


def _classifier(c: float, seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000, random_state=seed))


def probe_layers(
    acts: Activations,
    position: str = "last",
    positive: str = "harmful",
    layers=None,
    folds: int = 5,
    c: float = 0.1,
    metric: str = "accuracy",
    seed: int = 0,
) -> LayerProfile:
    """Held-out probe accuracy (or AUC) per layer, mean ± std over stratified folds, with a shuffled baseline."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    if metric not in ("accuracy", "auc"):
        raise InputError(f"metric must be 'accuracy' or 'auc', got {metric!r}.")
    x, y = labelled(acts, position, positive, min_per_class=folds)
    cols = layer_indices(acts, layers)
    y_np = y.numpy().astype(int)
    shuffled = np.random.RandomState(seed).permutation(y_np)
    splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(y_np)), y_np))
    means, stds, base, aucs = [], [], [], []
    for j in cols:
        h = x[:, j].numpy()
        fold_scores, fold_base, fold_auc = [], [], []
        for tr, te in splits:
            clf = _classifier(c, seed).fit(h[tr], y_np[tr])
            prob = clf.predict_proba(h[te])[:, 1]
            fold_auc.append(roc_auc_score(y_np[te], prob) if len(set(y_np[te])) == 2 else 0.5)
            fold_scores.append(fold_auc[-1] if metric == "auc" else float(((prob > 0.5) == y_np[te]).mean()))
            if len(set(shuffled[tr])) < 2:
                fold_base.append(0.5)
                continue
            ctrl = _classifier(c, seed).fit(h[tr], shuffled[tr])
            cp = ctrl.predict_proba(h[te])[:, 1]
            if metric == "auc":
                fold_base.append(roc_auc_score(shuffled[te], cp) if len(set(shuffled[te])) == 2 else 0.5)
            else:
                fold_base.append(float(((cp > 0.5) == shuffled[te]).mean()))
        means.append(float(np.mean(fold_scores)))
        stds.append(float(np.std(fold_scores)))
        base.append(float(np.mean(fold_base)))
        aucs.append(float(np.mean(fold_auc)))
    return LayerProfile(
        method="probe",
        layers=[acts.layers[j] for j in cols],
        scores=means,
        lower=[m - s for m, s in zip(means, stds, strict=True)],
        upper=[m + s for m, s in zip(means, stds, strict=True)],
        baseline=base,
        score_name=f"held-out {metric}",
        higher_is="harmfulness more linearly readable",
        model=acts.fingerprint.name,
        metadata={
            "position": position,
            "folds": folds,
            "C": c,
            "n_per_class": {"positive": int(y.sum()), "negative": int((~y).sum())},
            "auc": aucs,
            "baseline": "same folds, labels permuted (seeded)",
        },
    )


def probe_transfer(
    train: Activations,
    test: Activations,
    position: str = "last",
    test_position: str | None = None,
    positive: str = "harmful",
    layers=None,
    c: float = 0.1,
    seed: int = 0,
) -> LayerProfile:
    """Train a probe per layer on ``train`` (e.g. text requests), score it on ``test`` (e.g. image requests).

    Scores are accuracy on ``test``; ``baseline`` is the in-distribution accuracy on ``train`` (fit
    and scored with 2-fold CV), so the gap is what is lost across modalities.
    """
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    if train.layers != test.layers:
        raise InputError(
            f"train and test were captured at different layers ({train.layers} vs {test.layers})."
        )
    if train.fingerprint.weights_digest != test.fingerprint.weights_digest:
        raise InputError("train and test activations come from different models.")
    x_tr, y_tr = labelled(train, position, positive)
    x_te, y_te = labelled(test, test_position or position, positive, min_per_class=1)
    cols = layer_indices(train, layers)
    ytr, yte = y_tr.numpy().astype(int), y_te.numpy().astype(int)
    scores, aucs, within = [], [], []
    splits = list(StratifiedKFold(2, shuffle=True, random_state=seed).split(np.zeros(len(ytr)), ytr))
    for j in cols:
        clf = _classifier(c, seed).fit(x_tr[:, j].numpy(), ytr)
        prob = clf.predict_proba(x_te[:, j].numpy())[:, 1]
        scores.append(float(((prob > 0.5) == yte).mean()))
        aucs.append(float(roc_auc_score(yte, prob)) if len(set(yte)) == 2 else float("nan"))
        fold = []
        for tr, te in splits:
            f = _classifier(c, seed).fit(x_tr[tr, j].numpy(), ytr[tr])
            fold.append(float((f.predict(x_tr[te, j].numpy()) == ytr[te]).mean()))
        within.append(float(np.mean(fold)))
    return LayerProfile(
        method="probe_transfer",
        layers=[train.layers[j] for j in cols],
        scores=scores,
        baseline=within,
        score_name="accuracy on the other modality",
        higher_is="the text-trained probe reads image inputs",
        model=train.fingerprint.name,
        metadata={
            "position": position,
            "test_position": test_position or position,
            "auc": aucs,
            "baseline": "2-fold accuracy within the training modality",
            "n_train": len(ytr),
            "n_test": len(yte),
        },
    )
