"""The Ascend tools' outputs, read: table-driven over real outputs (tests/data/ascend, each file's
first line names its source). What a user would check: each chip's id, model, health, HBM and the
processes holding it, in every layout npu-smi prints; hccn_tool's link, net health, address and
ping; the version files."""

from __future__ import annotations

import pytest

from mfctl.cluster import npu
from tests.lab.ascend import (
    HEALTH_OK,
    IP_SET,
    LINK_UP,
    NET_FAULT,
    NET_INIT,
    NET_SUCCESS,
    PING_OK,
    recorded,
    section,
)

P = npu.NpuProcess

# file, version, [(id, npu, chip, name, health, hbm_used, hbm_total, processes)], unreadable
CASES = [
    ("npu-smi_info_910B2_npu-smi-23.0.6.2_with_process_trimmed.txt", "23.0.6.2", [
        (0, 0, 0, "910B2", "OK", 3862, 65536, (P(218169, "ray_RayTrainW", 558),)),  # name cut by npu-smi
        (7, 7, 0, "910B2", "OK", 3179, 65536, ()),
    ], None),
    ("npu-smi_info_910A_8card_npu-smi-24.1.0.txt", "24.1.0",
     [(d, d, 0, "910B", "OK", used, 32768, ()) for d, used in enumerate([1365, 4, 4, 3, 3, 5, 5, 4])], None),
    # 23.0.rc1's narrower first column; a five-digit used HBM loses its space: "30711/ 32768".
    ("npu-smi_info_910ProB_npu-smi-23.0.rc1_with_process.txt", "23.0.rc1", [
        (0, 0, 0, "910ProB", "OK", 30711, 32768, (P(55115, "python", 30784),)),
    ], None),
    # 26.x: 116 columns, "Process id in container"; no bottom border after the last row.
    ("npu-smi_info_910B4_1card_npu-smi-26.0.rc1.txt", "26.0.rc1", [
        (0, 0, 0, "910B4", "OK", 2871, 32768, ()),
    ], None),
    # A3: two dies per NPU ("Chip  Phy-ID"); the device id is the Phy-ID.
    ("npu-smi_info_A3_Ascend910_dualdie_npu-smi-25.2.0_with_process.txt", "25.2.0", [
        (0, 0, 0, "Ascend910", "OK", 3133, 65536, ()),
        (1, 0, 1, "Ascend910", "OK", 2876, 65536, ()),
        (2, 1, 0, "Ascend910", "OK", 3116, 65536, ()),
        (3, 1, 1, "Ascend910", "OK", 10568, 65536, (P(990711, "python", 7746),)),
    ], None),
    # Excerpts of outputs pasted in issues (cut by the index that stored them: the cut row is named).
    ("npu-smi_info_A3_26x_116col_process_in_container_excerpt.txt", None, [
        (15, 7, 1, "Ascend910", "OK", 31877, 65536, ()),  # no header: the rows say what they are
    ], None),
    ("npu-smi_info_A3_24.1.rc3.7_excerpt.txt", "24.1.rc3.7", [
        (0, 0, 0, "Ascend910", "OK", 3397, 65536, ()),
        (1, 0, 1, "Ascend910", "OK", 3186, 65536, ()),
        (2, 1, 0, "Ascend910", "OK", None, None, ()),
    ], "| 0     2                   | 0000:99:00.0  | 0           0    / 0"),
    ("npu-smi_info_910B3_excerpt.txt", None, [(d, d, 0, "910B3", "OK", used, 65536, ())
                                              for d, used in enumerate([3379, 3385, 3380])],
     "| 3     910B3               | OK            | 92.7        41                0"),
    ("npu-smi_info_910ProB_24.1.0_excerpt.txt", "24.1.0", [
        (0, 0, 0, "910ProB", "OK", 18, 32768, ()),  # Memory-Usage 2387 / 13553 is not the HBM
        (1, 1, 0, "910ProB", "OK", 8, 32768, ()),
    ], "| 2     910ProB             | OK            | 78.2        39                0    / 0"),
    # The 310 family: "Chip  Device", no HBM column.
    ("npu-smi_info_310P3_npu-smi-24.1.rc2.txt", "24.1.rc2", [
        (0, 0, 0, "310P3", "OK", None, None, ()),
    ], None),
]


def _command_output(name: str) -> str:
    """The tool's output: the docs' command prompt line (not printed by the tool) dropped."""
    return "\n".join(line for line in recorded(name).splitlines()
                     if not line.startswith(("root@", "[root@", "> npu-smi")))


