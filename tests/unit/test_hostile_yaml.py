"""machinery.safeyaml's limits, the shortened field errors, and kctl's
handling of hostile files (-f): each refusal is one line naming the
source, the document and the limit; never a traceback."""
from __future__ import annotations

import os

import pytest

from kubectlish import common
from machinery import codec, errors, safeyaml


def chain(levels: int, width: int = 9) -> str:
    """A billion-laughs document: `levels` anchors, each `width` aliases of the previous."""
    lines = [f"a0: &a0 [{', '.join(['lol'] * width)}]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


def test_alias_ratio_is_go_yamls():
    assert safeyaml.allowed_alias_ratio(1000) == 0.99
    assert safeyaml.allowed_alias_ratio(400_000) == 0.99
    assert safeyaml.allowed_alias_ratio(4_000_000) == 0.10
    assert safeyaml.allowed_alias_ratio(2_200_000) == pytest.approx(0.545)


def test_modest_aliasing_is_fine_and_a_bomb_is_refused():
    assert len(safeyaml.load_all(chain(3))[0]["a2"]) == 9          # 9*9*9 leaves: allowed
    with pytest.raises(safeyaml.LimitError) as exc:
        safeyaml.load_all(chain(8), "bomb.yaml")
    assert str(exc.value).startswith("bomb.yaml: document 1: yaml: document contains excessive aliasing "
                                     "(more than 99% of ")
    assert "\n" not in str(exc.value)


def test_the_document_is_named():
    with pytest.raises(safeyaml.LimitError) as exc:
        safeyaml.load_all("a: 1\n---\nb: 2\n---\n" + chain(8), "f.yaml")
    assert str(exc.value).startswith("f.yaml: document 3: ")


@pytest.mark.parametrize("text,message", [
    ("a: &x [*x]\n", "yaml: anchor 'x' value contains itself"),
    ("a: " + "[" * 101 + "]" * 101 + "\n", "yaml: exceeded max depth of 100"),
    ("a: " + "{b: " * 150 + "1" + "}" * 150 + "\n", "yaml: exceeded max depth of 100"),
    ("a: b: c\n", "yaml: line 1: mapping values are not allowed in this context"),
    ("a: \x00\n", "yaml: unacceptable character #x0000: special characters are not allowed"),
])
def test_one_line_refusals(text, message):
    with pytest.raises(errors.DecodeError) as exc:
        safeyaml.load_all(text, "x.yaml")
    assert message in str(exc.value)
    assert "\n" not in str(exc.value) and len(str(exc.value)) < 500


def test_depth_at_the_limit_is_fine():
    assert safeyaml.load_all("a: " + "[" * 99 + "]" * 99 + "\n")


def test_sizes_encodings_and_boms():
    with pytest.raises(safeyaml.LimitError) as exc:
        safeyaml.load_all(b"a: " + b"x" * safeyaml.MAX_BYTES, "big.yaml")
    assert str(exc.value) == "big.yaml: the input is larger than the limit of 3145728 bytes"
    with pytest.raises(errors.DecodeError) as exc:
        safeyaml.load_all(b"a: \xc3\x28\n", "bad.yaml")
    assert str(exc.value) == "bad.yaml: the input is not valid UTF-8 (invalid byte 0xc3 at offset 3)"
    assert safeyaml.load_all(b"\xef\xbb\xbfa: 1\n") == [{"a": 1}]
    assert safeyaml.load_all("\ufeffa: 1\n".encode("utf-16")) == [{"a": 1}]
    assert safeyaml.load_all(b"---\n---\n") == []
    assert safeyaml.load_all(b"- 1\n") == [[1]]


def test_scalars_resolve_as_go_yaml_does_for_json():
    text = "t: 2026-01-02T03:04:05Z\nv: y\nw: N\nq: 'y'\n"
    assert safeyaml.load_all(text) == [{"t": "2026-01-02T03:04:05Z", "v": "y", "w": "N", "q": "y"}]
    assert safeyaml.load_one(text, go_v2=True) == {"t": "2026-01-02T03:04:05Z", "v": True, "w": False, "q": "y"}


def test_json_limits():
    assert safeyaml.load_json(b'{"a": [1]}') == {"a": [1]}
    for deep in (b"[" * 101 + b"]" * 101, b"[" * 100_000 + b"]" * 100_000):
        with pytest.raises(safeyaml.LimitError, match="json: exceeded max depth of 100"):
            safeyaml.load_json(deep)


# ------------------------------------------------------------ small errors

def test_long_values_are_shortened_in_field_errors():
    e = errors.invalid("metadata.name", "n" * 10_000, "bad")
    assert str(e) == f'metadata.name: Invalid value: "{"n" * 64}"...(truncated 9936 chars): bad'
    shown = errors.show_value(list(range(100_000)))
    assert shown.endswith(", ... (99933 more)]") and len(shown) < 400
    assert errors.show_value({"k": "v" * 100}) == '{"k": "' + "v" * 64 + '"...(truncated 36 chars)}'


def test_causes_are_capped_with_and_n_more():
    errs = [errors.invalid("metadata.labels", f"k{i}", "bad") for i in range(5000)]
    e = errors.Invalid.of("ConfigMap", "x", errs)
    assert e.message.endswith(", and 4990 more]")
    assert len(e.causes) == errors.MAX_CAUSES + 1 and e.causes[-1].message == "and 4990 more"
    long = [errors.invalid("metadata.labels", f"k{i}", "bad " * 100) for i in range(8)]
    e = errors.Invalid.of("ConfigMap", "x", long)
    assert len(e.message) < 2048 and e.message.endswith(" more]")


def test_decode_errors_are_capped():
    doc = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {f"f{i}": 1 for i in range(20_000)}}
    with pytest.raises(errors.DecodeError) as exc:
        codec.from_dict(doc)
    assert str(exc.value).endswith("and 19990 more") and len(str(exc.value)) < 1024


