from __future__ import annotations

import pytest

from mfctl.cluster.hostfile import HostEntry, parse_hostfile
from mfctl.errors import BadInput


@pytest.mark.parametrize(
    "text, expected",
    [
        ("node1\n", [HostEntry("node1", line=1)]),
        ("ml@node2\n", [HostEntry("node2", user="ml", line=1)]),
        ("ml@node3:2222\n", [HostEntry("node3", user="ml", port=2222, line=1)]),
        ("node4 slots=8\n", [HostEntry("node4", slots=8, line=1)]),
        ("# cluster\n\n10.0.0.1 slots=2  # first\n10.0.0.2 slots=2\n",
         [HostEntry("10.0.0.1", slots=2, line=3), HostEntry("10.0.0.2", slots=2, line=4)]),
        ("gpu-a.example.org\n", [HostEntry("gpu-a.example.org", line=1)]),
        ("localhost\n", [HostEntry("localhost", line=1)]),
    ],
)
def test_accepted_forms(text: str, expected: list[HostEntry]) -> None:
    assert parse_hostfile(text, "hosts.txt") == expected


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "hosts.txt: no nodes listed"),
        ("# only a comment\n\n", "hosts.txt: no nodes listed"),
        ("a\nb\na\n", "hosts.txt:3: host 'a' is listed twice (lines 1 and 3)"),
        ("a slots=eight\n", "hosts.txt:1: slots must be a positive integer, got 'eight'"),
        ("a slots=0\n", "hosts.txt:1: slots must be a positive integer, got '0'"),
        ("a slots=8\nb slots=4\n", "hosts.txt:2: 'b' has slots=4 but line 1 has slots=8"),
        ("a slots=8\nb\n", "hosts.txt:2: 'b' has no slots but line 1 has slots=8"),
        ("a b c\n", "hosts.txt:1: cannot read 'a b c'"),
        ("a gpus=8\n", "hosts.txt:1: unknown option 'gpus=8'"),
        ("user@@host\n", "hosts.txt:1: cannot read 'user@@host'"),
        ("a:99999\n", "hosts.txt:1: port must be a number from 1 to 65535"),
        ("a;rm -rf /\n", "hosts.txt:1: cannot read"),
        ("$(touch x)\n", "hosts.txt:1: cannot read"),
        ("localhost\nb\n", "hosts.txt:1: 'localhost' can only be the single node"),
    ],
)
def test_errors_name_file_and_line(text: str, message: str) -> None:
    with pytest.raises(BadInput) as exc:
        parse_hostfile(text, "hosts.txt")
    assert str(exc.value).startswith(message), str(exc.value)
    assert "\n" not in str(exc.value)


def test_same_host_different_ports_are_different_nodes() -> None:
    entries = parse_hostfile("u@h:2201\nu@h:2202\n", "hosts.txt")
    assert [e.port for e in entries] == [2201, 2202]