@pytest.mark.parametrize(("name", "version", "chips", "unreadable"), CASES, ids=[c[0][:40] for c in CASES])
def test_npu_smi_info_in_every_layout(name: str, version: str, chips: list, unreadable: str | None) -> None:
    info = npu.parse_npu_smi_info(_command_output(name))
    assert info.version == version
    assert [(c.id, c.npu, c.chip, c.name, c.health, c.hbm_used_mb, c.hbm_total_mb, c.processes)
            for c in info.chips] == chips
    assert info.unreadable == unreadable


def test_process_rows_of_the_116_column_layout_are_read_with_their_cut_names() -> None:
    info = npu.parse_npu_smi_info(recorded("npu-smi_info_A3_26x_116col_process_in_container_excerpt.txt"))
    assert info.processes == ((0, 0, P(632268, "python3.1", 197)),)


def test_health_warning_is_read_even_when_the_cell_overflows_its_column() -> None:
    text = section("npu-smi_info_doc_Health_Warning_then_OK_offline_reset_23.0.5.txt", "## --- before reset",
                   "## --- after reset")
    info = npu.parse_npu_smi_info(text)
    assert [(c.id, c.health) for c in info.chips] == [(0, "Warning"), (7, "OK")]
    assert info.unreadable == "..."  # the doc elides rows: the first line not understood, quoted


@pytest.mark.parametrize(("text", "unreadable"), [
    ("", "(no output)"),
    ("dcmi model initialized failed, because the device is used. ret is -8020\n",
     "dcmi model initialized failed, because the device is used. ret is -8020"),
    ("| npu-smi 23.0.6.2   Version: 23.0.6.2 |\n| NPU   Name | Health | Power |\n| 0   910B2 | OK | 1 |\n",
     "| 0   910B2 | OK | 1 |"),
])
def test_unreadable_output_is_named_never_raised(text: str, unreadable: str) -> None:
    info = npu.parse_npu_smi_info(text)
    assert info.unreadable == unreadable and info.chips == ()


def test_health_detail() -> None:
    assert npu.parse_health(HEALTH_OK) == npu.Health("OK", "NA", "NA")
    multi = "Health Status : Alarm\nError Code : 80E18402 80C98008\nError Information : node type=SOC\n  sensor=HBM\n"
    assert npu.parse_health(multi) == npu.Health("Alarm", "80E18402 80C98008", "node type=SOC sensor=HBM")


@pytest.mark.parametrize(("fn", "text", "value"), [
    (npu.parse_link, LINK_UP, "UP"),
    (npu.parse_link, "link status: DOWN\n", "DOWN"),
    (npu.parse_net_health, NET_SUCCESS, "Success"),
    (npu.parse_net_health, NET_FAULT, "Fault"),
    (npu.parse_net_health, NET_INIT, "Init"),
    (npu.parse_ip, IP_SET, "10.20.11.24"),
    (npu.parse_ip, "", None),
    (npu.parse_link, "hccn_tool: device 9 not exist\n", None),
])
def test_hccn_tool(fn, text: str, value: str | None) -> None:
    assert fn(text) == value


def test_ping() -> None:
    assert npu.parse_ping(PING_OK) == npu.Ping(3, 3) and not npu.Ping(3, 3).lost
    assert npu.Ping(3, 1).lost and npu.Ping(0, 0).lost
    assert npu.parse_ping("ping failed\n") is None


def test_version_files() -> None:
    text = recorded("version_info_doc_driver24.1.rc1_cann8.5.0.txt")
    driver = section("version_info_doc_driver24.1.rc1_cann8.5.0.txt", "## cat /usr/local/Ascend/driver/", "## cat")
    firmware = section("version_info_doc_driver24.1.rc1_cann8.5.0.txt", "## cat /usr/local/Ascend/firmware/", "## cat")
    cann = section("version_info_doc_driver24.1.rc1_cann8.5.0.txt", "## cat /usr/local/Ascend/cann/aarch64", "## cat")
    assert npu.parse_version_file(driver) == "24.1.rc1"
    assert npu.parse_version_file(firmware) == "7.1.0.11.220"
    assert npu.parse_version_file(cann) == "8.5.0"
    assert "Version=" in text


@pytest.mark.parametrize(("name", "inference"), [("310P3", True), ("Ascend310B", True), ("910B2", False),
                                                 ("Ascend910", False), ("910ProB", False)])
def test_inference_chips(name: str, inference: bool) -> None:
    assert npu.is_inference_chip(name) is inference