# ------------------------------------------------------------ kctl -f

def test_a_directory_with_thousands_of_files_and_a_symlink_loop(tmp_path):
    d = tmp_path / "m"
    (d / "sub").mkdir(parents=True)
    for i in range(3000):
        (d / f"cm{i:04d}.yaml").write_text(f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c{i}}}\n")
    (d / "notes.txt").write_text("ignored")
    os.symlink(d, d / "sub" / "loop")                     # a directory loop
    os.symlink("self.yaml", d / "self.yaml")              # a file loop
    files = common.manifest_files((str(d),), recursive=True)
    assert len(files) == 3001 and files[0].endswith("cm0000.yaml")
    docs = common.decode_documents(str(d / "self.yaml"))
    assert docs[0].error == f"error: open {d / 'self.yaml'}: too many levels of symbolic links"
    assert all(common.decode_documents(f)[0].obj is not None for f in files[:3])


@pytest.mark.parametrize("data,error", [
    (b"\x89PNG\r\n\x1a\n\x00", "the input is not valid UTF-8"),
    (b"a: \x00", "unacceptable character #x0000"),
    (chain(8).encode(), "document 1: yaml: document contains excessive aliasing"),
])
def test_hostile_files_are_one_line_errors(tmp_path, data, error):
    f = tmp_path / "x.yaml"
    f.write_bytes(data)
    [doc] = common.decode_documents(str(f))
    assert doc.error.startswith(f"error: error parsing {f}: ") and error in doc.error
    assert "\n" not in doc.error


@pytest.mark.parametrize("data,error", [
    (b'"just a string"\n', "expected an object at the top of the document, got string"),
    (b"- a\n- b\n", "expected an object at the top of the document, got array"),
])
def test_documents_that_are_not_objects(tmp_path, data, error):
    f = tmp_path / "x.yaml"
    f.write_bytes(data)
    [doc] = common.decode_documents(str(f))
    assert doc.error == f'error: error validating "{f}": {error}'


def test_dashes_only_and_a_bom_are_handled_as_kubectl_does(tmp_path):
    f = tmp_path / "x.yaml"
    f.write_bytes(b"---\n")
    assert common.decode_documents(str(f)) == []
    f.write_bytes(b"\xef\xbb\xbfapiVersion: v1\nkind: ConfigMap\nmetadata: {name: bom}\n")
    assert common.decode_documents(str(f))[0].obj.metadata.name == "bom"


def test_an_endless_file_is_refused_after_the_limit():
    with pytest.raises(safeyaml.LimitError, match="larger than the limit of 3145728 bytes"):
        common.read_source("/dev/zero")
