"""restic parsers give only their documented error (ValueError) on hostile host output."""

import pytest

from mssp.backups import restic

DEEP = "[" * 5000


@pytest.mark.parametrize("reply", ["1\n", "null\n", '"x"\n', DEEP])
def test_restic_ls_and_index_lines_that_are_not_objects_are_skipped_or_value_errors(reply):
    for parser in (restic.parse_ls, restic.parse_indexes):
        try:
            parser(reply)
        except ValueError:
            pass


def test_restic_snapshots_nested_too_deeply_is_a_value_error():
    with pytest.raises(ValueError):
        restic.parse_snapshots(DEEP)
