"""The fork server's library preload (``forkserver.preload_for``): a speed measure that must never
change a verdict or break a worker."""

import pytest

from transformer_conformance.forkserver import ForkServer, preload_for, targets_in_argv


def test_only_hugging_face_targets_preload_transformers() -> None:
    assert preload_for(["reference", "torch-mha"]) == ()
    modules = preload_for(["reference", "hf-gpt2", " hf-bert"])
    assert modules[0] == "transformers"
    assert len(modules) == len(set(modules))  # each library once, however many hf targets


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["prog", "run", "--impl", "reference,hf-gpt2"], ["reference", "hf-gpt2"]),
        (["prog", "run", "--impl=hf-t5", "--profile", "ci"], ["hf-t5"]),
        (["prog", "run", "--impl"], []),
        (["prog", "run", "--profile", "ci"], []),
    ],
)
def test_targets_are_read_from_the_command_line(argv: list[str], expected: list[str]) -> None:
    assert targets_in_argv(argv) == expected


def test_a_library_that_fails_to_preload_does_not_stop_the_server() -> None:
    server = ForkServer(("transformer_conformance_no_such_library",))
    try:
        pid, conn = server.fork()
        conn.close()
        assert server.wait(pid) is not None
        assert server.alive()
    finally:
        server.close()
