from __future__ import annotations

from meshready.diagnose.readers import read_lines


def texts(log: str) -> list[str]:
    return [line.text for line in read_lines(log)]


def test_istio_text_line_loses_timestamp_and_level() -> None:
    lines = read_lines("2023-04-15T02:33:07.245568Z error Command error output: x\n")
    assert lines[0].text == "Command error output: x"
    assert lines[0].level == "error"


def test_tab_separated_istio_and_scope() -> None:
    assert texts("2024-11-10T13:33:04.819772Z\twarn\tfailed to setup\n") == ["failed to setup"]


def test_json_msg_newlines_become_lines() -> None:
    log = '{"level":"error","time":"t","msg":"a\\nb\\n","error":"exit status 2"}\n'
    lines = read_lines(log)
    assert [ln.text for ln in lines] == ["a", "b", "exit status 2"]
    assert {ln.lineno for ln in lines} == {1}
    assert all(ln.level == "error" for ln in lines)


def test_logrus_unescapes_go_strings() -> None:
    log = 'time="2022" level=info msg="iptables-save v1.8.7 (legacy): x\\n\\"quoted\\"\\n"\n'
    assert texts(log) == ["iptables-save v1.8.7 (legacy): x", '"quoted"']


def test_logrus_without_time_and_extra_fields() -> None:
    log = 'level=error msg="could not configure firewall: exit status 127" Pod=p\n'
    assert texts(log) == ["could not configure firewall: exit status 127"]


def test_cri_file_prefix() -> None:
    assert texts("2019-12-13T21:38:18.370036467Z stdout F Environment:\n") == ["Environment:"]


def test_kubectl_prefix_and_container_name_prefix() -> None:
    assert texts("[pod/p-1/istio-init] hello\n") == ["hello"]
    assert texts("istio-validation 2025-01-20T15:31:22.062115Z    info    Listening\n") == [
        "Listening"
    ]


def test_describe_message_block_with_json() -> None:
    log = '      Message:   {"level":"info","msg":"iptables-save -t nat","time":"t"}\n'
    assert texts(log) == ["iptables-save -t nat"]


def test_syslog_and_dmesg_prefixes() -> None:
    assert texts("Jan 16 03:21:38 host k3s[11]: exit status 4\n") == ["exit status 4"]
    assert texts("[ 3505.474392] audit: something\n") == ["audit: something"]


def test_avc_line_is_kept_whole() -> None:
    line = 'node=n type=AVC msg=audit(1.1:2): avc:  denied  { module_request } kmod="ipt_owner"'
    assert texts(line + "\n") == [line]


def test_json_that_is_not_an_object_is_text() -> None:
    assert texts("[1, 2]\n{not json}\n") == ["[1, 2]", "{not json}"]
