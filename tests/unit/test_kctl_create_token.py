"""`kctl create token`: kubectl's flag rules and the TokenRequest it sends."""
import pytest

from kubectlish.common import Failed
from kubectlish.create_token import go_duration, token_request


def test_go_durations():
    assert go_duration("1h30m") == 5400 and go_duration("600s") == 600 and go_duration("0") == 0
    assert go_duration("1.5h") == 5400 and go_duration("-1s") == -1
    for bad in ("", "10", "1x", "h"):
        with pytest.raises(ValueError, match="invalid duration"):
            go_duration(bad)


def test_token_request_from_flags():
    tr = token_request("1h", ("api", "vault"), "Pod", "p", "u")
    assert tr.spec.expiration_seconds == 3600 and list(tr.spec.audiences) == ["api", "vault"]
    ref = tr.spec.bound_object_ref
    assert (ref.kind, ref.api_version, ref.name, ref.uid) == ("Pod", "v1", "p", "u")
    assert not token_request("0s", (), "", "", "").spec.HasField("expiration_seconds")


@pytest.mark.parametrize("args,msg", [
    (("-1s", (), "", "", ""), "--duration must be greater than or equal to 0"),
    (("1500ms", (), "", "", ""), "--duration cannot be expressed in units less than seconds"),
    (("10", (), "", "", ""), 'invalid argument "10" for "--duration" flag'),
    (("0", ("",), "", "", ""), "--audience must not be an empty string"),
    (("0", (), "Node", "n", ""), "supported --bound-object-kind values are Pod, Secret"),
    (("0", (), "Pod", "", ""), "--bound-object-name is required if --bound-object-kind is provided"),
    (("0", (), "", "p", ""), "can only be set if --bound-object-kind is provided"),
])
def test_flag_errors(args, msg):
    with pytest.raises(Failed) as exc:
        token_request(*args)
    assert msg in str(exc.value)
