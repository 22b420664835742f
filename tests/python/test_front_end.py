"""Every request the real dashboard's front end sends to /proxy_fetch, proxied as the legacy
route's `requests` call proxied it: the bytes and headers a stub receives, the fields of the
answer the page's JavaScript reads, and what is (not) stored. The shapes are those of the public
app's templates/index.html: the Set Action, the "Generate token" button (a form string with the
client secret), and the GETs of transition data and app status (with and without a token)."""

import json
import logging
from urllib.parse import urlencode

import pytest

from stub_cluster import SSO_SECRET

TOKEN = "operator-bearer-token-0123456789"


def only_request(cluster):
    [sent] = cluster.requests
    return sent


def audit_count(loc):
    return loc.rows("SELECT COUNT(*) FROM audit_log")[0][0]


def job_count(loc):
    return loc.rows("SELECT COUNT(*) FROM jobs")[0][0]


def test_the_set_action_goes_out_as_json_dumps_of_its_post_data(cluster_store, cluster, loc):
    body = {"url": cluster.base + "/tms/v1/set/action", "token": TOKEN, "isPost": True,
            "postData": {"action": "PE-Enable", "cids": ["948ef156c19511f08f342664b3b9825e", "c2"]}}
    status, answer = cluster_store.set_action(body, "alice", "10.0.0.7")
    sent = only_request(cluster)
    assert sent["body"] == json.dumps(body["postData"]).encode()
    assert sent["headers"]["content-type"] == "application/json"
    assert sent["headers"]["authorization"] == "Bearer " + TOKEN
    # What the page reads: result.status, result.data (the inner answer), result.job_id.
    assert status == 200 and answer["status"] == "success" and answer["data"]["success"] is True
    assert answer["job_id"] and answer["httpStatus"] == 200
    # Stored as the legacy stored it: json.dumps of postData.
    assert loc.rows("SELECT request_payload FROM jobs") == [(json.dumps(body["postData"]),)]


def test_the_token_button_sends_its_form_string_byte_for_byte(cluster_store, cluster, loc, caplog):
    caplog.set_level(logging.DEBUG)
    form = urlencode({"grant_type": "client_credentials", "client_id": "dashboard-01", "client_secret": SSO_SECRET})
    body = {"url": cluster.base + "/as/token.oauth2", "isPost": True, "postData": form,
            "contentType": "application/x-www-form-urlencoded"}
    status, answer = cluster_store.set_action(body, "alice", "10.0.0.7")
    sent = only_request(cluster)
    assert sent["method"] == "POST" and sent["body"] == form.encode()
    assert sent["headers"]["content-type"] == "application/x-www-form-urlencoded"
    assert "authorization" not in sent["headers"]  # no token was given
    # The page parses result.data (an object, or a string it JSON.parses) for access_token.
    assert status == 200 and answer["status"] == "success"
    assert answer["data"]["access_token"] == "stub-access-token-dashboard-01"
    # Not a Set Action: no job, no audit row, and the secret is nowhere (WAL files included).
    assert (job_count(loc), audit_count(loc)) == (0, 0)
    assert SSO_SECRET.encode() not in loc.dump()
    assert SSO_SECRET not in caplog.text


