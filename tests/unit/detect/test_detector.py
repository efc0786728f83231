"""Detector: the three methods, score order, save/load round trips and bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import make_organism
from sklearn.exceptions import NotFittedError

from deceptprobe.detect import Detector


def _fit(method, organism, labelled, **kw):  # noqa: ANN001, ANN202
    prompts, labels, templates = labelled
    if method == "supervised":
        return Detector(method, **kw).fit(organism, prompts, labels, groups=templates)
    return Detector(method, n_trusted=40, **kw).fit(organism)


@pytest.fixture(scope="module", params=["contrast", "anomaly", "supervised"])
def fitted(request, organism, labelled):  # noqa: ANN001, ANN201
    return _fit(request.param, organism, labelled)


def test_scores_are_one_finite_float_per_prompt_in_input_order(fitted, labelled):
    prompts = labelled[0][:12]
    s = fitted.score(prompts)
    assert s.shape == (12,) and s.dtype == np.float64 and np.isfinite(s).all()
    np.testing.assert_allclose(fitted.score(prompts[::-1]), s[::-1], atol=1e-10)
    np.testing.assert_allclose(fitted.score(prompts[3:4]), s[3:4], atol=1e-10)
    assert np.isfinite(fitted.threshold)
    np.testing.assert_array_equal(fitted.predict(prompts), s > fitted.threshold)


def test_save_load_round_trip_gives_identical_scores(fitted, organism, labelled, tmp_path):
    prompts = labelled[0][:20]
    before = fitted.score(prompts)
    fitted.save(tmp_path / "det")
    assert sorted(p.name for p in (tmp_path / "det").iterdir()) == [
        "detector.json",
        "detector.safetensors",
    ]
    again = Detector.load(tmp_path / "det", model=organism)
    assert again.method == fitted.method and again.hooks_ == fitted.hooks_
    assert again.threshold == fitted.threshold
    np.testing.assert_allclose(again.score(prompts), before, rtol=0, atol=1e-12)
    with pytest.raises(FileExistsError):
        fitted.save(tmp_path / "det")
    fitted.save(tmp_path / "det", force=True)


def test_contrast_uses_the_layer_rule_and_trusted_threshold(organism):
    det = Detector(n_trusted=40).fit(organism)
    assert det.method == "contrast" and det.contrast_.selected_by == "loo_pair_accuracy"
    assert det.hooks_ == [f"blocks.{det.layer_}.hook_resid_post"]
    assert det.threshold_source_ == "trusted_prompts"
    fixed = Detector(layer=-1, n_trusted=40).fit(organism)
    assert fixed.layer_ == 1 and fixed.contrast_.selected_by == "user"
    # Planted case: shifting activations along the direction raises the score.
    import torch

    x = torch.randn(8, 32, dtype=torch.float64)
    u = det.contrast_.unit_direction()
    lo = det.score_activations({det.hooks_[0]: x})
    hi = det.score_activations({det.hooks_[0]: x + 2 * u})
    np.testing.assert_allclose(hi - lo, 2.0)


def test_unfitted_detector_raises_not_fitted(labelled):
    det = Detector()
    with pytest.raises(NotFittedError):
        det.score(labelled[0][:2])
    with pytest.raises(NotFittedError):
        _ = det.threshold
    with pytest.raises(NotFittedError):
        det.save("nowhere")


def test_bad_parameters_and_labels(organism, labelled):
    prompts, labels, _ = labelled
    with pytest.raises(ValueError, match="method must be one of"):
        Detector("magic").fit(organism)
    with pytest.raises(ValueError, match="labelled prompts"):
        Detector("supervised").fit(organism)
    with pytest.raises(ValueError, match="labelled prompts"):
        Detector("supervised").fit(organism, prompts)
    with pytest.raises(ValueError, match="exactly two classes"):
        Detector("supervised").fit(organism, prompts, np.ones(len(prompts)))
    with pytest.raises(ValueError, match="one per prompt"):
        Detector("supervised").fit(organism, prompts, labels[:-1])
    with pytest.raises(ValueError, match="only used by method='supervised'"):
        Detector("anomaly").fit(organism, prompts, labels)
    with pytest.raises(ValueError, match="out of range"):
        Detector(layer=5).fit(organism)
    with pytest.raises(ValueError, match="fpr"):
        Detector(fpr=1.5).fit(organism)


def test_anomaly_without_trusted_prompts_on_a_foreign_model_is_a_clear_error(hf_model):
    model, tok = hf_model
    with pytest.raises(ValueError, match="no trusted prompts"):
        Detector("anomaly").fit(model, tokenizer=tok)


def test_scoring_a_model_of_another_shape_is_a_clear_error(organism, labelled, tmp_path):
    det = _fit("contrast", organism, labelled)
    wide = make_organism(d_model=48, d_head=24)
    with pytest.raises(ValueError, match="d_model=32"):
        det.score(labelled[0][:2], model=wide)
    deep = make_organism(n_layers=3)
    det.save(tmp_path / "det")
    with pytest.raises(ValueError, match="2 layers"):
        Detector.load(tmp_path / "det", model=deep)
    import torch

    with pytest.raises(ValueError, match="d_model=32"):
        det.score_activations({det.hooks_[0]: torch.zeros(2, 48)})


def test_incompatible_or_broken_files_are_clear_errors(organism, labelled, tmp_path):
    det = _fit("anomaly", organism, labelled)
    det.save(tmp_path / "det")
    meta = json.loads((tmp_path / "det" / "detector.json").read_text())
    meta["format_version"] = 999
    (tmp_path / "det" / "detector.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="incompatible version"):
        Detector.load(tmp_path / "det")
    with pytest.raises(FileNotFoundError, match="not a detector folder"):
        Detector.load(tmp_path / "missing")
    (tmp_path / "det" / "detector.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        Detector.load(tmp_path / "det")


def test_loaded_detector_without_a_model_asks_for_one(organism, labelled, tmp_path):
    det = _fit("contrast", organism, labelled)
    det.save(tmp_path / "det")
    loaded = Detector.load(tmp_path / "det")
    with pytest.raises(ValueError, match="no model"):
        loaded.score(labelled[0][:2])
    np.testing.assert_allclose(
        loaded.score(labelled[0][:5], model=organism), det.score(labelled[0][:5]), atol=1e-12
    )


@pytest.mark.parametrize("method", ["contrast", "anomaly", "supervised"])
def test_hugging_face_model(method, hf_model, labelled, tmp_path):
    model, tok = hf_model
    prompts, labels, templates = labelled
    if method == "supervised":
        det = Detector(method).fit(model, prompts, labels, tokenizer=tok, groups=templates)
    elif method == "anomaly":
        det = Detector(method).fit(model, prompts[30:], tokenizer=tok)
    else:
        det = Detector(method).fit(model, tokenizer=tok)
        assert det.threshold_source_ == "innocent_contrast_texts"
    assert det.n_layers_ == 3 and det.d_model_ == 24
    s = det.score(prompts)
    assert s.shape == (len(prompts),) and np.isfinite(s).all()
    det.save(tmp_path / "det")
    again = Detector.load(tmp_path / "det", model=model, tokenizer=tok)
    np.testing.assert_allclose(again.score(prompts), s, atol=1e-10)


def test_hugging_face_unknown_words_in_contrast_pairs_are_listed(hf_model):
    from deceptprobe.probing import ContrastPairs

    model, tok = hf_model
    pairs = ContrastPairs(
        [
            {"question": "are you a zebra ?", "suspicious": "yes", "innocent": "no"},
            {"question": "are you being honest ?", "suspicious": "no", "innocent": "yes"},
        ]
    )
    with pytest.raises(ValueError, match=r"\['zebra'\]"):
        Detector(pairs=pairs).fit(model, tokenizer=tok)


def test_sklearn_clone_and_set_params():
    from sklearn.base import clone

    det = Detector("anomaly", layer=1, fpr=0.1)
    twin = clone(det)
    assert twin is not det and twin.get_params() == det.get_params()
    assert twin.set_params(fpr=0.2, combine="max") is twin
    assert (twin.fpr, twin.combine, det.fpr) == (0.2, "max", 0.1)
    with pytest.raises(ValueError, match="invalid parameter 'alpha'"):
        twin.set_params(alpha=1.0)
