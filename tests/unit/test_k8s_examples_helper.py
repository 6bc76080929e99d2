"""tests/k8s_examples.py: without the examples, a test that needs them fails
(naming where they were looked for) instead of skipping or collecting nothing."""
import pytest

from tests import k8s_examples


def test_missing_examples_are_a_failure_that_names_the_place(monkeypatch, tmp_path):
    monkeypatch.setattr(k8s_examples, "DIR", tmp_path / "nowhere")
    assert k8s_examples.files() == []
    params = k8s_examples.document_params()
    assert [p.id for p in params] == ["k8s-examples-missing"]      # one test to fail, not an empty set
    with pytest.raises(pytest.fail.Exception) as exc:
        k8s_examples.require()
    assert "are not at" in str(exc.value)


def test_present_examples_give_a_param_per_document(monkeypatch, tmp_path):
    (tmp_path / "apps").mkdir()
    (tmp_path / "apps" / "two.yaml").write_text("kind: ConfigMap\napiVersion: v1\nmetadata: {name: a}\n---\n"
                                               "kind: ConfigMap\napiVersion: v1\nmetadata: {name: b}\n")
    monkeypatch.setattr(k8s_examples, "DIR", tmp_path)
    assert k8s_examples.require() == tmp_path
    assert k8s_examples.files() == ["apps/two.yaml"]
    assert [p.id for p in k8s_examples.document_params()] == ["apps/two.yaml#0", "apps/two.yaml#1"]
