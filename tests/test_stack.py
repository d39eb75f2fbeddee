"""The production stack built and run end to end (tests/stack.py): only with FINSENT_STACK_TEST=1, as root.

It takes 10-15 minutes and a Docker Engine, so it is not part of `make test`; `make stack-test` runs it too."""

import os

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("FINSENT_STACK_TEST") != "1", reason="set FINSENT_STACK_TEST=1 (root, Docker)"),
]


def test_the_stack_builds_runs_and_survives_a_dead_worker_and_a_database_restart(tmp_path):
    from tests.stack import stack_test

    figures = stack_test(tmp_path)
    assert figures["clean_run_s"] > 0 and figures["worker_kill_run_s"] > 0 and figures["postgres_restart_run_s"] > 0