def test_a_secret_echoed_in_a_refused_token_request_goes_nowhere(cluster_store, cluster, loc, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-secret-value-777"
    form = f"grant_type=client_credentials&client_id=dashboard-01&client_secret={wrong}"
    body = {"url": cluster.base + "/as/token.oauth2", "isPost": True, "postData": form,
            "contentType": "application/x-www-form-urlencoded"}
    status, answer = cluster_store.set_action(body, "alice")
    assert status == 401 and answer["status"] == "error"
    # The SSO server quoted the secret back; the answer says it was refused, without it.
    assert wrong not in json.dumps(answer) and "[REDACTED]" in answer["message"]
    # Refused by the allowlist: audited, with the URL quoted but never the body.
    other = {"url": "https://sso.invalid/t?client_secret=" + wrong, "isPost": True,
             "postData": form, "contentType": "application/x-www-form-urlencoded"}
    status, answer = cluster_store.set_action(other, "alice")
    assert status == 403 and "TMS_ALLOWED_CLUSTERS" in answer["message"] and wrong not in answer["message"]
    [(message,)] = loc.rows("SELECT error_message FROM audit_log")
    assert "client_secret=[REDACTED]" in message
    assert wrong.encode() not in loc.dump()
    assert wrong not in caplog.text


def requests_form(data):
    """The form body the legacy route's `requests.post(url, data=data)` sent (requests' own encoder)."""
    from requests.models import RequestEncodingMixin

    return RequestEncodingMixin._encode_params(data).encode()


@pytest.mark.parametrize("post_data, content_type, expected", [
    ({"grant_type": "client_credentials", "scope": "a b", "ids": ["x", "y"]}, "application/x-www-form-urlencoded",
     requests_form({"grant_type": "client_credentials", "scope": "a b", "ids": ["x", "y"]})),
    ({"flag": True, "off": False, "n": 2, "d": {"x": 1, "y": 2}, "gone": None}, "application/x-www-form-urlencoded",
     requests_form({"flag": True, "off": False, "n": 2, "d": {"x": 1, "y": 2}, "gone": None})),
    # The legacy route compared the content type exactly: anything else, a charset included, was JSON.
    ({"a": "b"}, "application/x-www-form-urlencoded; charset=UTF-8", json.dumps({"a": "b"}).encode()),
    ("grant_type=client_credentials&scope=a+b", "application/x-www-form-urlencoded",
     b"grant_type=client_credentials&scope=a+b"),
    ("a plain string", "application/json", json.dumps("a plain string").encode()),
    ({"action": "Status", "note": "caf\u00e9 \u2603", "n": [1, 2.5, None, True]}, "application/json",
     json.dumps({"action": "Status", "note": "caf\u00e9 \u2603", "n": [1, 2.5, None, True]}).encode()),
    ({"a": 1}, "application/json; charset=utf-8", json.dumps({"a": 1}).encode()),
])
def test_post_data_is_encoded_as_requests_encoded_it(cluster_store, cluster, post_data, content_type, expected):
    body = {"url": cluster.base + "/tms/v1/status", "token": TOKEN, "isPost": True, "postData": post_data,
            "contentType": content_type}
    cluster_store.set_action(body, "alice")
    sent = only_request(cluster)
    assert sent["body"] == expected
    assert sent["headers"]["content-type"] == content_type


def test_a_content_type_that_could_break_the_header_is_refused(cluster_store, cluster):
    body = {"url": cluster.base + "/x", "isPost": True, "postData": "a=1",
            "contentType": "application/x-www-form-urlencoded\r\nX-Injected: 1"}
    status, answer = cluster_store.set_action(body, "alice")
    assert status == 400 and answer["error_code"] == "INVALID_INPUT" and "contentType" in answer["message"]
    status, answer = cluster_store.set_action({**body, "contentType": "application/x-www-form-urlencoded", "postData": [1]},
                                      "alice")
    assert status == 400 and "object or a string" in answer["message"]
    assert cluster.requests == []


@pytest.mark.parametrize("token", [TOKEN, ""])
def test_the_pages_gets_of_app_status_and_transition_data(cluster_store, cluster, loc, token):
    # The app status table: `apiBaseUrl + customerId`, token possibly empty; it reads
    # result.status, Array.isArray(result.data), result.httpStatus (401/403) and result.message.
    status, answer = cluster_store.set_action({"url": cluster.base + "/tms/v1/get/appstatus?app=ALL&cid=c42", "token": token},
                                      "alice")
    assert status == 200 and answer["status"] == "success" and answer["httpStatus"] == 200
    assert isinstance(answer["data"], list) and answer["data"][0]["cid"] == "c42"
    # The transition tab: baseUrl + path; it reads result.status and Object.keys(result.data).
    status, answer = cluster_store.set_action({"url": cluster.base + "/tms/v1/transition/state", "token": token}, "alice")
    assert status == 200 and sorted(answer["data"]) == ["c1", "c2"]
    for sent in cluster.requests:
        assert sent["method"] == "GET" and sent["body"] == b""
        assert sent["headers"].get("authorization") == ("Bearer " + token if token else None)
        assert sent["headers"]["content-type"] == "application/json"  # the legacy route's header
    # A GET of status data is no Set Action: nothing is stored.
    assert (job_count(loc), audit_count(loc)) == (0, 0)
    # An error answer carries what the page shows: httpStatus and a message.
    status, answer = cluster_store.set_action({"url": cluster.base + "/nowhere", "token": token}, "alice")
    assert status == 404 and answer["httpStatus"] == 404 and "404" in answer["message"]


def test_a_set_action_stores_its_payload_without_credential_fields(cluster_store, cluster, loc, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "hunter2-but-longer"
    body = {"url": cluster.base + "/tms/v1/set/action?api_key=" + secret, "token": TOKEN, "isPost": True,
            "postData": {"action": "T-Enable", "cids": ["c1"], "password": secret,
                         "options": {"refresh_token": secret, "keep": "visible"}}}
    status, answer = cluster_store.set_action(body, "alice")
    assert status == 200
    # Sent as given: the cluster gets what the operator sent.
    assert only_request(cluster)["body"] == json.dumps(body["postData"]).encode()
    [(payload, url)] = loc.rows("SELECT request_payload, cluster_url FROM jobs")
    assert json.loads(payload) == {"action": "T-Enable", "cids": ["c1"], "password": "[REDACTED]",
                                   "options": {"refresh_token": "[REDACTED]", "keep": "visible"}}
    assert url.endswith("?api_key=[REDACTED]")
    assert secret.encode() not in loc.dump() and TOKEN.encode() not in loc.dump()
    assert secret not in caplog.text


def test_a_short_token_is_refused_with_its_reason_intact(cluster_store, cluster, loc):
    body = {"url": cluster.base + "/tms/v1/set/action", "token": "t", "isPost": True,
            "postData": {"action": "Trans-Begin", "cids": ["c1"]}}
    status, answer = cluster_store.set_action(body, "alice")
    assert status == 400 and answer["error_code"] == "TOKEN_TOO_SHORT"
    [(action, message)] = loc.rows("SELECT action_type, error_message FROM audit_log")
    assert action == "Trans-Begin"
    # The library's own words, not "[REDACTED]he bearer [REDACTED]oken ...".
    assert message.startswith("the bearer token is 1 bytes; at least 8 are needed") and "[REDACTED]" not in message
    assert answer["message"] == message
    assert cluster.requests == []


@pytest.mark.parametrize("post_data", [None, "", {}, [], 0, False])
def test_a_post_without_a_body_goes_out_as_a_get_as_the_legacy_sent_it(cluster_store, cluster, post_data):
    status, answer = cluster_store.set_action({"url": cluster.base + "/tms/v1/status", "token": TOKEN, "isPost": True,
                                       "postData": post_data}, "alice")
    sent = only_request(cluster)
    assert (sent["method"], sent["body"], status) == ("GET", b"", 200), (sent, answer)


def test_secrets_in_any_spelling_stay_out_of_what_is_stored(cluster_store, cluster, loc, caplog):
    caplog.set_level(logging.DEBUG)
    values = {"hmac_key": "HMACKEYVAL1", "client_key": "CLIENTKEYVAL2", "signing_key": "SIGNKEYVAL3",
              "db_pass": "DBPASSVAL4", "pw": "PWVAL5", "privkey": "PRIVKEYVAL6", "password": "hun7"}
    body = {"url": cluster.base + "/tms/v1/set/action?a=1;client_secret=SEMISECRET2", "token": TOKEN,
            "isPost": True, "postData": {"action": "PE-Enable", "cids": ["c1"], **values,
                                         "note": "a=1;client_secret=FORMSEMI7"}}
    # The stub echoes nothing here; a cluster that echoes the request is in the next request.
    assert cluster_store.set_action(body, "alice")[0] == 200
    refused = {"url": "http://user:pa?ss=PWQMARK4@127.0.0.1/x", "token": TOKEN, "isPost": True,
               "postData": {"action": "PE-Enable", "cids": ["c2"]}}
    status, answer = cluster_store.set_action(refused, "alice")
    assert status == 403 and "PWQMARK4" not in answer["message"], answer
    status, answer = cluster_store.set_action({**refused, "url": "http://user:PWSLASH5/x@127.0.0.1/x"}, "alice")
    assert status == 403 and "PWSLASH5" not in answer["message"], answer
    dump = loc.dump()
    for secret in [*values.values(), "SEMISECRET2", "FORMSEMI7", "PWQMARK4", "PWSLASH5"]:
        assert secret.encode() not in dump, secret
        assert secret not in caplog.text, secret


def test_a_secret_the_cluster_echoes_back_is_not_stored(cluster_store, cluster, loc):
    # /echo-body answers with the request it got, as text and parsed: a short password comes
    # back in fields of its own name and inside a string.
    body = {"url": cluster.base + "/echo-body", "token": TOKEN, "isPost": True,
            "postData": {"action": "PE-Enable", "cids": ["c1"], "password": "hun7", "pw": "zq42"}}
    status, answer = cluster_store.set_action(body, "alice", idempotency_key="k1")
    # Redacted before anything reads the answer, as an echoed token is: the answer too.
    assert status == 200 and answer["data"]["as_json"]["password"] == "[REDACTED]", answer
    assert json.loads(loc.rows("SELECT response_summary FROM jobs")[0][0])["as_json"]["password"] == "[REDACTED]"
    dump = loc.dump()
    assert b"hun7" not in dump and b"zq42" not in dump
