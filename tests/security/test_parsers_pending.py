"""Host-output and file parsers give only their documented error, whatever well-formed JSON says.

Found by the promise suite's fuzzing: the Windows script replies parsed by ``parse_service``,
``parse_user_state``, ``parse_wu_install`` and ``parse_wu_search`` raised AttributeError on a reply
that is JSON but not an object; every JSON reader raised RecursionError on deep nesting, and the
asciicast reader a bare ValueError on an integer of more than 4,300 digits. The restic cases live
in /work/team/security-pending/test_restic_parsers_pending.py until mssp/backups is fixed.
"""

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mssp import asciicast
from mssp.errors import RecordingError, TaskError
from mssp.tasks.parsers import windows

DEEP = "[" * 5000
WINDOWS_PARSERS = [
    windows.parse_service,
    windows.parse_user_state,
    windows.parse_wu_install,
    windows.parse_wu_search,
    windows.parse_facts,
    windows.parse_hotfixes,
]


@pytest.mark.parametrize(
    "parser",
    [
        windows.parse_service,
        windows.parse_user_state,
        windows.parse_wu_install,
        windows.parse_wu_search,
    ],
)
@pytest.mark.parametrize("reply", ["true", "[1]", "3", DEEP])
def test_windows_script_replies_that_are_not_objects_are_task_errors(parser, reply):
    with pytest.raises(TaskError):
        parser(reply)


# JSON shaped like the scripts' replies (their field names), with any value in any field.
_FIELDS = (
    "updates id title kb severity categories downloaded reboot_behavior size result_code hresult "
    "reboot_required exists administrators_group enabled groups password_set name display_name "
    "status start_type os memory cpu disks users total free count load_percent caption build ubr "
    "uptime_seconds last_boot last_logon installed_on mount label"
).split()
_VALUE = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=8)
    | st.sampled_from(["/Date(99999999999999999)/", "1e999", "-1", "x"]),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(_FIELDS) | st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=12,
)
REPLY = st.one_of(
    _VALUE.map(json.dumps),
    st.dictionaries(st.sampled_from(_FIELDS), _VALUE, max_size=8).map(json.dumps),
)


@pytest.mark.parametrize("parser", WINDOWS_PARSERS, ids=lambda p: p.__name__)
def test_windows_script_replies_of_any_shape_give_a_result_or_a_task_error(parser):
    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(REPLY)
    def run(reply: str) -> None:
        try:
            parser(reply)
        except TaskError:
            pass

    run()


@pytest.mark.parametrize("line", [DEEP, "1" * 5000, '{"a":' * 3000])
def test_asciicast_reader_gives_only_recording_errors(tmp_path: Path, line: str):
    header = '{"version":2,"width":80,"height":24}\n'
    for text in (header + line + "\n", line + "\n"):
        path = tmp_path / "x.cast"
        path.write_text(text)
        with pytest.raises(RecordingError):
            asciicast.read(path)
